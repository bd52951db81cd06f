-- Snapshots and restores of database leases (migrations/0017_lease-snapshots.sql), driven by
-- src/leases/lease-snapshots.ts since CREATE DATABASE cannot run in a function:
--   snapshot: pglease.close_for_fork (sql/fork.sql: the lease's sessions end, none may start),
--     CREATE DATABASE <lease>_s_<name> TEMPLATE <lease> (pglease.snapshot_ddl), pglease.note_snapshot,
--     and pglease.reopen_after_fork whatever happened;
--   restore: CREATE DATABASE <lease>_r TEMPLATE <snapshot> owned by the lease (pglease.restore_ddl:
--     the lease keeps working meanwhile), pglease.close_for_fork, then pglease.swap_restored_database
--     renames the two in one transaction (no moment without a database of the lease's name, which
--     cleanup-orphans would take for a lease whose database was dropped) and queues the old one's
--     drop; pglease.reopen_after_fork whatever happened.
-- Catalog changes only: no lease code runs as pglease. The service never connects to a lease's
-- database or to a snapshot (closed to all connections).

-- A lease keeps at most this many snapshots (each is a full copy on disk: ~7.5 MB and its data).
CREATE OR REPLACE FUNCTION pglease.max_snapshots_per_lease()
RETURNS int LANGUAGE sql IMMUTABLE AS $$ SELECT 4 $$;

CREATE OR REPLACE FUNCTION pglease.snapshot_database_name(p_lease pglease.leases, p_name text)
RETURNS name LANGUAGE sql IMMUTABLE AS $$ SELECT (p_lease.schema_name || '_s_' || p_name)::name $$;

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
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
  WITH gone AS (
    DELETE FROM pglease.lease_snapshots WHERE lease_id = p_lease_id AND (p_name IS NULL OR name = p_name)
    RETURNING database_name
  ), queued AS (
    INSERT INTO pglease.database_drops (database_name, roles)
    SELECT database_name, '{}' FROM gone
    ON CONFLICT (database_name) DO NOTHING
    RETURNING 1
  )
  SELECT count(*)::int FROM gone
$$;

-- pglease.restore_ddl: the CREATE DATABASE of a lease's next database, a copy of its snapshot
-- p_name, owned by the lease and closed to connections until the swap.
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
  RETURN format('CREATE DATABASE %I OWNER %I TEMPLATE %I ALLOW_CONNECTIONS false',
                v_lease.schema_name || '_r', v_lease.role_name, v_snapshot.database_name);
END
$$;

-- pglease.swap_restored_database: in one transaction, the lease's database (closed, its sessions
-- ended) is renamed <lease>_old and queued for its drop, and the restored copy <lease>_r takes its
-- name, opened to the lease's roles only (a new database grants PUBLIC CONNECT: revoked).
CREATE OR REPLACE FUNCTION pglease.swap_restored_database(p_lease_id uuid)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_lease pglease.leases;
BEGIN
  SELECT * INTO v_lease FROM pglease.leases WHERE id = p_lease_id AND state = 'active' AND kind = 'database' FOR SHARE;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'no active database lease %', p_lease_id USING ERRCODE = 'PGLTG';
  END IF;
  EXECUTE format('ALTER DATABASE %I RENAME TO %I', v_lease.schema_name, v_lease.schema_name || '_old');
  EXECUTE format('ALTER DATABASE %I RENAME TO %I', v_lease.schema_name || '_r', v_lease.schema_name);
  EXECUTE format('REVOKE ALL ON DATABASE %I FROM PUBLIC', v_lease.schema_name);
  EXECUTE format('GRANT CONNECT, TEMPORARY ON DATABASE %I TO %I', v_lease.schema_name, v_lease.auth_role);
  EXECUTE format('ALTER DATABASE %I ALLOW_CONNECTIONS true', v_lease.schema_name);
  INSERT INTO pglease.database_drops (database_name, roles) VALUES (v_lease.schema_name || '_old', '{}')
  ON CONFLICT (database_name) DO NOTHING;
  -- every pglease process drops what it cached of the lease's schema (src/rest/notifications.ts):
  -- the restored database may hold other tables than the one it replaces
  PERFORM pg_notify('pglease_rest_ddl', v_lease.schema_name);
  PERFORM pg_notify('pglease_lease_change', v_lease.id::text);
END
$$;

-- pglease.discard_restore: after a restore that failed before the swap (or a crash during one):
-- its copy <lease>_r, if it was made, is queued for its drop.
CREATE OR REPLACE FUNCTION pglease.discard_restore(p_lease_id uuid)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_lease pglease.leases;
BEGIN
  SELECT * INTO v_lease FROM pglease.leases WHERE id = p_lease_id AND kind = 'database';
  IF FOUND AND EXISTS (SELECT 1 FROM pg_database WHERE datname = v_lease.schema_name || '_r') THEN
    INSERT INTO pglease.database_drops (database_name, roles) VALUES (v_lease.schema_name || '_r', '{}')
    ON CONFLICT (database_name) DO NOTHING;
  END IF;
END
$$;
