-- What only a superuser does for pglease, in the schema pglease_admin that only superusers own and
-- reach. Applied at every start by a short-lived superuser session (src/db/superuser-setup.ts) when
-- pglease is given a superuser (the embedded server, or a superuser DATABASE_URL); the service itself
-- then runs as the role `<lease database>_service`: no superuser, CREATEROLE and CREATEDB.
--
-- Why a schema of its own: the service role owns the schema pglease and everything in it, so it
-- could replace any function there. A superuser session that ran one of them (or read a table of
-- it, which the service could turn into a view) would run the service role's code as a superuser.
-- So these sessions touch nothing of the service's: only catalogs and this schema. The event
-- trigger's function lives here for the same reason: it fires in every session's DDL, a
-- superuser's included, and only a superuser may change it.
--
-- The caller pins search_path to pg_catalog, pg_temp: the lease database's public schema belongs to
-- its owner (the service role), which could otherwise place look-alike functions or operators there.

CREATE SCHEMA IF NOT EXISTS pglease_admin;
REVOKE ALL ON SCHEMA pglease_admin FROM PUBLIC;
ALTER DEFAULT PRIVILEGES IN SCHEMA pglease_admin REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;

-- Secrets no role but a superuser can read: the service role's password and the key from which
-- every lease authenticator's password derives (the crown jewel: with it, any lease's REST
-- authenticator can log in). The service gets both from the superuser session at start and keeps
-- them in memory only.
CREATE TABLE IF NOT EXISTS pglease_admin.secrets (
  name        text PRIMARY KEY,
  value       bytea NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now()
);
REVOKE ALL ON pglease_admin.secrets FROM PUBLIC;

-- pglease_admin.lease_groups: the lease groups of this database (pglease.lease_groups, which this
-- schema must not call: it belongs to the service role).
CREATE OR REPLACE FUNCTION pglease_admin.lease_groups()
RETURNS text[]
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT array_prepend(left(current_database(), 56) || '_leases',
                       array_agg(left(current_database(), 50) || '_leases_' || n ORDER BY n))
    FROM generate_series(0, 15) AS n
$$;

