/**
 * pglease lease | release | renew | info | open | ls | url | psql
 */
import { spawn } from 'node:child_process';
import { Command, Option } from 'commander';
import { PgleaseApiError, type CreatedLeaseJson, type LeaseJson } from '../../testing/client.js';
import type { CliContext } from '../context.js';
import { ChildExit, examples, fields, formatBytes, formatCount, isoSeconds, parseDuration, printable, relativeTime, table, UsageError } from '../format.js';
import { println } from '../io.js';
import { withSpinner } from '../spinner.js';
import { leaseInfoText } from '../lease-info.js';
import { KEEP_ENDED_DAYS } from '../token-store.js';

function expiry(lease: { expires_at: string | null; state: string }): string {
  if (lease.expires_at === null) return 'never';
  const when = new Date(lease.expires_at);
  return `${relativeTime(when)} (${isoSeconds(when)})`;
}

/**
 * A value for a NAME=value line that both a shell's eval and .env files read back as it was: a TLS
 * lease URL carries `&sslrootcert=`, which a shell would take for a background job, so such a value
 * is single-quoted (URLs hold no single quote: it is percent-encoded).
 */
function envValue(value: string): string {
  return /^[\w@%+=:,./?-]*$/.test(value) ? value : `'${value.replaceAll("'", "'\\''")}'`;
}

function json(context: CliContext, value: unknown): void {
  println(context.io.stdout, JSON.stringify(value, null, 2));
}

