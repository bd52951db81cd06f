-- The restriction of a lease over its plan, schema by schema (sql/quota.sql says what it refuses,
-- what it leaves, and why it is made this way). Nothing here refers to pglease's own tables: the
-- file is applied in the lease database, and, for a database lease (issue 14), in the lease's own
-- database by the observer job when it restricts or restores it (src/leases/database-quota.ts),
-- where the functions below are made in the schema pglease of the service's that every lease
-- database has from its template (src/db/lease-template.ts). Catalog changes only.

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

-- pglease.restrict_schema_writes: restricts schema p_schema of the lease whose login role is
-- p_login_role (sql/quota.sql says how and why) and returns what it changed, for
-- pglease.restore_schema_writes: {"owners": {relation oid: owner}, "schema_create": [grantees],
-- "schema_owner": its owner}. Calling it again on a restricted schema (p_previous) completes or
-- repairs the restriction and keeps the owners first recorded.
-- * Bounded: each ALTER ... OWNER waits at most lock_timeout (1 s) for the lease's own locks, and
--   the caller cancels the lease's statements and tries again (pglease.cancel_lease_statements).
-- * All or nothing: it runs in the caller's (sub)transaction.
CREATE OR REPLACE FUNCTION pglease.restrict_schema_writes(p_schema text, p_login_role text, p_message text, p_hint text, p_previous jsonb DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '1s'
AS $$
DECLARE
  v_schema   oid := to_regnamespace(quote_ident(p_schema));
  v_guard    text := pglease.quota_role(p_login_role);
  v_guard_id oid;
  v_owners   jsonb := coalesce(p_previous -> 'owners', '{}');
  v_creators jsonb := coalesce(p_previous -> 'schema_create', '[]');
  v_schema_owner text := p_previous ->> 'schema_owner';
  v_rel      record;
  v_grantee  text;
  v_pg17     boolean := current_setting('server_version_num')::int >= 170000;
BEGIN
  IF v_schema IS NULL THEN
    RAISE EXCEPTION 'lease schema % is gone', p_schema USING ERRCODE = '3F000';
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
    v_schema_owner := coalesce(v_schema_owner, (SELECT pg_get_userbyid(n.nspowner) FROM pg_namespace n WHERE n.oid = v_schema));
    EXECUTE format('ALTER SCHEMA %I OWNER TO %I', p_schema, v_guard);
  END IF;
  EXECUTE format('GRANT USAGE ON SCHEMA %I TO %I', p_schema, p_login_role);
  FOR v_grantee IN SELECT DISTINCT g FROM jsonb_array_elements_text(v_creators) g LOOP
    IF v_grantee = 'PUBLIC' THEN
      EXECUTE format('REVOKE CREATE ON SCHEMA %I FROM PUBLIC', p_schema);
    ELSIF to_regrole(quote_ident(v_grantee)) IS NOT NULL THEN
      EXECUTE format('REVOKE CREATE ON SCHEMA %I FROM %I', p_schema, v_grantee);
    END IF;
  END LOOP;

  -- its relations that hold data
  FOR v_rel IN
    SELECT c.oid, c.relkind, format('%I.%I', p_schema, c.relname) AS name,
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
  RETURN jsonb_build_object('owners', v_owners, 'schema_create', v_creators, 'schema_owner', v_schema_owner, 'at', now());
END
$$;

-- pglease.restore_schema_writes: undoes pglease.restrict_schema_writes with what it returned: the
-- triggers go, each relation goes back to its owner (the lease's login role when none was
-- recorded: a relation made while restricted can only have been made by pglease's restriction
-- itself), the schema to its owner (the lease's login role when none was recorded), CREATE to whom
-- had it. Bounded by lock_timeout as the restriction is.
CREATE OR REPLACE FUNCTION pglease.restore_schema_writes(p_schema text, p_login_role text, p_restricted jsonb)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '1s'
AS $$
DECLARE
  v_schema   oid := to_regnamespace(quote_ident(p_schema));
  v_guard_id oid := to_regrole(quote_ident(pglease.quota_role(p_login_role)));
  v_rel      record;
  v_owner    text;
  v_grantee  text;
BEGIN
  IF v_schema IS NULL OR v_guard_id IS NULL THEN
    RETURN;
  END IF;
  -- the schema first: a relation's new owner must hold CREATE on its schema
  IF (SELECT n.nspowner FROM pg_namespace n WHERE n.oid = v_schema) = v_guard_id THEN
    EXECUTE format('ALTER SCHEMA %I OWNER TO %I', p_schema,
                   CASE WHEN to_regrole(quote_ident(p_restricted ->> 'schema_owner')) IS NOT NULL THEN p_restricted ->> 'schema_owner' ELSE p_login_role END);
  END IF;
  FOR v_rel IN
    SELECT c.oid, c.relkind, format('%I.%I', p_schema, c.relname) AS name
      FROM pg_class c WHERE c.relnamespace = v_schema AND c.relkind IN ('r', 'p', 'm') AND c.relowner = v_guard_id
  LOOP
    v_owner := coalesce(p_restricted -> 'owners' ->> v_rel.oid::text, p_login_role);
    IF to_regrole(quote_ident(v_owner)) IS NULL THEN
      v_owner := p_login_role;
    END IF;
    IF v_rel.relkind <> 'm' THEN
      EXECUTE format('DROP TRIGGER IF EXISTS pglease_over_quota ON %s', v_rel.name);
    END IF;
    EXECUTE format('ALTER %s %s OWNER TO %I', CASE v_rel.relkind WHEN 'm' THEN 'MATERIALIZED VIEW' ELSE 'TABLE' END, v_rel.name, v_owner);
  END LOOP;
  FOR v_grantee IN SELECT DISTINCT g FROM jsonb_array_elements_text(coalesce(p_restricted -> 'schema_create', '[]')) g LOOP
    IF v_grantee = 'PUBLIC' THEN
      EXECUTE format('GRANT CREATE ON SCHEMA %I TO PUBLIC', p_schema);
    ELSIF to_regrole(quote_ident(v_grantee)) IS NOT NULL THEN
      EXECUTE format('GRANT CREATE ON SCHEMA %I TO %I', p_schema, v_grantee);
    END IF;
  END LOOP;
END
$$;


-- pglease.large_objects_refusable: whether a lease's large-object writes can be taken from it in
-- this database: the functions that make or grow them (lo_create, lo_creat, lo_from_bytea, lowrite,
-- lo_put) are not PUBLIC's here but its groups' (a superuser's setup took them from PUBLIC:
-- pglease_admin.grant_quota_needs in the lease database, src/db/lease-template.ts in the template of
-- database leases; the service gave them to the groups: pglease.grant_large_object_writes), and
-- memberships have their own INHERIT (Postgres 16+). Otherwise large objects stay counted in a
-- lease's size only (sql/observe.sql).
CREATE OR REPLACE FUNCTION pglease.large_objects_refusable()
RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT current_setting('server_version_num')::int >= 160000
     AND NOT EXISTS (SELECT 1 FROM pg_proc p, aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a
                      WHERE p.oid = 'pg_catalog.lo_from_bytea(oid, bytea)'::regprocedure AND a.grantee = 0)
$$;

-- pglease.grant_large_object_writes: the large-object functions PUBLIC lost (see above), to the
-- groups p_groups: their leases make and write large objects as before, through their group. Run
-- at every start; returns whether the functions are the groups' (false: PUBLIC's, or the service
-- may not grant them).
CREATE OR REPLACE FUNCTION pglease.grant_large_object_writes(p_groups text[])
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_group text;
BEGIN
  IF NOT pglease.large_objects_refusable()
     OR NOT has_function_privilege(current_user, 'pg_catalog.lo_from_bytea(oid, bytea)', 'EXECUTE WITH GRANT OPTION') THEN
    RETURN false;
  END IF;
  FOR v_group IN SELECT g FROM unnest(p_groups) g
                  WHERE to_regrole(quote_ident(g)) IS NOT NULL
                    AND NOT has_function_privilege(g, 'pg_catalog.lo_from_bytea(oid, bytea)', 'EXECUTE') LOOP
    EXECUTE format('GRANT EXECUTE ON FUNCTION pg_catalog.lo_create(oid), pg_catalog.lo_creat(integer), pg_catalog.lo_from_bytea(oid, bytea), '
                   'pg_catalog.lowrite(integer, bytea), pg_catalog.lo_put(oid, bigint, bytea) TO %I', v_group);
  END LOOP;
  RETURN true;
END
$$;

-- pglease.set_group_inherit: whether p_member inherits from its group p_group: through the
-- superuser's function pglease_admin.set_lease_group_inherit (sql/admin/superuser.sql) when p_admin
-- and it takes the pair (a schema lease's group in the lease database of a pglease given a
-- superuser, where make_lease_roles grants that membership as the superuser), else by the service's
-- own GRANT (no superuser; a database lease's own database, where the group is the service's grant).
CREATE OR REPLACE FUNCTION pglease.set_group_inherit(p_group text, p_member text, p_inherit boolean, p_admin boolean)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  -- nested: the call is planned only where the schema pglease_admin is (not in a lease's database)
  IF p_admin THEN
    IF pglease_admin.set_lease_group_inherit(p_group, p_member, p_inherit) THEN
      RETURN;
    END IF;
  END IF;
  EXECUTE format('GRANT %I TO %I WITH INHERIT %s', p_group, p_member, CASE WHEN p_inherit THEN 'TRUE' ELSE 'FALSE' END);
END
$$;

-- pglease.restrict_large_objects: the lease roles p_roles may no longer make or grow large objects
-- in this database: each stops inheriting from the groups that gave it EXECUTE on the large-object
-- functions (GRANT ... WITH INHERIT FALSE), and is granted CONNECT and TEMPORARY on this database
-- directly, which a lease group gave it too, so that it still logs in. Refused by Postgres itself
-- ("permission denied for function lo_from_bytea"): no hook lets a non-superuser word it as the
-- plan's message. Returns the memberships it cut ([]: none, when pglease.large_objects_refusable is
-- false). Catalogs only.
-- (p_admin added: the old signature would stay as an overload)
DROP FUNCTION IF EXISTS pglease.restrict_large_objects(text[]);
CREATE OR REPLACE FUNCTION pglease.restrict_large_objects(
  p_roles text[],
  -- whether the superuser's function changes the lease's group memberships (pglease.set_group_inherit)
  p_admin boolean DEFAULT false)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_cut jsonb := '[]';
  v_grant record;
  v_connect boolean;
BEGIN
  IF NOT pglease.large_objects_refusable() THEN
    RETURN v_cut;
  END IF;
  FOR v_grant IN
    SELECT DISTINCT pg_get_userbyid(m.roleid) AS grp, pg_get_userbyid(m.member) AS member
      FROM pg_auth_members m
     WHERE m.member IN (SELECT to_regrole(quote_ident(r)) FROM unnest(p_roles) r)
       AND has_function_privilege(m.roleid, 'pg_catalog.lo_from_bytea(oid, bytea)', 'EXECUTE')
       -- groups only, not the lease's own roles: the authenticator's membership in the login role
       -- (which inherits from its group) is WITH INHERIT FALSE from the start, and a restoration
       -- must not make it inherit
       AND pg_get_userbyid(m.roleid) !~ '^lease_[0-9a-f]{16}'
  LOOP
    -- CONNECT of its own only when it had none (a database lease's authenticator has it already:
    -- the restoration must not take that away)
    v_connect := NOT EXISTS (SELECT 1 FROM pg_database d, aclexplode(d.datacl) a
                              WHERE d.datname = current_database() AND a.grantee = to_regrole(quote_ident(v_grant.member))
                                AND a.privilege_type = 'CONNECT');
    IF v_connect THEN
      EXECUTE format('GRANT CONNECT, TEMPORARY ON DATABASE %I TO %I', current_database(), v_grant.member);
    END IF;
    PERFORM pglease.set_group_inherit(v_grant.grp, v_grant.member, false, p_admin);
    v_cut := v_cut || jsonb_build_object('group', v_grant.grp, 'member', v_grant.member, 'connect', v_connect);
  END LOOP;
  RETURN v_cut;
END
$$;

-- pglease.restore_large_objects: undoes pglease.restrict_large_objects with what it returned.
DROP FUNCTION IF EXISTS pglease.restore_large_objects(jsonb);
CREATE OR REPLACE FUNCTION pglease.restore_large_objects(p_cut jsonb, p_admin boolean DEFAULT false)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_grant record;
BEGIN
  FOR v_grant IN SELECT x ->> 'group' AS grp, x ->> 'member' AS member, coalesce((x ->> 'connect')::boolean, false) AS connect
                   FROM jsonb_array_elements(coalesce(p_cut, '[]')) x LOOP
    IF to_regrole(quote_ident(v_grant.grp)) IS NOT NULL AND to_regrole(quote_ident(v_grant.member)) IS NOT NULL THEN
      PERFORM pglease.set_group_inherit(v_grant.grp, v_grant.member, true, p_admin);
      IF v_grant.connect THEN
        EXECUTE format('REVOKE CONNECT, TEMPORARY ON DATABASE %I FROM %I', current_database(), v_grant.member);
      END IF;
    END IF;
  END LOOP;
END
$$;

-- pglease.restrict_database_writes: restricts the database it runs in, a database lease's whose
-- login role is p_login_role, and returns what it changed, for pglease.restore_database_writes:
-- {"schemas": {schema: what pglease.restrict_schema_writes returned}, "database_owner": owner}.
-- * every schema of the lease's (its own, and public, which belongs to the database's owner) is
--   restricted as a schema lease's is;
-- * the database changes hands to <login role>_quota, so that the lease may no longer CREATE
--   SCHEMA (a database's owner may, and may grant itself back what is revoked from it), nor create
--   in public (CREATE there is pg_database_owner's); the login role is granted CONNECT and
--   TEMPORARY, which it had as the owner.
-- Calling it again (p_previous) completes or repairs the restriction; all or nothing (the
-- caller's transaction).
CREATE OR REPLACE FUNCTION pglease.restrict_database_writes(p_login_role text, p_message text, p_hint text, p_previous jsonb DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '1s'
AS $$
DECLARE
  v_guard    text := pglease.quota_role(p_login_role);
  v_login_id oid := to_regrole(quote_ident(p_login_role));
  v_guard_id oid;
  v_schemas  jsonb := coalesce(p_previous -> 'schemas', '{}');
  v_owner    text := p_previous ->> 'database_owner';
  v_schema   text;
BEGIN
  IF v_login_id IS NULL THEN
    RAISE EXCEPTION 'lease role % is gone', p_login_role USING ERRCODE = '42704';
  END IF;
  FOR v_schema IN
    SELECT n.nspname FROM pg_namespace n
     WHERE n.nspname <> 'pglease' AND n.nspname <> 'information_schema' AND n.nspname !~ '^pg_'
       AND (n.nspowner IN (v_login_id, 'pg_database_owner'::regrole) OR v_schemas ? n.nspname
            OR n.nspowner = to_regrole(quote_ident(v_guard)))
     ORDER BY n.nspname
  LOOP
    v_schemas := v_schemas || jsonb_build_object(v_schema,
      pglease.restrict_schema_writes(v_schema, p_login_role, p_message, p_hint, v_schemas -> v_schema));
  END LOOP;
  -- the quota role exists now (made by the first schema's restriction, or here)
  IF to_regrole(quote_ident(v_guard)) IS NULL THEN
    EXECUTE format('CREATE ROLE %I NOLOGIN NOINHERIT', v_guard);
    EXECUTE format('GRANT %I TO %I', v_guard, current_user);
  END IF;
  v_guard_id := to_regrole(quote_ident(v_guard));
  IF (SELECT d.datdba FROM pg_database d WHERE d.datname = current_database()) <> v_guard_id THEN
    v_owner := coalesce(v_owner, (SELECT pg_get_userbyid(d.datdba) FROM pg_database d WHERE d.datname = current_database()));
    EXECUTE format('ALTER DATABASE %I OWNER TO %I', current_database(), v_guard);
  END IF;
  EXECUTE format('GRANT CONNECT, TEMPORARY ON DATABASE %I TO %I', current_database(), p_login_role);
  RETURN jsonb_build_object('schemas', v_schemas, 'database_owner', v_owner, 'at', now(),
                            'large_objects', coalesce(p_previous -> 'large_objects', '[]')
                                             || pglease.restrict_large_objects(ARRAY[p_login_role, p_login_role || '_auth']));
END
$$;

-- pglease.restore_database_writes: undoes pglease.restrict_database_writes with what it returned:
-- the database goes back to its owner first (public's owner is the database's), then each schema.
CREATE OR REPLACE FUNCTION pglease.restore_database_writes(p_login_role text, p_restricted jsonb)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '1s'
AS $$
DECLARE
  v_owner  text := coalesce(p_restricted ->> 'database_owner', p_login_role);
  v_schema text;
BEGIN
  IF to_regrole(quote_ident(v_owner)) IS NULL THEN
    v_owner := p_login_role;
  END IF;
  IF (SELECT d.datdba FROM pg_database d WHERE d.datname = current_database()) <> to_regrole(quote_ident(v_owner)) THEN
    EXECUTE format('ALTER DATABASE %I OWNER TO %I', current_database(), v_owner);
  END IF;
  FOR v_schema IN SELECT jsonb_object_keys(coalesce(p_restricted -> 'schemas', '{}')) LOOP
    IF to_regnamespace(quote_ident(v_schema)) IS NOT NULL THEN
      PERFORM pglease.restore_schema_writes(v_schema, p_login_role, p_restricted -> 'schemas' -> v_schema);
    END IF;
  END LOOP;
  PERFORM pglease.restore_large_objects(p_restricted -> 'large_objects');
END
$$;