-- pglease_admin.adopt: hands an install made while the service ran as a superuser over to the
-- service role p_service. Until now every object of the schema pglease, the lease groups and the
-- leases' roles belonged to a superuser; a role that only has CREATEROLE can drop or grant only
-- roles it administers, and change only objects it owns. Idempotent: what already belongs to
-- p_service is left as it is. Returns how many objects changed hands.
--   * the authenticator key moves from pglease.secrets (still the superuser's, so reading it runs
--     nothing of anyone else's) to pglease_admin.secrets, out of the service's reach;
--   * the event triggers that pointed at pglease.rest_notify_ddl are dropped (pglease_admin's own
--     replace them, see install_event_triggers), and so is that function;
--   * the schema, its relations, types and routines become p_service's;
--   * p_service gets ADMIN on the lease groups and on every lease role, with INHERIT and SET.
CREATE OR REPLACE FUNCTION pglease_admin.adopt(p_service name)
RETURNS int
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_schema oid := to_regnamespace('pglease');
  v_object record;
  v_changed int := 0;
BEGIN
  IF v_schema IS NULL OR (SELECT n.nspowner FROM pg_namespace n WHERE n.oid = v_schema) = to_regrole(quote_ident(p_service)) THEN
    RETURN 0;
  END IF;
  IF NOT (SELECT r.rolsuper FROM pg_roles r JOIN pg_namespace n ON n.nspowner = r.oid WHERE n.oid = v_schema) THEN
    RAISE EXCEPTION 'schema pglease belongs to neither a superuser nor %: pglease will not take it over', p_service
      USING ERRCODE = '42501';
  END IF;

  IF to_regclass('pglease.secrets') IS NOT NULL THEN
    INSERT INTO pglease_admin.secrets (name, value)
    SELECT s.name, s.value FROM pglease.secrets s WHERE s.name = 'authenticator_key'
    ON CONFLICT (name) DO NOTHING;
    DELETE FROM pglease.secrets WHERE name = 'authenticator_key';
  END IF;

  DROP EVENT TRIGGER IF EXISTS pglease_rest_ddl_end;
  DROP EVENT TRIGGER IF EXISTS pglease_rest_sql_drop;
  DROP FUNCTION IF EXISTS pglease.rest_notify_ddl();

  EXECUTE format('ALTER SCHEMA pglease OWNER TO %I', p_service);
  FOR v_object IN
    SELECT c.oid::regclass::text AS name, c.relkind
      FROM pg_class c
     WHERE c.relnamespace = v_schema AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
       -- a sequence of an identity or serial column changes hands with its table
       AND NOT EXISTS (SELECT 1 FROM pg_depend d
                        WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype IN ('a', 'i')
                          AND d.refclassid = 'pg_class'::regclass)
  LOOP
    EXECUTE format('ALTER %s %s OWNER TO %I',
                   CASE v_object.relkind WHEN 'S' THEN 'SEQUENCE' WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW'
                                         WHEN 'f' THEN 'FOREIGN TABLE' ELSE 'TABLE' END,
                   v_object.name, p_service);
    v_changed := v_changed + 1;
  END LOOP;
  FOR v_object IN
    SELECT t.oid::regtype::text AS name FROM pg_type t
     WHERE t.typnamespace = v_schema AND t.typtype IN ('e', 'd', 'r', 'm')
        OR (t.typnamespace = v_schema AND t.typtype = 'c'
            AND (SELECT c.relkind FROM pg_class c WHERE c.oid = t.typrelid) = 'c')
  LOOP
    EXECUTE format('ALTER TYPE %s OWNER TO %I', v_object.name, p_service);
    v_changed := v_changed + 1;
  END LOOP;
  FOR v_object IN SELECT p.oid::regprocedure::text AS name FROM pg_proc p WHERE p.pronamespace = v_schema LOOP
    EXECUTE format('ALTER ROUTINE %s OWNER TO %I', v_object.name, p_service);
    v_changed := v_changed + 1;
  END LOOP;
  -- functions made from now on by the service start private, as the superuser's did
  EXECUTE format('ALTER DEFAULT PRIVILEGES FOR ROLE %I IN SCHEMA pglease REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC', p_service);

  FOR v_object IN
    SELECT g.rolname AS name FROM pg_roles g WHERE g.rolname = ANY (pglease_admin.lease_groups())
    UNION
    SELECT m.rolname FROM pg_auth_members am
      JOIN pg_roles g ON g.oid = am.roleid
      JOIN pg_roles m ON m.oid = am.member
     WHERE g.rolname = ANY (pglease_admin.lease_groups()) AND m.rolname ~ '^lease_[0-9a-f]{16}(_auth)?$'
    UNION
    SELECT m.rolname || '_anon' FROM pg_auth_members am
      JOIN pg_roles g ON g.oid = am.roleid
      JOIN pg_roles m ON m.oid = am.member
     WHERE g.rolname = ANY (pglease_admin.lease_groups()) AND m.rolname ~ '^lease_[0-9a-f]{16}$'
       AND EXISTS (SELECT 1 FROM pg_roles a WHERE a.rolname = m.rolname || '_anon')
  LOOP
    EXECUTE format('GRANT %I TO %I WITH ADMIN OPTION', v_object.name, p_service);
    v_changed := v_changed + 1;
  END LOOP;
  RETURN v_changed;
END
$$;

-- pglease_admin.restrict_other_databases: PUBLIC loses CONNECT on every database of the host, so a
-- lease URL opens nothing but the lease database (lease roles connect to theirs through its lease
-- groups; the service role owns it). As pglease.restrict_other_databases, run as a superuser,
-- which may change any database's ACL. Returns the databases it closed.
CREATE OR REPLACE FUNCTION pglease_admin.restrict_other_databases()
RETURNS SETOF text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_db text;
BEGIN
  FOR v_db IN SELECT d.datname FROM pg_database d WHERE d.datallowconn ORDER BY d.datname LOOP
    BEGIN
      CONTINUE WHEN NOT has_database_privilege('public', v_db, 'CONNECT');
      EXECUTE format('REVOKE CONNECT ON DATABASE %I FROM PUBLIC', v_db);
    -- dropped meanwhile; or revoked concurrently by another pglease ("tuple concurrently updated")
    EXCEPTION WHEN invalid_catalog_name OR undefined_object OR internal_error THEN
      CONTINUE;
    END;
    RETURN NEXT v_db;
  END LOOP;
END
$$;

-- The DDL event triggers of the REST schema cache and their function: sql/admin/event-triggers.sql,
-- applied here and in the lease template database (src/db/lease-template.ts).

-- pglease_admin.ensure_rest_reserve: sixteen NOLOGIN roles `<database>_rest_<n>` that may use the
-- server's reserved connections (pg_use_reserved_connections, Postgres 16+), administered by the
-- service role, which grants one to each lease's REST authenticator (pglease.provision): the REST
-- API then still logs in when the leases' own logins hold every connection that is not reserved.
-- Sixteen, sharded as the lease groups are, because a GRANT of a role locks it until commit: one
-- such role would make every create wait for the one before it.
CREATE OR REPLACE FUNCTION pglease_admin.ensure_rest_reserve(p_service name)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_role text;
BEGIN
  FOR v_shard IN 0..15 LOOP
    v_role := left(current_database(), 50) || '_rest_' || v_shard;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = v_role) THEN
      EXECUTE format('CREATE ROLE %I NOLOGIN NOINHERIT', v_role);
    END IF;
    IF current_setting('server_version_num')::int >= 160000
       AND NOT pg_has_role(v_role, 'pg_use_reserved_connections', 'USAGE') THEN
      EXECUTE format('GRANT pg_use_reserved_connections TO %I WITH INHERIT TRUE', v_role);
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_auth_members m WHERE m.roleid = to_regrole(v_role) AND m.member = to_regrole(p_service) AND m.admin_option) THEN
      EXECUTE format('GRANT %I TO %I WITH ADMIN OPTION', v_role, p_service);
    END IF;
  END LOOP;
