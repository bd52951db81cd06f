/**
 * pglease plan ls | set | rm: the plans leases are created on (GET/PUT/DELETE /v1/plans). Listing
 * needs no token; changing a plan needs PGLEASE_ADMIN_TOKEN.
 */
import { Command } from 'commander';
import type { CliContext } from '../context.js';
import { examples, formatBytes, formatCount, table, UsageError } from '../format.js';
import { println } from '../io.js';
import { withSpinner } from '../spinner.js';

/** "100MB", "1GB", "512kB" or a number of bytes. */
export function parseBytes(text: string): number {
  const match = /^(\d+(?:\.\d+)?)\s*(b|bytes|kb|mb|gb|tb)?$/i.exec(text.trim());
  if (!match) throw new UsageError(`"${text}" is not a size: write 100MB, 1GB, 512kB or a number of bytes`);
  const unit = { b: 1, bytes: 1, kb: 1024, mb: 1024 ** 2, gb: 1024 ** 3, tb: 1024 ** 4 }[(match[2] ?? 'b').toLowerCase() as 'b'];
  return Math.round(Number(match[1]) * unit);
}

function wholeNumber(text: string, option: string): number {
  if (!/^\d+$/.test(text)) throw new UsageError(`${option} takes a whole number, got "${text}"`);
  return Number(text);
}

export function planCommand(context: CliContext): Command {
  const { io } = context;
  const plan = new Command('plan')
    .description('Plans: the limits leases live within (size, rows, connections, TTL, statement timeout)')
    .addHelpText('after', examples(['pglease plan ls', 'pglease plan set small --size 100MB --rows 10000 --token-may-choose', 'pglease lease --plan small', 'pglease plan rm small']));

  plan
    .command('ls')
    .description('List the plans')
    .option('--json', 'print the plans as JSON')
    .action(async (options: { json?: boolean }, command: Command) => {
      const { items } = await withSpinner(io, 'Reading…', () => context.client(command, context.adminToken).listPlans());
      if (options.json) return println(io.stdout, JSON.stringify(items, null, 2));
      println(io.stdout, table(
        ['NAME', 'SIZE', 'ROWS', 'CONNECTIONS', 'TTL MAX', 'STATEMENT TIMEOUT', 'TOKENS MAY CHOOSE'],
        items.map((item) => [
          item.name,
          formatBytes(item.max_size_bytes),
          item.max_rows === null ? '-' : formatCount(item.max_rows),
          item.max_connections === null ? '-' : String(item.max_connections),
          item.max_ttl_seconds === null ? '-' : `${item.max_ttl_seconds}s`,
          item.statement_timeout ?? '-',
          item.token_may_choose ? 'yes' : 'no',
        ]),
      ));
    });

  plan
    .command('set')
    .description('Create or change a plan (admin token)')
    .argument('<name>', 'lower-case letters, digits and dashes')
    .requiredOption('--size <bytes>', 'size limit: 100MB, 1GB, ...')
    .option('--rows <n>', 'row limit (none when absent)')
    .option('--connections <n>', 'connection limit')
    .option('--max-ttl <seconds>', 'longest TTL a lease on it may have')
    .option('--statement-timeout <duration>', 'e.g. 30s')
    .option('--token-may-choose', 'let callers with a lease token choose it, not only the admin')
    .option('--description <text>', 'what it is for')
    .option('--json', 'print the plan as JSON')
    .action(async (name: string, options: { size: string; rows?: string; connections?: string; maxTtl?: string; statementTimeout?: string; tokenMayChoose?: boolean; description?: string; json?: boolean }, command: Command) => {
      if (!context.adminToken) throw new UsageError('changing plans needs PGLEASE_ADMIN_TOKEN');
      const limits = {
        max_size_bytes: parseBytes(options.size),
        max_rows: options.rows === undefined ? null : wholeNumber(options.rows, '--rows'),
        max_connections: options.connections === undefined ? null : wholeNumber(options.connections, '--connections'),
        max_ttl_seconds: options.maxTtl === undefined ? null : wholeNumber(options.maxTtl, '--max-ttl'),
        statement_timeout: options.statementTimeout ?? null,
        token_may_choose: options.tokenMayChoose === true,
        ...(options.description === undefined ? {} : { description: options.description }),
      };
      const saved = await withSpinner(io, 'Saving…', () => context.client(command, context.adminToken).putPlan(name, limits));
      if (options.json) return println(io.stdout, JSON.stringify(saved, null, 2));
      println(io.stdout, `${context.out.green('✔')} Plan ${saved.name}: ${formatBytes(saved.max_size_bytes)}${saved.max_rows === null ? '' : `, ${formatCount(saved.max_rows)} rows`}`);
    });

  plan
    .command('rm')
    .description('Delete a plan no lease is on (admin token)')
    .argument('<name>')
    .action(async (name: string, _options: unknown, command: Command) => {
      if (!context.adminToken) throw new UsageError('deleting plans needs PGLEASE_ADMIN_TOKEN');
      await withSpinner(io, 'Deleting…', () => context.client(command, context.adminToken).deletePlan(name));
      println(io.stdout, `${context.out.green('✔')} Deleted plan ${name}`);
    });
  return plan;
}
