-- Forks made in advance (migrations/0027_ready-forks.sql), driven by src/leases/ready-forks.ts.
--
-- A fork of a lease as its last snapshot or restore left it takes that snapshot's prepared copy
-- (sql/snapshots.sql, pglease.fork_from_prepared_copy), but the copy is still the source's: the
-- fork's roles are made, and the copy handed over to them (sql/handover/fork.sql), while the fork
-- waits: ~40 ms of handover and ~15 ms of roles of a ~125 ms fork on a slow 2-core machine
-- (bench:fork-phases --from-snapshot). A test suite that seeds a lease, snapshots it and forks it
-- for each worker asks for the same copy again and again. So after such a fork, the process makes
-- the next one in advance, in the background: a parked database lease (its roles, and the JWT roles
-- the source declared), its database a copy of the snapshot's database (no session of the source
-- is touched: a snapshot is a database of its own, closed to all), handed over to its roles. The
-- next fork of the source, if the source still holds that snapshot's contents (the copy mark, read
-- in the fork's copy bracket as for a prepared copy), takes it: its answer is an UPDATE, with
-- no CREATE DATABASE, no new role and no handover on its way.
--
-- A ready fork is its holder's alone (its password is in that process's memory only), expires
-- after its hold unless taken (pglease.provision_parked's expiry: the reaper drops it, database and
-- all), and is not taken when the snapshot was replaced or deleted, or when the source declared
-- another set of JWT roles since it was made. Catalog changes only: nothing here runs lease code.

-- pglease.ready_fork_ddl: the CREATE DATABASE of ready fork p_fork (a parked database lease):
-- a copy of source p_source's snapshot p_snapshot, owned by the fork's login role and closed to
-- connections; with the moment the snapshot was taken, which pglease.park_ready_fork checks again.
-- PGLTG when the source is no active database lease or the fork is not parked; PGLSN when the
-- source has no such snapshot.
CREATE OR REPLACE FUNCTION pglease.ready_fork_ddl(p_source uuid, p_fork uuid, p_snapshot text,
                                                  OUT statement text, OUT snapshot_at timestamptz)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_source   pglease.leases;
  v_fork     pglease.leases;
  v_snapshot pglease.lease_snapshots;
BEGIN
  SELECT * INTO v_source FROM pglease.leases WHERE id = p_source AND state = 'active' AND kind = 'database';
  SELECT * INTO v_fork FROM pglease.leases WHERE id = p_fork AND state = 'provisioning' AND kind = 'database';
  IF v_source.id IS NULL OR v_fork.id IS NULL THEN
    RAISE EXCEPTION 'no active database lease % or no parked fork %', p_source, p_fork USING ERRCODE = 'PGLTG';
  END IF;
  SELECT * INTO v_snapshot FROM pglease.lease_snapshots WHERE lease_id = p_source AND name = p_snapshot;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'the lease has no snapshot %', p_snapshot USING ERRCODE = 'PGLSN';
  END IF;
  statement := format('CREATE DATABASE %I OWNER %I TEMPLATE %I ALLOW_CONNECTIONS false',
                      v_fork.schema_name, v_fork.role_name, v_snapshot.database_name);
  snapshot_at := v_snapshot.created_at;
END
$$;

-- pglease.park_ready_fork: records ready fork p_fork, handed over, as p_holder's, for forks of
-- p_source as its snapshot p_snapshot (taken at p_snapshot_at) left it. False, and nothing
-- recorded, when that snapshot is no longer the one copied (replaced or deleted meanwhile), the
-- source no longer an active database lease, or the fork no longer parked: the caller drops it.
CREATE OR REPLACE FUNCTION pglease.park_ready_fork(p_fork uuid, p_holder uuid, p_source uuid, p_snapshot text,
                                                   p_snapshot_at timestamptz)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_fork pglease.leases;
BEGIN
  SELECT * INTO v_fork FROM pglease.leases WHERE id = p_fork AND state = 'provisioning' AND kind = 'database' FOR UPDATE;
  IF NOT FOUND
     OR NOT EXISTS (SELECT 1 FROM pglease.leases WHERE id = p_source AND state = 'active' AND kind = 'database')
     OR NOT EXISTS (SELECT 1 FROM pglease.lease_snapshots
                     WHERE lease_id = p_source AND name = p_snapshot AND created_at = p_snapshot_at) THEN
    RETURN false;
  END IF;
  INSERT INTO pglease.ready_forks (lease_id, holder, source_id, snapshot_name, snapshot_at, user_roles)
  VALUES (p_fork, p_holder, p_source, p_snapshot, p_snapshot_at, v_fork.user_roles);
  RETURN true;
END
$$;