END
$$;

-- pglease_admin.grant_quota_needs: what the service role needs to bound a lease's temporary files
-- and to count its large objects (issue 21, sql/plans.sql and sql/observe.sql):
--   * SET on temp_file_limit (Postgres 15+), a superuser's setting: the service puts it on lease
--     roles and on the lease database (ALTER ROLE/DATABASE ... SET), where a lease cannot change it;
--   * SELECT on pg_largeobject, so that the observer can size the large objects a lease owns (its
--     pages, from the catalog's index). The service already reaches lease data (docs/security.md);
--   * the functions that make or grow large objects (lo_create, lo_creat, lo_from_bytea, lowrite,
--     lo_put) executable by the service, with GRANT OPTION, and no longer by PUBLIC: every role may
--     call them otherwise, and a lease over its plan could fill the disk with large objects. The
--     service grants them to the lease groups (pglease.grant_large_object_writes) and a restricted
--     lease stops inheriting them (sql/quota.sql). In this database only: other databases keep
--     Postgres's defaults.
CREATE OR REPLACE FUNCTION pglease_admin.grant_quota_needs(p_service name)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  IF current_setting('server_version_num')::int >= 150000 AND NOT has_parameter_privilege(p_service, 'temp_file_limit', 'SET') THEN
    EXECUTE format('GRANT SET ON PARAMETER temp_file_limit TO %I', p_service);
  END IF;
  IF NOT has_table_privilege(p_service, 'pg_catalog.pg_largeobject', 'SELECT') THEN
    EXECUTE format('GRANT SELECT ON pg_catalog.pg_largeobject TO %I', p_service);
  END IF;
  IF NOT has_function_privilege(p_service, 'pg_catalog.lo_from_bytea(oid, bytea)', 'EXECUTE WITH GRANT OPTION') THEN
    EXECUTE format('GRANT EXECUTE ON FUNCTION pg_catalog.lo_create(oid), pg_catalog.lo_creat(integer), pg_catalog.lo_from_bytea(oid, bytea), '
                   'pg_catalog.lowrite(integer, bytea), pg_catalog.lo_put(oid, bigint, bytea) TO %I WITH GRANT OPTION', p_service);
  END IF;
  REVOKE EXECUTE ON FUNCTION pg_catalog.lo_create(oid), pg_catalog.lo_creat(integer), pg_catalog.lo_from_bytea(oid, bytea),
    pg_catalog.lowrite(integer, bytea), pg_catalog.lo_put(oid, bigint, bytea) FROM PUBLIC;
END
$$;

-- pglease_admin.lease_base: the login role of the lease whose roles p_roles are, all of them: its
-- login role lease_<16 hex digits> and roles named after it (lease_<hex>_<name>); raises 22023
-- otherwise. For the functions below, which act on one lease's roles only.
CREATE OR REPLACE FUNCTION pglease_admin.lease_base(p_roles text[])
RETURNS text
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_base text := substring(p_roles[1] from '^(lease_[0-9a-f]{16})');
BEGIN
  IF v_base IS NULL OR array_length(p_roles, 1) IS NULL
     OR EXISTS (SELECT 1 FROM unnest(p_roles) r WHERE r IS NULL OR NOT (r = v_base OR starts_with(r, v_base || '_') AND r ~ '^lease_[0-9a-f]{16}_[a-z0-9_]+$')) THEN
    RAISE EXCEPTION 'not the roles of one lease: %', p_roles USING ERRCODE = '22023';
  END IF;
  RETURN v_base;
END
$$;
REVOKE ALL ON FUNCTION pglease_admin.lease_base(text[]) FROM PUBLIC;

-- pglease_admin.drop_lease_roles: drops the roles of one lease that exist, and what they own in this
-- database, for pglease.drop_lease_roles (sql/leases.sql), which the service role calls it from
-- (SECURITY DEFINER, EXECUTE for the service role alone: src/db/superuser-setup.ts). Why: as the
-- service, each DROP ROLE's admin check walked the service's memberships in every lease's roles,
-- from cold caches since the role dropped before it deleted memberships; a release took 5 ms with
-- no live lease and 51 ms with 990 (bench:live-creates). A superuser's checks skip that walk.
--
-- What it lets the service do that it could not already: nothing. The roles must all be one
-- lease's (its login role lease_<16 hex digits> and roles named after it, none with more than a
-- lease role's attributes), and the login role goes with them whenever it exists: it owns the
-- lease's schema or database, so for a lease of another database on this server (whose roles the
-- service does not administer) the DROP ROLE fails and nothing is dropped, and a live lease's roles
-- cannot be dropped one at a time. It runs nothing of the lease's (a drop plans and runs no code)
-- and nothing of the service's.
CREATE OR REPLACE FUNCTION pglease_admin.drop_lease_roles(p_roles text[])
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '10s'
AS $$
DECLARE
  v_base     text := pglease_admin.lease_base(p_roles);
  v_existing text[];
