/**
 * The trickle step of bench:rest-many (issue 20: "1,000 leases with a trickle of traffic each keep
 * working with no 5xx and bounded memory"): a fixed overall rate of `GET /items?id=eq.N`, each
 * request to the next lease in turn, so that every lease gets a request every leases / rate
 * seconds, far more leases than the connection budget holds. Far from a throughput figure: what it
 * shows is that every lease is answered, how much a request costs when most of them find their
 * lease without a session, and whether pglease's memory stays put while sessions come and go.
 */
import autocannon from 'autocannon';

export interface TrickleTarget {
  path: string;
  authorization: string;
}

export interface TrickleProbes {
  /** pglease's resident memory (MB). */
  rssMb: () => Promise<number>;
  /** pglease's REST sessions open now. */
  restBackends: () => Promise<number>;
  /** pg_stat_database.sessions of the lease database: every session opened so far. */
  sessions: () => Promise<number>;
  /** CPU time (µs) pglease has used so far. */
  pgleaseCpu: () => Promise<number>;
  /** CPU time (µs) the whole Postgres server has used so far. */
  serverCpu: () => Promise<number>;
}

export interface TrickleResult {
  leases: number;
  rate: number;
  seconds: number;
  requests: number;
  /** Answers other than 200, and requests with no answer. */
  failures: number;
  /** Leases that got at least one answer, and those among them whose every answer was a 200. */
  leasesAnswered: number;
  leasesAllOk: number;
  p50: number;
  p99: number;
  sessionsPerSecond: number;
  mostBackends: number;
  /** CPU time per request (µs) of pglease and of the whole Postgres server (logins included). */
  pgleaseMicros: number;
  serverMicros: number;
  /** RSS sampled every second: at the start, the highest, and the mean of the first and of the last quarter. */
  rssStart: number;
  rssMost: number;
  rssFirstQuarter: number;
  rssLastQuarter: number;
}

const ROWS = 100;

export async function runTrickle(baseUrl: string, targets: TrickleTarget[], rate: number, seconds: number, probes: TrickleProbes): Promise<TrickleResult> {
  const responded = new Array<number>(targets.length).fill(0);
  const ok = new Array<number>(targets.length).fill(0);
  let next = 0;
  const rss: number[] = [await probes.rssMb()];
  let mostBackends = 0;
  const sessionsBefore = await probes.sessions();
  const pgleaseBefore = await probes.pgleaseCpu();
  const serverBefore = await probes.serverCpu();
  const sampler = setInterval(() => {
    void Promise.all([probes.rssMb(), probes.restBackends()])
      .then(([mb, backends]) => {
        rss.push(mb);
        mostBackends = Math.max(mostBackends, backends);
      })
      .catch(() => undefined);
  }, 1_000);
  const startedAt = Date.now();
  const options = {
    url: baseUrl,
    // a connection per request a second: one that waits for its lease's session does not hold up the rate
    connections: Math.max(10, Math.min(100, rate)),
    overallRate: rate,
    duration: seconds,
    requests: [
      {
        setupRequest: (request: object, context: { lease?: number }) => {
          const lease = next++ % targets.length;
          context.lease = lease;
          const target = targets[lease]!;
          return { ...request, path: target.path + (1 + Math.floor(Math.random() * ROWS)), headers: { authorization: target.authorization } };
        },
        onResponse: (status: number, _body: string, context: { lease: number }) => {
          responded[context.lease]!++;
          if (status === 200) ok[context.lease]!++;
        },
      },
    ],
  };
  // autocannon's instance is a thenable without finally()
  const result = await Promise.resolve(autocannon(options)).finally(() => clearInterval(sampler));
  const elapsed = (Date.now() - startedAt) / 1000;
  const pgleaseSpent = (await probes.pgleaseCpu()) - pgleaseBefore;
  const serverSpent = (await probes.serverCpu()) - serverBefore;
  // pg_stat_database is flushed by each backend within a second or so
  await new Promise((resolve) => setTimeout(resolve, 1_200));
  const quarter = Math.max(1, Math.floor(rss.length / 4));
  const mean = (values: number[]) => values.reduce((sum, value) => sum + value, 0) / values.length;
  return {
    leases: targets.length,
    rate,
    seconds,
    requests: result.requests.total,
    failures: result.non2xx + result.errors + result.timeouts,
    leasesAnswered: responded.filter((n) => n > 0).length,
    leasesAllOk: responded.filter((n, i) => n > 0 && ok[i] === n).length,
    p50: result.latency.p50,
    p99: result.latency.p99,
    sessionsPerSecond: ((await probes.sessions()) - sessionsBefore) / elapsed,
    mostBackends,
    pgleaseMicros: pgleaseSpent / Math.max(1, result.requests.total),
    serverMicros: serverSpent / Math.max(1, result.requests.total),
    rssStart: rss[0]!,
    rssMost: Math.max(...rss),
    rssFirstQuarter: mean(rss.slice(0, quarter)),
    rssLastQuarter: mean(rss.slice(-quarter)),
  };
}
