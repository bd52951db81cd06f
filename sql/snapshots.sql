-- Snapshots and restores of database leases (migrations/0017_lease-snapshots.sql), driven by
-- src/leases/lease-snapshots.ts since CREATE DATABASE cannot run in a function:
--   snapshot: pglease.close_for_fork (sql/fork.sql: the lease's sessions end, none may start),
--     CREATE DATABASE <lease>_s_<name> TEMPLATE <lease> (pglease.snapshot_ddl), pglease.note_snapshot,
--     and pglease.reopen_after_fork whatever happened;
--   restore: the lease's next database is a copy of the snapshot, <lease>_p_<name>_<moment>, made in
--     advance (after the snapshot, and after each restore from it, in the background) or now when
--     there is none yet (pglease.restore_ddl; the lease keeps working meanwhile); then
--     pglease.close_for_fork, and pglease.swap_restored_database renames the lease's database away
--     and the copy to its name in one transaction (no moment without a database of the lease's
--     name, which cleanup-orphans would take for a dropped one) and queues the old one's drop;
--     pglease.reopen_after_fork whatever happened. With a copy made in advance a restore is two
--     renames and the end of the lease's sessions: milliseconds, not a CREATE DATABASE.
-- Catalog changes only: no lease code runs as pglease. The service never connects to a lease's
-- database or to a snapshot (closed to all connections).

-- A lease keeps at most this many snapshots (each is a full copy on disk: ~6.6 MB and its data).
CREATE OR REPLACE FUNCTION pglease.max_snapshots_per_lease()
RETURNS int LANGUAGE sql IMMUTABLE AS $$ SELECT 4 $$;

CREATE OR REPLACE FUNCTION pglease.snapshot_database_name(p_lease pglease.leases, p_name text)
RETURNS name LANGUAGE sql IMMUTABLE AS $$ SELECT (p_lease.schema_name || '_s_' || p_name)::name $$;

-- the copy of snapshot p_snapshot made in advance for the lease's next restore from it; named
-- after the snapshot's own moment too, so that a copy of a replaced snapshot is never swapped in
CREATE OR REPLACE FUNCTION pglease.prepared_restore_name(p_lease pglease.leases, p_snapshot pglease.lease_snapshots)
RETURNS name LANGUAGE sql IMMUTABLE
AS $$ SELECT (p_lease.schema_name || '_p_' || p_snapshot.name || '_' || substr(md5(p_snapshot.created_at::text), 1, 6))::name $$;

-- pglease.snapshot_ddl: the CREATE DATABASE of a new snapshot (replacing one of the same name is
-- the caller's: delete it first). Raises 22023 for a bad name, 54000 past the limit, PGLTG when the
-- lease is no active database lease.
CREATE OR REPLACE FUNCTION pglease.snapshot_ddl(p_lease_id uuid, p_name text)
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_lease pglease.leases;
BEGIN
  IF p_name IS NULL OR p_name !~ '^[a-z0-9_]{1,20}$' THEN
    RAISE EXCEPTION 'invalid snapshot name %: 1 to 20 lowercase letters, digits and _', coalesce(p_name, 'NULL') USING ERRCODE = '22023';
  END IF;
  SELECT * INTO v_lease FROM pglease.leases WHERE id = p_lease_id AND state = 'active' AND kind = 'database';
  IF NOT FOUND THEN
    RAISE EXCEPTION 'no active database lease %', p_lease_id USING ERRCODE = 'PGLTG';
  END IF;
  IF (SELECT count(*) FROM pglease.lease_snapshots WHERE lease_id = p_lease_id) >= pglease.max_snapshots_per_lease() THEN
    RAISE EXCEPTION 'a lease keeps at most % snapshots: delete one first', pglease.max_snapshots_per_lease() USING ERRCODE = '54000';
  END IF;
  -- owned by the service (the default owner): the lease can neither connect to, alter nor drop it
  RETURN format('CREATE DATABASE %I TEMPLATE %I ALLOW_CONNECTIONS false',
                pglease.snapshot_database_name(v_lease, p_name), v_lease.schema_name);
END
$$;

-- pglease.note_snapshot: records a snapshot the caller has just made; closes it to PUBLIC.
CREATE OR REPLACE FUNCTION pglease.note_snapshot(p_lease_id uuid, p_name text)
RETURNS pglease.lease_snapshots
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_lease    pglease.leases;
  v_snapshot pglease.lease_snapshots;
BEGIN
  SELECT * INTO v_lease FROM pglease.leases WHERE id = p_lease_id AND kind = 'database' FOR SHARE;
  EXECUTE format('REVOKE ALL ON DATABASE %I FROM PUBLIC', pglease.snapshot_database_name(v_lease, p_name));
  INSERT INTO pglease.lease_snapshots (lease_id, name, database_name)
  VALUES (p_lease_id, p_name, pglease.snapshot_database_name(v_lease, p_name))
  RETURNING * INTO v_snapshot;
  IF v_lease.state <> 'active' THEN
    -- the lease ended while its snapshot was made: the snapshot goes the way of its database
    PERFORM pglease.queue_snapshot_drops(p_lease_id);
  END IF;
  RETURN v_snapshot;
END
$$;

-- pglease.queue_snapshot_drops: queues the drop of a lease's snapshots (all, or the one named),
-- finished by src/leases/database-drops.ts before the lease's own database and roles.
CREATE OR REPLACE FUNCTION pglease.queue_snapshot_drops(p_lease_id uuid, p_name text DEFAULT NULL)
RETURNS int
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_lease pglease.leases;
  v_gone  int;
BEGIN
  SELECT * INTO v_lease FROM pglease.leases WHERE id = p_lease_id;
  WITH gone AS (
    DELETE FROM pglease.lease_snapshots WHERE lease_id = p_lease_id AND (p_name IS NULL OR name = p_name)
    RETURNING *
  ), queued AS (
    INSERT INTO pglease.database_drops (database_name, roles)
    SELECT d, '{}' FROM gone, LATERAL (VALUES (gone.database_name), (pglease.prepared_restore_name(v_lease, gone))) x(d)
     WHERE EXISTS (SELECT 1 FROM pg_database WHERE datname = x.d)
    ON CONFLICT (database_name) DO NOTHING
    RETURNING 1
  )
  SELECT count(*)::int INTO v_gone FROM gone;
  RETURN v_gone;
END
$$;

-- pglease.restore_ddl: the CREATE DATABASE of the copy of snapshot p_name that the lease's next
-- restore from it swaps in (<lease>_p_<name>_<moment>), closed to connections until then; NULL when
-- that copy exists already. PGLSN when there is no such snapshot.
CREATE OR REPLACE FUNCTION pglease.restore_ddl(p_lease_id uuid, p_name text)
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_lease    pglease.leases;
  v_snapshot pglease.lease_snapshots;
BEGIN
  SELECT * INTO v_lease FROM pglease.leases WHERE id = p_lease_id AND state = 'active' AND kind = 'database';
  IF NOT FOUND THEN
    RAISE EXCEPTION 'no active database lease %', p_lease_id USING ERRCODE = 'PGLTG';
  END IF;
  SELECT * INTO v_snapshot FROM pglease.lease_snapshots WHERE lease_id = p_lease_id AND name = p_name;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'the lease has no snapshot %', p_name USING ERRCODE = 'PGLSN';
  END IF;
  IF EXISTS (SELECT 1 FROM pg_database WHERE datname = pglease.prepared_restore_name(v_lease, v_snapshot)) THEN
    RETURN NULL;
  END IF;
  -- owned by the service until it is swapped in: a database the lease's login role owned would be
  -- taken by REASSIGN OWNED in a fork's handover (sql/handover/fork.sql)
  RETURN format('CREATE DATABASE %I TEMPLATE %I ALLOW_CONNECTIONS false',
                pglease.prepared_restore_name(v_lease, v_snapshot), v_snapshot.database_name);
END
$$;

-- pglease.swap_restored_database: in one transaction, the lease's database (closed, its sessions
-- ended) is renamed <lease>_o_<random>, made the service's and queued for its drop, and the copy of
-- snapshot p_name takes its name and becomes the lease's, opened to the lease's roles only (a new
-- database grants PUBLIC CONNECT: revoked). Only the lease's own database is ever owned by its
-- login role (see pglease.restore_ddl).
-- PGLSN when no copy was prepared (made by pglease.restore_ddl's statement).
CREATE OR REPLACE FUNCTION pglease.swap_restored_database(p_lease_id uuid, p_name text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_lease    pglease.leases;
  v_snapshot pglease.lease_snapshots;
  v_old      text;
BEGIN
  SELECT * INTO v_lease FROM pglease.leases WHERE id = p_lease_id AND state = 'active' AND kind = 'database' FOR SHARE;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'no active database lease %', p_lease_id USING ERRCODE = 'PGLTG';
  END IF;
  SELECT * INTO v_snapshot FROM pglease.lease_snapshots WHERE lease_id = p_lease_id AND name = p_name;
  IF NOT FOUND OR NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = pglease.prepared_restore_name(v_lease, v_snapshot)) THEN
    RAISE EXCEPTION 'no copy of snapshot % is prepared', p_name USING ERRCODE = 'PGLSN';
  END IF;
  v_old := v_lease.schema_name || '_o_' || substr(md5(random()::text), 1, 8);
  EXECUTE format('ALTER DATABASE %I RENAME TO %I', v_lease.schema_name, v_old);
  EXECUTE format('ALTER DATABASE %I OWNER TO %I', v_old, current_user);
  EXECUTE format('ALTER DATABASE %I RENAME TO %I', pglease.prepared_restore_name(v_lease, v_snapshot), v_lease.schema_name);
  EXECUTE format('ALTER DATABASE %I OWNER TO %I', v_lease.schema_name, v_lease.role_name);
  EXECUTE format('REVOKE ALL ON DATABASE %I FROM PUBLIC', v_lease.schema_name);
  EXECUTE format('GRANT CONNECT, TEMPORARY ON DATABASE %I TO %I', v_lease.schema_name, v_lease.auth_role);
  -- the lease's database now holds the snapshot's contents: marked before anyone may connect
  PERFORM pglease.mark_copy(p_lease_id, p_name);
  EXECUTE format('ALTER DATABASE %I ALLOW_CONNECTIONS true', v_lease.schema_name);
  INSERT INTO pglease.database_drops (database_name, roles) VALUES (v_old, '{}');
  -- every pglease process drops what it cached of the lease's schema (src/rest/notifications.ts):
  -- the restored database may hold other tables than the one it replaces
  PERFORM pg_notify('pglease_rest_ddl', v_lease.schema_name);
  PERFORM pg_notify('pglease_lease_change', v_lease.id::text);
END
$$;

-- pglease.queue_stray_lease_copies: queues the drop of the copies of this database's leases that
-- nothing needs any more: a snapshot (<lease>_s_<name>) or a prepared restore (<lease>_p_<name>_<moment>) of
-- a lease that is no longer active (one made in the background while the lease ended, or left by
-- a crash between its CREATE DATABASE and its record), a prepared restore whose snapshot is gone,
-- and a lease's old database (<lease>_o_...) however it was left. A copy being made is not yet
-- visible here, and a snapshot of an active lease is never touched (it may be just being recorded).
-- Called before each round of drops (src/leases/database-drops.ts). Catalog reads only.
CREATE OR REPLACE FUNCTION pglease.queue_stray_lease_copies()
RETURNS int
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
  WITH copies AS (
    SELECT d.datname, m[1] AS base, m[2] AS kind, m[3] AS name
      FROM pg_database d, regexp_match(d.datname, '^(lease_[0-9a-f]{16})_([spo])_([a-z0-9_]+)$') m
  ), stray AS (
    SELECT c.datname FROM copies c JOIN pglease.leases l ON l.schema_name = c.base AND l.kind = 'database'
     WHERE c.kind = 'o'
        OR l.state NOT IN ('active', 'provisioning')
        OR (c.kind = 'p' AND NOT EXISTS (SELECT 1 FROM pglease.lease_snapshots s
                                          WHERE s.lease_id = l.id AND pglease.prepared_restore_name(l, s) = c.datname))
  ), queued AS (
    INSERT INTO pglease.database_drops (database_name, roles)
    SELECT datname, '{}' FROM stray
    ON CONFLICT (database_name) DO NOTHING
    RETURNING 1
  )
  SELECT count(*)::int FROM queued
$$;

-- Forks from a prepared copy. A fork copies the lease's database as it is (CREATE DATABASE ...
-- TEMPLATE, sql/fork.sql): ~100-300 ms on these machines, most of it the file system making the
-- copy's ~350 files. When the lease's database has not changed since its last snapshot or restore
-- (a test suite seeds a lease, snapshots it, and forks it for each worker), the copy of that
-- snapshot prepared for the next restore (pglease.restore_ddl) holds the same contents, and the
-- fork takes it: two renames instead of a CREATE DATABASE. Whether the database changed is told by
-- Postgres's own statistics: every client session of a database counts in its `sessions`, and a
-- session's counts are flushed at the latest when it exits. So with no client session on the
-- database (the copy bracket has ended them, and nobody can connect), an equal count means that no
-- client has connected there in between, and nothing but a client changes what a database holds.
-- Not its transactions: autovacuum's count too, and its workers visit every database about once a
-- minute (under a suite's load, half the forks of an unchanged lease copied it live). Sessions are
-- counted whatever track_counts says (measured: two sessions with it off counted two); the count is
-- trusted only while nothing reset it: no reset of the database's or the server's statistics (a
-- crash resets them all). Catalogs and statistics only: nothing here runs in the lease's database.

-- pglease.copy_counters: the counters of database p_database that a mark compares, now; all NULL
-- when they cannot tell: a session other than an autovacuum worker is on the database (a
-- superuser's, which the bracket does not end), whose counts may not have been flushed yet.
CREATE OR REPLACE FUNCTION pglease.copy_counters(p_database name,
  OUT database_oid oid, OUT sessions bigint, OUT database_reset timestamptz, OUT server_reset timestamptz)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_oid oid;
BEGIN
  -- the statistics as they are now, not as this transaction first read them
  PERFORM pg_stat_clear_snapshot();
  SELECT d.oid INTO v_oid FROM pg_database d WHERE d.datname = p_database;
  IF v_oid IS NULL
     OR EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.datid = v_oid AND a.backend_type <> 'autovacuum worker') THEN
    RETURN;
  END IF;
  database_oid := v_oid;
  sessions := pg_stat_get_db_sessions(v_oid);
  database_reset := pg_stat_get_db_stat_reset_time(v_oid);
  server_reset := (SELECT b.stats_reset FROM pg_stat_bgwriter b);
END
$$;

-- pglease.mark_copy: records that the lease's database holds snapshot p_snapshot's contents (called
-- in the copy bracket of the snapshot, after its CREATE DATABASE, and by a restore's swap, before
-- the database opens). Whether it could: without usable counters any earlier mark is removed.
CREATE OR REPLACE FUNCTION pglease.mark_copy(p_lease_id uuid, p_snapshot text)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_lease    pglease.leases;
  v_counters record;
BEGIN
  SELECT * INTO v_lease FROM pglease.leases WHERE id = p_lease_id AND kind = 'database';
  SELECT * INTO v_counters FROM pglease.copy_counters(v_lease.schema_name);
  IF v_counters.database_oid IS NULL THEN
    DELETE FROM pglease.lease_copy_marks WHERE lease_id = p_lease_id;
    RETURN false;
  END IF;
  INSERT INTO pglease.lease_copy_marks AS m (lease_id, snapshot_name, database_oid, sessions, database_reset, server_reset)
  VALUES (p_lease_id, p_snapshot, v_counters.database_oid, v_counters.sessions, v_counters.database_reset, v_counters.server_reset)
  ON CONFLICT (lease_id) DO UPDATE
    SET snapshot_name = excluded.snapshot_name, database_oid = excluded.database_oid, sessions = excluded.sessions,
        database_reset = excluded.database_reset, server_reset = excluded.server_reset, marked_at = now();
  RETURN true;
END
$$;

-- pglease.copy_mark_holds: whether database p_database's counters now (pglease.copy_counters) are
-- those of mark p_mark with p_sessions client sessions counted: the same database, nothing reset,
-- no session on it. False when they cannot tell.
CREATE OR REPLACE FUNCTION pglease.copy_mark_holds(p_mark pglease.lease_copy_marks, p_database name, p_sessions bigint)
RETURNS boolean
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT coalesce(c.database_oid = p_mark.database_oid AND c.sessions = p_sessions
                  AND c.database_reset IS NOT DISTINCT FROM p_mark.database_reset
                  AND c.server_reset IS NOT DISTINCT FROM p_mark.server_reset, false)
    FROM pglease.copy_counters(p_database) c
$$;

-- pglease.copy_mark_sessions: the client sessions the lease's database has counted, when its copy
-- mark still holds (no client connected since, nothing reset, no session on it now);
-- NULL otherwise.
CREATE OR REPLACE FUNCTION pglease.copy_mark_sessions(p_lease_id uuid)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_lease pglease.leases;
  v_mark  pglease.lease_copy_marks;
BEGIN
  SELECT * INTO v_lease FROM pglease.leases WHERE id = p_lease_id AND kind = 'database';
  SELECT * INTO v_mark FROM pglease.lease_copy_marks WHERE lease_id = p_lease_id;
  IF v_lease.id IS NULL OR v_mark.lease_id IS NULL THEN
    RETURN NULL;
  END IF;
  IF NOT pglease.copy_mark_holds(v_mark, v_lease.schema_name, v_mark.sessions) THEN
    RETURN NULL;
  END IF;
  RETURN v_mark.sessions;
END
$$;

-- pglease.advance_copy_mark: the observer's count of a database lease's rows (src/leases/
-- database-counts.ts) is a session of the service in its database, which reads its catalog and
-- changes nothing; without this, it voided the mark of every lease it counted, and it counts a
-- lease's new database soon after each restore. Called once that session has ended, with the count
-- copy_mark_sessions gave just before it: when exactly one client session (the observer's) has been
-- counted since, the mark moves past it. Waits up to ~2 s for the session's backend to exit (its
-- counts are flushed by then): 200 ms was too short beside a second test suite on a slower 2-core
-- machine, and the mark was lost (the next fork copied the live database). Whether it moved the mark.
CREATE OR REPLACE FUNCTION pglease.advance_copy_mark(p_lease_id uuid, p_sessions bigint)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_lease pglease.leases;
  v_mark  pglease.lease_copy_marks;
BEGIN
  SELECT * INTO v_lease FROM pglease.leases WHERE id = p_lease_id AND kind = 'database';
  SELECT * INTO v_mark FROM pglease.lease_copy_marks WHERE lease_id = p_lease_id;
  IF v_lease.id IS NULL OR v_mark.sessions IS DISTINCT FROM p_sessions THEN
    RETURN false;
  END IF;
  FOR i IN 1..400 LOOP
    EXIT WHEN (SELECT c.database_oid IS NOT NULL FROM pglease.copy_counters(v_lease.schema_name) c);
    PERFORM pg_sleep(0.005);
  END LOOP;
  IF NOT pglease.copy_mark_holds(v_mark, v_lease.schema_name, p_sessions + 1) THEN
    RETURN false;
  END IF;
  UPDATE pglease.lease_copy_marks SET sessions = p_sessions + 1 WHERE lease_id = p_lease_id AND sessions = p_sessions;
  RETURN FOUND;
END
$$;

-- pglease.held_snapshot: in a copy bracket of lease p_source (its sessions ended, none may start),
-- the snapshot whose contents its database still holds: its copy mark holds (pglease.copy_mark_holds,
-- no client connected since the snapshot or a restore from it). NULL otherwise, or when the lease is
-- no active database lease. What every fork that need not copy the live database starts from
-- (pglease.fork_from_prepared_copy, and sql/ready-forks.sql).
CREATE OR REPLACE FUNCTION pglease.held_snapshot(p_source uuid)
RETURNS pglease.lease_snapshots
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_source   pglease.leases;
  v_mark     pglease.lease_copy_marks;
  v_snapshot pglease.lease_snapshots;
BEGIN
  SELECT * INTO v_source FROM pglease.leases WHERE id = p_source AND state = 'active' AND kind = 'database';
  SELECT * INTO v_mark FROM pglease.lease_copy_marks WHERE lease_id = p_source;
  IF v_source.id IS NULL OR v_mark.lease_id IS NULL THEN
    RETURN NULL;
  END IF;
  SELECT * INTO v_snapshot FROM pglease.lease_snapshots WHERE lease_id = p_source AND name = v_mark.snapshot_name;
  IF NOT FOUND OR NOT pglease.copy_mark_holds(v_mark, v_source.schema_name, v_mark.sessions) THEN
    RETURN NULL;
  END IF;
  RETURN v_snapshot;
END
$$;

-- pglease.fork_from_prepared_copy: in a fork's copy bracket (the source closed, its sessions
-- ended), when the source's database still holds its marked snapshot's contents and that
-- snapshot's prepared copy exists, that copy becomes the parked fork's database (renamed, owned by
-- the fork's login role, still closed until pglease.open_lease_database): answers the snapshot's
-- name. NULL otherwise, and the caller copies the live database.
CREATE OR REPLACE FUNCTION pglease.fork_from_prepared_copy(p_source uuid, p_fork uuid)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_source   pglease.leases;
  v_fork     pglease.leases;
  v_snapshot pglease.lease_snapshots;
  v_copy     name;
BEGIN
  SELECT * INTO v_source FROM pglease.leases WHERE id = p_source AND state = 'active' AND kind = 'database';
  SELECT * INTO v_fork FROM pglease.leases WHERE id = p_fork AND state = 'provisioning' AND kind = 'database';
  v_snapshot := pglease.held_snapshot(p_source);
  IF v_source.id IS NULL OR v_fork.id IS NULL OR v_snapshot.lease_id IS NULL THEN
    RETURN NULL;
  END IF;
  v_copy := pglease.prepared_restore_name(v_source, v_snapshot);
  -- closed: not being opened for its relation cache file by another process this moment
  IF NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = v_copy AND NOT datallowconn) THEN
    RETURN NULL;
  END IF;
  EXECUTE format('ALTER DATABASE %I RENAME TO %I', v_copy, v_fork.schema_name);
  EXECUTE format('ALTER DATABASE %I OWNER TO %I', v_fork.schema_name, v_fork.role_name);
  RETURN v_snapshot.name;
END
$$;

-- pglease.open_prepared_copy: opens (p_open) or closes again the copy of snapshot p_name prepared for
-- the lease's next restore, for one session of the service that builds its relation cache file
-- (pg_internal.init, which CREATE DATABASE does not copy): without it the handover's session of a
-- fork taking the copy, or the first session after a restore, builds it and creates the file, ~10 ms
-- and a file creation that this file system makes slow after deletions. Open to its owner (the
-- service) only: PUBLIC loses CONNECT first (a new database grants it). Closing waits, at most ~1 s,
-- until that session has exited: a rename refuses while a session is on the database. The copy's
-- name, NULL when there is none.
CREATE OR REPLACE FUNCTION pglease.open_prepared_copy(p_lease_id uuid, p_name text, p_open boolean)
RETURNS name
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_lease    pglease.leases;
  v_snapshot pglease.lease_snapshots;
  v_copy     name;
  v_oid      oid;
BEGIN
  SELECT * INTO v_lease FROM pglease.leases WHERE id = p_lease_id AND kind = 'database';
  SELECT * INTO v_snapshot FROM pglease.lease_snapshots WHERE lease_id = p_lease_id AND name = p_name;
  IF v_lease.id IS NULL OR v_snapshot.lease_id IS NULL THEN
    RETURN NULL;
  END IF;
  v_copy := pglease.prepared_restore_name(v_lease, v_snapshot);
  SELECT oid INTO v_oid FROM pg_database WHERE datname = v_copy;
  IF v_oid IS NULL THEN
    RETURN NULL;
  END IF;
  IF p_open THEN
    EXECUTE format('REVOKE ALL ON DATABASE %I FROM PUBLIC', v_copy);
    EXECUTE format('ALTER DATABASE %I ALLOW_CONNECTIONS true', v_copy);
  ELSE
    EXECUTE format('ALTER DATABASE %I ALLOW_CONNECTIONS false', v_copy);
    FOR i IN 1..200 LOOP
      EXIT WHEN NOT EXISTS (SELECT 1 FROM pglease.backend_sessions() b WHERE b.database_oid = v_oid);
      PERFORM pg_sleep(0.005);
    END LOOP;
  END IF;
  RETURN v_copy;
END
$$;
