-- Enforcement: a lease over its plan's size or row limit may no longer INSERT, UPDATE or CREATE;
-- reads, DELETE and TRUNCATE still work, and its rights come back once it is within its plan again.
-- The observer (sql/observe.sql) decides when; these functions do it.
--
-- Why not REVOKE INSERT, UPDATE as Heroku did: a lease's login role OWNS its schema and tables, and
-- an owner holds every privilege on what it owns and may grant them back to itself (REVOKE from an
-- owner is undone by the owner's next GRANT). Nothing a lease can reach with its own SQL may hold
-- the restriction: ALTER ROLE ... SET default_transaction_read_only is undone by SET; a trigger or
-- FORCE ROW LEVEL SECURITY on a table it owns is dropped by its owner; event triggers are
-- superuser-only. So while restricted, the lease owns nothing that grows:
--   * its schema and its tables (and partitions, materialized views) change hands to a role of the
--     lease's own that cannot log in, `<lease>_quota`, which pglease alone is a member of; the lease
--     is granted back SELECT, INSERT, UPDATE, DELETE, TRUNCATE and REFERENCES on its tables (and,
--     on Postgres 17, MAINTAIN, so that VACUUM FULL can give back the space a DELETE freed), and
--     USAGE on its schema. Anyone who held CREATE on the schema loses it;
--   * each table gets a BEFORE INSERT OR UPDATE ... FOR EACH STATEMENT trigger that raises the
--     plan's message (SQLSTATE 53400). A trigger rather than a REVOKE, so that the session is told
--     why instead of "permission denied": only a table's owner may drop or disable it, and
--     session_replication_role (which skips triggers) is superuser-only. It fires for INSERT,
--     UPDATE, INSERT ... ON CONFLICT, MERGE, COPY FROM, writes through views and rules, and on each
--     partition written to directly.
-- What the lease can still do while restricted: read, DELETE, TRUNCATE, VACUUM (17+), nextval,
-- temporary tables (TEMPORARY is granted to all the database's leases through their group) and
-- large objects (lo_create is open to every role). Those two are not refused here but counted in
-- its size by the observer, which also ends its sessions that hold temporary tables
-- (sql/observe.sql, pglease.end_temp_sessions); large objects keep it restricted until it
-- unlinks them. Its temporary files are bounded by temp_file_limit (sql/plans.sql). It cannot DROP
-- or ALTER its tables, CREATE anything in its schema, or grant writes to another role (a lease
-- that granted INSERT to its anonymous role or another lease is refused by the trigger too).
-- A lease's own code still runs as the table's owner where Postgres runs it so (an index
-- expression during ANALYZE, in a security-restricted operation): as `<lease>_quota`, it could drop
-- the trigger; every observation of a restricted lease checks the triggers and owners and
-- restricts it again (pglease.restriction_intact).
-- All of it reads and changes catalogs only: ALTER ... OWNER, GRANT, REVOKE and CREATE TRIGGER
-- plan and run nothing of the lease's.

-- pglease.refuse_over_quota: the trigger function. Runs as whoever writes (the lease), raises.
-- TG_ARGV: the message, and the hint.
CREATE OR REPLACE FUNCTION pglease.refuse_over_quota()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  RAISE EXCEPTION USING ERRCODE = '53400', MESSAGE = TG_ARGV[0], HINT = TG_ARGV[1];
END
$$;

-- pglease.quota_role: the name of the role that holds a restricted lease's objects.
CREATE OR REPLACE FUNCTION pglease.quota_role(p_login_role text)
RETURNS text
LANGUAGE sql IMMUTABLE
AS $$ SELECT p_login_role || '_quota' $$;

-- pglease.restrict_writes: restricts lease p_lease (see above) and returns what it changed, for
-- pglease.restore_writes: {"owners": {relation oid: owner}, "schema_create": [grantees]}. Calling it
-- again on a restricted lease (p_previous) completes or repairs the restriction and keeps the
-- owners first recorded.
-- * Bounded: each ALTER ... OWNER waits at most lock_timeout (1 s) for the lease's own locks, and
--   the caller cancels the lease's statements and tries again (pglease.cancel_lease_statements).
-- * All or nothing: it runs in the caller's (sub)transaction.
CREATE OR REPLACE FUNCTION pglease.restrict_writes(p_lease pglease.leases, p_message text, p_hint text, p_previous jsonb DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '1s'
AS $$
DECLARE
  v_schema   oid := to_regnamespace(quote_ident(p_lease.schema_name));
  v_guard    text := pglease.quota_role(p_lease.role_name);
  v_guard_id oid;
  v_owners   jsonb := coalesce(p_previous -> 'owners', '{}');
  v_creators jsonb := coalesce(p_previous -> 'schema_create', '[]');
  v_rel      record;
  v_grantee  text;
  v_pg17     boolean := current_setting('server_version_num')::int >= 170000;
BEGIN
  IF v_schema IS NULL THEN
    RAISE EXCEPTION 'lease schema % is gone', p_lease.schema_name USING ERRCODE = '3F000';
  END IF;
  IF to_regrole(quote_ident(v_guard)) IS NULL THEN
    EXECUTE format('CREATE ROLE %I NOLOGIN NOINHERIT', v_guard);
  END IF;
  v_guard_id := to_regrole(quote_ident(v_guard));
  IF NOT pg_has_role(current_user, v_guard_id, 'SET') THEN
    IF current_setting('server_version_num')::int >= 160000 THEN
      EXECUTE format('GRANT %I TO %I WITH INHERIT TRUE, SET TRUE', v_guard, current_user);
    ELSE
      EXECUTE format('GRANT %I TO %I', v_guard, current_user);
    END IF;
  END IF;

  -- the schema: who may CREATE in it besides its owner loses that
  SELECT v_creators || coalesce(jsonb_agg(CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee) END), '[]')
    INTO v_creators
    FROM pg_namespace n, aclexplode(n.nspacl) a
   WHERE n.oid = v_schema AND a.privilege_type = 'CREATE' AND a.grantee <> n.nspowner;
  IF (SELECT n.nspowner FROM pg_namespace n WHERE n.oid = v_schema) <> v_guard_id THEN
    EXECUTE format('ALTER SCHEMA %I OWNER TO %I', p_lease.schema_name, v_guard);
  END IF;
  EXECUTE format('GRANT USAGE ON SCHEMA %I TO %I', p_lease.schema_name, p_lease.role_name);
  FOR v_grantee IN SELECT DISTINCT g FROM jsonb_array_elements_text(v_creators) g LOOP
    IF v_grantee = 'PUBLIC' THEN
      EXECUTE format('REVOKE CREATE ON SCHEMA %I FROM PUBLIC', p_lease.schema_name);
    ELSIF to_regrole(quote_ident(v_grantee)) IS NOT NULL THEN
      EXECUTE format('REVOKE CREATE ON SCHEMA %I FROM %I', p_lease.schema_name, v_grantee);
    END IF;
  END LOOP;

  -- its relations that hold data
  FOR v_rel IN
    SELECT c.oid, c.relkind, format('%I.%I', p_lease.schema_name, c.relname) AS name,
           coalesce(v_owners ->> c.oid::text, pg_get_userbyid(c.relowner)) AS owner, c.relowner = v_guard_id AS held
      FROM pg_class c
     WHERE c.relnamespace = v_schema AND c.relkind IN ('r', 'p', 'm')
  LOOP
    v_owners := v_owners || jsonb_build_object(v_rel.oid::text, v_rel.owner);
    IF NOT v_rel.held THEN
      EXECUTE format('ALTER %s %s OWNER TO %I', CASE v_rel.relkind WHEN 'm' THEN 'MATERIALIZED VIEW' ELSE 'TABLE' END, v_rel.name, v_guard);
    END IF;
    IF v_rel.relkind = 'm' THEN
      EXECUTE format('GRANT SELECT ON %s TO %I', v_rel.name, v_rel.owner);
      CONTINUE;
    END IF;
    EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES%s ON %s TO %I',
                   CASE WHEN v_pg17 THEN ', MAINTAIN' ELSE '' END, v_rel.name, v_rel.owner);
    -- OR REPLACE: a trigger of the lease's by that name must not make this fail
    EXECUTE format('CREATE OR REPLACE TRIGGER pglease_over_quota BEFORE INSERT OR UPDATE ON %s FOR EACH STATEMENT EXECUTE FUNCTION pglease.refuse_over_quota(%L, %L)',
                   v_rel.name, p_message, p_hint);
    EXECUTE format('ALTER TABLE %s ENABLE TRIGGER pglease_over_quota', v_rel.name);
  END LOOP;
  RETURN jsonb_build_object('owners', v_owners, 'schema_create', v_creators, 'at', now());
END
$$;

-- pglease.restriction_intact: whether a restricted lease still owns nothing that holds data and
-- each of its tables has the enabled trigger. False sends the observer to restrict it again.
CREATE OR REPLACE FUNCTION pglease.restriction_intact(p_lease pglease.leases)
RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT NOT EXISTS (
    SELECT 1 FROM pg_namespace n WHERE n.nspname = p_lease.schema_name AND n.nspowner <> to_regrole(quote_ident(pglease.quota_role(p_lease.role_name))))
     AND NOT EXISTS (
    SELECT 1 FROM pg_class c
     WHERE c.relnamespace = to_regnamespace(quote_ident(p_lease.schema_name)) AND c.relkind IN ('r', 'p', 'm')
       AND (c.relowner <> to_regrole(quote_ident(pglease.quota_role(p_lease.role_name)))
            OR (c.relkind <> 'm' AND NOT EXISTS (SELECT 1 FROM pg_trigger t
                                                 WHERE t.tgrelid = c.oid AND t.tgname = 'pglease_over_quota' AND t.tgenabled = 'O'
                                                   AND t.tgfoid = 'pglease.refuse_over_quota()'::regprocedure))))
$$;

-- pglease.restore_writes: undoes pglease.restrict_writes with what it returned: the triggers go,
-- each relation goes back to its owner (the lease's login role when none was recorded: a relation
-- made while restricted can only have been made by pglease's restriction itself), the schema to
-- the lease, CREATE to whom had it. Bounded by lock_timeout as the restriction is.
CREATE OR REPLACE FUNCTION pglease.restore_writes(p_lease pglease.leases, p_restricted jsonb)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '1s'
AS $$
DECLARE
  v_schema   oid := to_regnamespace(quote_ident(p_lease.schema_name));
  v_guard_id oid := to_regrole(quote_ident(pglease.quota_role(p_lease.role_name)));
  v_rel      record;
  v_owner    text;
  v_grantee  text;
BEGIN
  IF v_schema IS NULL OR v_guard_id IS NULL THEN
    RETURN;
  END IF;
  -- the schema first: a relation's new owner must hold CREATE on its schema
  IF (SELECT n.nspowner FROM pg_namespace n WHERE n.oid = v_schema) = v_guard_id THEN
    EXECUTE format('ALTER SCHEMA %I OWNER TO %I', p_lease.schema_name, p_lease.role_name);
  END IF;
  FOR v_rel IN
    SELECT c.oid, c.relkind, format('%I.%I', p_lease.schema_name, c.relname) AS name
      FROM pg_class c WHERE c.relnamespace = v_schema AND c.relkind IN ('r', 'p', 'm') AND c.relowner = v_guard_id
  LOOP
    v_owner := coalesce(p_restricted -> 'owners' ->> v_rel.oid::text, p_lease.role_name);
    IF to_regrole(quote_ident(v_owner)) IS NULL THEN
      v_owner := p_lease.role_name;
    END IF;
    IF v_rel.relkind <> 'm' THEN
      EXECUTE format('DROP TRIGGER IF EXISTS pglease_over_quota ON %s', v_rel.name);
    END IF;
    EXECUTE format('ALTER %s %s OWNER TO %I', CASE v_rel.relkind WHEN 'm' THEN 'MATERIALIZED VIEW' ELSE 'TABLE' END, v_rel.name, v_owner);
  END LOOP;
  FOR v_grantee IN SELECT DISTINCT g FROM jsonb_array_elements_text(coalesce(p_restricted -> 'schema_create', '[]')) g LOOP
    IF v_grantee = 'PUBLIC' THEN
      EXECUTE format('GRANT CREATE ON SCHEMA %I TO PUBLIC', p_lease.schema_name);
    ELSIF to_regrole(quote_ident(v_grantee)) IS NOT NULL THEN
      EXECUTE format('GRANT CREATE ON SCHEMA %I TO %I', p_lease.schema_name, v_grantee);
    END IF;
  END LOOP;
END
$$;

-- pglease.cancel_lease_statements: cancels the running statements of a lease's sessions (login
-- role and REST authenticator) that hold a lock on one of its relations, and ends those idle in a
-- transaction with such a lock: they keep a restriction (or its undoing) from taking its locks.
-- Returns how many sessions it signalled.
CREATE OR REPLACE FUNCTION pglease.cancel_lease_statements(p_lease pglease.leases)
RETURNS int
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT count(CASE WHEN a.state LIKE 'idle in transaction%' THEN pg_terminate_backend(a.pid) ELSE pg_cancel_backend(a.pid) END)::int
    FROM pg_stat_activity a
   WHERE a.usename IN (p_lease.role_name, p_lease.auth_role)
     AND a.pid <> pg_backend_pid()
     AND EXISTS (SELECT 1 FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
                  WHERE l.pid = a.pid AND c.relnamespace = to_regnamespace(quote_ident(p_lease.schema_name)))
$$;
