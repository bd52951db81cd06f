-- Expiry and repair: the reaper ends leases whose time is up, and cleanup-orphans reconciles the
-- host's roles and schemas with the lease rows after anything unexpected (a crash, a hand-made
-- change). The jobs of src/scheduler call these functions; all the logic stays in Postgres.

-- pglease.reap_expired: ends up to p_batch expired leases, oldest expiry first, each through
-- pglease.release(id, 'expired') so a lease is dropped exactly as a DELETE would drop it.
--
-- * Never twice, never racing a DELETE: rows are locked FOR UPDATE SKIP LOCKED, so a lease being
--   released or renewed right now is left for the next batch, and two reapers (two processes)
--   take disjoint batches and work in parallel.
-- * A failing lease does not stop the batch: each lease runs in its own subtransaction. Its error
--   is kept in last_error and it is tried again after a delay that doubles per attempt (2 s up to
--   5 min), so a lease that cannot be dropped does not fill every batch.
-- * The batch commits as a whole when the caller commits. Its size stays under 64 leases: more
--   subtransactions than that overflow each backend's cache of them and slow down every snapshot
--   taken on the server.
CREATE OR REPLACE FUNCTION pglease.reap_expired(p_batch int DEFAULT 50, OUT reaped int, OUT failed int)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_id    uuid;
  v_error text;
BEGIN
  IF p_batch NOT BETWEEN 1 AND 60 THEN
    RAISE EXCEPTION 'reap batch must be between 1 and 60, got %', p_batch USING ERRCODE = '22023';
  END IF;
  reaped := 0;
  failed := 0;
  FOR v_id IN
    SELECT id FROM pglease.leases
     WHERE state IN ('active', 'provisioning') AND expires_at <= now()
       AND (next_reap_at IS NULL OR next_reap_at <= now())
     ORDER BY expires_at
     LIMIT p_batch
     FOR UPDATE SKIP LOCKED
  LOOP
    BEGIN
      PERFORM pglease.release(v_id, 'expired');
      reaped := reaped + 1;
    EXCEPTION WHEN OTHERS THEN
      GET STACKED DIAGNOSTICS v_error = MESSAGE_TEXT;
      UPDATE pglease.leases
         SET last_error = 'reaping failed: ' || v_error,
             reap_attempts = reap_attempts + 1,
             next_reap_at = now() + least(interval '2 seconds' * power(2, least(reap_attempts, 10)), interval '5 minutes')
       WHERE id = v_id;
      failed := failed + 1;
    END;
  END LOOP;
END
$$;

-- pglease.terminate_orphan_sessions: ends sessions on this database whose role no longer exists.
-- A client can log in between the moment a release terminates a lease's sessions and the moment
-- the role's drop commits; its session outlives the role. Called after each reaper batch and by
-- cleanup-orphans. A session this role may not signal is skipped, not an error.
CREATE OR REPLACE FUNCTION pglease.terminate_orphan_sessions()
RETURNS int
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_pid        int;
  v_terminated int := 0;
BEGIN
  -- Candidates first, from the statistics' per-backend functions (pglease.backend_sessions), which
  -- ask no privilege: pg_stat_activity asks, for every row, whether the service has the privileges
  -- of the row's role, which after each create or release walks the service's memberships in every
  -- lease's roles (19 ms of each release's 26 at 900 live leases on Postgres 15, 0.6 ms with none:
  -- session 11). Only a session whose role is gone, usually none, is then looked at whole.
  FOR v_pid IN
    WITH orphans AS MATERIALIZED (
      SELECT b.pid FROM pglease.backend_sessions() b
       WHERE b.database_oid = (SELECT d.oid FROM pg_database d WHERE d.datname = current_database())
         AND b.pid <> pg_backend_pid()
         AND b.role_oid IS NOT NULL AND b.role_oid <> 0
         AND NOT EXISTS (SELECT 1 FROM pg_roles r WHERE r.oid = b.role_oid)
    )
    SELECT o.pid FROM orphans o, pg_stat_get_activity(o.pid) a
     WHERE a.backend_type = 'client backend'
       -- A lease created after this statement's snapshot is invisible in pg_roles while its first
       -- session is already running (shared memory, not MVCC). Only sessions that began before
       -- this transaction can be judged: their role, if any, committed before they started.
       AND a.backend_start < now()
  LOOP
    BEGIN
      IF pg_terminate_backend(v_pid) THEN
        v_terminated := v_terminated + 1;
      END IF;
    EXCEPTION WHEN insufficient_privilege THEN
      RAISE NOTICE 'pglease may not terminate session %', v_pid;
    END;
  END LOOP;
  RETURN v_terminated;
