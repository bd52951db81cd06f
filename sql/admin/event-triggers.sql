-- The DDL event triggers of the REST schema cache, in the schema pglease_admin that only superusers
-- own and reach. Applied by a superuser session (src/db/superuser-setup.ts) to the lease database,
-- and to the lease template database that every database lease is cloned from
-- (src/db/lease-template.ts), so that each lease database has them too: event triggers can only be
-- made by a superuser, and a lease that owns its database still cannot drop, disable or change
-- them (they and their function are a superuser's). Without a superuser there are none, in either,
-- and the REST API falls back to reloading a schema when a request names something it has not
-- cached (sql/rest.sql, pglease.rest_install_notifiers).
--
-- The caller pins search_path to pg_catalog, pg_temp.

CREATE SCHEMA IF NOT EXISTS pglease_admin;
REVOKE ALL ON SCHEMA pglease_admin FROM PUBLIC;
ALTER DEFAULT PRIVILEGES IN SCHEMA pglease_admin REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;

-- pglease_admin.rest_notify_ddl: event trigger function. After DDL (or a DROP) that touches a lease
-- schema, NOTIFY pglease_rest_ddl with that schema's name so the service drops its cached schema
-- at once. GRANT, REVOKE and COMMENT may report no schema: then the lease the session belongs to
-- (its role is named after its schema) is notified. Never raises: DDL must not fail because of it.
-- It runs as whoever runs the DDL (a lease, mostly) and reads only what the event hands it.
CREATE OR REPLACE FUNCTION pglease_admin.rest_notify_ddl()
RETURNS event_trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_schemas text[];
  v_session_lease text := substring(current_user from '^(lease_[0-9a-f]{16})');
BEGIN
  -- pglease.provision's own DDL: a schema being created has no cached copy to drop
  IF current_setting('pglease.provisioning', true) = 'on' THEN
    RETURN;
  END IF;
  IF TG_EVENT = 'sql_drop' THEN
    SELECT array_agg(DISTINCT x.schema_name) INTO v_schemas
      FROM (SELECT CASE WHEN o.object_type = 'schema' THEN o.object_name ELSE o.schema_name END
              FROM pg_event_trigger_dropped_objects() o) x(schema_name)
     WHERE x.schema_name LIKE 'lease\_%';
  ELSE
    SELECT array_agg(DISTINCT c.schema_name) INTO v_schemas
      FROM pg_event_trigger_ddl_commands() c
     WHERE c.schema_name LIKE 'lease\_%';
  END IF;
  IF v_session_lease IS NOT NULL AND NOT (v_session_lease = ANY (coalesce(v_schemas, '{}'))) THEN
    v_schemas := array_append(coalesce(v_schemas, '{}'), v_session_lease);
  END IF;
  PERFORM pg_notify('pglease_rest_ddl', s) FROM unnest(v_schemas) s;
EXCEPTION WHEN OTHERS THEN
  RAISE WARNING 'pglease: schema change notification failed: %', SQLERRM;
END
$$;

-- pglease_admin.install_event_triggers: the DDL event triggers of the REST schema cache, on the
-- function above, and the one that explains a schema lease's refusals. Idempotent; another pglease process installing them at the same moment is fine.
CREATE OR REPLACE FUNCTION pglease_admin.install_event_triggers()
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_event_trigger WHERE evtname = 'pglease_rest_ddl_end') THEN
    CREATE EVENT TRIGGER pglease_rest_ddl_end ON ddl_command_end EXECUTE FUNCTION pglease_admin.rest_notify_ddl();
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_event_trigger WHERE evtname = 'pglease_rest_sql_drop') THEN
    CREATE EVENT TRIGGER pglease_rest_sql_drop ON sql_drop EXECUTE FUNCTION pglease_admin.rest_notify_ddl();
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_event_trigger WHERE evtname = 'pglease_schema_lease_hint') THEN
    CREATE EVENT TRIGGER pglease_schema_lease_hint ON ddl_command_start
      WHEN TAG IN ('CREATE EXTENSION', 'CREATE SCHEMA', 'CREATE TYPE', 'CREATE TABLE', 'CREATE VIEW', 'CREATE FUNCTION',
                   'CREATE SEQUENCE', 'CREATE DOMAIN', 'CREATE INDEX', 'CREATE MATERIALIZED VIEW', 'CREATE PROCEDURE', 'CREATE TABLE AS')
      EXECUTE FUNCTION pglease_admin.schema_lease_ddl_hint();
  END IF;
