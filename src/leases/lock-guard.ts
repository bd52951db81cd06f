/**
 * Ends leases that fill the server's shared lock table (pglease.lock_hogs, sql/reaper.sql). One
 * statement can take hundreds of thousands of session advisory locks, and the table is shared by
 * every session of the server: until the lease's sessions end, every other lease and pglease
 * itself fail with "out of shared memory". Every CHECK_MS each process looks (a query that still
 * runs when the table is full) and ends
 *   * a lease over its budget (PGLEASE_MAX_LOCKS, a quarter of the table): the locks of all its
 *     sessions, login role and REST authenticator, count together, so eight sessions each under
 *     the budget do not get eight budgets;
 *   * the largest leases while all leases together hold more than the high-water mark (three
 *     quarters of the table), so that no combination of leases fills it.
 * Ending a lease: its sessions are ended at once (SIGTERM on the embedded server), and once their
 * locks are back the lease is released, so that it cannot simply do it again.
 *
 * The table is the server's: a database lease's sessions, in its own database, count as a schema
 * lease's do (pglease.lock_hogs counts the sessions of the live leases' roles in every database).
 *
 * It looks and releases through a connection of its own, opened while the server is well: a new
 * connection cannot log in while the table is full, and the service pool closes a connection on
 * any error, so by then it may have none left. A release that fails (the table still full, the
 * sessions not gone yet) is tried again at the next look, until it succeeds.
 *
 * Which lease a session belongs to is known by its role's oid: the roles of live leases are read
 * on each look while the server is well (a shared catalog, whose lock fails while the table is
 * full). A role made since (a lease created less than CHECK_MS before it filled the table) is
 * grouped by its name when this connection can still read it, else its sessions count as a lease
 * of their own (measured on a full table: the name cannot be read, and the login role's 5
 * sessions and the authenticator's 3 were two groups of 23,500 and 14,100 locks, both ended).
 */
import pg from 'pg';
import { SERVICE_SESSION_OPTIONS } from '../db/service-session.js';

/** How often the lock table is looked at. */
const CHECK_MS = 2_000;
/** A look the server does not answer in this time is given up (a stopped server), its connection closed. */
const LOOK_TIMEOUT_MS = 10_000;

interface Setup {
  /** The budget of one lease (bigint, as text). */
  maxLocks: string;
  /** The high-water mark of all leases together. */
  maxTotalLocks: string;
  database: number;
  exempt: number[];
  /**
   * Whether sessions are ended through pglease_admin.end_lease_backend (when pglease was given a
   * superuser): pg_terminate_backend as the service fails while the table is full whenever a
   * create or release since the last look made it walk the service's memberships again.
   */
  endAsAdmin: boolean;
}

/** A session pglease.lock_hogs names, and why. */
interface HogSession {
  pid: number;
  role_oid: number;
  /** The lease's login role name, or 'role <oid>' for a role whose lease is not known. */
  lease: string;
  lease_locks: string;
  total_locks: string;
  over_budget: boolean;
}

/** The roles of live leases and the lease of each, as the two arrays pglease.lock_hogs takes. */
interface LeaseRoles {
  roleOids: number[];
  leases: string[];
}

export class LockGuard {
  private timer: NodeJS.Timeout | undefined;
  private checking: Promise<void> | undefined;
  /** What lock_hogs needs, found while the server was well (it cannot be found while the table is full). */
  private setup: Setup | undefined;
  /** Read on each look while the server is well; roles made since are grouped by name (see above). */
  private leaseRoles: LeaseRoles = { roleOids: [], leases: [] };
  private session: pg.Client | undefined;
  /** Roles whose sessions were ended, whose leases are not released yet. */
  private readonly ending = new Set<number>();
  private failing = false;