BEGIN
  IF EXISTS (SELECT 1 FROM pg_roles r WHERE r.rolname = v_base) AND NOT v_base = ANY (p_roles) THEN
    RAISE EXCEPTION 'the roles of lease % go with its login role', v_base USING ERRCODE = '22023';
  END IF;
  SELECT array_agg(r.rolname::text ORDER BY r.rolname) INTO v_existing FROM pg_roles r WHERE r.rolname = ANY (p_roles);
  IF v_existing IS NULL THEN
    RETURN;
  END IF;
  IF EXISTS (SELECT 1 FROM pg_roles r WHERE r.rolname = ANY (v_existing)
                AND (r.rolsuper OR r.rolcreaterole OR r.rolcreatedb OR r.rolreplication OR r.rolbypassrls)) THEN
    RAISE EXCEPTION 'lease % has a role with more than a lease role''s attributes: not dropped', v_base USING ERRCODE = '42501';
  END IF;
  EXECUTE format('DROP OWNED BY %s CASCADE', (SELECT string_agg(format('%I', r), ', ') FROM unnest(v_existing) r));
  EXECUTE format('DROP ROLE %s', (SELECT string_agg(format('%I', r), ', ') FROM unnest(v_existing) r));
END
$$;
REVOKE ALL ON FUNCTION pglease_admin.drop_lease_roles(text[]) FROM PUBLIC;

-- pglease_admin.close_lease_logins: the roles p_roles of one lease of this database may no longer
-- log in (ALTER ROLE ... NOLOGIN), for pglease.drop_lease_objects, which then ends their sessions
-- and drops what they own (SECURITY DEFINER, EXECUTE for the service role alone:
-- src/db/superuser-setup.ts). Why: as the service, each ALTER ROLE's admin check walked the
-- service's memberships in every lease's roles, and each one made the next check walk them again;
-- with the DROP SCHEMA after them, a release took 15 ms with no live lease and 70 ms with 990
-- (bench:live-creates, session 10, load 6-8).
--
-- What it lets the service do that it could not already: nothing. The roles must be one lease's, as
-- drop_lease_roles checks, and the lease this database's: its login role a member of one of this
-- database's lease groups (pglease_admin.lease_groups, or the database leases' group), which
-- the service administers. Otherwise it changes nothing and returns false, and the caller alters
-- what it may itself. Roles with more than a lease role's attributes are left alone. It runs no
-- code, and reads catalogs only.
CREATE OR REPLACE FUNCTION pglease_admin.close_lease_logins(p_roles text[])
RETURNS boolean
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '10s'
AS $$
DECLARE
  v_base text := pglease_admin.lease_base(p_roles);
  v_role text;
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid JOIN pg_roles l ON l.oid = m.member
                  WHERE l.rolname = v_base
                    AND g.rolname = ANY (pglease_admin.lease_groups() || (left(current_database(), 53) || '_dbleases'))) THEN
    RETURN false;
  END IF;
  FOR v_role IN SELECT r.rolname FROM pg_roles r
                 WHERE r.rolname = ANY (p_roles) AND r.rolcanlogin
                   AND NOT (r.rolsuper OR r.rolcreaterole OR r.rolcreatedb OR r.rolreplication OR r.rolbypassrls) LOOP
    EXECUTE format('ALTER ROLE %I NOLOGIN', v_role);
  END LOOP;
  RETURN true;
