-- Fork of a database lease (issue 14): a new lease holding a copy of a lease's objects and data at
-- one moment, owned by the new lease's roles. The copy is Postgres's own: CREATE DATABASE fork
-- TEMPLATE source, block by block through the WAL (WAL_LOG), about as fast as making an empty
-- lease database (the template weighs ~6.6 MB; a lease's own data adds to that).
--
-- The steps, driven by src/leases/lease-fork.ts, since CREATE DATABASE cannot run in a function:
--   1. the fork is provisioned parked (pglease.provision_parked, kind database), and gets the JWT
--      roles the source declared (pglease.fork_declared_roles), while step 2 runs;
--   2. pglease.close_for_fork: the source refuses new connections and its sessions are ended
--      (CREATE DATABASE ... TEMPLATE refuses while any session is connected to the template: there
--      is no copy without this); the answer says how many were ended;
--   3. CREATE DATABASE (pglease.fork_database_ddl), pglease.open_lease_database for the fork's
--      roles, the source's database lent to the service (pglease.lend_source_database), and in the
--      fork's database sql/handover/fork.sql hands what the source's roles own or were granted to
--      the fork's roles (GRANT, ALTER DEFAULT PRIVILEGES, ALTER POLICY, REASSIGN OWNED, REVOKE), so
--      that nothing there refers to the source's roles, which may end first;
--   4. whatever happened: pglease.return_source_database and pglease.reopen_after_fork: the source
--      is closed for the few tens of ms of the copy and the handover only;
--   5. activation, as for any database lease; no first session as the fork's own role (what a new
--      database lease's sets is in the copy, handed over).
-- Every statement here, and the handover, changes catalogs only: no lease code runs as pglease
-- (test/lease-code-privileges.test.ts).

-- pglease.close_for_fork: closes an active database lease's database to new connections and ends
-- its sessions (waiting until they have exited), for a fork, a snapshot or a restore (the copy
-- bracket, src/leases/copy-bracket.ts). Returns how many were ended; NULL when the lease is not an
-- active database lease (or its database is gone).
--   - the bracket is recorded in pglease.closed_lease_databases in the same transaction, with the
--     calling backend, which holds it until pglease.reopen_after_fork: a crash in between leaves
--     the row and a backend that is gone, and pglease.reopen_abandoned_closes reopens the lease;
--   - one bracket per lease: a second one while the first's backend lives is refused (55006, the
--     lease is busy) rather than reopening the database under the first one's copy.
CREATE OR REPLACE FUNCTION pglease.close_for_fork(p_source uuid)
RETURNS int
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_lease    pglease.leases;
  v_sessions int[];
  v_taken    int;
BEGIN
  SELECT * INTO v_lease FROM pglease.leases WHERE id = p_source AND state = 'active' AND kind = 'database' FOR SHARE;
  IF NOT FOUND OR NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = v_lease.schema_name) THEN
    RETURN NULL;
  END IF;
  INSERT INTO pglease.closed_lease_databases AS c (lease_id, backend_pid, backend_start)
  SELECT p_source, a.pid, a.backend_start FROM pg_stat_activity a WHERE a.pid = pg_backend_pid()
  ON CONFLICT (lease_id) DO UPDATE SET backend_pid = excluded.backend_pid, backend_start = excluded.backend_start, closed_at = now()
   WHERE NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.pid = c.backend_pid AND a.backend_start = c.backend_start);
  GET DIAGNOSTICS v_taken = ROW_COUNT;
  IF v_taken = 0 THEN
    RAISE EXCEPTION 'lease % is being copied by another request', p_source USING ERRCODE = '55006';
  END IF;
  EXECUTE format('ALTER DATABASE %I ALLOW_CONNECTIONS false', v_lease.schema_name);
  -- client sessions only, and none of a superuser (an operator's: the service may not end it, and
  -- CREATE DATABASE then answers 55006 after 5 s). An autovacuum worker (a superuser's backend)
  -- was ended here too, and refused: 6 forks in 187 answered 500 under load, right after the
  -- lease's first tables were made; CREATE DATABASE ends autovacuum workers on its template itself.
  SELECT array_agg(a.pid) INTO v_sessions
    FROM pg_stat_activity a
   WHERE a.datname = v_lease.schema_name AND a.pid <> pg_backend_pid() AND a.backend_type = 'client backend'
     AND NOT EXISTS (SELECT 1 FROM pg_roles r WHERE r.oid = a.usesysid AND r.rolsuper);
  PERFORM pglease.end_sessions(v_sessions);
  RETURN coalesce(cardinality(v_sessions), 0);
END
$$;

-- pglease.reopen_after_fork: lets the source's roles connect again, and ends the bracket (its row
-- in pglease.closed_lease_databases). Safe to call when the source ended meanwhile: its database
-- is then being dropped, and stays closed.
CREATE OR REPLACE FUNCTION pglease.reopen_after_fork(p_source uuid)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_lease pglease.leases;
BEGIN
  DELETE FROM pglease.closed_lease_databases WHERE lease_id = p_source;
  SELECT * INTO v_lease FROM pglease.leases WHERE id = p_source AND state = 'active' AND kind = 'database' FOR SHARE;
  IF FOUND AND EXISTS (SELECT 1 FROM pg_database WHERE datname = v_lease.schema_name AND NOT datallowconn) THEN
    EXECUTE format('ALTER DATABASE %I ALLOW_CONNECTIONS true', v_lease.schema_name);
  END IF;
END
$$;

