/**
 * Durations, written one way everywhere: the CLI's --ttl, the API's "ttl", and every PGLEASE_*
 * setting that is a length of time. This is the only parser of them.
 *
 *   plain seconds   90
 *   with units      90s, 10m (or 10min), 2h, 1d, 1w, combined: 1h30m
 *   milliseconds    500ms, only where a setting is finer than a second (statement timeouts)
 *
 * Units are case-insensitive; spaces between parts are ignored. `m` is minutes, as in `10m`;
 * Postgres's own `min` is accepted too. What is passed on to Postgres is written by
 * postgresInterval in units Postgres reads (it has no `m`).
 */

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, min: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 };
const PART = /(\d+)(ms|min|s|m|h|d|w)/g;

/** Examples of what is accepted, for messages: each is valid wherever a duration in seconds is. */
export const DURATION_EXAMPLES = '90 (seconds), 90s, 10m, 2h, 1d or 1h30m';

/**
 * A JSON-schema pattern of the same grammar (without milliseconds), for the API's "ttl": the schema
 * validates, durationSeconds then computes.
 */
export const DURATION_PATTERN = '^\\s*(\\d+|(\\s*\\d+\\s*(min|s|m|h|d|w|MIN|S|M|H|D|W))+)\\s*$';

export class DurationError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DurationError';
  }
}

/** Milliseconds of `text`; `allowMs` admits the `ms` unit. Throws DurationError saying what is accepted. */
export function durationMs(text: string, options: { allowMs?: boolean } = {}): number {
  const compact = text.replace(/\s+/g, '').toLowerCase();
  if (/^\d+$/.test(compact)) return Number(compact) * 1000;
  const parts = [...compact.matchAll(PART)];
  const examples = options.allowMs ? `${DURATION_EXAMPLES}, or 500ms` : DURATION_EXAMPLES;
  if (compact === '' || parts.map((part) => part[0]).join('') !== compact) throw new DurationError(`${JSON.stringify(text)} is not a duration: use e.g. ${examples}`);
  if (!options.allowMs && parts.some((part) => part[2] === 'ms')) throw new DurationError(`${JSON.stringify(text)}: whole seconds here, e.g. ${DURATION_EXAMPLES}`);
  return parts.reduce((sum, part) => sum + Number(part[1]) * UNIT_MS[part[2]!]!, 0);
}

/** Whole seconds of `text` (no milliseconds). */
export function durationSeconds(text: string): number {
  return durationMs(text) / 1000;
}

/** Seconds as "10m", "1h30m", "1d": the form of messages, which durationSeconds reads back. */
export function formatSeconds(seconds: number): string {
  const parts: string[] = [];
  let rest = seconds;
  for (const [unit, size] of [['d', 86_400], ['h', 3600], ['m', 60], ['s', 1]] as const) {
    if (rest >= size) {
      parts.push(`${Math.floor(rest / size)}${unit}`);
      rest %= size;
    }
  }
  return parts.join('') || '0s';
}

/** Milliseconds as a Postgres interval setting ("60s", "1500ms"), for ALTER ROLE ... SET. */
export function postgresInterval(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000}s` : `${ms}ms`;
}
