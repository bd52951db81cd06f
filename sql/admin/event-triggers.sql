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
-- function above. Idempotent; another pglease process installing them at the same moment is fine.
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
EXCEPTION WHEN duplicate_object THEN
  NULL;
END
$$;
