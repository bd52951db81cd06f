/**
 * bench:cli — what the `pglease` executable costs before and around its one HTTP request:
 *   (a) `pglease --version`: process start, module loading, commander;
 *   (b) `pglease ls` with no remembered lease: the same plus reading the token store and one
 *       GET /healthz, answered at once by a stub server in this process, so the figure is the CLI's
 *       own overhead (a real create adds the server's 8-20 ms).
 * Runs the built executable (dist/cli.js, as `npx pglease` does), one process at a time, after 2
 * untimed warm-up runs (the OS file cache), and `node -e 0` the same way: what Node's own start
 * costs on this machine, which no CLI can go below. Prints p50/p90/max of each, and each p50 above
 * node's. Goal: under 150 ms.
 *
 *   npm run bench:cli [-- --count 30]
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { projectPath } from '../src/paths.js';

const run = promisify(execFile);
const countIndex = process.argv.indexOf('--count');
const count = countIndex === -1 ? 30 : Number(process.argv[countIndex + 1]) || 30;
const bin = projectPath('dist', 'cli.js');

const stub = createServer((request, response) => {
  response.writeHead(200, { 'content-type': 'application/json' }).end(request.url === '/healthz' ? '{"status":"ok"}' : '{}');
});
await new Promise<void>((resolve) => stub.listen(0, '127.0.0.1', resolve));
const server = `http://127.0.0.1:${(stub.address() as AddressInfo).port}`;
const home = await mkdtemp(path.join(tmpdir(), 'pglease-bench-cli-'));
const env = { ...process.env, PGLEASE_URL: server, PGLEASE_HOME: home, PGLEASE_ADMIN_TOKEN: '', NO_COLOR: '1' };

async function timed(args: string[]): Promise<number[]> {
  const spent: number[] = [];
  for (let i = 0; i < count + 2; i++) {
    const started = performance.now();
    await run(process.execPath, args, { env });
    if (i >= 2) spent.push(performance.now() - started);
  }
  return spent.sort((a, b) => a - b);
}

const at = (sorted: number[], fraction: number) => sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * fraction))]!;
try {
  let node: number | undefined;
  for (const [label, args] of [
    ['node -e 0', ['-e', '0']],
    ['pglease --version', [bin, '--version']],
    ['pglease ls (stub server)', [bin, 'ls']],
  ] as const) {
    const spent = await timed([...args]);
    const p50 = at(spent, 0.5);
    node ??= p50;
    const above = label === 'node -e 0' ? '' : `  (node + ${(p50 - node).toFixed(0)} ms)`;
    console.log(`${label.padEnd(26)} p50 ${p50.toFixed(0)} ms  p90 ${at(spent, 0.9).toFixed(0)} ms  max ${spent.at(-1)!.toFixed(0)} ms${above}  (${count} runs)`);
  }
} finally {
  stub.close();
  await rm(home, { recursive: true, force: true });
}