END
$$;
REVOKE ALL ON FUNCTION pglease_admin.close_lease_logins(text[]) FROM PUBLIC;

-- pglease_admin.set_lease_group_inherit: whether the lease role p_member inherits from its lease
-- group p_group (GRANT ... WITH INHERIT), for every grant of that membership, whoever made it, for
-- pglease.restrict_large_objects and restore_large_objects (sql/quota-schema.sql) on Postgres 16+
-- (SECURITY DEFINER, EXECUTE for the service role alone: src/db/superuser-setup.ts). Why: a schema
-- lease's group membership is granted by the superuser of make_lease_roles, with no GRANTED BY
-- the service (whose admin check walked the service's memberships in every lease's roles: 11 ms a
-- create at 990 live leases); the service's own GRANT would add a grant of its own beside it and
-- leave the lease inheriting. Leases made before that hold the service's grant, which is changed
-- the same way.
--
-- What it lets the service do that it could not already: nothing. p_member must be a lease's login
-- role or authenticator and p_group one of this database's lease groups, of which the service is the
-- admin; it changes only the INHERIT option of grants that exist. Otherwise it changes nothing and
-- returns false (the caller then changes what it may itself). It runs no code; catalogs only.
CREATE OR REPLACE FUNCTION pglease_admin.set_lease_group_inherit(p_group text, p_member text, p_inherit boolean)
RETURNS boolean
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '10s'
AS $$
DECLARE
  v_grantor text;
BEGIN
  IF p_inherit IS NULL THEN
    RAISE EXCEPTION 'inherit or not?' USING ERRCODE = '22023';
  END IF;
  -- a schema lease's group (not the database leases' one, which the service grants: lease-roles.sql)
  IF p_member IS NULL OR p_member !~ '^lease_[0-9a-f]{16}(_auth)?$' OR p_group IS NULL
     OR NOT p_group = ANY (pglease_admin.lease_groups()) THEN
    RETURN false;
  END IF;
  FOR v_grantor IN SELECT pg_get_userbyid(m.grantor) FROM pg_auth_members m
                    WHERE m.roleid = to_regrole(quote_ident(p_group)) AND m.member = to_regrole(quote_ident(p_member)) LOOP
    EXECUTE format('GRANT %I TO %I WITH INHERIT %s GRANTED BY %I', p_group, p_member, CASE WHEN p_inherit THEN 'TRUE' ELSE 'FALSE' END, v_grantor);
  END LOOP;
  RETURN true;
END
$$;
REVOKE ALL ON FUNCTION pglease_admin.set_lease_group_inherit(text, text, boolean) FROM PUBLIC;

-- pglease_admin.end_lease_backend: terminates the session p_pid when its role is a lease's login
-- role or authenticator (named lease_<16 hex digits>, with _auth for the authenticator), for the
-- lock guard (src/leases/lock-guard.ts) while a lease fills the server's lock table (SECURITY
-- DEFINER, EXECUTE for the service role alone: src/db/superuser-setup.ts). Why: pg_terminate_backend
-- run by the service first asks whether the service has the privileges of the session's role, and
-- after any create or release (a CREATE ROLE or GRANT anywhere on the server) that question walks
-- the service's memberships in every lease's roles through pg_auth_members, a shared catalog whose
-- lock needs a place in the full table: the guard found the lease and could not end it until the
-- table freed (test/lock-guard.test.ts, "right after another lease was made"). A superuser is not
-- asked. The session's role and pid come from shared memory, the role's name from this session's
-- catalog cache (the guard's looks put the live leases' roles there while the server is well).
--
-- What it lets the service do that it could not already: end the sessions of roles named as
-- leases', which it may end as their roles' member; also those of another pglease's leases on the
-- same server, named alike, which that pglease's service may end and this one could not. Nothing
-- else: no other session, no code run.
CREATE OR REPLACE FUNCTION pglease_admin.end_lease_backend(p_pid int)
RETURNS boolean
LANGUAGE sql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT coalesce(bool_or(pg_terminate_backend(b.pid)), false)
    FROM (SELECT pg_stat_get_backend_pid(s) AS pid, pg_stat_get_backend_userid(s) AS role_oid
            FROM pg_stat_get_backend_idset() s) b
   WHERE b.pid = p_pid AND pg_get_userbyid(b.role_oid) ~ '^lease_[0-9a-f]{16}(_auth)?$'
$$;
REVOKE ALL ON FUNCTION pglease_admin.end_lease_backend(int) FROM PUBLIC;