  constructor(
    private readonly databaseUrl: string,
    /** Releases go through it only while the guard has no connection of its own. */
    private readonly pool: pg.Pool,
    private readonly log: (message: string) => void,
    private readonly maxLocks: number | null = null,
    /**
     * True when the server runs on this machine as a process this one may signal (the embedded
     * Postgres): a backend is then ended by SIGTERM, as pg_terminate_backend does. That function
     * itself can fail while the lock table is full: it looks the backend's role up in pg_authid,
     * whose lock cannot take the fast path (unless the role is in its session's cache, where each
     * look while the server is well puts the live leases' roles), and, run by the service, it
     * walks the service's memberships through pg_auth_members after any create or release; so
     * with a superuser it is run as one (Setup.endAsAdmin).
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
      options: SERVICE_SESSION_OPTIONS,
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

  /** One look: ends the leases over their budget or above the high-water mark, and releases the leases ended so far. */
  check(): Promise<void> {
    this.checking ??= this.look().finally(() => (this.checking = undefined));
    return this.checking;
  }

  private async look(): Promise<void> {
    try {
      const session = await this.connection().catch(async (error: unknown) => {
        // no connection of its own (lost, and none opens while the table is full): a pooled one
        // may still take the release
        if (this.ending.size > 0) await this.releaseEnded(this.pool);
        throw error;
      });
      this.setup ??= await this.findSetup(session);
      const { maxLocks, maxTotalLocks, database, exempt } = this.setup;
      const { rows } = await session.query<HogSession>({
        name: 'pglease.lock-hogs',
        text: 'SELECT pid, role_oid, lease, lease_locks, total_locks, over_budget FROM pglease.lock_hogs($1, $2, $3, $4, $5, $6)',
        values: [maxLocks, maxTotalLocks, database, exempt, this.leaseRoles.roleOids, this.leaseRoles.leases],
      });
      const reported = new Set<string>();
      let endFailure: unknown;
      for (const row of rows) {
        if (!this.ending.has(row.role_oid) && !reported.has(row.lease)) {
          reported.add(row.lease);
          this.log(
            row.over_budget
              ? `lease ${row.lease}: its sessions hold ${row.lease_locks} locks, more than its budget of ${maxLocks} in the server's lock table, which every lease shares: they are ended, and the lease released`
              : `leases hold ${row.total_locks} locks together, more than ${maxTotalLocks} of the server's lock table: lease ${row.lease}, among the largest with ${row.lease_locks}, is ended, and released`,
          );
        }
        // one session that cannot be ended does not keep the others
        await this.end(session, row.pid).catch((error: unknown) => (endFailure ??= error));
        this.ending.add(row.role_oid);
      }
      // the ended sessions give their locks back as they exit: until then the release fails, and
      // the next look tries again
      if (this.ending.size > 0) await this.releaseEnded(session);
      if (endFailure) throw endFailure;
      if (rows.length === 0) {
        this.leaseRoles = await this.findLeaseRoles(session);
        // Without a superuser's end_lease_backend, pg_terminate_backend as the service needs the
        // service's memberships, recomputed from a shared catalog after any role change: computed
        // here while the server is well, so that a lease filling the table after this look (and
        // before any other role change) can still be ended.
        if (!this.setup.endAsAdmin) {
          await session.query({ name: 'pglease.lock-guard-memberships', text: "SELECT pg_has_role(current_user, 'pg_signal_backend', 'USAGE')" });
        }
      }
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
    await session.query(
      this.setup?.endAsAdmin
        ? { name: 'pglease.end-lock-hog-admin', text: 'SELECT pglease_admin.end_lease_backend($1)', values: [pid] }
        : { name: 'pglease.end-lock-hog', text: 'SELECT pg_terminate_backend($1)', values: [pid] },
    );
  }

  private async findSetup(session: pg.Client): Promise<Setup> {
    const { rows } = await session.query<{ max_locks: string; max_total_locks: string; database_oid: number; exempt: number[]; end_as_admin: boolean }>(
      `SELECT max_locks, max_total_locks, database_oid, exempt, pglease.may_call_admin('end_lease_backend') AS end_as_admin
         FROM pglease.lock_guard_setup($1)`,
      [this.maxLocks],
    );
    const setup = rows[0]!;
    return { maxLocks: setup.max_locks, maxTotalLocks: setup.max_total_locks, database: setup.database_oid, exempt: setup.exempt, endAsAdmin: setup.end_as_admin };
  }

  /** The live leases' roles (which also puts them in this session's catalog cache, see localServer). */
  private async findLeaseRoles(session: pg.Client): Promise<LeaseRoles> {
    const { rows } = await session.query<{ role_oid: number; lease: string }>({
      name: 'pglease.lock-guard-roles',
      text: 'SELECT role_oid, lease FROM pglease.lock_guard_roles()',
    });
    return { roleOids: rows.map((row) => row.role_oid), leases: rows.map((row) => row.lease) };
  }

  /**
   * Releases the leases of the ended sessions' roles, on the guard's own connection (the service
   * pool may have no connection left, and cannot open one while the table is full). A failure
   * (the sessions not gone yet, the table still full) is left for the next look.
   */
  private async releaseEnded(connection: pg.Client | pg.Pool): Promise<void> {
    const roles = [...this.ending];
    try {
      await connection.query({
        name: 'pglease.release-lock-hogs',
        text: `SELECT (pglease.release(l.id)).id
                 FROM pglease.leases l
                -- a parked lease too: a seed (template SQL, which a lease token holder writes) runs in one
                WHERE l.state IN ('active', 'provisioning')
                  AND EXISTS (SELECT FROM pg_roles r WHERE r.oid = ANY ($1) AND r.rolname IN (l.role_name, l.auth_role))`,
        values: [roles],
      });
    } catch (error) {
      if ((error as Error).message === 'Query read timeout') throw error;
      return;
    }
    for (const role of roles) this.ending.delete(role);
  }
}
