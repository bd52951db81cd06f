-- Templates: seed SQL applied to a lease as the lease itself, in the transaction that provisions
-- it, and checked at registration by applying it to a scratch lease that is then rolled back.
-- The table is created by migrations/0004_templates.sql.

-- pglease.seed_lease: runs p_sql as the lease's login role with search_path = its schema, so every
-- object the SQL creates belongs to the lease and lands in its schema.
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

-- pglease.apply_template: seeds a just-provisioned lease with a template and notes the template
-- (name and SHA-256) in the lease's 'created' event. Called in the same transaction as
-- pglease.provision, so a lease either exists with its seed or not at all.
CREATE OR REPLACE FUNCTION pglease.apply_template(p_template_id bigint, p_lease_id uuid)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_lease    pglease.leases;
  v_template pglease.templates;
BEGIN
  SELECT * INTO STRICT v_lease FROM pglease.leases WHERE id = p_lease_id;
  SELECT * INTO STRICT v_template FROM pglease.templates WHERE id = p_template_id;
  PERFORM pglease.seed_lease(v_lease.schema_name, v_lease.role_name, v_template.sql);
  UPDATE pglease.lease_events
     SET detail = coalesce(detail, '{}'::jsonb)
                  || jsonb_build_object('template', v_template.name, 'template_sha256', v_template.sha256)
   WHERE lease_id = p_lease_id AND kind = 'created';
END
$$;

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
      p_idle_timeout      => '60s');
    PERFORM pglease.seed_lease(v_lease.schema_name, v_lease.role_name, p_sql);
    RAISE EXCEPTION 'template check done' USING ERRCODE = 'PGLTC';
  EXCEPTION WHEN SQLSTATE 'PGLTC' THEN
    NULL; -- the scratch lease and its seed are rolled back with the subtransaction
  END;
END
$$;

-- (replaced: the claim of any warm pool, template or not, is in sql/pool.sql; the pool keeps its
-- leases' passwords, so lease_from_template no longer claims or parks)
DROP FUNCTION IF EXISTS pglease.claim_pooled_lease(bigint, text, bytea, interval, text, inet);
DROP FUNCTION IF EXISTS pglease.lease_from_template(bigint, boolean, text, text, text, bytea, interval, text, inet, int, int, text, text);
DROP FUNCTION IF EXISTS pglease.template_pool_size(bigint);

-- pglease.lease_from_template: a lease seeded from a template, all or nothing: provisioned (same
-- arguments as pglease.provision) and seeded in this transaction. Warm pools call it ahead of
-- demand (pglease.provision_pooled); a create calls it when its process has no pooled lease ready.
-- A seed that fails here raises SQLSTATE PGLTF with the original SQLSTATE as DETAIL.
CREATE OR REPLACE FUNCTION pglease.lease_from_template(
  p_template_id       bigint,
  p_base              text,
  p_login_verifier    text,
  p_auth_verifier     text,
  p_token_hash        bytea,
  p_ttl               interval,
  p_label             text,
  p_client_ip         inet,
  p_host_id           int,
  p_connection_limit  int,
  p_statement_timeout text,
  p_idle_timeout      text
) RETURNS pglease.leases
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_lease pglease.leases;
  v_name  text;
BEGIN
  v_lease := pglease.provision(
    p_base => p_base, p_login_verifier => p_login_verifier, p_auth_verifier => p_auth_verifier,
    p_token_hash => p_token_hash, p_ttl => p_ttl, p_label => p_label, p_client_ip => p_client_ip,
    p_host_id => p_host_id, p_connection_limit => p_connection_limit,
    p_statement_timeout => p_statement_timeout, p_idle_timeout => p_idle_timeout);
  BEGIN
    PERFORM pglease.apply_template(p_template_id, v_lease.id);
  EXCEPTION WHEN OTHERS THEN
    SELECT name INTO v_name FROM pglease.templates WHERE id = p_template_id;
    RAISE EXCEPTION 'template "%" failed to apply: %', v_name, SQLERRM USING ERRCODE = 'PGLTF', DETAIL = SQLSTATE;
  END;
  RETURN v_lease;
END
$$;
