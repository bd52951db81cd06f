#!/usr/bin/env node
/**
 * The `pglease` executable (package.json "bin"); everything lives in ./cli/program.ts.
 */
import { runCli } from './cli/program.js';

process.exitCode = await runCli(process.argv.slice(2));
