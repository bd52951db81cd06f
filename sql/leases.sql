-- Leases: provision, renew and drop. These functions are the product's core inside Postgres;
-- the HTTP layer only validates input and calls them. Every identifier they splice into DDL goes
-- through format('%I') and every value through format('%L') or a bind parameter.
--
-- The rule for every function of sql/ (docs/security.md): they run as the service role, so they never
-- plan or execute anything a lease owns (a query on its tables or views, a call of its functions, a
-- cast to its types): they read catalogs, and DDL that only drops or grants. Work on a lease's objects
-- runs in a session that logged in as the lease (src/leases/lease-session.ts).

-- pglease.register_host: records (or refreshes) the host this database runs on and returns its id.
-- Called at every start, so changing PGLEASE_PUBLIC_PG_HOST takes effect for new leases.
CREATE OR REPLACE FUNCTION pglease.register_host(p_name text, p_public_host text, p_public_port int)
RETURNS int
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
  INSERT INTO pglease.hosts AS h (name, public_host, public_port, database_name)
  VALUES (p_name, p_public_host, p_public_port, current_database())
  ON CONFLICT (name) DO UPDATE
    SET public_host = excluded.public_host, public_port = excluded.public_port, updated_at = now()
    WHERE (h.public_host, h.public_port) IS DISTINCT FROM (excluded.public_host, excluded.public_port)
  RETURNING id
$$;

-- (replaced by pglease.lease_groups and pglease.lease_group_for)
DROP FUNCTION IF EXISTS pglease.lease_group();

-- pglease.lease_groups: the NOLOGIN roles through which this database's lease roles get CONNECT:
-- the first migration's single group, then the sixteen of migration 0005. Membership of one of
-- them is what marks a role (roles are shared by the whole cluster) as one of this database's.
CREATE OR REPLACE FUNCTION pglease.lease_groups()
RETURNS text[]
LANGUAGE sql STABLE
AS $$
  SELECT array_prepend(left(current_database(), 56) || '_leases',
                       array_agg(left(current_database(), 50) || '_leases_' || n ORDER BY n))
    FROM generate_series(0, 15) AS n
$$;

-- pglease.lease_group_for: the group a new lease joins, picked by its random name (the first hex
-- digit), so that concurrent provisions rarely lock the same group.
CREATE OR REPLACE FUNCTION pglease.lease_group_for(p_base text)
RETURNS text
LANGUAGE sql STABLE
AS $$ SELECT left(current_database(), 50) || '_leases_' || ('x' || lpad(substr(p_base, 7, 1), 8, '0'))::bit(32)::int $$;

-- pglease.lease_role_names: the three roles of a lease, derived from its base name in one place.
CREATE OR REPLACE FUNCTION pglease.lease_role_names(p_base text, OUT login_role text, OUT anon_role text, OUT auth_role text)
LANGUAGE sql IMMUTABLE
AS $$ SELECT p_base, p_base || '_anon', p_base || '_auth' $$;

-- pglease.database_lease_group: the role that marks the roles of this database's database leases
-- (migrations/0011_database-leases.sql). It grants nothing, CONNECT on this database included.
CREATE OR REPLACE FUNCTION pglease.database_lease_group()
RETURNS text
LANGUAGE sql STABLE
AS $$ SELECT left(current_database(), 53) || '_dbleases' $$;

-- pglease.lease_template_database: the database every database lease is cloned from (owned by the
-- service role, closed to PUBLIC; src/db/lease-template.ts prepares it).
CREATE OR REPLACE FUNCTION pglease.lease_template_database()
RETURNS text
LANGUAGE sql STABLE
AS $$ SELECT left(current_database(), 48) || '_lease_template' $$;

-- pglease.may_call_admin: whether the current role may call the superuser's function
-- pglease_admin.<p_function> (sql/admin/superuser.sql, installed and granted to the service by
-- src/db/superuser-setup.ts when pglease is given a superuser). Catalogs only: without a superuser,
-- the schema may be missing, or there and closed to the service. Asked once per session and
-- function (a setting of the session remembers it): creates and releases ask at every call, and
-- every statement of theirs is planned again at every call (creating or dropping a schema resets
-- every cached plan in every session of the database), so the query was 0.2 ms of each. The answer
-- changes only when a superuser sets pglease up; a session that asked before uses the service's own
-- statements, which do the same work more slowly.
CREATE OR REPLACE FUNCTION pglease.may_call_admin(p_function name)
RETURNS boolean
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_setting text := 'pglease.may_call_' || p_function;
  v_known   text := current_setting(v_setting, true);