END
$$;

-- pglease.lease_objects_of: the lease base names (lease_<16 hex>) that have a schema in this
-- database, a role granted this database's lease group or database-lease group, or a database of
-- their own owned by such a role. Roles are shared by every database of the cluster: membership of
-- one of these groups is what marks a role as one of *this* database's leases, so a cleanup never
-- touches the leases (or lease databases) of another lease database on the host.
CREATE OR REPLACE FUNCTION pglease.lease_objects_of()
RETURNS SETOF text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT substring(m.rolname FROM '^(lease_[0-9a-f]{16})(_auth)?$')
    FROM pg_auth_members am
    JOIN pg_roles g ON g.oid = am.roleid
    JOIN pg_roles m ON m.oid = am.member
   WHERE g.rolname = ANY (pglease.lease_groups() || pglease.database_lease_group())
     AND m.rolname ~ '^lease_[0-9a-f]{16}(_auth)?$'
  UNION
  SELECT n.nspname::text FROM pg_namespace n WHERE n.nspname ~ '^lease_[0-9a-f]{16}$'
  UNION
  SELECT d.datname::text FROM pg_database d
   WHERE d.datname ~ '^lease_[0-9a-f]{16}$'
     AND pg_has_role(d.datdba, pglease.database_lease_group(), 'MEMBER')
$$;

-- pglease.declared_roles_of: the names the lease of base name `p_base` declared for its JWTs
-- (pglease.declare_lease_role, sql/auth.sql: the role <base>_<name>), read from the catalogs for a
-- lease whose row is gone: a role named <base>_<name> that the lease's authenticator is a member
-- of. Roles are shared by the cluster; that membership (given by declare_lease_role alone) ties the
-- role to this lease, whose base lease_objects_of found in this database, so a role of the same
-- shape made by anyone else is left alone. Its own roles (<base>_anon, _auth, _quota) are not
-- declared ones: drop_lease_objects names them itself.
CREATE OR REPLACE FUNCTION pglease.declared_roles_of(p_base text)
RETURNS text[]
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT coalesce(array_agg(substr(r.rolname, length(p_base) + 2) ORDER BY r.rolname), '{}')
    FROM pg_auth_members am
    JOIN pg_roles r ON r.oid = am.roleid
    JOIN pg_roles a ON a.oid = am.member
   WHERE a.rolname = p_base || '_auth'
     AND left(r.rolname, length(p_base) + 1) = p_base || '_'
     AND substr(r.rolname, length(p_base) + 2) ~ '^[a-z][a-z0-9_]{0,39}$'
     AND substr(r.rolname, length(p_base) + 2) NOT IN ('anon', 'auth', 'quota')
$$;

