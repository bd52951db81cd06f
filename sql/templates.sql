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
  -- Temporary objects would live in the service's pooled session, not in the lease.
  IF EXISTS (SELECT 1 FROM pg_class c
              WHERE c.relnamespace = pg_my_temp_schema() AND c.relowner = to_regrole(quote_ident(p_role))) THEN
    RAISE EXCEPTION 'template SQL cannot create temporary tables' USING ERRCODE = '0A000',
      HINT = 'Create ordinary tables: they live in the lease''s schema.';
  END IF;
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

-- pglease.claim_pooled_lease: hands out a lease of the template's warm pool, or NULL when none is
-- ready. The lease gets its owner's password (verifier), token, TTL and label here; until now it
-- had a password nobody knows and no usable token. SKIP LOCKED lets concurrent creates claim
-- different leases. A pooled lease about to expire is left to the reaper.
CREATE OR REPLACE FUNCTION pglease.claim_pooled_lease(
  p_template_id    bigint,
  p_login_verifier text,
  p_token_hash     bytea,
  p_ttl            interval,
  p_label          text,
  p_client_ip      inet
) RETURNS pglease.leases
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_id    uuid;
  v_lease pglease.leases;
BEGIN
  SELECT p.lease_id INTO v_id
    FROM pglease.template_pool p
    JOIN pglease.leases l ON l.id = p.lease_id
   WHERE p.template_id = p_template_id
     AND l.state = 'provisioning'
     AND l.expires_at > now() + interval '1 minute'
   ORDER BY p.created_at
   LIMIT 1
   FOR UPDATE OF p, l SKIP LOCKED;
  IF v_id IS NULL THEN
    RETURN NULL;
  END IF;
  DELETE FROM pglease.template_pool WHERE lease_id = v_id;
  SELECT * INTO v_lease FROM pglease.leases WHERE id = v_id;
  EXECUTE format('ALTER ROLE %I PASSWORD %L', v_lease.role_name, p_login_verifier);
  UPDATE pglease.leases
     SET state = 'active', token_hash = p_token_hash, label = p_label, client_ip = p_client_ip,
         created_at = now(), expires_at = now() + p_ttl
   WHERE id = v_id
   RETURNING * INTO v_lease;
  -- the lease is created, as far as anyone can tell, now
  UPDATE pglease.lease_events
     SET at = now(), client_ip = p_client_ip,
         detail = coalesce(detail, '{}'::jsonb)
                  || jsonb_build_object('ttl_seconds', extract(epoch FROM p_ttl)::bigint, 'label', p_label, 'pooled', true)
   WHERE lease_id = v_id AND kind = 'created';
  RETURN v_lease;
END
$$;

-- pglease.lease_from_template: a lease seeded from a template, all or nothing. It claims a pooled
-- lease when one is ready; otherwise it provisions one (same arguments as pglease.provision) and
-- applies the template in this transaction. With p_for_pool it always provisions, and parks the
-- lease in the template's pool instead of handing it out.
-- A seed that fails here raises SQLSTATE PGLTF with the original SQLSTATE as DETAIL.
CREATE OR REPLACE FUNCTION pglease.lease_from_template(
  p_template_id       bigint,
  p_for_pool          boolean,
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
  IF NOT p_for_pool THEN
    v_lease := pglease.claim_pooled_lease(p_template_id, p_login_verifier, p_token_hash, p_ttl, p_label, p_client_ip);
    IF v_lease.id IS NOT NULL THEN
      RETURN v_lease;
    END IF;
  END IF;
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
  IF p_for_pool THEN
    UPDATE pglease.leases SET state = 'provisioning' WHERE id = v_lease.id RETURNING * INTO v_lease;
    INSERT INTO pglease.template_pool (lease_id, template_id) VALUES (v_lease.id, p_template_id);
  END IF;
  RETURN v_lease;
END
$$;

-- pglease.template_pool_size: how many leases of a template's pool are ready to be claimed.
CREATE OR REPLACE FUNCTION pglease.template_pool_size(p_template_id bigint)
RETURNS int
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT count(*)::int FROM pglease.template_pool p JOIN pglease.leases l ON l.id = p.lease_id
   WHERE p.template_id = p_template_id AND l.state = 'provisioning' AND l.expires_at > now() + interval '1 minute'
$$;
