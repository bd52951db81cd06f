/**
 * pglease lease | release | renew | info | open | ls
 */
import { Command, Option } from 'commander';
import { PgleaseApiError, type CreatedLeaseJson, type LeaseJson } from '../../testing/client.js';
import type { CliContext } from '../context.js';
import { examples, fields, formatBytes, formatCount, isoSeconds, parseDuration, printable, relativeTime, table, UsageError } from '../format.js';
import { println } from '../io.js';
import { withSpinner } from '../spinner.js';
import { KEEP_ENDED_DAYS } from '../token-store.js';

function expiry(lease: { expires_at: string | null; state: string }): string {
  if (lease.expires_at === null) return 'never';
  const when = new Date(lease.expires_at);
  return `${relativeTime(when)} (${isoSeconds(when)})`;
}

function json(context: CliContext, value: unknown): void {
  println(context.io.stdout, JSON.stringify(value, null, 2));
}

export function leaseCommands(context: CliContext): Command[] {
  const { io, store } = context;

  const lease = new Command('lease')
    .description('Create a lease: a fresh Postgres schema and login role, with a connection URL')
    .option('--ttl <duration>', 'how long it lives: 90 (seconds), 30s, 10m, 1h30m, 2d; never (admin token)')
    .option('--name <label>', 'a label shown in listings')
    .option('--template <name>', 'seed it from a registered template (pglease template add)')
    .option('--lease <id>', "ask as this lease (with its token), to use its private templates (template add --lease)")
    .addOption(new Option('--json', 'print the lease as JSON').conflicts(['url', 'env']))
    .addOption(new Option('--url', 'print only the connection URL, for $(...)').conflicts(['json', 'env']))
    .addOption(new Option('--env', 'print DATABASE_URL=... lines, for .env files and eval').conflicts(['json', 'url']))
    .addHelpText(
      'after',
      examples([
        'pglease lease --ttl 10m --name scratch',
        'psql "$(pglease lease --url)"',
        'pglease lease --template todo-app --env >> .env',
        'pglease lease --template my-seed --lease 3f2c9a1e',
      ]),
    )
    .action(async (options: { ttl?: string; name?: string; template?: string; lease?: string; json?: boolean; url?: boolean; env?: boolean }, command: Command) => {
      const ttl = options.ttl === undefined ? undefined : parseDuration(options.ttl);
      const server = context.server(command);
      const client =
        options.lease === undefined
          ? context.client(command, (io.env.PGLEASE_TOKEN || undefined) ?? context.adminToken)
          : (await context.asLease(command, options.lease)).client;
      // a store that cannot take the token fails now, not after the lease exists
      await store.check();
      const started = Date.now();
      const created: CreatedLeaseJson = await withSpinner(io, 'Creating lease…', () =>
        client.createLease({ ttl, name: options.name, template: options.template }),
      );
      const elapsed = Date.now() - started;
      try {
        await store.remember({ id: created.id, server, token: created.token, name: created.name, created_at: created.created_at, expires_at: created.expires_at });
      } catch (error) {
        // the lease exists: it is printed all the same, with what releasing it takes
        println(io.stderr, `pglease: warning: ${(error as Error).message}; to release this lease: PGLEASE_TOKEN=${created.token} pglease release ${created.id}`);
      }

      if (options.url) return println(io.stdout, created.url);
      if (options.env) {
        println(io.stdout, `DATABASE_URL=${created.url}`);
        println(io.stdout, `PGLEASE_LEASE_ID=${created.id}`);
        return;
      }
      if (options.json) return json(context, created);
      const { bold, green, dim, cyan } = context.out;
      const short = created.id.slice(0, 8);
      println(io.stdout, `${green('✔')} Lease ${bold(short)}${created.name ? ` (${printable(created.name)})` : ''} ready in ${elapsed} ms${options.template ? `, seeded from ${options.template}` : ''}`);
      println(io.stdout);
      println(io.stdout, fields([
        ['URL', cyan(created.url)],
        ['Schema', created.schema],
        ['Expires', expiry(created)],
        ['REST', created.rest_url],
        ['Id', created.id],
      ]).replace(/^/gm, '  '));
      println(io.stdout);
      println(io.stdout, dim(`  psql "${created.url}"`));
      println(io.stdout, dim(`  pglease release ${short}`));
    });

  const release = new Command('release')
    .description('Release a lease: its sessions are cut, its schema and role dropped')
    .argument('<id>', 'lease id, or a unique prefix of one this CLI created')
    .option('--json', 'print {"id", "released"} as JSON')
    .addHelpText('after', examples(['pglease release 3f2c9a1e']))
    .action(async (idOrPrefix: string, options: { json?: boolean }, command: Command) => {
      const { id, client } = await context.leaseAccess(command, idOrPrefix);
      const endedNow = [{ id, ended_at: new Date().toISOString() }];
      try {
        await withSpinner(io, 'Releasing…', () => client.releaseLease(id));
      } catch (error) {
        // a 404 means the lease is not live (released, expired, or gone): note it, then show the server's answer
        if (error instanceof PgleaseApiError && error.status === 404) await store.markEnded(endedNow);
        throw error;
      }
      // the record stays, marked ended, so the id still resolves and `ls --all` shows it
      await store.markEnded(endedNow);
      if (options.json) return json(context, { id, released: true });
      println(io.stdout, `${context.out.green('✔')} Released ${id.slice(0, 8)}`);
    });

  const renew = new Command('renew')
    .description('Move the expiry of a lease to now + ttl')
    .argument('<id>', 'lease id, or a unique prefix of one this CLI created')
    .requiredOption('--ttl <duration>', 'new time to live from now: 30m, 1h, 2d; never (admin token)')
    .option('--json', 'print the lease as JSON')
    .addHelpText('after', examples(['pglease renew 3f2c9a1e --ttl 1h']))
    .action(async (idOrPrefix: string, options: { ttl: string; json?: boolean }, command: Command) => {
      const ttl = parseDuration(options.ttl);
      // never expiring is the admin's to grant: its token goes first then
      const { id, client } = await context.leaseAccess(command, idOrPrefix, ttl === null);
      const renewed = await withSpinner(io, 'Renewing…', () => client.renewLease(id, ttl));
      await store.update(id, { expires_at: renewed.expires_at });
      if (options.json) return json(context, renewed);
      println(io.stdout, `${context.out.green('✔')} Lease ${id.slice(0, 8)} now expires ${expiry(renewed)}`);
    });

  const info = new Command('info')
    .description('Show a lease: state, expiry, connections, tables, rows and size')
    .argument('<id>', 'lease id, or a unique prefix of one this CLI created')
    .option('--json', 'print the lease and its stats as JSON')
    .addHelpText('after', examples(['pglease info 3f2c9a1e', 'pglease info 3f2c9a1e --json | jq .stats.rows']))
    .action(async (idOrPrefix: string, options: { json?: boolean }, command: Command) => {
      const { id, client } = await context.leaseAccess(command, idOrPrefix);
      const [lease, stats] = await withSpinner(io, 'Reading…', () => Promise.all([client.getLease(id), client.leaseStats(id)]));
      if (options.json) return json(context, { ...lease, stats });
      const { bold, green, yellow } = context.out;
      const state = lease.state === 'active' ? green(lease.state) : yellow(lease.state);
      println(io.stdout, bold(`=== lease ${lease.id}${lease.name ? ` (${printable(lease.name)})` : ''}`));
      println(io.stdout, fields([
        ['State', state],
        ['Created', `${relativeTime(new Date(lease.created_at))} (${isoSeconds(new Date(lease.created_at))})`],
        [lease.state === 'active' ? 'Expires' : 'Ended', lease.state === 'active' ? expiry(lease) : lease.ended_at ? relativeTime(new Date(lease.ended_at)) : '-'],
        ['Connections', `${stats.connections}${stats.connection_limit !== null && stats.connection_limit >= 0 ? `/${stats.connection_limit}` : ''}`],
        ['Tables', formatCount(stats.tables)],
        ['Rows', `${formatCount(stats.rows)}${stats.rows_exact ? '' : ' (estimated)'}`],
        ['Size', `${formatBytes(stats.size_bytes)}${stats.size_exact === false ? ' (estimated)' : ''}`],
        ['Template', stats.template ?? '-'],
        ['Schema', lease.schema],
        ['URL', lease.url],
      ]));
    });

  const open = new Command('open')
    .description("Print the URL of a lease's studio: its tables in a browser, to browse and edit (with the token in the URL's fragment, which no server sees)")
    .argument('<id>', 'lease id, or a unique prefix of one this CLI created')
    .option('--docs', "the lease's Swagger page instead")
    .option('--no-token', 'leave the token out: the page asks for it')
    .addHelpText('after', examples(['pglease open 3f2c9a1e', 'xdg-open "$(pglease open 3f2c9a1e)"', 'pglease open 3f2c9a1e --docs --no-token']))
    .action(async (idOrPrefix: string, options: { docs?: boolean; token: boolean }, command: Command) => {
      const { id, client, remembered } = await context.leaseAccess(command, idOrPrefix);
      // the server's public URL of the lease, as it states it; and proof the lease is there
      const lease = await withSpinner(io, 'Reading…', () => client.getLease(id));
      const pageUrl = lease.rest_url.replace(/\/rest$/, options.docs ? '/docs' : '/studio');
      // only the lease's own token: the admin token never goes into a link
      const token = remembered?.token ?? (io.env.PGLEASE_TOKEN || undefined);
      println(io.stdout, options.token && token ? `${pageUrl}#token=${encodeURIComponent(token)}` : pageUrl);
    });

  const ls = new Command('ls')
    .description(`List leases: all of them with PGLEASE_ADMIN_TOKEN, else the ones this CLI created (and remembers for ${KEEP_ENDED_DAYS} days after they end)`)
    .option('--all', 'include released and expired leases')
    .option('--limit <n>', 'at most this many (admin listing)', '100')
    .option('--json', 'print the leases as JSON')
    .addHelpText('after', examples(['pglease ls', 'PGLEASE_ADMIN_TOKEN=... pglease ls --all', 'pglease ls --json | jq -r ".[].id"']))
    .action(async (options: { all?: boolean; limit: string; json?: boolean }, command: Command) => {
      const limit = Number(options.limit);
      if (!Number.isInteger(limit) || limit < 1 || limit > 1000) throw new UsageError('--limit must be a whole number from 1 to 1000');
      let leases: LeaseJson[];
      if (context.adminToken) {
        const page = await withSpinner(io, 'Listing…', () =>
          context.client(command, context.adminToken).listLeases({ limit, state: options.all ? undefined : 'active' }),
        );
        leases = page.items;
        if (page.next !== null) io.stderr.write(`(the first ${limit}: there are more; --limit up to 1000)\n`);
      } else {
        const includeEnded = options.all === true;
        leases = await withSpinner(io, 'Listing…', () => rememberedLeases(context, command, includeEnded));
        if (!includeEnded) leases = leases.filter((lease) => lease.state === 'active');
      }
      if (options.json) return json(context, leases);
      if (leases.length === 0) {
        println(io.stdout, context.adminToken ? 'No leases.' : `No leases made by this CLI on ${context.server(command)} (set PGLEASE_ADMIN_TOKEN to list all).`);
        return;
      }
      const { green, yellow } = context.out;
      println(io.stdout, table(
        ['ID', 'NAME', 'STATE', 'EXPIRES', 'CREATED'],
        leases.map((lease) => [
          lease.id.slice(0, 8),
          lease.name === null || lease.name === undefined ? '-' : printable(lease.name),
          lease.state === 'active' ? green(lease.state) : yellow(lease.state),
          lease.state === 'active' ? (lease.expires_at ? relativeTime(new Date(lease.expires_at)) : 'never') : '-',
          relativeTime(new Date(lease.created_at)),
        ]),
      ));
    });

  return [lease, release, renew, info, open, ls];
}

