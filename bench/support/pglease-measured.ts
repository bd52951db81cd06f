/**
 * src/main.ts for bench:metrics, with two additions that exist only here, both over the IPC
 * channel (bench/support/pglease-process.ts, `ipc: true`):
 *
 * - **Its CPU time on request** (`'cpu'` -> `{ cpuMicros }`): process.cpuUsage, every thread of the
 *   process, in µs. /proc's figures tick every 10 ms, 1% of a 2 s run at half a core; this is exact
 *   enough to compare runs of a few thousand requests.
 * - **The per-request metrics calls switched on and off** (`'metrics-off'`, `'metrics-on'` ->
 *   `{ metrics }`; BENCH_METRICS_HOT_PATH=off starts it off): Metrics.restRequest and leaseCreated,
 *   from src/server.ts's onResponse hook, return at once while off, so the same process answers
 *   as it would without metrics on its hot path. The hook's own test of the URL stays, and the
 *   switch's test of a flag is paid on and off alike.
 *
 * The service is src/main.ts's serve(), in this module graph: the patched class is the one it uses.
 */
import { loadConfig } from '../../src/config.js';
import { serve } from '../../src/main.js';
import { Metrics } from '../../src/metrics/metrics.js';

let metricsOn = process.env.BENCH_METRICS_HOT_PATH !== 'off';
const { restRequest, leaseCreated } = Metrics.prototype;
Metrics.prototype.restRequest = function (this: Metrics, ...args: Parameters<typeof restRequest>) {
  if (metricsOn) restRequest.apply(this, args);
};
Metrics.prototype.leaseCreated = function (this: Metrics, ...args: Parameters<typeof leaseCreated>) {
  if (metricsOn) leaseCreated.apply(this, args);
};

process.on('message', (message) => {
  if (message === 'cpu') {
    const used = process.cpuUsage();
    process.send?.({ cpuMicros: used.user + used.system });
  } else if (message === 'metrics-on' || message === 'metrics-off') {
    metricsOn = message === 'metrics-on';
    process.send?.({ metrics: metricsOn });
  }
});
// the channel does not keep the process alive: SIGTERM ends it as it ends src/main.ts
process.channel?.unref();

await serve(loadConfig());
