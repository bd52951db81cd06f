-- Plans: the limits a lease lives within (pglease.plans). A create picks one (src/control/plan-choice.ts
-- decides which, in one place); these functions put it on the lease's roles. Size and rows are not
-- limits Postgres enforces by itself: the observer (sql/observe.sql) measures them and restricts a
-- lease over them (sql/quota.sql).

-- pglease.temp_file_limit: a plan's bound on each session's temporary files (sorts, hashes and
-- materializations that spill), as temp_file_limit's value: its size limit, in kB. Per session: a
-- lease's sessions together may spill their connection limit times that, and only while a
-- statement runs (the files go with it). NULL: the service may not set the parameter (a server
-- set up without a superuser, or before Postgres 15: SET on a parameter is granted from 15 on).
CREATE OR REPLACE FUNCTION pglease.temp_file_limit(p_plan pglease.plans)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT CASE WHEN current_setting('server_version_num')::int >= 150000
                   AND has_parameter_privilege('temp_file_limit', 'SET')
              THEN least(p_plan.max_size_bytes / 1024, 2147483647)::text || 'kB' END
$$;

-- pglease.apply_temp_file_limit: the default plan's temp_file_limit on the lease database (every
-- lease session's, unless its role has another: leases on other plans, pglease.apply_plan). Run at
-- every start and when the default plan changes; returns what it set (NULL: nothing).
CREATE OR REPLACE FUNCTION pglease.apply_temp_file_limit()
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_limit text := (SELECT pglease.temp_file_limit(p) FROM pglease.plans p WHERE p.name = 'default');
BEGIN
  IF v_limit IS NOT NULL AND NOT EXISTS (
       SELECT 1 FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase
        WHERE d.datname = current_database() AND s.setrole = 0 AND ('temp_file_limit=' || v_limit) = ANY (s.setconfig)) THEN
    EXECUTE format('ALTER DATABASE %I SET temp_file_limit TO %L', current_database(), v_limit);
  END IF;
  RETURN v_limit;
END
$$;

-- pglease.apply_role_temp_file_limit: plan p_plan's temp_file_limit on the roles lease p_lease's
-- sessions log in as (its login role and REST authenticator); the default plan's comes from the
-- database (pglease.apply_temp_file_limit), so a lease on it needs none of its own.
CREATE OR REPLACE FUNCTION pglease.apply_role_temp_file_limit(p_lease pglease.leases, p_plan pglease.plans)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_limit text := pglease.temp_file_limit(p_plan);
BEGIN
  IF v_limit IS NULL OR p_plan.name = 'default' THEN
    RETURN;
  END IF;
  EXECUTE format('ALTER ROLE %I SET temp_file_limit TO %L', p_lease.role_name, v_limit);
  EXECUTE format('ALTER ROLE %I SET temp_file_limit TO %L', p_lease.auth_role, v_limit);
END
$$;

-- pglease.apply_plan: puts plan p_plan on the live lease p_lease_id and returns the lease, or NULL
-- when it is not live (released meanwhile).
--   * connections: the login role's and the authenticator's CONNECTION LIMIT become the plan's
--     when it is lower, never higher: the throttle may already have lowered them for a client
--     near its connection budget (sql/throttle.sql), and a plan must not undo that;
--   * statement_timeout: set on both roles (new sessions; a lease fresh from a create has none);
--   * TTL: an expiry beyond the plan's maximum is brought back to it (the route refuses a longer
--     ttl with a clear error first; this holds for the pooled and seeded paths too).
-- A lease whose plan was never applied (a create whose process died between the two calls) keeps
-- the 'default' plan of its column, so it still has a size bound.
CREATE OR REPLACE FUNCTION pglease.apply_plan(p_lease_id uuid, p_plan text)
RETURNS pglease.leases
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_plan  pglease.plans;
  v_lease pglease.leases;
  v_limit int;
BEGIN
  SELECT * INTO v_plan FROM pglease.plans WHERE name = p_plan;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'no plan named %', p_plan USING ERRCODE = '22023';
  END IF;
  UPDATE pglease.leases
     SET plan = p_plan,
         expires_at = CASE WHEN v_plan.max_ttl_seconds IS NOT NULL
                           THEN least(coalesce(expires_at, 'infinity'), now() + make_interval(secs => v_plan.max_ttl_seconds))
                           ELSE expires_at END
   WHERE id = p_lease_id AND state = 'active'
   RETURNING * INTO v_lease;
  IF NOT FOUND THEN
    RETURN NULL;
  END IF;
  IF v_plan.max_connections IS NOT NULL THEN
    SELECT r.rolconnlimit INTO v_limit FROM pg_roles r WHERE r.rolname = v_lease.role_name;
    IF v_limit < 0 OR v_limit > v_plan.max_connections THEN
      EXECUTE format('ALTER ROLE %I CONNECTION LIMIT %s', v_lease.role_name, v_plan.max_connections);
    END IF;
  END IF;
  IF v_plan.statement_timeout IS NOT NULL THEN
    EXECUTE format('ALTER ROLE %I SET statement_timeout TO %L', v_lease.role_name, v_plan.statement_timeout);
    EXECUTE format('ALTER ROLE %I SET statement_timeout TO %L', v_lease.auth_role, v_plan.statement_timeout);
  END IF;
  PERFORM pglease.apply_role_temp_file_limit(v_lease, v_plan);
  RETURN v_lease;