BEGIN
  IF v_known IN ('true', 'false') THEN
    RETURN v_known::boolean;
  END IF;
  -- the privileges are asked of the one function found (OFFSET 0 keeps them out of the scans): asked
  -- of another namespace, one the service holds no grant on, Postgres looks for one through the
  -- service's memberships, every live lease's roles (0.4 ms a create with 1,500 live leases)
  v_known := coalesce((SELECT bool_or(has_schema_privilege(f.pronamespace, 'USAGE') AND has_function_privilege(f.oid, 'EXECUTE'))
                         FROM (SELECT p.oid, p.pronamespace FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                                WHERE n.nspname = 'pglease_admin' AND p.proname = p_function OFFSET 0) f), false)::text;
  PERFORM set_config(v_setting, v_known, false);
  RETURN v_known::boolean;
END
$$;

-- pglease.provision: creates a lease, all or nothing.
--
-- In one transaction it records the lease and creates
--   * the schema, owned by the lease's login role (same name as the schema);
--   * the login role: no superuser, no CREATEDB/CREATEROLE/REPLICATION/BYPASSRLS, a connection
--     limit, search_path = its schema, statement and idle-in-transaction timeouts;
--   * the anonymous role (NOLOGIN, no privileges but USAGE on the schema, so one GRANT on a table
--     publishes it);
--   * the lease's authenticator (LOGIN NOINHERIT, member of the two roles above and nothing else),
--     which the REST API logs in as. One authenticator per lease rather than per host because
--     SET ROLE is checked against the *session* user: a host-wide authenticator would let any
--     lease's own function or view run set_config('role', '<another lease>') and read its data.
-- A failure anywhere rolls everything back, so a half-made lease cannot exist.
--
-- Passwords arrive as SCRAM verifiers computed by the caller: the secret never reaches the server
-- or its logs.
-- (p_group, then p_kind added: the signature without them would make calls ambiguous)
DROP FUNCTION IF EXISTS pglease.provision(text, text, text, bytea, interval, text, inet, int, int, text, text, int);
DROP FUNCTION IF EXISTS pglease.provision(text, text, text, bytea, interval, text, inet, int, int, text, text, int, text);
CREATE OR REPLACE FUNCTION pglease.provision(
  p_base              text,          -- schema and login role name, 'lease_' + 16 hex digits
  p_login_verifier    text,
  p_auth_verifier     text,
  p_token_hash        bytea,
  p_ttl               interval,      -- NULL: never expires
  p_label             text,
  p_client_ip         inet,
  p_host_id           int,
  p_connection_limit  int,
  p_statement_timeout text,
  p_idle_timeout      text,
  p_auth_connections  int DEFAULT 10,
  -- the lease group to join; NULL: the one its name points at (pglease.lease_group_for)
  p_group             text DEFAULT NULL,
  -- 'schema', or 'database': then no schema here; the caller creates the database next, outside
  -- this transaction (CREATE DATABASE cannot run in one), and the lease must be parked until then
  p_kind              text DEFAULT 'schema'
) RETURNS pglease.leases
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_lease   pglease.leases;
BEGIN
  -- the caller picks the name (its authenticator password derives from it); it must still look
  -- like one of ours, so that this function can never be pointed at an existing role
  IF p_base !~ '^lease_[0-9a-f]{16}$' THEN
    RAISE EXCEPTION 'invalid lease name %', p_base USING ERRCODE = '22023';
  END IF;
  -- tells the DDL event trigger (sql/rest.sql) that no cache can hold this lease yet
  PERFORM set_config('pglease.provisioning', 'on', true);
  IF p_ttl IS NOT NULL AND p_ttl <= interval '0' THEN
    RAISE EXCEPTION 'lease ttl must be positive' USING ERRCODE = '22023';
  END IF;
  IF p_kind NOT IN ('schema', 'database') THEN
    RAISE EXCEPTION 'a lease is of kind schema or database, not %', p_kind USING ERRCODE = '22023';
  END IF;

  -- the roles, grants and schema (sql/lease-roles.sql): as a superuser when pglease was given one,
  -- since a superuser's checks do not walk the service's memberships in every lease's roles
  IF pglease.may_call_admin('make_lease_roles') THEN
    PERFORM pglease_admin.make_lease_roles(p_base, p_login_verifier, p_auth_verifier, p_connection_limit, p_auth_connections,
                                           p_statement_timeout, p_idle_timeout, p_group, p_kind);
  ELSE
    PERFORM pglease.make_lease_roles(p_base, p_login_verifier, p_auth_verifier, p_connection_limit, p_auth_connections,
                                     p_statement_timeout, p_idle_timeout, p_group, p_kind);
  END IF;

  -- the row and its first event in one statement: every statement of a provision is parsed and
  -- planned again at each call (its CREATE SCHEMA made every session drop its cached plans); the
  -- role names come from pglease.lease_role_names, inlined into this statement
  WITH lease AS (
    INSERT INTO pglease.leases (label, host_id, schema_name, role_name, anon_role, auth_role, token_hash,
                                state, client_ip, expires_at, kind)
    SELECT p_label, p_host_id, p_base, r.login_role, r.anon_role, r.auth_role, p_token_hash,
           CASE p_kind WHEN 'schema' THEN 'active' ELSE 'provisioning' END::pglease.lease_state, p_client_ip, now() + p_ttl, p_kind
      FROM pglease.lease_role_names(p_base) r
    RETURNING *
  ), event AS (
    INSERT INTO pglease.lease_events (lease_id, kind, client_ip, detail)
    SELECT lease.id, 'created', p_client_ip,
           jsonb_build_object('ttl_seconds', extract(epoch FROM p_ttl)::bigint, 'label', p_label, 'kind', p_kind)
      FROM lease
  )
  SELECT * INTO v_lease FROM lease;
  -- later DDL of this transaction (a template's seed on a lease already known) notifies again
  PERFORM set_config('pglease.provisioning', 'off', true);
  RETURN v_lease;
END
$$;

-- pglease.lease_database_ddl: the CREATE DATABASE of a parked database lease (src/leases/lease-store.ts
-- runs it: it cannot run in a function, which is always in a transaction). Its database is a clone
-- of the lease template, owned by its login role, and refuses connections until
-- pglease.open_lease_database has set who may connect. WAL_LOG (the default since Postgres 15)
-- copies the template block by block through the WAL; FILE_COPY would force two checkpoints per
-- create, which under a stream of creates costs every session on the server.
CREATE OR REPLACE FUNCTION pglease.lease_database_ddl(p_lease_id uuid)
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_lease pglease.leases;
BEGIN
  SELECT * INTO v_lease FROM pglease.leases WHERE id = p_lease_id AND kind = 'database' AND state = 'provisioning';
  IF NOT FOUND THEN
    RAISE EXCEPTION 'no parked database lease %', p_lease_id USING ERRCODE = 'PGLTG';
  END IF;
  RETURN format('CREATE DATABASE %I OWNER %I TEMPLATE %I ALLOW_CONNECTIONS false',
                v_lease.schema_name, v_lease.role_name, pglease.lease_template_database());
END
$$;

-- pglease.open_lease_database: opens a parked database lease's new database to its own roles only:
-- PUBLIC loses CONNECT and TEMPORARY (a new database grants them, whatever its template's ACL), the
-- authenticator gets CONNECT (the login role has it as owner), then connections are allowed. One
-- transaction, catalogs only.
CREATE OR REPLACE FUNCTION pglease.open_lease_database(p_lease_id uuid)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_lease pglease.leases;
BEGIN
  SELECT * INTO v_lease FROM pglease.leases WHERE id = p_lease_id AND kind = 'database' AND state = 'provisioning' FOR SHARE;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'no parked database lease %', p_lease_id USING ERRCODE = 'PGLTG';
  END IF;
  EXECUTE format('REVOKE ALL ON DATABASE %I FROM PUBLIC', v_lease.schema_name);
  EXECUTE format('GRANT CONNECT, TEMPORARY ON DATABASE %I TO %I', v_lease.schema_name, v_lease.auth_role);
  EXECUTE format('ALTER DATABASE %I ALLOW_CONNECTIONS true', v_lease.schema_name);
END
$$;

-- pglease.backend_sessions: every session of the server (client backends, background workers) by
-- pid and role oid, read from the statistics' per-backend functions, which check no privilege:
-- pg_stat_activity (pg_stat_get_activity) asks, for each row, whether the current role has the
-- privileges of the row's role, and for the service role, a member of every live lease's roles,
-- the first such question after any create or release walks all those memberships (1-3 ms at
-- 1,000 live leases, at every release and observer pass under a stream of creates). Nothing
-- else of a session is read here: its query, state and times stay behind that check.
CREATE OR REPLACE FUNCTION pglease.backend_sessions(OUT pid int, OUT role_oid oid, OUT database_oid oid)
RETURNS SETOF record
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT pg_stat_get_backend_pid(s), pg_stat_get_backend_userid(s), pg_stat_get_backend_dbid(s)
    FROM pg_stat_get_backend_idset() s
$$;

-- pglease.end_sessions: terminates the sessions p_pids (NULL: none) and waits until they have
-- exited, at most about 5 s, so that none of them still holds a lock on what the caller changes
-- next. All are signalled at once and awaited together: pg_terminate_backend(pid, timeout) one by
-- one waits for each exit in turn (a tenth of a second each on a slow machine, two seconds for a
-- lease with twenty connections).
CREATE OR REPLACE FUNCTION pglease.end_sessions(p_pids int[])
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  IF p_pids IS NULL THEN
    RETURN;
  END IF;
  PERFORM pg_terminate_backend(s) FROM unnest(p_pids) s;
  FOR i IN 1..1000 LOOP
    PERFORM pg_stat_clear_snapshot(); -- pg_stat_activity is read once per transaction otherwise
    EXIT WHEN NOT EXISTS (SELECT 1 FROM pglease.backend_sessions() b WHERE b.pid = ANY (p_pids));
    PERFORM pg_sleep(0.005);
  END LOOP;
END
$$;

-- pglease.drop_lease_objects: removes everything a lease owns on the host: its sessions, schema,
-- objects it owns elsewhere in this database (large objects, temp objects), its three roles and
-- the roles it declared for its JWTs (pglease.declare_lease_role, sql/auth.sql).
-- Tolerates parts that are already gone, so a retry after a partial failure completes the job.
CREATE OR REPLACE FUNCTION pglease.drop_lease_objects(p_lease pglease.leases)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
-- a session that survives termination must not hold the drop forever
SET lock_timeout = '10s'
AS $$
DECLARE
  -- <login>_quota holds the schema and tables of a lease over its plan (sql/quota.sql); the roles
  -- the lease declared for its JWTs are <login>_<name> (sql/auth.sql)
  v_roles text[] := ARRAY[p_lease.auth_role, p_lease.anon_role, p_lease.role_name, p_lease.role_name || '_quota']
                     || ARRAY(SELECT p_lease.role_name || '_' || r FROM unnest(p_lease.user_roles) r);
  v_sessions int[];
  v_closed   boolean := false;
BEGIN
  -- Cut logins first, and wait until they have exited (pglease.end_sessions), so that no session
  -- of the lease holds a lock on its objects when we drop them. Also cut another lease's session that holds a lock on one of this lease's tables (leases may
  -- grant each other access): it would hold the drop up, and the lease past its end, as long as
  -- it liked.
  -- Sessions by backend id, pid and role oid (pglease.backend_sessions): pg_stat_activity checks the
  -- service's privileges on every row's role, which walks its memberships in every lease's roles
  -- after each create (release 10 ms with no live lease, 25 ms at 990: session 10). A session
  -- holding a lock on this lease's tables is then asked whether it is a live lease's: the
  -- rare case, looked up by the leases' unique indexes instead of hashing every live lease's roles.
  SELECT array_agg(b.pid) INTO v_sessions
    FROM pglease.backend_sessions() b
   WHERE b.pid <> pg_backend_pid()
     AND (b.role_oid = ANY (ARRAY(SELECT to_regrole(quote_ident(r))::oid FROM unnest(v_roles) r))
          OR (b.pid IN (SELECT l.pid FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
                         WHERE l.database = (SELECT d.oid FROM pg_database d WHERE d.datname = current_database())
                           AND c.relnamespace = to_regnamespace(quote_ident(p_lease.schema_name)))
              AND EXISTS (SELECT 1 FROM pglease.leases o
                           WHERE o.state IN ('active', 'provisioning')
                             AND (o.role_name = pg_get_userbyid(b.role_oid) OR o.auth_role = pg_get_userbyid(b.role_oid)))));
  PERFORM pglease.end_sessions(v_sessions);
  -- No login may start while the objects go: as a superuser when pglease was given one (the
  -- service's own ALTER ROLE walks its memberships in every lease's roles, sql/admin/superuser.sql).
  -- Altering the roles also resets this backend's cache of role memberships: under a storm of
  -- concurrent creates and drops it was seen stale here, without the service's membership in the
  -- lease's role (committed long before), and DROP SCHEMA refused with "must be owner of schema" in
  -- about 1 run in 2 of test/crash.test.ts.
  IF pglease.may_call_admin('close_lease_logins') THEN
    v_closed := pglease_admin.close_lease_logins(v_roles);
  END IF;
  IF NOT v_closed THEN
    FOR i IN 1..array_length(v_roles, 1) LOOP
      IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = v_roles[i] AND rolcanlogin) THEN
        EXECUTE format('ALTER ROLE %I NOLOGIN', v_roles[i]);
      END IF;
    END LOOP;
  END IF;

  -- A database lease's database cannot be dropped in a transaction: it is queued, and dropped
  -- with its roles after this transaction commits (pglease.finish_database_drop). Its sessions are
  -- ended and its roles cannot log in, so what is left is inert until then. A lease kept as a
  -- template (IS_TEMPLATE, which its owner may set) could not be dropped: that is undone here.
  IF p_lease.kind = 'database' OR EXISTS (SELECT 1 FROM pg_database d WHERE d.datname = p_lease.schema_name) THEN
    IF EXISTS (SELECT 1 FROM pg_database d WHERE d.datname = p_lease.schema_name AND d.datistemplate) THEN
      EXECUTE format('ALTER DATABASE %I IS_TEMPLATE false', p_lease.schema_name);
    END IF;
    -- its snapshots (sql/snapshots.sql) go first: they hold objects of its roles
    PERFORM pglease.queue_snapshot_drops(p_lease.id);
    INSERT INTO pglease.database_drops (database_name, roles) VALUES (p_lease.schema_name, v_roles)
    ON CONFLICT (database_name) DO NOTHING;
    RETURN;
  END IF;

  -- The superuser's drop of the roles (DROP OWNED BY ... CASCADE) drops a schema they own, with what
  -- other roles made in it; the service's own DROP SCHEMA checks its ownership through its
  -- memberships in every lease's roles. A schema that changed hands to a role not the lease's (a
  -- member's ALTER SCHEMA ... OWNER TO before Postgres 16) is dropped here all the same.
  IF NOT (pglease.may_call_admin('drop_lease_roles')
          AND EXISTS (SELECT 1 FROM pg_namespace n WHERE n.nspname = p_lease.schema_name AND pg_get_userbyid(n.nspowner)::text = ANY (v_roles))) THEN
    EXECUTE format('DROP SCHEMA IF EXISTS %I CASCADE', p_lease.schema_name);
  END IF;
  PERFORM pglease.drop_lease_roles(v_roles);
END
$$;

-- pglease.drop_lease_roles: drops the roles p_roles (those that exist) and what they own in this
-- database. For a database lease, only once its database is gone: a role cannot be dropped while a
-- database holds objects of its.
CREATE OR REPLACE FUNCTION pglease.drop_lease_roles(p_roles text[])
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '10s'
AS $$
DECLARE
  v_existing text[];
BEGIN
  -- as a superuser when pglease was given one (sql/admin/superuser.sql): the service's own DROP
  -- ROLE walks its memberships in every lease's roles, once per role
  IF pglease.may_call_admin('drop_lease_roles') THEN
    PERFORM pglease_admin.drop_lease_roles(p_roles);
    RETURN;
  END IF;
  SELECT array_agg(r.rolname ORDER BY r.rolname) INTO v_existing
    FROM pg_roles r WHERE r.rolname = ANY (p_roles);
  IF v_existing IS NOT NULL THEN
    -- DROP OWNED needs the privileges of each role. A service role that is no superuser has them
    -- through the grant pglease.provision gives it; a role it administers without them (one made by
    -- hand, or left half-made) is granted to it first, which its ADMIN option allows.
    FOR i IN 1..array_length(v_existing, 1) LOOP
      IF NOT pg_has_role(current_user, v_existing[i], 'USAGE') THEN
        EXECUTE format('GRANT %I TO %I', v_existing[i], current_user);
      END IF;
    END LOOP;
    EXECUTE format('DROP OWNED BY %s CASCADE',
                   (SELECT string_agg(format('%I', r), ', ') FROM unnest(v_existing) r));
    EXECUTE format('DROP ROLE %s',
                   (SELECT string_agg(format('%I', r), ', ') FROM unnest(v_existing) r));
  END IF;
END
$$;

-- pglease.finish_database_drop: the second step of a database lease's end, after the service ran
-- DROP DATABASE (src/leases/database-drops.ts): its roles go and its queue row is deleted, in one
-- transaction. Raises 55006 while the database still exists (its DROP failed: retried later).
CREATE OR REPLACE FUNCTION pglease.finish_database_drop(p_database name)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_drop pglease.database_drops;
BEGIN
  SELECT * INTO v_drop FROM pglease.database_drops WHERE database_name = p_database FOR UPDATE;
  IF NOT FOUND THEN
    RETURN false;
  END IF;
  IF EXISTS (SELECT 1 FROM pg_database d WHERE d.datname = p_database) THEN
    RAISE EXCEPTION 'database % still exists', p_database USING ERRCODE = '55006';
  END IF;
  PERFORM pglease.drop_lease_roles(v_drop.roles);
  DELETE FROM pglease.database_drops WHERE database_name = p_database;
  RETURN true;
END
$$;

-- pglease.note_database_drop_failure: keeps why a queued database could not be dropped.
CREATE OR REPLACE FUNCTION pglease.note_database_drop_failure(p_database name, p_error text)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
  UPDATE pglease.database_drops SET attempts = attempts + 1, last_error = p_error WHERE database_name = p_database
$$;

-- pglease.release: ends a live lease (state 'released' on request, 'expired' from the reaper) and
-- drops its objects in the same transaction. Returns NULL when there is no live lease with that
-- id, which is how a second release, or a release racing another process, learns it lost: the
-- row lock serialises them and only the first finds the lease live.
-- A lease of a warm pool that was never claimed (state 'provisioning', sql/pool.sql) was never
-- anyone's: its row and events are deleted with its objects, so it leaves no history to list.
CREATE OR REPLACE FUNCTION pglease.release(
  p_id        uuid,
  p_final     pglease.lease_state DEFAULT 'released',
  p_client_ip inet DEFAULT NULL
) RETURNS pglease.leases
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_lease pglease.leases;
BEGIN
  IF p_final NOT IN ('released', 'expired') THEN
    RAISE EXCEPTION 'a lease ends as released or expired, not %', p_final USING ERRCODE = '22023';
  END IF;
  SELECT * INTO v_lease FROM pglease.leases
   WHERE id = p_id AND state IN ('active', 'provisioning', 'failed')
   FOR UPDATE;
  IF NOT FOUND THEN
    RETURN NULL;
  END IF;

  PERFORM pglease.drop_lease_objects(v_lease);
  -- its private templates go with it (nobody can use them any more)
  DELETE FROM pglease.templates WHERE owner_lease_id = p_id;

  IF v_lease.state = 'provisioning' THEN
    DELETE FROM pglease.leases WHERE id = p_id;
    v_lease.state := p_final;
    v_lease.ended_at := now();
    RETURN v_lease;
  END IF;

  UPDATE pglease.leases SET state = p_final, ended_at = now(), last_error = NULL
   WHERE id = p_id
   RETURNING * INTO v_lease;
  INSERT INTO pglease.lease_events (lease_id, kind, client_ip)
  VALUES (p_id, p_final::text, p_client_ip);
  RETURN v_lease;
END
$$;

-- pglease.provision_parked: a lease provisioned (same arguments as pglease.provision) and parked:
-- state 'provisioning', known to no one, expiring after p_hold unless the next step comes first:
-- a warm pool's claim (sql/pool.sql), or a seed in the lease's own session followed by
-- park_seeded_lease or activate_seeded_lease (sql/templates.sql). A lease whose process dies
-- before that expires and is reaped.
-- A database lease (p_kind 'database') is always made this way: its database comes next, outside
-- this transaction, and a lease whose database was never made expires and is reaped.
DROP FUNCTION IF EXISTS pglease.provision_parked(text, text, text, bytea, interval, int, int, text, text);
CREATE OR REPLACE FUNCTION pglease.provision_parked(
  p_base              text,
  p_login_verifier    text,
  p_auth_verifier     text,
  p_token_hash        bytea,          -- of a token nobody is given: the next step sets the real one
  p_hold              interval,
  p_host_id           int,
  p_connection_limit  int,
  p_statement_timeout text,
  p_idle_timeout      text,
  p_kind              text DEFAULT 'schema'
) RETURNS pglease.leases
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_lease pglease.leases;
BEGIN
  v_lease := pglease.provision(
    p_base => p_base, p_login_verifier => p_login_verifier, p_auth_verifier => p_auth_verifier,
    p_token_hash => p_token_hash, p_ttl => p_hold, p_label => NULL, p_client_ip => NULL,
    p_host_id => p_host_id, p_connection_limit => p_connection_limit,
    p_statement_timeout => p_statement_timeout, p_idle_timeout => p_idle_timeout, p_kind => p_kind);
  UPDATE pglease.leases SET state = 'provisioning' WHERE id = v_lease.id RETURNING * INTO v_lease;
  RETURN v_lease;
END
$$;

-- pglease.hand_out: makes a parked lease (state 'provisioning': a warm pool's, or a seeded one
-- waiting for its create) the caller's: active with its owner's token, TTL from now, label and
-- client address (p_quota_ip: the address it is charged to, NULL when none), its 'created' event
-- dated now with p_detail added. As far as anyone can tell, it was created by this call. Returns
-- NULL when the lease is no longer parked.
CREATE OR REPLACE FUNCTION pglease.hand_out(
  p_lease_id   uuid,
  p_token_hash bytea,
  p_ttl        interval,       -- NULL: never expires
  p_label      text,
  p_client_ip  inet,
  p_quota_ip   inet,
  p_detail     jsonb
) RETURNS pglease.leases
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_lease pglease.leases;
BEGIN
  IF p_ttl IS NOT NULL AND p_ttl <= interval '0' THEN
    RAISE EXCEPTION 'lease ttl must be positive' USING ERRCODE = '22023';
  END IF;
  UPDATE pglease.leases
     SET state = 'active', token_hash = p_token_hash, label = p_label, client_ip = p_client_ip,
         quota_ip = p_quota_ip, created_at = now(), expires_at = now() + p_ttl
   WHERE id = p_lease_id AND state = 'provisioning'
   RETURNING * INTO v_lease;
  IF NOT FOUND THEN
    RETURN NULL;
  END IF;
  UPDATE pglease.lease_events
     SET at = now(), client_ip = p_client_ip,
         detail = coalesce(detail, '{}'::jsonb)
                  || jsonb_build_object('ttl_seconds', extract(epoch FROM p_ttl)::bigint, 'label', p_label)
                  || p_detail
   WHERE lease_id = p_lease_id AND kind = 'created';
  RETURN v_lease;
END
$$;

-- pglease.renew: moves the expiry of an active lease to now() + p_ttl (NULL: never expires).
-- Returns NULL when the lease is not active. Bounds on p_ttl are the caller's policy.
CREATE OR REPLACE FUNCTION pglease.renew(p_id uuid, p_ttl interval, p_client_ip inet DEFAULT NULL)
RETURNS pglease.leases
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_lease pglease.leases;
BEGIN
  IF p_ttl IS NOT NULL AND p_ttl <= interval '0' THEN
    RAISE EXCEPTION 'lease ttl must be positive' USING ERRCODE = '22023';
  END IF;
  UPDATE pglease.leases SET expires_at = now() + p_ttl
   WHERE id = p_id AND state = 'active'
   RETURNING * INTO v_lease;
  IF NOT FOUND THEN
    RETURN NULL;
  END IF;
  INSERT INTO pglease.lease_events (lease_id, kind, client_ip, detail)
  VALUES (p_id, 'renewed', p_client_ip,
          jsonb_build_object('ttl_seconds', extract(epoch FROM p_ttl)::bigint, 'expires_at', v_lease.expires_at));
  RETURN v_lease;
END
$$;

-- pglease.reset_password: gives an active lease's login role a new password (p_verifier, a SCRAM
-- verifier computed by the caller, so the password itself never reaches the server or its logs),
-- for a holder who lost the URL (shown once, at create). Returns NULL when the lease is not active.
--  * catalogs only: ALTER ROLE ... PASSWORD plans and runs no lease-owned code, and the row lock on
--    the lease serialises it with a release (a released lease's role is gone, so no reset revives it).
--  * existing sessions keep working unless p_cut_sessions: Postgres checks a password at login only.
--    When cut, only the login role's sessions go (the REST API's authenticator sessions are
--    pglease's own and log in with another password), and they are awaited (at most about 5 s) so
--    that the caller's next statement finds none.
CREATE OR REPLACE FUNCTION pglease.reset_password(p_id uuid, p_verifier text, p_cut_sessions boolean)
RETURNS pglease.leases
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_lease pglease.leases;
  v_sessions int[];
BEGIN
  IF p_verifier NOT LIKE 'SCRAM-SHA-256$%' THEN
    RAISE EXCEPTION 'a lease password is set from its SCRAM verifier only' USING ERRCODE = '22023';
  END IF;
  SELECT * INTO v_lease FROM pglease.leases WHERE id = p_id AND state = 'active' FOR UPDATE;
  IF NOT FOUND THEN
    RETURN NULL;
  END IF;
  EXECUTE format('ALTER ROLE %I PASSWORD %L', v_lease.role_name, p_verifier);
  IF p_cut_sessions THEN
    SELECT array_agg(b.pid) INTO v_sessions
      FROM pglease.backend_sessions() b
     WHERE b.role_oid = to_regrole(quote_ident(v_lease.role_name))::oid AND b.pid <> pg_backend_pid();
    PERFORM pglease.end_sessions(v_sessions);
  END IF;
  RETURN v_lease;
END
$$;

-- pglease.restrict_other_databases: a lease URL must open nothing but the lease database, so
-- PUBLIC loses CONNECT on every database of the host (lease roles connect to theirs through
-- pglease.lease_groups()). Returns each database that still granted PUBLIC CONNECT, and whether the
-- revoke took: a service role that does not own a database (managed Postgres) cannot change its ACL,
-- and the service then tells the operator which REVOKE to run.
DROP FUNCTION IF EXISTS pglease.restrict_other_databases();
CREATE FUNCTION pglease.restrict_other_databases()
RETURNS TABLE (database_name text, revoked boolean)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
-- REVOKE by a non-owner is only a WARNING ("no privileges could be revoked"); we report the outcome
SET client_min_messages = error
AS $$
DECLARE
  v_db record;
BEGIN
  FOR v_db IN SELECT d.datname FROM pg_database d WHERE d.datallowconn ORDER BY d.datname LOOP
    -- A database dropped meanwhile (another process, another test) fails the privilege lookup
    -- ("cache lookup failed", or 3D000 by name): it needs no revoking, so it is skipped.
    BEGIN
      CONTINUE WHEN NOT has_database_privilege('public', v_db.datname, 'CONNECT');
      BEGIN
        EXECUTE format('REVOKE CONNECT ON DATABASE %I FROM PUBLIC', v_db.datname);
      EXCEPTION WHEN insufficient_privilege THEN
        -- PUBLIC lost every privilege on it since the check above (another pglease closing its
        -- own lease database at this moment: REVOKE ALL ... FROM PUBLIC), so this role has none
        -- left and its REVOKE is refused rather than warned about; a start failed so once, at
        -- load ~10 (test/crash.test.ts against test/migrate-retry.test.ts's database). Whether
        -- PUBLIC still connects is reported below either way.
        NULL;
      END;
      database_name := v_db.datname;
      revoked := NOT has_database_privilege('public', v_db.datname, 'CONNECT');
    EXCEPTION WHEN invalid_catalog_name OR undefined_object OR internal_error THEN
      CONTINUE;
    END;
    RETURN NEXT;
  END LOOP;
END
$$;
