-- The REST API's Postgres side: the introspection its schema cache is built from, and the
-- notifications that keep that cache (and the lease lookup cache) from going stale.

-- pglease.rest_schema: everything the REST API needs to know about one lease schema, as one JSON
-- document: relations (tables, views, ...) with their columns, keys and per-role privileges,
-- foreign keys, the column lineage of views (their rewrite rule, parsed by the service), routines
-- and enums. One round trip per (re)load; the service turns it into relationships and plans from
-- it. `p_roles` are the roles whose privileges are reported (the lease role and its anonymous
-- role), for the OpenAPI document's "which operations may this caller perform".
-- `readsRequestSettings` says whether any SQL of the schema (function bodies, views, policies,
-- defaults, checks) may read settings (current_setting, pg_settings, SHOW, `request.`): when none
-- does, the service need not publish request.headers and the like to every request.
-- It reads catalogs only, with one exception: pg_relation_is_updatable opens the relation, so it
-- waits for a lock the lease holds on it (LOCK TABLE, an ALTER in an open transaction). Tables are
-- always updatable and materialized views never, so it runs for views and foreign tables only,
-- and lock_timeout bounds the wait for those: the service's connection is not held for as long as
-- the lease keeps its lock (the REST API answers 503 PGRST002, as PostgREST does when it cannot
-- load its schema cache).
-- Its cost grows with the catalogs (pg_class, pg_attribute and pg_proc are scanned: they have no
-- index by schema), so it must not be JIT-compiled: its planned cost passes jit_above_cost once
-- the database holds a few hundred leases, and on Postgres 15 with JIT and 1,000 one-table leases
-- a load took 112 ms with it, 4 ms without. It runs in a lease's database too, as the lease's
-- authenticator (database leases), whose session settings are not the service's.
CREATE OR REPLACE FUNCTION pglease.rest_schema(p_schema name, p_roles text[] DEFAULT '{}')
RETURNS json
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '2s'
SET jit = off
AS $$
  WITH
  ns AS (
    SELECT n.oid FROM pg_namespace n WHERE n.nspname = p_schema
  ),
  rels AS (
    SELECT c.oid, c.relname, c.relkind,
           obj_description(c.oid, 'pg_class') AS description,
           CASE c.relkind
             -- UPDATE, INSERT and DELETE: 1 << CMD_UPDATE | 1 << CMD_INSERT | 1 << CMD_DELETE
             WHEN 'r' THEN 28 WHEN 'p' THEN 28
             WHEN 'm' THEN 0
             ELSE pg_relation_is_updatable(c.oid::regclass, true)
           END AS updatable_flags
      FROM pg_class c
     WHERE c.relnamespace = (SELECT oid FROM ns)
       AND c.relkind IN ('r', 'v', 'm', 'f', 'p')
  ),
  cols AS (
    SELECT a.attrelid,
           json_agg(json_build_object(
             'name', a.attname,
             'position', a.attnum,
             'type', format_type(a.atttypid, a.atttypmod),
             'typeName', t.typname,
             'typeSchema', tn.nspname,
             'typeKind', t.typtype,
             'elementType', CASE WHEN et.oid IS NOT NULL THEN et.typname END,
             'baseType', CASE WHEN t.typtype = 'd' THEN format_type(t.typbasetype, t.typtypmod) END,
             'nullable', NOT a.attnotnull,
             'default', pg_get_expr(d.adbin, d.adrelid),
             'generated', a.attgenerated <> '' OR a.attidentity = 'a',
             'identity', a.attidentity <> '',
             'maxLength', information_schema._pg_char_max_length(a.atttypid, a.atttypmod),
             'description', col_description(a.attrelid, a.attnum),
             'enumValues', CASE WHEN t.typtype = 'e' THEN
               (SELECT json_agg(e.enumlabel ORDER BY e.enumsortorder) FROM pg_enum e WHERE e.enumtypid = t.oid) END
           ) ORDER BY a.attnum) AS columns
      FROM pg_attribute a
      JOIN pg_type t ON t.oid = a.atttypid
      JOIN pg_namespace tn ON tn.oid = t.typnamespace
      LEFT JOIN pg_type et ON et.oid = t.typelem AND t.typcategory = 'A'
      LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
     WHERE a.attrelid IN (SELECT oid FROM rels) AND a.attnum > 0 AND NOT a.attisdropped
     GROUP BY a.attrelid
  ),
  keys AS (
    SELECT con.conrelid, con.contype, con.conname,
           (SELECT json_agg(a.attname ORDER BY k.ord)
              FROM unnest(con.conkey) WITH ORDINALITY k(attnum, ord)
              JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum) AS columns
      FROM pg_constraint con
     WHERE con.conrelid IN (SELECT oid FROM rels) AND con.contype IN ('p', 'u')
  ),
  fks AS (
    SELECT con.conname, src.relname AS table_name, dst.relname AS foreign_table,
           (SELECT json_agg(json_build_array(sa.attname, da.attname) ORDER BY k.ord)
              FROM unnest(con.conkey, con.confkey) WITH ORDINALITY k(src_attnum, dst_attnum, ord)
              JOIN pg_attribute sa ON sa.attrelid = con.conrelid AND sa.attnum = k.src_attnum
              JOIN pg_attribute da ON da.attrelid = con.confrelid AND da.attnum = k.dst_attnum) AS columns
      FROM pg_constraint con
      JOIN pg_class src ON src.oid = con.conrelid
      JOIN pg_class dst ON dst.oid = con.confrelid
     WHERE con.contype = 'f'
       -- the copies Postgres keeps on partitions (conparentid set) are not relationships of their own
       AND con.conparentid = 0
       AND src.relnamespace = (SELECT oid FROM ns)
       AND dst.relnamespace = (SELECT oid FROM ns)
  ),
  routines AS (
    SELECT p.oid, p.proname, p.provolatile, p.proretset, p.pronargs, p.pronargdefaults, p.provariadic <> 0 AS variadic,
           format_type(p.prorettype, NULL) AS return_type, rt.typname AS return_type_name, rt.typtype AS return_type_kind,
           CASE WHEN rt.typrelid <> 0 THEN (SELECT r.relname FROM pg_class r WHERE r.oid = rt.typrelid AND r.relnamespace = (SELECT oid FROM ns)) END AS return_relation,
           -- a function of one row of a relation of the lease (`f(films)`): a computed relationship
           CASE WHEN p.pronargs = 1 THEN (SELECT r.relname FROM pg_type at JOIN pg_class r ON r.oid = at.typrelid
                                          WHERE at.oid = p.proargtypes[0] AND r.relnamespace = (SELECT oid FROM ns)) END AS arg_relation,
           NOT p.proretset OR p.prorows = 1 AS single_row,
           obj_description(p.oid, 'pg_proc') AS description,
           (SELECT json_agg(json_build_object(
                     'name', coalesce(p.proargnames[i], ''),
                     'type', format_type(coalesce(p.proallargtypes[i], p.proargtypes[i - 1]), NULL),
                     'mode', coalesce(p.proargmodes[i], 'i')) ORDER BY i)
              FROM generate_series(1, coalesce(array_length(p.proallargtypes, 1), p.pronargs)) i) AS params
      FROM pg_proc p
      JOIN pg_type rt ON rt.oid = p.prorettype
     WHERE p.pronamespace = (SELECT oid FROM ns) AND p.prokind = 'f'
  )
  SELECT json_build_object(
    'schema', p_schema,
    'exists', EXISTS (SELECT 1 FROM ns),
    'relations', coalesce((
      SELECT json_agg(json_build_object(
               'name', r.relname,
               'kind', r.relkind,
               'description', r.description,
               'insertable', (r.updatable_flags & 8) = 8 OR r.relkind IN ('r', 'p'),
               'updatable', (r.updatable_flags & 4) = 4 OR r.relkind IN ('r', 'p'),
               'deletable', (r.updatable_flags & 16) = 16 OR r.relkind IN ('r', 'p'),
               'columns', coalesce(c.columns, '[]'),
               'primaryKey', coalesce((SELECT k.columns FROM keys k WHERE k.conrelid = r.oid AND k.contype = 'p'), '[]'),
               'uniqueKeys', coalesce((SELECT json_agg(k.columns) FROM keys k WHERE k.conrelid = r.oid), '[]'),
               'privileges', coalesce((
                 SELECT json_object_agg(role, ARRAY(
                          SELECT privilege FROM unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE']) privilege
                           WHERE has_table_privilege(role, r.oid, privilege)))
                   FROM unnest(p_roles) role
                  WHERE EXISTS (SELECT 1 FROM pg_roles WHERE rolname = role)), '{}'),
               'viewDefinition', CASE WHEN r.relkind IN ('v', 'm') THEN
                 (SELECT rw.ev_action::text FROM pg_rewrite rw WHERE rw.ev_class = r.oid AND rw.rulename = '_RETURN') END,
               'oid', r.oid
             ) ORDER BY r.relname)
        FROM rels r LEFT JOIN cols c ON c.attrelid = r.oid), '[]'),
    'foreignKeys', coalesce((
      SELECT json_agg(json_build_object('constraint', f.conname, 'table', f.table_name, 'foreignTable', f.foreign_table, 'columns', f.columns)
                      ORDER BY f.table_name, f.conname)
        FROM fks f), '[]'),
    'routines', coalesce((
      SELECT json_agg(json_build_object(
               'name', r.proname,
               'volatility', r.provolatile,
               'returnsSet', r.proretset,
               'returnType', r.return_type,
               'returnTypeName', r.return_type_name,
               'returnTypeKind', r.return_type_kind,
               'returnRelation', r.return_relation,
               'argRelation', r.arg_relation,
               'singleRow', r.single_row,
               'argCount', r.pronargs,
               'defaultCount', r.pronargdefaults,
               'variadic', r.variadic,
               'description', r.description,
               'params', coalesce(r.params, '[]'),
               'privileges', coalesce((
                 SELECT json_object_agg(role, has_function_privilege(role, r.oid, 'EXECUTE'))
                   FROM unnest(p_roles) role
                  WHERE EXISTS (SELECT 1 FROM pg_roles WHERE rolname = role)), '{}')
             ) ORDER BY r.proname, r.oid)
        FROM routines r), '[]'),
    'readsRequestSettings',
      -- the schema's functions first, then the pattern: with both conditions on one scan of pg_proc the
      -- pattern was matched against every function's source (3.4 of a 7 ms load on a fresh server)
      EXISTS (SELECT 1 FROM (SELECT p.prosrc FROM pg_proc p WHERE p.pronamespace = (SELECT oid FROM ns) OFFSET 0) p
               WHERE p.prosrc ~* settings.pattern)
      OR EXISTS (SELECT 1 FROM rels r WHERE r.relkind IN ('v', 'm') AND pg_get_viewdef(r.oid) ~* settings.pattern)
      OR EXISTS (SELECT 1 FROM pg_policy pol JOIN rels r ON r.oid = pol.polrelid
                  WHERE coalesce(pg_get_expr(pol.polqual, pol.polrelid), '') || coalesce(pg_get_expr(pol.polwithcheck, pol.polrelid), '') ~* settings.pattern)
      OR EXISTS (SELECT 1 FROM pg_attrdef d JOIN rels r ON r.oid = d.adrelid WHERE pg_get_expr(d.adbin, d.adrelid) ~* settings.pattern)
      OR EXISTS (SELECT 1 FROM pg_constraint c JOIN rels r ON r.oid = c.conrelid WHERE c.contype = 'c' AND pg_get_constraintdef(c.oid) ~* settings.pattern),
    'enums', coalesce((
      SELECT json_object_agg(t.typname, (SELECT json_agg(e.enumlabel ORDER BY e.enumsortorder) FROM pg_enum e WHERE e.enumtypid = t.oid))
        FROM pg_type t
       WHERE t.typnamespace = (SELECT oid FROM ns) AND t.typtype = 'e'), '{}')
  )
  FROM (SELECT 'current_setting|pg_settings|request\.|\mshow\M' AS pattern) settings