END
$$;

-- pglease.apply_plan_change: a plan's limits changed (PUT /v1/plans/:name): puts them on every live
-- lease on it and returns how many. Each lease as pglease.apply_plan does at create, and:
--   * statement_timeout: the plan's, or p_default_statement_timeout (PGLEASE_LEASE_STATEMENT_TIMEOUT)
--     when the plan no longer sets one; for the lease's new sessions (a setting of its roles);
--   * connections: a lower limit applies at once; a higher one only to leases created from now on
--     (a live lease's limit counts in its client's connection budget, sql/throttle.sql, which
--     was checked against the old one);
--   * TTL: an expiry beyond the new maximum is brought back to it;
--   * temporary files: the new size bounds each session's (pglease.temp_file_limit);
--   * size and rows: the observer reads the plan at each observation; the leases are made due now,
--     so the new limits are judged within a run (a second) rather than an interval.
-- Lease rows are locked one at a time (FOR UPDATE): a lease being released meanwhile is waited
-- for and then skipped, its roles gone. Catalogs only (ALTER ROLE).
CREATE OR REPLACE FUNCTION pglease.apply_plan_change(p_plan text, p_default_statement_timeout text)
RETURNS int
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_plan    pglease.plans;
  v_lease   pglease.leases;
  v_timeout text;
  v_applied int := 0;
BEGIN
  SELECT * INTO v_plan FROM pglease.plans WHERE name = p_plan;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'no plan named %', p_plan USING ERRCODE = '22023';
  END IF;
  v_timeout := coalesce(v_plan.statement_timeout, p_default_statement_timeout);
  FOR v_lease IN
    SELECT * FROM pglease.leases WHERE plan = p_plan AND state = 'active' ORDER BY id FOR UPDATE
  LOOP
    IF v_plan.max_ttl_seconds IS NOT NULL AND v_lease.expires_at > now() + make_interval(secs => v_plan.max_ttl_seconds) THEN
      UPDATE pglease.leases SET expires_at = now() + make_interval(secs => v_plan.max_ttl_seconds) WHERE id = v_lease.id;
    END IF;
    IF v_plan.max_connections IS NOT NULL
       AND EXISTS (SELECT 1 FROM pg_roles r WHERE r.rolname = v_lease.role_name
                      AND (r.rolconnlimit < 0 OR r.rolconnlimit > v_plan.max_connections)) THEN
      EXECUTE format('ALTER ROLE %I CONNECTION LIMIT %s', v_lease.role_name, v_plan.max_connections);
    END IF;
    IF v_timeout IS NOT NULL THEN
      EXECUTE format('ALTER ROLE %I SET statement_timeout TO %L', v_lease.role_name, v_timeout);
      EXECUTE format('ALTER ROLE %I SET statement_timeout TO %L', v_lease.auth_role, v_timeout);
    END IF;
    PERFORM pglease.apply_role_temp_file_limit(v_lease, v_plan);
    UPDATE pglease.lease_health SET next_observation_at = now() WHERE lease_id = v_lease.id;
    v_applied := v_applied + 1;
  END LOOP;
  IF p_plan = 'default' THEN
    PERFORM pglease.apply_temp_file_limit();
  END IF;
  RETURN v_applied;
END
$$;

-- pglease.lease_size_limit: the size bound of a lease on plan p_plan, in bytes: the plan's, or a
-- quarter of what the host has free plus what the lease already holds, when that is smaller and the
-- host's free disk is known (pglease.observe_host). A quarter: four leases growing at once cannot
-- fill the disk between them.
CREATE OR REPLACE FUNCTION pglease.lease_size_limit(p_plan_bytes bigint, p_disk_free bigint, p_size bigint)
RETURNS bigint
LANGUAGE sql IMMUTABLE
AS $$ SELECT CASE WHEN p_disk_free IS NULL THEN p_plan_bytes ELSE least(p_plan_bytes, (p_disk_free + coalesce(p_size, 0)) / 4) END $$;