-- pglease.reopen_abandoned_closes: finishes the brackets whose backend is gone (pglease killed or
-- its connection lost between close and reopen): the lease's database is given back to its login
-- role (a fork lends it to the service) and reopened. Run by the reaper; answers how many.
--   - a bracket whose backend lives is left alone: its copy may be under way;
--   - rows are taken FOR UPDATE SKIP LOCKED, so two processes never finish one twice.
CREATE OR REPLACE FUNCTION pglease.reopen_abandoned_closes()
RETURNS int
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_lease_id uuid;
  v_reopened int := 0;
BEGIN
  FOR v_lease_id IN
    SELECT c.lease_id FROM pglease.closed_lease_databases c
     WHERE NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.pid = c.backend_pid AND a.backend_start = c.backend_start)
       FOR UPDATE SKIP LOCKED
  LOOP
    PERFORM pglease.return_source_database(v_lease_id);
    PERFORM pglease.reopen_after_fork(v_lease_id);
    v_reopened := v_reopened + 1;
  END LOOP;
  RETURN v_reopened;
END
$$;

-- pglease.fork_database_ddl: the CREATE DATABASE of a parked fork, from the source's database,
-- closed to connections until pglease.open_lease_database.
CREATE OR REPLACE FUNCTION pglease.fork_database_ddl(p_source uuid, p_fork uuid)
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_source pglease.leases;
  v_fork   pglease.leases;
BEGIN
  SELECT * INTO v_source FROM pglease.leases WHERE id = p_source AND state = 'active' AND kind = 'database';
  SELECT * INTO v_fork FROM pglease.leases WHERE id = p_fork AND state = 'provisioning' AND kind = 'database';
  IF v_source.id IS NULL OR v_fork.id IS NULL THEN
    RAISE EXCEPTION 'no active database lease % or no parked fork %', p_source, p_fork USING ERRCODE = 'PGLTG';
  END IF;
  RETURN format('CREATE DATABASE %I OWNER %I TEMPLATE %I ALLOW_CONNECTIONS false',
                v_fork.schema_name, v_fork.role_name, v_source.schema_name);
END
$$;

-- pglease.fork_declared_roles: gives a parked fork the JWT roles its source declared
-- (<fork>_<name>, made by pglease.create_declared_role as pglease.declare_lease_role makes them),
-- and answers the map of the source's roles to the fork's, for the
-- handover (sql/handover/fork.sql): {"<source login>": "<fork login>", ...}.
CREATE OR REPLACE FUNCTION pglease.fork_declared_roles(p_source uuid, p_fork uuid)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_source pglease.leases;
  v_fork   pglease.leases;
  v_name   text;
  v_role   text;
  v_map    jsonb;
BEGIN
  SELECT * INTO v_source FROM pglease.leases WHERE id = p_source AND state = 'active' AND kind = 'database';
  SELECT * INTO v_fork FROM pglease.leases WHERE id = p_fork AND state = 'provisioning' AND kind = 'database' FOR UPDATE;
  IF v_source.id IS NULL OR v_fork.id IS NULL THEN
    RAISE EXCEPTION 'no active database lease % or no parked fork %', p_source, p_fork USING ERRCODE = 'PGLTG';
  END IF;
  v_map := jsonb_build_object(v_source.role_name, v_fork.role_name, v_source.anon_role, v_fork.anon_role,
                              v_source.auth_role, v_fork.auth_role);
  FOREACH v_name IN ARRAY v_source.user_roles LOOP
    v_role := v_fork.role_name || '_' || v_name;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = v_role) THEN
      PERFORM pglease.create_declared_role(v_fork, v_role);
    END IF;
    v_map := v_map || jsonb_build_object(v_source.role_name || '_' || v_name, v_role);
  END LOOP;
  UPDATE pglease.leases SET user_roles = v_source.user_roles, api_settings = v_source.api_settings WHERE id = p_fork;
  RETURN v_map;
END
$$;

-- pglease.lend_source_database: makes the (closed) source database the service's for the
-- handover (REASSIGN OWNED BY the source's login role would otherwise give it to the fork too:
-- it takes the databases a role owns). pglease.return_source_database gives it back.
CREATE OR REPLACE FUNCTION pglease.lend_source_database(p_source uuid)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_lease pglease.leases;
BEGIN
  SELECT * INTO v_lease FROM pglease.leases WHERE id = p_source AND kind = 'database';
  IF FOUND AND EXISTS (SELECT 1 FROM pg_database WHERE datname = v_lease.schema_name) THEN
    EXECUTE format('ALTER DATABASE %I OWNER TO %I', v_lease.schema_name, current_user);
  END IF;
END
$$;

CREATE OR REPLACE FUNCTION pglease.return_source_database(p_source uuid)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_lease pglease.leases;
BEGIN
  SELECT * INTO v_lease FROM pglease.leases WHERE id = p_source AND kind = 'database';
  IF FOUND AND EXISTS (SELECT 1 FROM pg_database WHERE datname = v_lease.schema_name)
     AND EXISTS (SELECT 1 FROM pg_roles WHERE rolname = v_lease.role_name) THEN
    EXECUTE format('ALTER DATABASE %I OWNER TO %I', v_lease.schema_name, v_lease.role_name);
  END IF;
END
$$;

-- pglease.note_fork: notes the source in a fork's 'created' event (the history says where a
-- lease's data came from).
CREATE OR REPLACE FUNCTION pglease.note_fork(p_fork uuid, p_source uuid, p_sessions_ended int)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
  UPDATE pglease.lease_events
     SET detail = coalesce(detail, '{}'::jsonb) || jsonb_build_object('forked_from', p_source, 'source_sessions_ended', p_sessions_ended)
   WHERE lease_id = p_fork AND kind = 'created';
$$;