export function leaseCommands(context: CliContext): Command[] {
  const { io, store } = context;

  const lease = new Command('lease')
    .description('Create a lease: a fresh Postgres schema (or database, --kind database) and login role, with a connection URL')
    .option('--ttl <duration>', 'how long it lives: 90 (seconds), 30s, 10m, 2h, 1d (the default maximum); never (admin token)')
    .option('--name <label>', 'a label shown in listings')
    .option('--template <name>', 'seed it from a registered template (pglease template add)')
    .addOption(new Option('--kind <kind>', 'schema (a schema in a shared database, cheapest) or database (a database of its own: extensions, schemas, public)').choices(['schema', 'database']))
    .option('--plan <name>', 'the plan it lives within (pglease plan ls; admin token, or a plan tokens may choose)')
    .option('--lease <id>', "ask as this lease (with its token), to use its private templates (template add --lease)")
    .addOption(new Option('--json', 'print the lease as JSON').conflicts(['url', 'env']))
    .addOption(new Option('--url', 'print only the connection URL, for $(...)').conflicts(['json', 'env']))
    .addOption(new Option('--env', 'print DATABASE_URL, PGLEASE_REST_URL, PGLEASE_TOKEN and PGLEASE_LEASE_ID lines, for .env files and eval').conflicts(['json', 'url']))
    .addHelpText(
      'after',
      examples([
        'pglease lease --ttl 10m --name scratch',
        'pglease lease --kind database --url',
        'psql "$(pglease lease --url)"',
        'pglease lease --template todo-app --env >> .env',
        'pglease lease --template my-seed --lease 3f2c9a1e',
      ]),
    )
    .action(async (options: { ttl?: string; name?: string; template?: string; kind?: 'schema' | 'database'; plan?: string; lease?: string; json?: boolean; url?: boolean; env?: boolean }, command: Command) => {
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
        client.createLease({ ttl, name: options.name, template: options.template, plan: options.plan, ...(options.kind ? { kind: options.kind } : {}) }),
      ).catch((error: unknown) => Promise.reject(unknownTemplate(error, options.template, options.lease)));
      const elapsed = Date.now() - started;
      try {
        await store.remember({ id: created.id, server, token: created.token, name: created.name, created_at: created.created_at, expires_at: created.expires_at });
      } catch (error) {
        // the lease exists: it is printed all the same, with what releasing it takes
        println(io.stderr, `pglease: warning: ${(error as Error).message}; to release this lease: PGLEASE_TOKEN=${created.token} pglease release ${created.id}`);
      }

      // what is printed for $(...) has no room for the id: a person at a terminal is told on stderr
      if ((options.url || options.env) && io.stderr.isTTY) println(io.stderr, context.err.dim(`pglease: lease ${created.id.slice(0, 8)}; release it with: pglease release ${created.id.slice(0, 8)}`));
      if (options.url) return println(io.stdout, created.url);
      if (options.env) {
        println(io.stdout, `DATABASE_URL=${envValue(created.url)}`);
        println(io.stdout, `PGLEASE_REST_URL=${created.rest_url}`);
        // the REST API's bearer token, and the one the CLI and pglease/testing act as this lease with
        println(io.stdout, `PGLEASE_TOKEN=${created.token}`);
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
        ['Token', `${created.token} (Authorization: Bearer, for REST and this lease's API)`],
        ['Id', created.id],
      ]).replace(/^/gm, '  '));
      println(io.stdout);
      println(io.stdout, dim(`  psql "${created.url}"`));
      println(io.stdout, dim(`  pglease release ${short}`));
    });

  const release = new Command('release')
    .description('Release a lease: its sessions are cut, its schema and role dropped')
    .argument('[id]', 'lease id, or a unique prefix of one this CLI created')
    .option('--all-mine', 'release every live lease this CLI created on this server')
    .option('--json', 'print {"id", "released"} as JSON')
    .addHelpText('after', examples(['pglease release 3f2c9a1e', 'pglease release --all-mine']))
    .action(async (idOrPrefix: string | undefined, options: { allMine?: boolean; json?: boolean }, command: Command) => {
      if (options.allMine) {
        if (idOrPrefix !== undefined) throw new UsageError('give a lease id or --all-mine, not both');
        return releaseAllMine(context, command, options.json === true);
      }
      if (idOrPrefix === undefined) throw new UsageError('which lease? Give its id (pglease ls shows them), or --all-mine');
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
    .requiredOption('--ttl <duration>', 'new time to live from now: 30m, 2h, 1d; never (admin token)')
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

  const fork = new Command('fork')
    .description("Make a new database lease holding a copy of a database lease's objects and data as they are now (its open sessions are ended for the copy)")
    .argument('<id>', 'lease id, or a unique prefix of one this CLI created')
    .option('--ttl <duration>', 'how long the copy lives: 90 (seconds), 30s, 10m, 2h, 1d')
    .option('--name <label>', 'a label shown in listings')
    .addOption(new Option('--json', 'print the new lease as JSON').conflicts(['url']))
    .addOption(new Option('--url', 'print only the new connection URL, for $(...)').conflicts(['json']))
    .addHelpText('after', examples(['pglease fork 3f2c9a1e', 'psql "$(pglease fork 3f2c9a1e --url --ttl 30m)"']))
    .action(async (idOrPrefix: string, options: { ttl?: string; name?: string; json?: boolean; url?: boolean }, command: Command) => {
      const ttl = options.ttl === undefined ? undefined : parseDuration(options.ttl);
      const { id, client } = await context.leaseAccess(command, idOrPrefix);
      await store.check();
      const started = Date.now();
      const forked = await withSpinner(io, 'Forking…', () => client.forkLease(id, { ...(ttl === undefined || ttl === null ? {} : { ttl }), ...(options.name ? { name: options.name } : {}) }));
      const elapsed = Date.now() - started;
      await store
        .remember({ id: forked.id, server: context.server(command), token: forked.token, name: forked.name, created_at: forked.created_at, expires_at: forked.expires_at })
        .catch((error: unknown) => println(io.stderr, `pglease: warning: ${(error as Error).message}; to release the fork: PGLEASE_TOKEN=${forked.token} pglease release ${forked.id}`));
      if (options.url) return println(io.stdout, forked.url);
      if (options.json) return json(context, forked);
      const { bold, green, dim, cyan } = context.out;
      const ended = forked.source_sessions_ended;
      const snapshot = forked.copied_from_snapshot ? ` as of its snapshot ${forked.copied_from_snapshot}` : '';
      println(io.stdout, `${green('✔')} Lease ${bold(forked.id.slice(0, 8))}, a copy of ${id.slice(0, 8)}${snapshot}, ready in ${elapsed} ms${ended > 0 ? ` (${ended} session${ended === 1 ? '' : 's'} of ${id.slice(0, 8)} ended for the copy)` : ''}`);
      println(io.stdout);
      println(io.stdout, fields([['URL', cyan(forked.url)], ['Expires', expiry(forked)], ['REST', forked.rest_url], ['Token', forked.token], ['Id', forked.id]]).replace(/^/gm, '  '));
      println(io.stdout);
      println(io.stdout, dim(`  pglease release ${forked.id.slice(0, 8)}`));
    });

  const info = new Command('info')
    .description('Show a lease as pg:info does: plan, status, connections, size and rows against the plan, expiry')
    .argument('<id>', 'lease id, or a unique prefix of one this CLI created')
    .option('--json', 'print the lease, its stats and its info as JSON')
    .option('--watch [seconds]', 'print it again every few seconds (default 2) until interrupted')
    .addHelpText('after', examples(['pglease info 3f2c9a1e', 'pglease info 3f2c9a1e --watch', 'pglease info 3f2c9a1e --json | jq .stats.rows']))
    .action(async (idOrPrefix: string, options: { json?: boolean; watch?: boolean | string }, command: Command) => {
      const { id, client } = await context.leaseAccess(command, idOrPrefix);
      const everySeconds = options.watch === undefined ? 0 : options.watch === true ? 2 : Number(options.watch);
      if (!(everySeconds === 0 || (Number.isFinite(everySeconds) && everySeconds >= 0.5 && everySeconds <= 3600))) {
        throw new UsageError('--watch takes a number of seconds from 0.5 to 3600');
      }
      const read = () => Promise.all([client.getLease(id), client.leaseStats(id), client.leaseInfo(id)]);
      for (let frame = 0; ; frame++) {
        const [lease, stats, leaseInfo] = frame === 0 ? await withSpinner(io, 'Reading…', read) : await read();
        if (options.json) json(context, { ...lease, stats, info: leaseInfo });
        else println(io.stdout, (frame > 0 ? '\n' : '') + leaseInfoText(lease, leaseInfo, stats, new Date(), context.out));
        if (everySeconds === 0 || lease.state !== 'active') return;
        await new Promise((resolve) => setTimeout(resolve, everySeconds * 1000));
      }
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
    .option('--mine', 'only the leases this CLI created, even with PGLEASE_ADMIN_TOKEN')
    .option('--limit <n>', 'at most this many (admin listing)', '100')
    .option('--json', 'print the leases as JSON')
    .addHelpText('after', examples(['pglease ls', 'pglease ls --mine', 'PGLEASE_ADMIN_TOKEN=... pglease ls --all', 'pglease ls --json | jq -r ".[].id"']))
    .action(async (options: { all?: boolean; mine?: boolean; limit: string; json?: boolean }, command: Command) => {
      const limit = Number(options.limit);
      if (!Number.isInteger(limit) || limit < 1 || limit > 1000) throw new UsageError('--limit must be a whole number from 1 to 1000');
      const everyone = context.adminToken !== undefined && options.mine !== true;
      let leases: LeaseJson[];
      if (everyone) {
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
        println(io.stdout, everyone ? 'No leases.' : `No leases made by this CLI on ${context.server(command)}${context.adminToken ? '' : ' (set PGLEASE_ADMIN_TOKEN to list all)'}.`);
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

  /**
   * A working URL for a lease whose URL was lost: the password is shown once and kept nowhere, so
   * a new one is issued (sessions already open keep working unless --cut-sessions).
   */
  const newUrl = async (command: Command, idOrPrefix: string, cutSessions: boolean): Promise<string> => {
    const { id, client } = await context.leaseAccess(command, idOrPrefix);
    return (await withSpinner(io, 'Issuing a new password…', () => client.resetCredentials(id, { cutSessions }))).url;
  };

  const url = new Command('url')
    .description('Print a working connection URL for a lease, with a new password (the old URL stops working for new logins)')
    .argument('<id>', 'lease id, or a unique prefix of one this CLI created')
    .option('--cut-sessions', 'also end the sessions opened with the old password')
    .addHelpText('after', examples(['pglease url 3f2c9a1e', 'psql "$(pglease url 3f2c9a1e)"']))
    .action(async (idOrPrefix: string, options: { cutSessions?: boolean }, command: Command) => {
      println(io.stdout, await newUrl(command, idOrPrefix, options.cutSessions === true));
    });

  const psql = new Command('psql')
    .description('Run psql on a lease (with a new password, as `pglease url` gives); arguments after -- go to psql')
    .argument('<id>', 'lease id, or a unique prefix of one this CLI created')
    .argument('[psql-args...]', 'passed to psql')
    .addHelpText('after', examples(['pglease psql 3f2c9a1e', "pglease psql 3f2c9a1e -- -c 'SELECT now()'"]))
    .action(async (idOrPrefix: string, psqlArgs: string[], _options: unknown, command: Command) => {
      const leaseUrl = await newUrl(command, idOrPrefix, false);
      const program = io.env.PGLEASE_PSQL || 'psql';
      // psql talks to the terminal itself (prompt, pager) when this process has one
      const attached = io.stdout === process.stdout;
      const child = spawn(program, [leaseUrl, ...psqlArgs], { stdio: attached ? 'inherit' : ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...io.env } });
      child.stdout?.on('data', (chunk: Buffer) => io.stdout.write(chunk.toString()));
      child.stderr?.on('data', (chunk: Buffer) => io.stderr.write(chunk.toString()));
      const code = await new Promise<number>((resolve, reject) => {
        child.once('error', (error: NodeJS.ErrnoException) =>
          reject(error.code === 'ENOENT' ? new UsageError(`${program} not found: install the Postgres client (psql), set PGLEASE_PSQL to it, or use \`pglease url ${idOrPrefix}\``) : error),
        );
        child.once('close', (exitCode) => resolve(exitCode ?? 1));
      });
      if (code !== 0) throw new ChildExit(code);
    });

  return [lease, release, renew, fork, info, open, ls, url, psql];
}

/** The server's "no template named x" (which names its API) in the CLI's terms: how to register or list one. */
function unknownTemplate(error: unknown, template: string | undefined, lease: string | undefined): unknown {
  if (!(error instanceof PgleaseApiError) || error.field !== 'template' || template === undefined || !/^template: no template named/.test(error.message)) return error;
  const add = `pglease template add ${template} FILE.sql${lease === undefined ? '' : ` --lease ${lease}`}`;
  return new PgleaseApiError(error.status, error.code, `no template named "${template}": register it with \`${add}\`, or see the ones there are with \`pglease template ls\``, error.field);
}

/**
 * `release --all-mine`: every live lease this CLI remembers for the server, each with its own token
 * (never the admin's: "mine" are the leases this CLI made). One that ended meanwhile is noted and
 * skipped; the first other failure stops the command after the releases already started.
 */
async function releaseAllMine(context: CliContext, command: Command, asJson: boolean): Promise<void> {
  const live = (await rememberedLeases(context, command, false)).filter((lease) => lease.state === 'active');
  const tokens = new Map((await context.store.list(context.server(command))).map((entry) => [entry.id, entry.token]));
  const released: string[] = [];
  const ended: { id: string; ended_at: string }[] = [];
  const outcomes = await withSpinner(context.io, `Releasing ${live.length}…`, () =>
    Promise.allSettled(
      live.map(async (lease) => {
        try {
          await context.client(command, tokens.get(lease.id)).releaseLease(lease.id);
          released.push(lease.id);
        } catch (error) {
          if (!(error instanceof PgleaseApiError && error.status === 404)) throw error;
        }
        ended.push({ id: lease.id, ended_at: new Date().toISOString() });
      }),
    ),
  );
  await context.store.markEnded(ended);
  const failure = outcomes.find((outcome): outcome is PromiseRejectedResult => outcome.status === 'rejected');
  if (failure) throw failure.reason;
  if (asJson) return json(context, released.map((id) => ({ id, released: true })));
  if (released.length === 0) return println(context.io.stdout, `No live leases made by this CLI on ${context.server(command)}.`);
  println(context.io.stdout, `${context.out.green('✔')} Released ${released.length} lease${released.length === 1 ? '' : 's'}: ${released.map((id) => id.slice(0, 8)).join(', ')}`);
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
