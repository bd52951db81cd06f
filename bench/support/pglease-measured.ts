/**
 * src/main.ts for bench:metrics, with two additions that exist only here:
 *
 * - **Its CPU time on request**, over the IPC channel (`'cpu'` -> `{ cpuMicros }`): process.cpuUsage,
 *   every thread of the process, in µs. /proc's figures tick every 10 ms, 1% of a 2 s run at half a
 *   core; this is exact enough to compare runs of a few thousand requests.
 * - **BENCH_METRICS_HOT_PATH=off**: the per-request metrics calls (Metrics.restRequest and
 *   leaseCreated, from src/server.ts's onResponse hook) become no-ops, so the service answers as it
 *   would without metrics on its hot path. The hook's own test of the URL stays (about 0.05 µs).
 *
 * The service is src/main.ts's serve(), in this module graph: the patched class is the one it uses.
 */
import { loadConfig } from '../../src/config.js';
import { serve } from '../../src/main.js';
import { Metrics } from '../../src/metrics/metrics.js';

if (process.env.BENCH_METRICS_HOT_PATH === 'off') {
  Metrics.prototype.restRequest = () => undefined;
  Metrics.prototype.leaseCreated = () => undefined;
}

process.on('message', (message) => {
  if (message !== 'cpu') return;
  const used = process.cpuUsage();
  process.send?.({ cpuMicros: used.user + used.system });
});
// the channel does not keep the process alive: SIGTERM ends it as it ends src/main.ts
process.channel?.unref();

await serve(loadConfig());
