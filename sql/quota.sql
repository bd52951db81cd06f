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
--   * it may no longer make or grow large objects (pglease.restrict_large_objects), where a
--     superuser's setup took the large-object functions from PUBLIC (Postgres 16+); elsewhere
--     large objects are only counted in its size, and keep it restricted until it unlinks them.
-- What the lease can still do while restricted: read, DELETE, TRUNCATE, VACUUM (17+), nextval,
-- lo_unlink, and temporary tables (TEMPORARY is granted to all the database's leases through their
-- group): not refused here but counted in its size by the observer, which also ends its sessions
-- that hold temporary tables (sql/observe.sql, pglease.end_temp_sessions). Its temporary files are bounded by temp_file_limit (sql/plans.sql). It cannot DROP
-- or ALTER its tables, CREATE anything in its schema, or grant writes to another role (a lease
-- that granted INSERT to its anonymous role or another lease is refused by the trigger too).
-- A lease's own code still runs as the table's owner where Postgres runs it so (an index
-- expression during ANALYZE, in a security-restricted operation): as `<lease>_quota`, it could drop
-- the trigger; every observation of a restricted lease checks the triggers and owners and
-- restricts it again (pglease.restriction_intact).
-- All of it reads and changes catalogs only: ALTER ... OWNER, GRANT, REVOKE and CREATE TRIGGER
-- plan and run nothing of the lease's.

-- pglease.restrict_writes: restricts lease p_lease's schema (pglease.restrict_schema_writes,
-- sql/quota-schema.sql) and its large objects (pglease.restrict_large_objects), and returns what it
-- changed, for pglease.restore_writes.
CREATE OR REPLACE FUNCTION pglease.restrict_writes(p_lease pglease.leases, p_message text, p_hint text, p_previous jsonb DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_restricted jsonb := pglease.restrict_schema_writes(p_lease.schema_name, p_lease.role_name, p_message, p_hint, p_previous);
BEGIN
  RETURN v_restricted || jsonb_build_object('large_objects',
    pglease.restrict_large_objects(ARRAY[p_lease.role_name, p_lease.auth_role], pglease.may_call_admin('set_lease_group_inherit')));
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

-- pglease.restore_writes: undoes pglease.restrict_writes with what it returned.
CREATE OR REPLACE FUNCTION pglease.restore_writes(p_lease pglease.leases, p_restricted jsonb)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  PERFORM pglease.restore_schema_writes(p_lease.schema_name, p_lease.role_name, p_restricted);
  PERFORM pglease.restore_large_objects(p_restricted -> 'large_objects', pglease.may_call_admin('set_lease_group_inherit'));
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
