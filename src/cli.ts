#!/usr/bin/env node
/**
 * The `pglease` executable (package.json "bin"); everything lives in ./cli/program.ts.
 */
import { runCli } from './cli/program.js';

// A reader that stops early (`pglease ls | head -1`) closes the pipe: not an error of ours.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (error: NodeJS.ErrnoException) => {
    if (error.code === 'EPIPE') process.exit(process.exitCode ?? 0);
    throw error;
  });
}

process.exitCode = await runCli(process.argv.slice(2));