$$;

-- (The DDL event trigger's function is pglease_admin.rest_notify_ddl, sql/admin/superuser.sql: it
-- fires in every session's DDL, a superuser's included, so only a superuser may own it.)

-- pglease.rest_notify_lease_change: row trigger on pglease.leases. When a lease's state or expiry
-- changes (release, expiry, renewal), or what its REST API authenticates with (its JWT secret,
-- declared roles, API settings: sql/auth.sql), NOTIFY pglease_lease_change with its id, so every pglease
-- process drops its cached lookup of that lease and, once it has ended, its connection pool.
CREATE OR REPLACE FUNCTION pglease.rest_notify_lease_change()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  PERFORM pg_notify('pglease_lease_change', NEW.id::text);
  RETURN NULL;
END
$$;

-- pglease.rest_install_notifiers: installs the lease-change trigger above, idempotently; called by
-- the service at start; and says whether the DDL event triggers exist (a superuser installs those:
-- pglease_admin.install_event_triggers). Without them the service falls back to reloading a lease's
-- schema when a request names something it has not cached.
CREATE OR REPLACE FUNCTION pglease.rest_install_notifiers()
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  -- A lease of a warm pool (state 'provisioning', sql/pool.sql) is known to no one until it is
  -- claimed, so no process may have it cached: parking it, its holder's heartbeats and its claim
  -- notify nobody (measured: the NOTIFY was a quarter of a claim's time). Both states are tested:
  -- a notification makes every process look the lease up at once, which caches a parked lease as
  -- not live.
  CREATE OR REPLACE TRIGGER rest_notify_lease_change
    AFTER UPDATE OF state, expires_at, jwt_secret, user_roles, api_settings ON pglease.leases
    FOR EACH ROW WHEN (OLD.state <> 'provisioning' AND NEW.state <> 'provisioning')
    EXECUTE FUNCTION pglease.rest_notify_lease_change();
  RETURN EXISTS (SELECT 1 FROM pg_event_trigger WHERE evtname = 'pglease_rest_ddl_end')
     AND EXISTS (SELECT 1 FROM pg_event_trigger WHERE evtname = 'pglease_rest_sql_drop');
END
$$;