/**
 * The leases this CLI remembers for the server, as the server sees them now. Records the server no
 * longer knows are forgotten, and those it says ended are marked so; records already marked ended
 * are asked about only with `includeEnded`.
 */
async function rememberedLeases(context: CliContext, command: Command, includeEnded: boolean): Promise<LeaseJson[]> {
  const server = context.server(command);
  const remembered = (await context.store.list(server)).filter((entry) => includeEnded || entry.ended_at === undefined);
  // nothing to ask about: still ask whether the server is there, so a wrong or dead one is not "no leases"
  if (remembered.length === 0) await context.client(command, undefined).alive();
  const gone: string[] = [];
  const found = await Promise.all(
    remembered.map(async (entry) => {
      try {
        return await context.client(command, entry.token).getLease(entry.id);
      } catch (error) {
        if (error instanceof PgleaseApiError && error.status === 404) {
          gone.push(entry.id);
          return undefined;
        }
        throw error;
      }
    }),
  );
  const leases = found.filter((lease): lease is LeaseJson => lease !== undefined);
  await context.store.forget(gone);
  await context.store.markEnded(
    leases.filter((lease) => lease.state !== 'active').map((lease) => ({ id: lease.id, ended_at: lease.ended_at ?? new Date().toISOString() })),
  );
  return leases.sort((a, b) => b.created_at.localeCompare(a.created_at));
}