-- pglease.take_ready_fork: in a fork's copy bracket (the source closed, its sessions ended), when
-- the source's database still holds its marked snapshot's contents (pglease.copy_mark_holds) and
-- ready fork p_fork of p_holder is a copy of that very snapshot, with the JWT roles the source has
-- declared now and a hold of at least 10 s left, the ready fork becomes the fork: no longer ready,
-- with the source's REST settings as of now. Answers the snapshot's name (NULL otherwise), and
-- whether the ready fork can never be taken (stale: its snapshot replaced or deleted, other JWT
-- roles declared since, its hold nearly over): the caller drops it then. One that is merely not the
-- source's contents now is kept, for a later fork after a restore from its snapshot.
DROP FUNCTION IF EXISTS pglease.take_ready_fork(uuid, uuid, uuid);
CREATE OR REPLACE FUNCTION pglease.take_ready_fork(p_source uuid, p_fork uuid, p_holder uuid, OUT snapshot text, OUT stale boolean)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_source pglease.leases;
  v_held   pglease.lease_snapshots;
  v_ready  pglease.ready_forks;
BEGIN
  SELECT * INTO v_source FROM pglease.leases WHERE id = p_source AND state = 'active' AND kind = 'database';
  SELECT r.* INTO v_ready
    FROM pglease.ready_forks r JOIN pglease.leases f ON f.id = r.lease_id
   WHERE r.lease_id = p_fork AND r.holder = p_holder AND r.source_id = p_source
     AND f.state = 'provisioning' AND f.kind = 'database' AND f.expires_at > now() + interval '10 seconds'
     FOR UPDATE OF r, f;
  stale := v_source.id IS NULL OR v_ready.lease_id IS NULL
           OR v_ready.user_roles IS DISTINCT FROM v_source.user_roles
           OR NOT EXISTS (SELECT 1 FROM pglease.lease_snapshots
                           WHERE lease_id = p_source AND name = v_ready.snapshot_name AND created_at = v_ready.snapshot_at);
  IF stale THEN
    RETURN;
  END IF;
  v_held := pglease.held_snapshot(p_source);
  IF v_held.lease_id IS NULL OR v_held.name <> v_ready.snapshot_name OR v_held.created_at <> v_ready.snapshot_at THEN
    RETURN;
  END IF;
  DELETE FROM pglease.ready_forks WHERE lease_id = p_fork;
  UPDATE pglease.leases SET api_settings = v_source.api_settings WHERE id = p_fork;
  snapshot := v_ready.snapshot_name;
END
$$;

-- pglease.hold_ready_forks: the holder's heartbeat. Moves the expiry of p_holder's ready forks made
-- less than p_max_age ago to now() + p_hold, and answers the ids of those it extended: the holder
-- forgets the others, which expire (within one hold of its last heartbeat) and are reaped. A
-- holder that died leaves ready forks that are gone within one hold, as a warm pool's leases.
CREATE OR REPLACE FUNCTION pglease.hold_ready_forks(p_holder uuid, p_hold interval, p_max_age interval)
RETURNS SETOF uuid
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  RETURN QUERY
  UPDATE pglease.leases l SET expires_at = now() + p_hold
    FROM pglease.ready_forks r
   WHERE r.lease_id = l.id AND r.holder = p_holder AND l.state = 'provisioning'
     AND r.made_at > now() - p_max_age
  RETURNING l.id;
END
$$;

-- pglease.fork_snapshot_ddl: in a fork's copy bracket, when the source's database still holds its
-- marked snapshot's contents but no copy of it is ready (the prepared copy taken by the fork before,
-- as when several forks of a seeded lease come at once, one per test worker), the CREATE DATABASE
-- of the parked fork from the snapshot's own database, and the snapshot's name: the copy then holds
-- what the source held at this bracket, and it is made after the bracket, the source open again
-- (a snapshot is closed to all: no session to end). NULLs when the mark does not hold: the fork
-- copies the live database, in the bracket.
CREATE OR REPLACE FUNCTION pglease.fork_snapshot_ddl(p_source uuid, p_fork uuid, OUT snapshot text, OUT statement text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_fork     pglease.leases;
  v_snapshot pglease.lease_snapshots;
BEGIN
  SELECT * INTO v_fork FROM pglease.leases WHERE id = p_fork AND state = 'provisioning' AND kind = 'database';
  v_snapshot := pglease.held_snapshot(p_source);
  IF v_fork.id IS NULL OR v_snapshot.lease_id IS NULL
     OR NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = v_snapshot.database_name) THEN
    RETURN;
  END IF;
  snapshot := v_snapshot.name;
  statement := format('CREATE DATABASE %I OWNER %I TEMPLATE %I ALLOW_CONNECTIONS false',
                      v_fork.schema_name, v_fork.role_name, v_snapshot.database_name);
END
$$;