EXCEPTION WHEN duplicate_object THEN
  NULL;
END
$$;

-- pglease_admin.schema_lease_ddl_hint: event trigger function (ddl_command_start) that turns the
-- permission errors a schema lease meets when a tool expects a database of its own into one that
-- says so: CREATE EXTENSION of an extension not installed here, CREATE SCHEMA, and CREATE ... of an
-- object named "public".<name>. Each of these fails anyway for a schema lease (it has no CREATE on
-- the shared database nor on its public schema): the error is the same SQLSTATE, 42501, raised a
-- moment earlier with a message that points to {"kind": "database"}. Likewise a CREATE TABLE that
-- calls uuid_generate_v4() where uuid-ossp is not installed (42883). Nothing else is refused.
-- It acts only for a lease's own roles in the shared lease database: not in a database lease's own
-- database (named lease_<hex>, cloned with this trigger), where the lease may do all of these.
-- It reads current_query() and the catalogs only, as whoever runs the DDL.
CREATE OR REPLACE FUNCTION pglease_admin.schema_lease_ddl_hint()
RETURNS event_trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_query text;
  v_extension text;
  v_refused text;
BEGIN
  IF current_user !~ '^lease_[0-9a-f]{16}$' OR current_database() ~ '^lease_[0-9a-f]{16}$' THEN
    RETURN;
  END IF;
  v_query := coalesce(current_query(), '');
  IF TG_TAG = 'CREATE EXTENSION' THEN
    v_extension := substring(v_query FROM '(?i)create\s+extension\s+(?:if\s+not\s+exists\s+)?"?([A-Za-z0-9_-]+)"?');
    IF v_extension IS NULL OR NOT EXISTS (SELECT 1 FROM pg_extension e WHERE e.extname = v_extension) THEN
      v_refused := format('permission denied to create extension %s', coalesce(quote_ident(v_extension), ''));
    END IF;
  ELSIF TG_TAG = 'CREATE SCHEMA' THEN
    v_refused := 'permission denied to create a schema';
  ELSIF v_query ~* ('\mcreate\s+(?:or\s+replace\s+)?(?:unlogged\s+|temp\s+|temporary\s+)?'
                     || replace(lower(substr(TG_TAG, 8)), ' ', '\s+') || '\s+(?:if\s+not\s+exists\s+)?"?public"?\s*\.') THEN
    -- the object's own name is "public".<name> (Sequelize's enums, drizzle-kit's tables), also
    -- inside a DO block
    v_refused := 'permission denied for schema public';
  ELSIF TG_TAG = 'CREATE TABLE' AND v_query ~* '\muuid_generate_v[14]\s*\('
        AND NOT EXISTS (SELECT 1 FROM pg_proc p WHERE p.proname IN ('uuid_generate_v1', 'uuid_generate_v4')) THEN
    -- TypeORM's uuid keys: its CREATE EXTENSION "uuid-ossp" failed (and was only logged)
    RAISE EXCEPTION 'function uuid_generate_v4() does not exist: it comes from the extension "uuid-ossp", and this lease is a schema in a shared database (kind "schema"), which cannot create extensions; a lease of kind "database" (POST /v1/leases {"kind": "database"}, pglease lease --kind database) is a database of its own where it can'
      USING ERRCODE = '42883',
            HINT = 'Create the lease with {"kind": "database"}, or set PGLEASE_DEFAULT_KIND=database; or use gen_random_uuid(), built in.';
  END IF;
  IF v_refused IS NOT NULL THEN
    RAISE EXCEPTION '%: this lease is a schema in a shared database (kind "schema"), which cannot create extensions, schemas or objects in public; a lease of kind "database" (POST /v1/leases {"kind": "database"}, pglease lease --kind database) is a database of its own where all of these work', v_refused
      USING ERRCODE = '42501',
            HINT = 'Create the lease with {"kind": "database"}, or set PGLEASE_DEFAULT_KIND=database.';
  END IF;
END
$$;
