/**
 * Ends leases that fill the server's shared lock table (pglease.lock_hogs, sql/reaper.sql). One
 * statement can take hundreds of thousands of session advisory locks, and the table is shared by
 * every session of the server: until the lease's session ends, every other lease and pglease
 * itself fail with "out of shared memory". Every few seconds each process looks (a query that
 * still runs when the table is full), ends the offending sessions, and then, once their locks
 * are back, releases their leases, so that a lease cannot simply do it again.
 *
 * It looks through a connection of its own, opened while the server is well: a new connection
 * cannot log in while the table is full, and the service pool closes a connection on any error,
 * so by then it may have none left.
 */
import pg from 'pg';

/** How often the lock table is looked at. */
const CHECK_MS = 2_000;
/** A look the server does not answer in this time is given up (a stopped server), its connection closed. */
const LOOK_TIMEOUT_MS = 10_000;

interface Setup {
  maxLocks: string;
  database: number;
  exempt: number[];
}

export class LockGuard {
  private timer: NodeJS.Timeout | undefined;
  private checking: Promise<void> | undefined;
  /** What lock_hogs needs, found while the server was well (it cannot be found while the table is full). */
  private setup: Setup | undefined;
  private session: pg.Client | undefined;
  /** Roles whose sessions were ended, whose leases are not released yet. */
  private readonly ending = new Set<number>();
  private failing = false;

  constructor(
    private readonly databaseUrl: string,
    private readonly pool: pg.Pool,
    private readonly log: (message: string) => void,
    private readonly maxLocks: number | null = null,
    /**
     * True when the server runs on this machine as a process this one may signal (the embedded
     * Postgres): a backend is then ended by SIGTERM, as pg_terminate_backend does. That function
     * itself fails while the lock table is full: it looks the backend's role up in pg_authid,
     * whose lock cannot take the fast path (unless the role happens to be in its session's cache).
     */
    private readonly localServer = false,
  ) {}

  start(): void {
    this.timer ??= setInterval(() => void this.check(), CHECK_MS);
    this.timer.unref();
    void this.check();
  }

  /** Stops looking; waits for a look in progress (its queries give up after LOOK_TIMEOUT_MS), then closes its connection. */
  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    await this.checking;
    this.dropConnection();
  }

  private dropConnection(): void {
    void this.session?.end().catch(() => undefined);
    this.session = undefined;
  }

  /** The guard's own connection, opened again (while the server is well) after one is lost. */
  private async connection(): Promise<pg.Client> {
    if (this.session) return this.session;
    const session = new pg.Client({
      connectionString: this.databaseUrl,
      application_name: 'pglease-lock-guard',
      connectionTimeoutMillis: LOOK_TIMEOUT_MS,
      query_timeout: LOOK_TIMEOUT_MS,
    });
    session.on('error', () => {
      if (this.session === session) this.session = undefined;
    });
    await session.connect();
    this.session = session;
    return session;
  }

  /** One look: ends what holds too many locks, and releases the leases ended so far. */
  check(): Promise<void> {
    this.checking ??= this.look().finally(() => (this.checking = undefined));
    return this.checking;
  }

  private async look(): Promise<void> {
    try {
      const session = await this.connection();
      this.setup ??= await this.findSetup(session);
      const { maxLocks, database, exempt } = this.setup;
      const { rows } = await session.query<{ pid: number; role_oid: number; locks: string }>({
        name: 'pglease.lock-hogs',
        text: 'SELECT pid, role_oid, locks FROM pglease.lock_hogs($1, $2, $3)',
        values: [maxLocks, database, exempt],
      });
      for (const row of rows) {
        if (!this.ending.has(row.role_oid)) {
          this.log(`a lease session (pid ${row.pid}) holds ${row.locks} locks, more than ${maxLocks} of the server's lock table, which every lease shares: it is ended, and its lease released`);
        }
        await this.end(session, row.pid);
        this.ending.add(row.role_oid);
      }
      // the ended sessions give their locks back as they exit: until then the release fails, and
      // the next look tries again
      if (this.ending.size > 0) await this.releaseEnded().catch(() => undefined);
      else if (!this.localServer) await this.warmRoles(session);
      this.failing = false;
    } catch (error) {
      // a query that timed out leaves its connection busy: the next look opens another
      if ((error as Error).message === 'Query read timeout') this.dropConnection();
      if (!this.failing) this.log(`lock guard: ${(error as Error).message}; trying again`);
      this.failing = true;
    }
  }

  private async end(session: pg.Client, pid: number): Promise<void> {
    if (this.localServer) {
      try {
        process.kill(pid, 'SIGTERM');
        return;
      } catch {
        // not ours to signal after all: ask the server
      }
    }
    await session.query({ name: 'pglease.end-lock-hog', text: 'SELECT pg_terminate_backend($1)', values: [pid] });
  }

  /**
   * pg_terminate_backend looks the backend's role up by oid (superuser_arg): found in this
   * session's catalog cache it needs no lock on pg_authid, so it still works while the lock
   * table is full. Each look while the server is well puts the live leases' roles there.
   */
  private async warmRoles(session: pg.Client): Promise<void> {
    await session.query({
      name: 'pglease.lock-guard-warm-roles',
      text: `SELECT count(pg_get_userbyid(r.oid)) FROM pglease.leases l JOIN pg_roles r ON r.rolname IN (l.role_name, l.auth_role)
              WHERE l.state IN ('active', 'provisioning')`,
    });
  }

  private async findSetup(session: pg.Client): Promise<Setup> {
    const { rows } = await session.query<{ max_locks: string; database_oid: number; exempt: number[] }>(
      'SELECT max_locks, database_oid, exempt FROM pglease.lock_guard_setup($1)',
      [this.maxLocks],
    );
    return { maxLocks: rows[0]!.max_locks, database: rows[0]!.database_oid, exempt: rows[0]!.exempt };
  }

  /** Releases the leases of the ended sessions' roles. */
  private async releaseEnded(): Promise<void> {
    const roles = [...this.ending];
    await this.pool.query({
      name: 'pglease.release-lock-hogs',
      text: `SELECT (pglease.release(l.id)).id
               FROM pglease.leases l JOIN pg_roles r ON r.rolname IN (l.role_name, l.auth_role)
              WHERE r.oid = ANY ($1) AND l.state = 'active'`,
      values: [roles],
    });
    for (const role of roles) this.ending.delete(role);
  }
}
