/**
 * pglease serve | migrate: run the service, or only bring its database up to date. The service is
 * imported when one of them runs, never by the client commands (see ../program.ts).
 */
import { Command } from 'commander';
import type { CliContext } from '../context.js';
import { examples } from '../format.js';
import { println } from '../io.js';

/** Command-line options override the environment variables of the same settings. */
function environment(context: CliContext, options: { port?: string; host?: string; dataDir?: string }): Record<string, string | undefined> {
  return {
    ...context.io.env,
    ...(options.port === undefined ? {} : { PORT: options.port }),
    ...(options.host === undefined ? {} : { HOST: options.host }),
    ...(options.dataDir === undefined ? {} : { PGLEASE_DATA_DIR: options.dataDir }),
  };
}

export function serviceCommands(context: CliContext): Command[] {
  const serveCommand = new Command('serve')
    .description('Run the pglease service (embedded Postgres unless DATABASE_URL is set); what `npm start` runs')
    .option('--port <port>', 'HTTP port (PORT, default 8080)')
    .option('--host <host>', 'HTTP address (HOST, default 127.0.0.1: this machine only)')
    .option('--data-dir <dir>', 'embedded Postgres data (PGLEASE_DATA_DIR, default ./.pglease)')
    .addHelpText('after', examples(['pglease serve', 'DATABASE_URL=postgres://admin@db/postgres pglease serve --port 9000']))
    .action(async (options: { port?: string; host?: string; dataDir?: string }) => {
      const [{ loadConfig }, { serve }] = await Promise.all([import('../../config.js'), import('../../main.js')]);
      await serve(loadConfig(environment(context, options)));
    });

  const migrate = new Command('migrate')
    .description('Create the lease database if needed and apply migrations and SQL functions, then exit')
    .option('--data-dir <dir>', 'embedded Postgres data (PGLEASE_DATA_DIR), when DATABASE_URL is unset')
    .addHelpText('after', examples(['pglease migrate --data-dir ./.pglease', 'DATABASE_URL=postgres://admin@db/postgres pglease migrate']))
    .action(async (options: { dataDir?: string }) => {
      const [{ loadConfig }, { startService }] = await Promise.all([import('../../config.js'), import('../../service.js')]);
      const config = loadConfig(environment(context, options));
      const service = await startService(config, {
        logger: false,
        log: (message) => println(context.io.stderr, `pglease: ${message}`),
        warmPools: false,
      });
      await service.close();
      println(context.io.stdout, `${context.out.green('✔')} Lease database "${config.leaseDatabase}" is up to date`);
    });

  return [serveCommand, migrate];
}
