/**
 * pglease template add | ls | rm
 */
import { readFile } from 'node:fs/promises';
import { Command } from 'commander';
import { PgleaseApiError, type PgleaseClient, type TemplateJson } from '../../testing/client.js';
import type { CliContext } from '../context.js';
import { examples, formatBytes, relativeTime, table, UsageError } from '../format.js';
import { println, type CliIo } from '../io.js';
import { withSpinner } from '../spinner.js';

async function readSql(io: CliIo, file: string): Promise<string> {
  if (file !== '-') {
    try {
      return await readFile(file, 'utf8');
    } catch (error) {
      throw new UsageError(`cannot read ${file}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
    }
  }
  if (!io.stdin) throw new UsageError('no standard input to read the SQL from');
  const chunks: Buffer[] = [];
  for await (const chunk of io.stdin) chunks.push(typeof chunk === 'string' ? Buffer.from(chunk) : (chunk as Buffer));
  return Buffer.concat(chunks).toString('utf8');
}

/** The failing line of the SQL with a caret under the column, as compilers show it. */
export function sqlExcerpt(sql: string, file: string, line: number, column: number): string {
  const text = sql.split('\n')[line - 1] ?? '';
  const gutter = String(line);
  return [`  --> ${file}:${line}:${column}`, `  ${gutter} | ${text}`, `  ${' '.repeat(gutter.length)} | ${' '.repeat(Math.max(0, column - 1))}^`].join('\n');
}

/** The admin token registers global templates; --lease ID uses that lease's own token (a private template). */
async function templateClient(context: CliContext, command: Command, leaseId: string | undefined): Promise<PgleaseClient> {
  if (leaseId !== undefined) return (await context.asLease(command, leaseId)).client;
  const token = context.adminToken ?? (context.io.env.PGLEASE_TOKEN || undefined);
  if (!token) throw new UsageError('templates need PGLEASE_ADMIN_TOKEN (a global template), or --lease ID / PGLEASE_TOKEN (a template private to that lease)');
  return context.client(command, token);
}

/**
 * How to lease from a template just registered. A private one is visible only with its lease's
 * token: through --lease when this CLI remembers that lease, else through PGLEASE_TOKEN.
 */
async function leaseFromTemplateHint(context: CliContext, command: Command, registered: TemplateJson): Promise<string> {
  const lease = `pglease lease --template ${registered.name}`;
  if (registered.lease_id === null) return lease;
  const short = registered.lease_id.slice(0, 8);
  const remembered = (await context.store.list(context.server(command))).some((entry) => entry.id === registered.lease_id);
  return remembered ? `${lease} --lease ${short}` : `PGLEASE_TOKEN=<the token of lease ${short}> ${lease}`;
}

export function templateCommand(context: CliContext): Command {
  const { io } = context;
  const template = new Command('template')
    .description('Seed SQL registered once, applied to new leases: pglease lease --template NAME')
    .addHelpText(
      'after',
      examples([
        'pglease template add todo-app schema.sql',
        'pglease lease --template todo-app',
        'pglease template add my-seed seed.sql --lease 3f2c9a1e',
        'pglease lease --template my-seed --lease 3f2c9a1e',
      ]),
    );

  template
    .command('add')
    .description('Register FILE (or - for standard input) as template NAME; it is checked on a scratch lease first')
    .argument('<name>', 'letters, digits, "_", "." and "-"')
    .argument('<file>', 'a .sql file, or - to read standard input')
    .option('--lease <id>', 'make it private to this lease (uses its token) instead of global')
    .option('--json', 'print the template as JSON')
    .addHelpText(
      'after',
      examples([
        'pglease template add todo-app test/schema.sql',
        'cat schema.sql seed.sql | pglease template add mydb -',
        'pglease template add my-seed seed.sql --lease 3f2c9a1e',
      ]),
    )
    .action(async (name: string, file: string, options: { lease?: string; json?: boolean }, command: Command) => {
      const sql = await readSql(io, file);
      const client = await templateClient(context, command, options.lease);
      let registered;
      let changed: boolean;
      try {
        ({ template: registered, changed } = await withSpinner(io, 'Checking the SQL on a scratch lease…', () => client.registerTemplateVersion(name, sql)));
      } catch (error) {
        if (error instanceof PgleaseApiError && error.postgres?.line !== undefined) {
          const { line, column } = error.postgres;
          // still the server's refusal (exit 1), shown with the failing line of the SQL under it
          const excerpt = sqlExcerpt(sql, file === '-' ? '<stdin>' : file, line, column ?? 1);
          throw new PgleaseApiError(error.status, error.code, `${error.message}\n${excerpt}`, error.field, error.postgres);
        }
        throw error;
      }
      if (options.json) return println(io.stdout, JSON.stringify(registered, null, 2));
      const unchanged = !changed;
      const { green, dim } = context.out;
      println(io.stdout, `${green('✔')} Template ${registered.name} ${unchanged ? 'unchanged' : 'registered'} (${registered.scope}, ${formatBytes(registered.bytes)}, sha256 ${registered.sha256.slice(0, 12)})`);
      if (registered.lease_id !== null) {
        // a private template is its lease's: said here, where it is registered, not found out later
        const owner = await client.getLease(registered.lease_id);
        const short = registered.lease_id.slice(0, 8);
        const ends = owner.expires_at === null ? 'never expires' : `expires ${relativeTime(new Date(owner.expires_at))}`;
        println(io.stdout, `  It goes with lease ${short}, which ${ends}: \`pglease renew ${short} --ttl 1d\` keeps both, a global template (PGLEASE_ADMIN_TOKEN) stays.`);
      }
      println(io.stdout, dim(`  ${await leaseFromTemplateHint(context, command, registered)}`));
    });

  template
    .command('ls')
    .description('List the templates this token can use')
    .option('--lease <id>', 'as this lease (its private templates and the global ones)')
    .option('--json', 'print the templates as JSON')
    .addHelpText('after', examples(['pglease template ls --lease 3f2c9a1e', 'PGLEASE_ADMIN_TOKEN=... pglease template ls']))
    .action(async (options: { lease?: string; json?: boolean }, command: Command) => {
      const client = await templateClient(context, command, options.lease);
      const { items } = await withSpinner(io, 'Listing…', () => client.listTemplates());
      if (options.json) return println(io.stdout, JSON.stringify(items, null, 2));
      if (items.length === 0) return println(io.stdout, 'No templates.');
      println(io.stdout, table(
        ['NAME', 'SCOPE', 'SIZE', 'SHA256', 'REGISTERED'],
        items.map((item) => [item.name, item.scope, formatBytes(item.bytes), item.sha256.slice(0, 12), relativeTime(new Date(item.registered_at))]),
      ));
    });

  template
    .command('rm')
    .description('Remove a template (every version); leases made from it keep their data')
    .argument('<name>')
    .option('--lease <id>', 'remove a template private to this lease')
    .addHelpText('after', examples(['pglease template rm todo-app']))
    .action(async (name: string, options: { lease?: string }, command: Command) => {
      const client = await templateClient(context, command, options.lease);
      await client.removeTemplate(name);
      println(io.stdout, `${context.out.green('✔')} Removed template ${name}`);
    });

  return template;
}
