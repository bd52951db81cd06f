/**
 * pglease host add | ls | drain | undrain | rm: the Postgres servers leases are placed on
 * (/v1/hosts, admin token; docs/hosts.md).
 */
import { readFile } from 'node:fs/promises';
import { Command } from 'commander';
import type { CliContext } from '../context.js';
import { examples, table, UsageError } from '../format.js';
import { println } from '../io.js';
import { withSpinner } from '../spinner.js';

function wholeNumber(text: string, option: string): number {
  if (!/^\d+$/.test(text)) throw new UsageError(`${option} takes a whole number, got "${text}"`);
  return Number(text);
}

export function hostCommand(context: CliContext): Command {
  const { io } = context;
  const needsAdmin = () => {
    if (!context.adminToken) throw new UsageError('the hosts API needs PGLEASE_ADMIN_TOKEN');
  };
  const host = new Command('host')
    .description('Lease hosts: the Postgres servers leases are placed on (admin token)')
    .addHelpText(
      'after',
      examples([
        'pglease host add db2 postgresql://pglease:secret@db2.internal:5432/postgres --capacity 500 --ca ./db2-ca.pem',
        'pglease host ls',
        'pglease host drain db2',
        'pglease host rm db2',
      ]),
    );

  host
    .command('add')
    .description('Install pglease on a server and place leases there')
    .argument('<name>', 'lower-case letters, digits, _ and -')
    .argument('<url>', 'postgresql:// URL of a role with CREATEROLE and CREATEDB (or a superuser)')
    .option('--capacity <n>', 'live leases it may hold (default 1000)')
    .option('--weight <w>', 'share of new leases relative to the other hosts (default 1)')
    .option('--public-host <host>', 'host written into lease URLs (default: the URL\'s)')
    .option('--public-port <port>', 'port written into lease URLs')
    .option('--tls <mode>', 'disable, require or verify-full (default: verify-full, disable on this machine)')
    .option('--ca <file>', 'the CA that signs the server\'s certificate (PEM), for verify-full')
    .option('--json', 'print the host as JSON')
    .action(async (name: string, url: string, options: { capacity?: string; weight?: string; publicHost?: string; publicPort?: string; tls?: string; ca?: string; json?: boolean }, command: Command) => {
      needsAdmin();
      const body = {
        name,
        url,
        ...(options.capacity === undefined ? {} : { capacity: wholeNumber(options.capacity, '--capacity') }),
        ...(options.weight === undefined ? {} : { weight: Number(options.weight) }),
        ...(options.publicHost === undefined ? {} : { public_host: options.publicHost }),
        ...(options.publicPort === undefined ? {} : { public_port: wholeNumber(options.publicPort, '--public-port') }),
        ...(options.tls === undefined ? {} : { tls: options.tls }),
        ...(options.ca === undefined ? {} : { ca_pem: await readFile(options.ca, 'utf8') }),
      };
      const added = await withSpinner(io, 'Installing…', () => context.client(command, context.adminToken).addHost(body));
      if (options.json) return println(io.stdout, JSON.stringify(added, null, 2));
      println(io.stdout, `${context.out.green('✔')} Host ${added.name}: capacity ${added.capacity}, tls ${added.tls}`);
    });

  host
    .command('ls')
    .description('List the hosts with their state and usage')
    .option('--json', 'print the hosts as JSON')
    .action(async (options: { json?: boolean }, command: Command) => {
      needsAdmin();
      const { items } = await withSpinner(io, 'Reading…', () => context.client(command, context.adminToken).listHosts());
      if (options.json) return println(io.stdout, JSON.stringify(items, null, 2));
      println(io.stdout, table(
        ['NAME', 'STATE', 'LEASES', 'CAPACITY', 'WEIGHT', 'DRAINING', 'URL'],
        items.map((item) => [
          item.registry?.name ?? item.name,
          item.registry?.state ?? item.status,
          String(item.registry?.live_leases ?? item.leases ?? '-'),
          String(item.registry?.capacity ?? '-'),
          String(item.registry?.weight ?? '-'),
          item.registry?.draining ? 'yes' : 'no',
          item.registry?.url ?? '(control database)',
        ]),
      ));
    });

  for (const [verb, draining] of [['drain', true], ['undrain', false]] as const) {
    host
      .command(verb)
      .description(draining ? 'Place no new lease on a host (its leases live on)' : 'Place leases on a drained host again')
      .argument('<name>')
      .action(async (name: string, _options: unknown, command: Command) => {
        needsAdmin();
        const changed = await withSpinner(io, 'Saving…', () => context.client(command, context.adminToken).updateHost(name, { draining }));
        println(io.stdout, `${context.out.green('✔')} Host ${changed.name} ${changed.draining ? 'is draining' : 'takes new leases'}`);
      });
  }

  host
    .command('rm')
    .description('Remove a host that holds no live lease')
    .argument('<name>')
    .action(async (name: string, _options: unknown, command: Command) => {
      needsAdmin();
      await withSpinner(io, 'Removing…', () => context.client(command, context.adminToken).removeHost(name));
      println(io.stdout, `${context.out.green('✔')} Removed host ${name}`);
    });
  return host;
}
