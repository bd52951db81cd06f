-- Templates: seed SQL applied to a lease, and checked at registration by applying it to a
-- scratch lease that is then rolled back. The table is created by migrations/0004_templates.sql.
--
-- A lease's seed runs in a session logged in as the lease's own login role, never in the
-- service's: whatever the SQL leaves to run at commit (a deferred constraint trigger, a cursor
-- WITH HOLD) runs as the role of the session that commits, and in the service's session that
-- would be the service's role. So seeding is three steps (src/leases/lease-store.ts):
-- provision_parked (a parked lease, committed), the seed in the lease's own session, then
-- park_seeded_lease (a warm pool's) or activate_seeded_lease (a create's). The check at
-- registration runs in the service's session, inside a subtransaction that is rolled back: a
-- rollback runs nothing the SQL queued.

-- pglease.seed_lease: runs p_sql as the lease's login role with search_path = its schema, so every
-- object the SQL creates belongs to the lease and lands in its schema. Only the registration check
-- (check_template, below) calls it, in a subtransaction it rolls back.
--
-- The SQL runs inside a SECURITY DEFINER function owned by the lease role rather than after
-- SET ROLE: Postgres refuses SET ROLE, RESET ROLE and SET SESSION AUTHORIZATION inside a
-- security-definer function, so seed SQL cannot climb back to the service's own role (a plain
-- SET LOCAL ROLE could be undone by a RESET ROLE in the SQL). The function exists only for the
-- length of this call. Errors keep Postgres's code, message and position (internal_position is an
-- offset in p_sql).
CREATE OR REPLACE FUNCTION pglease.seed_lease(p_schema name, p_role name, p_sql text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  EXECUTE format(
    'CREATE FUNCTION %I._pglease_seed(p_sql text) RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path = %I AS %L',
    p_schema, p_schema, 'BEGIN EXECUTE p_sql; END');
  EXECUTE format('ALTER FUNCTION %I._pglease_seed(text) OWNER TO %I', p_schema, p_role);
  EXECUTE format('SELECT %I._pglease_seed($1)', p_schema) USING p_sql;
  EXECUTE format('DROP FUNCTION IF EXISTS %I._pglease_seed(text)', p_schema);
  -- Temporary objects would live in the service's session, not in the lease.
  IF EXISTS (SELECT 1 FROM pg_class c
              WHERE c.relnamespace = pg_my_temp_schema() AND c.relowner = to_regrole(quote_ident(p_role)))
     OR EXISTS (SELECT 1 FROM pg_proc f
                 WHERE f.pronamespace = pg_my_temp_schema() AND f.proowner = to_regrole(quote_ident(p_role))) THEN
    RAISE EXCEPTION 'template SQL cannot create temporary tables or functions' USING ERRCODE = '0A000',
      HINT = 'Create ordinary tables and functions: they live in the lease''s schema.';
  END IF;
  -- Nothing the SQL did to the session may outlive it. A SET without LOCAL lasts past this
  -- function and the commit, and would change how the rest of the caller's statement is answered
  -- (DateStyle, say); session advisory locks are not released by a rollback. The connection is
  -- also discarded after every seed (src/db/host.ts, seedPool).
  RESET ALL;
  PERFORM pg_advisory_unlock_all();
END
$$;

-- pglease.note_seed: notes a lease's template (name and SHA-256) in its 'created' event.
CREATE OR REPLACE FUNCTION pglease.note_seed(p_lease_id uuid, p_template_id bigint)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
  UPDATE pglease.lease_events e
     SET detail = coalesce(e.detail, '{}'::jsonb) || jsonb_build_object('template', t.name, 'template_sha256', t.sha256)
    FROM pglease.templates t
   WHERE t.id = p_template_id AND e.lease_id = p_lease_id AND e.kind = 'created';
$$;

DROP FUNCTION IF EXISTS pglease.apply_template(bigint, uuid);

-- pglease.check_template: proves that p_sql applies to a fresh lease, without leaving anything
-- behind. It provisions a scratch lease exactly as a real one (same function, same role
-- attributes), seeds it, then undoes both by raising a private SQLSTATE caught by the enclosing
-- block (a subtransaction rollback). A failing p_sql raises its own error, unchanged.
-- Arguments are passed by name so that parameters appended to pglease.provision with defaults do
-- not break this call.
CREATE OR REPLACE FUNCTION pglease.check_template(p_sql text, p_host_id int)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_lease pglease.leases;
  -- the seed runs inside this block and may raise PGLTC itself, to skip the rest of the check
  -- as if it had passed: only this call's own message, which the seed cannot know, counts
  v_done  text := 'template check done ' || gen_random_uuid();
BEGIN
  BEGIN
    v_lease := pglease.provision(
      p_base              => 'lease_' || substr(md5(random()::text || clock_timestamp()::text), 1, 16),
      p_login_verifier    => NULL,
      p_auth_verifier     => NULL,
      p_token_hash        => sha256(convert_to(random()::text || clock_timestamp()::text, 'UTF8')),
      p_ttl               => interval '1 minute',
      p_label             => 'template check',
      p_client_ip         => NULL,
      p_host_id           => p_host_id,
      p_connection_limit  => 1,
      p_statement_timeout => '60s',
      p_idle_timeout      => '60s',
      -- The grant locks the group until this check ends, which its seed may make as long as the
      -- statement timeout: the first, unsharded group, which no create joins any more
      -- (migrations/0005), keeps creates from waiting for checks. Checks wait for each other.
      p_group             => (pglease.lease_groups())[1]);
    PERFORM pglease.seed_lease(v_lease.schema_name, v_lease.role_name, p_sql);
    RAISE EXCEPTION '%', v_done USING ERRCODE = 'PGLTC';
  EXCEPTION WHEN SQLSTATE 'PGLTC' THEN
    IF SQLERRM <> v_done THEN
      RAISE; -- the seed's own
    END IF;
    -- the scratch lease and its seed are rolled back with the subtransaction
  END;
END
$$;

-- (replaced: the claim of any warm pool, template or not, is in sql/pool.sql)
DROP FUNCTION IF EXISTS pglease.claim_pooled_lease(bigint, text, bytea, interval, text, inet);
DROP FUNCTION IF EXISTS pglease.lease_from_template(bigint, boolean, text, text, text, bytea, interval, text, inet, int, int, text, text);
DROP FUNCTION IF EXISTS pglease.template_pool_size(bigint);

-- (replaced: a seed runs in the lease's own session, see the top of this file)
DROP FUNCTION IF EXISTS pglease.lease_from_template(bigint, text, text, text, bytea, interval, text, inet, int, int, text, text);

-- (renamed pglease.provision_parked, sql/leases.sql: plain warm-pool leases are parked the same way)
DROP FUNCTION IF EXISTS pglease.provision_for_seed(text, text, text, bytea, interval, int, int, text, text);

-- pglease.park_seeded_lease: puts a seeded lease into p_holder's warm pool of the template, where
-- pglease.claim_pooled_lease (sql/pool.sql) can hand it out. Raises PGLTS when the template is no
-- longer the current version of a global template (the caller drops the lease), and PGLTG when
-- the lease is no longer parked (it expired while its seed ran).
CREATE OR REPLACE FUNCTION pglease.park_seeded_lease(p_lease_id uuid, p_holder uuid, p_template_id bigint)
RETURNS pglease.leases
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_lease pglease.leases;
BEGIN
  IF NOT pglease.is_current_global_template(p_template_id) THEN
    RAISE EXCEPTION 'template % is not the current version of a global template', p_template_id
      USING ERRCODE = 'PGLTS';
  END IF;
  SELECT * INTO v_lease FROM pglease.leases WHERE id = p_lease_id AND state = 'provisioning' FOR UPDATE;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'lease % is no longer parked', p_lease_id USING ERRCODE = 'PGLTG';
  END IF;
  PERFORM pglease.note_seed(p_lease_id, p_template_id);
  INSERT INTO pglease.lease_pool (lease_id, holder, template_id) VALUES (p_lease_id, p_holder, p_template_id);
  RETURN v_lease;
END
$$;

-- pglease.activate_seeded_lease: hands a seeded lease to the create that made it, as a claim does
-- (pglease.hand_out), its 'created' event noting the template. Returns a set (of at most one row) so that a
-- throttle check joined LATERAL to it runs after it; PGLTG when the lease is no longer parked.
-- PGLTS when the template was removed while the lease was seeded (by its owner, or with its owner
-- lease's release): its rights ended with it. FOR SHARE waits for a removal in progress.
CREATE OR REPLACE FUNCTION pglease.activate_seeded_lease(
  p_lease_id    uuid,
  p_template_id bigint,
  p_token_hash  bytea,
  p_ttl         interval,       -- NULL: never expires
  p_label       text,
  p_client_ip   inet,
  p_quota_ip    inet            -- NULL: not charged to a client
) RETURNS SETOF pglease.leases
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_lease pglease.leases;
BEGIN
  PERFORM FROM pglease.templates WHERE id = p_template_id FOR SHARE;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'template % no longer exists', p_template_id USING ERRCODE = 'PGLTS';
  END IF;
  v_lease := pglease.hand_out(p_lease_id, p_token_hash, p_ttl, p_label, p_client_ip, p_quota_ip, '{}');
  IF v_lease.id IS NULL THEN
    RAISE EXCEPTION 'lease % is no longer parked', p_lease_id USING ERRCODE = 'PGLTG';
  END IF;
  PERFORM pglease.note_seed(p_lease_id, p_template_id);
  RETURN NEXT v_lease;
END
$$;
