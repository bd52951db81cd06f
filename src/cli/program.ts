/**
 * The `pglease` command line: assembles the commands and turns every failure into one line on
 * stderr (the server's message and code) and a non-zero exit code.
 *
 * Only `serve` and `migrate` load the service (Fastify, pg, the embedded Postgres package...): the
 * client commands load commander and an HTTP client, so `pglease --version` and `pglease lease`
 * start in about 60 ms instead of 500-750 ms (bench/cli.ts).
 */
import { readFileSync } from 'node:fs';
import { Command, CommanderError } from 'commander';
import { ConfigError } from '../config-error.js';
import { projectPath } from '../paths.js';
import { PgleaseApiError, PgleaseUnreachableError } from '../testing/client.js';
import { authCommands } from './commands/auth-commands.js';
import { leaseCommands } from './commands/lease-commands.js';
import { serviceCommands } from './commands/service-commands.js';
import { templateCommand } from './commands/template-commands.js';
import { planCommand } from './commands/plan-commands.js';
import { hostCommand } from './commands/host-commands.js';
import { CliContext } from './context.js';
import { ChildExit, examples, UsageError } from './format.js';
import { println, processIo, type CliIo } from './io.js';

const version = (JSON.parse(readFileSync(projectPath('package.json'), 'utf8')) as { version: string }).version;

/** Exit codes: 1 the server or Postgres said no; 2 bad usage; 3 the server could not be reached. */
export const EXIT = { ok: 0, failed: 1, usage: 2, unreachable: 3 } as const;

export function buildProgram(io: CliIo): Command {
  const context = new CliContext(io);
  const program = new Command('pglease')
    .description('Throwaway Postgres over HTTP: leases for tests and terminals')
    .version(version, '-v, --version')
    .option('--server <url>', 'pglease base URL (PGLEASE_URL, default http://localhost:8080)')
    .showHelpAfterError('(add --help for usage)')
    .addHelpText(
      'after',
      // help ends with examples, as every command's does
      '\nEnvironment: PGLEASE_URL, PGLEASE_TOKEN (a lease token), PGLEASE_ADMIN_TOKEN, PGLEASE_HOME (where lease tokens are kept).\n' +
        examples(['pglease serve', 'psql "$(pglease lease --ttl 10m --url)"', 'pglease ls', 'pglease psql 3f2c9a1e', 'pglease release 3f2c9a1e']),
    );
  for (const command of [...serviceCommands(context), ...leaseCommands(context), ...authCommands(context), templateCommand(context), planCommand(context), hostCommand(context)]) program.addCommand(command);

  // commander's own output and exits go through our streams, so tests can run it in-process
  const configure = (command: Command) => {
    command.exitOverride().configureOutput({
      writeOut: (text) => io.stdout.write(text),
      writeErr: (text) => io.stderr.write(text),
      outputError: (text, write) => write(context.err.red(text)),
    });
    command.commands.forEach(configure);
  };
  configure(program);
  return program;
}

/** Runs the CLI with `args` (without node and script) and returns the exit code. */
export async function runCli(args: string[], io: CliIo = processIo()): Promise<number> {
  const program = buildProgram(io);
  const err = new CliContext(io).err;
  const fail = (message: string, code: number) => {
    println(io.stderr, `${err.red('pglease:')} ${message}`);
    return code;
  };
  try {
    await program.parseAsync(args, { from: 'user' });
    return EXIT.ok;
  } catch (error) {
    if (error instanceof CommanderError) {
      // help and version end with exitCode 0; usage errors were already printed by commander
      return error.exitCode === 0 ? EXIT.ok : EXIT.usage;
    }
    if (error instanceof PgleaseApiError) {
      // the code ends the server's message; lines a command added below it (a SQL excerpt) follow,
      // then what Postgres added to its error
      const [headline, ...details] = error.message.split('\n');
      const postgres = [error.postgres?.detail && `DETAIL: ${error.postgres.detail}`, error.postgres?.hint && `HINT: ${error.postgres.hint}`].filter(Boolean);
      return fail([`${headline} (${error.code})`, ...details, ...postgres].join('\n'), EXIT.failed);
    }
    if (error instanceof PgleaseUnreachableError) {
      const advice = error.timedOut ? 'Check it with `pglease ls` before trying again.' : 'Start one with `pglease serve`, or point --server / PGLEASE_URL at one.';
      return fail(`${error.message}. ${advice}`, EXIT.unreachable);
    }
    if (error instanceof ChildExit) return error.exitCode;
    if (error instanceof UsageError) return fail(error.message, EXIT.usage);
    if (error instanceof ConfigError) return fail(`configuration error: ${error.message}`, EXIT.usage);
    return fail((error as Error).message ?? String(error), EXIT.failed);
  }
}