-- pglease.cleanup_orphans: makes the host agree with the lease rows.
--   1. Objects without a live lease (schema and roles of a base no active row claims, the roles it
--      declared for its JWTs among them: pglease.declared_roles_of) are dropped with
--      pglease.drop_lease_objects, which tolerates whatever part is already gone.
--   2. An active lease whose schema or login role is gone (dropped by hand, or by its owner: the
--      lease role owns its schema) cannot work any more: what is left of it is dropped and it
--      becomes 'failed', with the reason in last_error and a 'failed' event.
--      An unclaimed lease of a warm pool (state 'provisioning') in that case is dropped without a
--      trace instead, as the reaper drops it (it was never anyone's), and counted as an orphan.
--   3. Sessions of dropped roles are terminated.
-- Leases being provisioned are invisible here until they commit, together with their objects, so
-- a lease in the making is never mistaken for an orphan. Each repair runs in its own
-- subtransaction; one that fails is counted in `errors` and retried on the next run.
CREATE OR REPLACE FUNCTION pglease.cleanup_orphans(
  OUT orphans_dropped int, OUT leases_failed int, OUT sessions_terminated int, OUT errors int)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_base   text;
  v_lease  pglease.leases;
  v_orphan pglease.leases;
BEGIN
  orphans_dropped := 0;
  leases_failed := 0;
  errors := 0;

  FOR v_base IN
    SELECT b.base FROM pglease.lease_objects_of() b(base)
     WHERE NOT EXISTS (SELECT 1 FROM pglease.leases l
                        WHERE l.schema_name = b.base AND l.state IN ('active', 'provisioning'))
       -- a database lease's database queued for its drop: src/leases/database-drops.ts finishes it
       AND NOT EXISTS (SELECT 1 FROM pglease.database_drops q WHERE q.database_name = b.base)
  LOOP
    BEGIN
      SELECT r.* INTO v_orphan.role_name, v_orphan.anon_role, v_orphan.auth_role FROM pglease.lease_role_names(v_base) r;
      v_orphan.schema_name := v_base;
      v_orphan.user_roles := pglease.declared_roles_of(v_base);
      PERFORM pglease.drop_lease_objects(v_orphan);
      orphans_dropped := orphans_dropped + 1;
    EXCEPTION WHEN OTHERS THEN
      RAISE WARNING 'pglease could not drop orphan %: %', v_base, SQLERRM;
      errors := errors + 1;
    END;
  END LOOP;

  FOR v_lease IN
    SELECT * FROM pglease.leases l
     WHERE l.state IN ('active', 'provisioning')
       AND ((l.kind = 'schema' AND NOT EXISTS (SELECT 1 FROM pg_namespace n WHERE n.nspname = l.schema_name))
            -- a database lease is parked (provisioning) until its database is made, outside the
            -- transaction that recorded it: only an active one must have it
            OR (l.kind = 'database' AND l.state = 'active' AND NOT EXISTS (SELECT 1 FROM pg_database d WHERE d.datname = l.schema_name))
            OR NOT EXISTS (SELECT 1 FROM pg_roles r WHERE r.rolname = l.role_name))
     FOR UPDATE SKIP LOCKED
  LOOP
    BEGIN
      IF v_lease.state = 'provisioning' THEN
        PERFORM pglease.release(v_lease.id);
        orphans_dropped := orphans_dropped + 1;
        CONTINUE;
      END IF;
      PERFORM pglease.drop_lease_objects(v_lease);
      UPDATE pglease.leases
         SET state = 'failed', ended_at = now(),
             last_error = format('its %s or login role %s was dropped outside pglease; the lease was ended', v_lease.kind, v_lease.schema_name)
       WHERE id = v_lease.id;
      INSERT INTO pglease.lease_events (lease_id, kind, detail)
      VALUES (v_lease.id, 'failed', jsonb_build_object('reason', 'objects missing', 'by', 'cleanup-orphans'));
      leases_failed := leases_failed + 1;
    EXCEPTION WHEN OTHERS THEN
      RAISE WARNING 'pglease could not end broken lease %: %', v_lease.id, SQLERRM;
      errors := errors + 1;
    END;
  END LOOP;

  -- Large objects owned by a lease group (made after SET ROLE to it, which servers before 16
  -- allow): no lease owns them, so no release drops them, and every lease of the group reaches them.
  BEGIN
    PERFORM lo_unlink(m.oid) FROM pg_largeobject_metadata m
     WHERE m.lomowner IN (SELECT r.oid FROM pg_roles r WHERE r.rolname = ANY (pglease.lease_groups()));
  EXCEPTION WHEN OTHERS THEN
    RAISE WARNING 'pglease could not unlink large objects of the lease groups: %', SQLERRM;
    errors := errors + 1;
  END;

  sessions_terminated := pglease.terminate_orphan_sessions();
END
$$;

-- pglease.plan_next_reap: after a reaper run, moves the next run forward to the soonest moment a
-- live lease becomes reapable (its expiry, or its retry time after a failure) when that comes
-- before the next cron tick. New leases do the same through the leases_reap_at_expiry trigger;
-- this covers leases that expire between a run's start and the next tick. p_min_gap keeps a
-- steady stream of short leases from turning into back-to-back runs.
CREATE OR REPLACE FUNCTION pglease.plan_next_reap(p_min_gap interval DEFAULT interval '1 second')
RETURNS timestamptz
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
  WITH soonest AS (
    SELECT greatest(min(greatest(l.expires_at, coalesce(l.next_reap_at, l.expires_at))), now() + p_min_gap) AS at
      FROM pglease.leases l
     WHERE l.state IN ('active', 'provisioning') AND l.expires_at IS NOT NULL
  )
  UPDATE pglease.jobs j SET next_run_at = soonest.at
    FROM soonest
   WHERE j.name = 'reap-expired' AND j.enabled AND j.next_run_at > soonest.at
  RETURNING j.next_run_at
$$;

-- The lock table. Postgres keeps the locks of every session of the server in one shared table of
-- max_locks_per_transaction x (max_connections + max_prepared_transactions) entries (the embedded
-- cluster: 512 x (300 + 0) = 153,600; Postgres sizes it for its background processes too and lets
-- it grow into spare shared memory: 228,000 advisory locks filled it, and 34,340 filled one of
-- 64 x 300 = 19,200 in test/lock-guard.test.ts). Both limits below come from the formula, so they
-- stay under what the table really holds. A lease that fills it
-- (session advisory locks cost one call each, and outlive the failed statement that took them)
-- makes every other session fail with "out of shared memory", pglease's included, until its
-- sessions end. The service ends such leases (src/leases/lock-guard.ts) by two limits:
--   * a budget per lease, a quarter of the table (38,400 on the embedded cluster): the locks of
--     all sessions of its login role and of its REST authenticator together, so that opening
--     more sessions (20 login, 10 authenticator) does not multiply it;
--   * a high-water mark for all leases together, three quarters of the table (115,200): several
--     leases each under its budget are ended largest first until the rest are under it, so that
--     no combination of leases fills the table, and pglease keeps a quarter of it for itself and
--     its superusers. PGLEASE_MAX_LOCKS changes the budget only: a small budget must not make
--     many ordinary leases together look like an attack.
-- The functions below must run while the table is full, so they take no lock there: they read
-- shared memory only (pg_lock_status, pg_stat_get_backend_*), never a shared catalog (pg_authid,
-- pg_database), whose locks cannot take the per-session fast path; and they need no transaction
-- id.

-- pglease.lock_guard_role_lease: the lease (its login role's name, 'lease_' + 16 hex digits) of a
-- login role or authenticator, read from the role's name; NULL for a role of no lease, or when the
-- name cannot be read now: a role this session has not looked up before is read from pg_authid,
-- whose lock fails while the table is full (its sessions then count as a lease of their own).
CREATE OR REPLACE FUNCTION pglease.lock_guard_role_lease(p_role oid)
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  RETURN substring(pg_get_userbyid(p_role) FROM '^(lease_[0-9a-f]{16})(_auth)?$');
EXCEPTION WHEN out_of_memory THEN
  RETURN NULL;
END
$$;

-- pglease.lock_hogs: the sessions to end, with the lease each belongs to. In the lease database
-- (p_database) every session is a lease's, the service's or a superuser's (p_exempt: the roles
-- that are not leases', found beforehand); the lease of each role is p_leases[i] for p_roles[i]
-- (found beforehand, while the server was well), else read from its name, else the role's sessions
-- count as a lease of their own ('role <oid>'). In every other database only the sessions of
-- p_roles count: a database lease's (issue 14) are in its own database, lease_<hex>, and the lock
-- table is the server's, shared by all databases; another pglease's leases on the same server are
-- not this one's to end. (A database lease made since the roles were read is counted from the
-- guard's next look, CHECK_MS later.) Returns every session of each lease
--   * over its budget: more than p_max locks over all its sessions;
--   * or among the largest leases whose locks must go for the rest to hold at most p_max_total
--     (ties broken by name, so that two processes pick the same).
-- Locks taken through the per-session fast path (at most 16 relation locks) are not in the table
-- and are not counted.
DROP FUNCTION IF EXISTS pglease.lock_hogs(bigint);
DROP FUNCTION IF EXISTS pglease.lock_hogs(bigint, oid, oid[]);
CREATE OR REPLACE FUNCTION pglease.lock_hogs(p_max bigint, p_max_total bigint, p_database oid, p_exempt oid[],
                                             p_roles oid[], p_leases text[])
RETURNS TABLE (pid int, role_oid oid, lease text, lease_locks bigint, total_locks bigint, over_budget boolean)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
  WITH sessions AS (
    SELECT s.pid, s.role_oid, h.locks,
           coalesce(known.lease, pglease.lock_guard_role_lease(s.role_oid), 'role ' || s.role_oid) AS lease
      FROM (SELECT k.pid, count(*) AS locks FROM pg_lock_status() k WHERE NOT k.fastpath GROUP BY k.pid) h
      -- pglease.backend_sessions (sql/leases.sql), not pg_stat_get_activity: that one asks per row
      -- whether the service has the privileges of the row's role, which after a create or release
      -- walks its memberships in every lease's roles through pg_auth_members, a shared catalog
      -- whose lock finds no place in a full table (pg_proc, where the functions are looked up, is
      -- not shared: its locks take the session's fast path)
      JOIN pglease.backend_sessions() s ON s.pid = h.pid
      LEFT JOIN unnest(p_roles, p_leases) known (role_oid, lease) ON known.role_oid = s.role_oid
     WHERE (s.database_oid = p_database OR known.role_oid IS NOT NULL) AND NOT (s.role_oid = ANY (p_exempt))
  ), per_lease AS (
    SELECT x.lease, sum(x.locks)::bigint AS locks FROM sessions x GROUP BY x.lease
  ), ranked AS (
    SELECT l.lease, l.locks, sum(l.locks) OVER ()::bigint AS total,
           coalesce(sum(l.locks) OVER (ORDER BY l.locks DESC, l.lease ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS larger
      FROM per_lease l
  )
  SELECT x.pid, x.role_oid, r.lease, r.locks, r.total, r.locks > p_max
    FROM ranked r JOIN sessions x ON x.lease = r.lease
   WHERE r.locks > p_max OR r.total - r.larger > p_max_total;
$$;

-- pglease.lock_guard_setup: what pglease.lock_hogs needs to know, found while the server is well:
-- the budget of one lease (p_max, NULL: a quarter of the lock table), the high-water mark of all
-- leases (three quarters of the table), this database, and the roles that are not leases'.
DROP FUNCTION IF EXISTS pglease.lock_guard_setup(bigint);
CREATE OR REPLACE FUNCTION pglease.lock_guard_setup(p_max bigint DEFAULT NULL)
RETURNS TABLE (max_locks bigint, max_total_locks bigint, database_oid oid, exempt oid[])
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
  WITH lock_table AS (
    SELECT current_setting('max_locks_per_transaction')::bigint
           * (current_setting('max_connections')::bigint + current_setting('max_prepared_transactions')::bigint) AS size
  )
  SELECT coalesce(p_max, t.size / 4), t.size * 3 / 4,
         (SELECT d.oid FROM pg_database d WHERE d.datname = current_database()),
         ARRAY(SELECT r.oid FROM pg_roles r WHERE r.rolsuper OR r.rolname = current_user)
    FROM lock_table t;
$$;

-- pglease.lock_guard_roles: the roles of live leases with sessions (login role and authenticator)
-- and the lease of each, for pglease.lock_hogs, read while the server is well. Looking each role up
-- by oid also puts it in this session's catalog cache, where pg_terminate_backend (superuser_arg)
-- and pglease.lock_guard_role_lease find it without a lock while the table is full.
CREATE OR REPLACE FUNCTION pglease.lock_guard_roles(OUT role_oid oid, OUT lease text)
RETURNS SETOF record
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT r.oid, l.role_name
    FROM pglease.leases l JOIN pg_roles r ON r.rolname IN (l.role_name, l.auth_role)
   WHERE l.state IN ('active', 'provisioning') AND pg_get_userbyid(r.oid) IS NOT NULL;
$$;
