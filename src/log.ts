/**
 * The service's one logger: pino, the logger Fastify itself uses, so that pglease's own messages
 * (migrations applied, jobs, shutdown) and Fastify's (errors, requests with PGLEASE_LOG_REQUESTS)
 * are records of one stream, on stderr. Where stderr is a file or a pipe (Docker, systemd, a log
 * collector) every line is one JSON object; on a terminal the same records are short lines a
 * person reads ("14:03:07 applied migration 0004_templates", "14:03:09 WARN ..."), written by
 * humanLine below (pino-pretty is not a dependency; this needs no more).
 */
import { pino, type DestinationStream, type Logger } from 'pino';

/** Fields every pino record has, which a human line shows in its own way or not at all. */
const RECORD_FIELDS = new Set(['level', 'time', 'pid', 'hostname', 'msg', 'err']);
const LEVEL_LABELS: Record<number, string> = { 10: 'TRACE', 20: 'DEBUG', 40: 'WARN', 50: 'ERROR', 60: 'FATAL' };

/** One JSON record of pino as a human line: time, level (only when not info), message, other fields as key=value, an error's stack. */
export function humanLine(json: string): string {
  let record: Record<string, unknown>;
  try {
    record = JSON.parse(json) as Record<string, unknown>;
  } catch {
    return json.trimEnd();
  }
  const time = new Date(typeof record.time === 'number' ? record.time : Date.now()).toTimeString().slice(0, 8);
  const label = LEVEL_LABELS[record.level as number];
  const fields = Object.entries(record)
    .filter(([key]) => !RECORD_FIELDS.has(key))
    .map(([key, value]) => `${key}=${typeof value === 'string' ? value : JSON.stringify(value)}`);
  const err = record.err as { stack?: string; message?: string } | undefined;
  const parts = [time, ...(label ? [label] : []), String(record.msg ?? ''), ...fields];
  return parts.join(' ') + (err ? `\n${err.stack ?? err.message ?? ''}` : '');
}

/** A pino destination that writes each record to `out` as a human line. */
function humanStream(out: { write: (text: string) => unknown }): DestinationStream {
  return { write: (line: string) => void out.write(humanLine(line) + '\n') };
}

/** The logger of a `pglease serve` process, at `level`, on `out` (stderr): human lines on a terminal, JSON otherwise. */
export function createLogger(level: string, out: { write: (text: string) => unknown; isTTY?: boolean } = process.stderr): Logger {
  return pino({ level }, out.isTTY ? humanStream(out) : (out as DestinationStream));
}
