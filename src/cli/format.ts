/**
 * How the CLI talks to people: durations in and out ("10m", "in 9 minutes"), sizes, aligned
 * tables, and colour only when the output is a terminal (and NO_COLOR is unset).
 */

import { DurationError, durationSeconds } from '../duration.js';

export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

/** A program the CLI ran (psql) ended with this exit code, which becomes the CLI's: it said why itself. */
export class ChildExit extends Error {
  constructor(readonly exitCode: number) {
    super(`exited with code ${exitCode}`);
    this.name = 'ChildExit';
  }
}

const MAX_DURATION_SECONDS = 10 * 365 * 86_400;

/**
 * A --ttl: a duration (src/duration.ts: 90, 90s, 10m, 2h, 1d, 1h30m), or "never" (null: a lease
 * without expiry, admin only).
 */
export function parseDuration(text: string): number | null {
  const trimmed = text.trim().toLowerCase();
  if (trimmed === 'never' || trimmed === 'none') return null;
  let seconds: number;
  try {
    seconds = durationSeconds(trimmed);
  } catch (error) {
    if (error instanceof DurationError) throw new UsageError(`${error.message}; or never`);
    throw error;
  }
  // the same checks for "0" as for "0s"; beyond ten years is surely a typo (the server caps ttl lower)
  if (seconds < 1) throw new UsageError(`"${text}" is too short: a lease lives at least 1 second`);
  if (seconds > MAX_DURATION_SECONDS) throw new UsageError(`"${text}" is too long: at most 10 years (or never)`);
  return seconds;
}

/** "in 9 minutes", "3 hours ago", "just now". */
export function relativeTime(when: Date, now: Date = new Date()): string {
  const seconds = Math.round((when.getTime() - now.getTime()) / 1000);
  const magnitude = Math.abs(seconds);
  if (magnitude < 5) return 'just now';
  const [amount, unit] =
    magnitude < 90 ? [magnitude, 'second']
    : magnitude < 59.5 * 60 ? [Math.round(magnitude / 60), 'minute']
    : magnitude < 36 * 3600 ? [Math.round(magnitude / 3600), 'hour']
    : [Math.round(magnitude / 86_400), 'day'];
  const phrase = `${amount} ${unit}${amount === 1 ? '' : 's'}`;
  return seconds > 0 ? `in ${phrase}` : `${phrase} ago`;
}

export function formatBytes(bytes: number): string {
  const units = ['bytes', 'kB', 'MB', 'GB', 'TB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${bytes} bytes` : `${value < 10 ? value.toFixed(1) : Math.round(value)} ${units[unit]}`;
}

export function formatCount(count: number): string {
  return count.toLocaleString('en-US');
}

/** ISO time without milliseconds, for a machine-independent absolute time next to a relative one. */
export function isoSeconds(when: Date): string {
  return when.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

export interface Colors {
  bold: (text: string) => string;
  dim: (text: string) => string;
  green: (text: string) => string;
  yellow: (text: string) => string;
  red: (text: string) => string;
  cyan: (text: string) => string;
}

function sgr(open: number, close: number): (text: string) => string {
  return (text) => `\u001b[${open}m${text}\u001b[${close}m`;
}

export function colors(enabled: boolean): Colors {
  if (!enabled) {
    const plain = (text: string) => text;
    return { bold: plain, dim: plain, green: plain, yellow: plain, red: plain, cyan: plain };
  }
  return { bold: sgr(1, 22), dim: sgr(2, 22), green: sgr(32, 39), yellow: sgr(33, 39), red: sgr(31, 39), cyan: sgr(36, 39) };
}

// eslint-disable-next-line no-control-regex
const ANSI = /\u001b\[[0-9;]*m/g;
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/g;

/**
 * Text from the server (a lease's name) as it may reach a terminal: control characters become
 * visible escapes, so a name cannot move the cursor, recolour, retitle or clear the screen, or
 * break a table row.
 */
export function printable(text: string): string {
  return text.replace(CONTROL, (character) => `\\u${character.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** Columns a code point takes in a terminal: East Asian wide and emoji 2, combining marks 0. */
function columnsOf(codePoint: number): number {
  if ((codePoint >= 0x300 && codePoint <= 0x36f) || (codePoint >= 0x200b && codePoint <= 0x200f) || codePoint === 0xfe0f) return 0;
  const wide =
    (codePoint >= 0x1100 && codePoint <= 0x115f) ||
    (codePoint >= 0x2e80 && codePoint <= 0xa4cf) ||
    (codePoint >= 0xac00 && codePoint <= 0xd7a3) ||
    (codePoint >= 0xf900 && codePoint <= 0xfaff) ||
    (codePoint >= 0xfe30 && codePoint <= 0xfe4f) ||
    (codePoint >= 0xff00 && codePoint <= 0xff60) ||
    (codePoint >= 0xffe0 && codePoint <= 0xffe6) ||
    (codePoint >= 0x1f300 && codePoint <= 0x1faff) ||
    (codePoint >= 0x20000 && codePoint <= 0x3fffd);
  return wide ? 2 : 1;
}

/** Columns the text takes on a terminal, colour codes aside. */
function visibleLength(text: string): number {
  let columns = 0;
  for (const character of text.replace(ANSI, '')) columns += columnsOf(character.codePointAt(0)!);
  return columns;
}

/** Columns padded to their widest cell; the last column is not padded. */
export function table(header: string[], rows: string[][]): string {
  const all = [header, ...rows];
  const widths = header.map((_, column) => Math.max(...all.map((row) => visibleLength(row[column] ?? ''))));
  return all
    .map((row) => row.map((cell, column) => (column === row.length - 1 ? cell : cell + ' '.repeat(widths[column]! - visibleLength(cell)))).join('  ').trimEnd())
    .join('\n');
}

/** "Label:  value" lines aligned on the values (pg:info style). */
export function fields(entries: [string, string][]): string {
  const width = Math.max(...entries.map(([label]) => label.length)) + 2;
  return entries.map(([label, value]) => `${(label + ':').padEnd(width)}${value}`).join('\n');
}

/** The "Examples:" block every command's --help ends with. */
export function examples(lines: string[]): string {
  return '\nExamples:\n' + lines.map((line) => `  $ ${line}`).join('\n') + '\n';
}
