/**
 * The CLI's view of its process: where it writes, its environment, whether it talks to a
 * terminal. Tests run the CLI in-process with their own streams and environment.
 */
import { colors, type Colors } from './format.js';

export interface OutputStream {
  write: (text: string) => unknown;
  isTTY?: boolean;
}

export interface CliIo {
  stdout: OutputStream;
  stderr: OutputStream;
  stdin?: NodeJS.ReadableStream;
  env: Record<string, string | undefined>;
}

export function processIo(): CliIo {
  return { stdout: process.stdout, stderr: process.stderr, stdin: process.stdin, env: process.env };
}

/** Colour on a terminal only, and never with NO_COLOR (https://no-color.org). */
export function colorsFor(io: CliIo, stream: OutputStream): Colors {
  return colors(stream.isTTY === true && !io.env.NO_COLOR && io.env.TERM !== 'dumb');
}

export function println(stream: OutputStream, text = ''): void {
  stream.write(text + '\n');
}
