-- Templates: seed SQL applied to a lease, and checked at registration by seeding a scratch lease
-- that is then dropped. The table is created by migrations/0004_templates.sql.
--
-- A lease's seed runs in a session logged in as the lease's own login role, never in the
-- service's: whatever the SQL leaves to run at commit (a deferred constraint trigger, a cursor
-- WITH HOLD) runs as the role of the session that commits, and in the service's session that
-- would be the service's role. So seeding is three steps (src/leases/lease-store.ts):
-- provision_parked (a parked lease, committed), the seed in the lease's own session, then
-- park_seeded_lease (a warm pool's) or activate_seeded_lease (a create's). The check at
-- registration is a seed too, of a scratch lease parked the same way and dropped afterwards.

-- (replaced: the registration check seeds a scratch lease in that lease's own session, as a create
-- does, src/leases/lease-store.ts checkSeed: no template SQL runs in a service session any more)
DROP FUNCTION IF EXISTS pglease.check_template(text, int);
DROP FUNCTION IF EXISTS pglease.seed_lease(name, name, text);

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
-- the lease is no longer parked (it expired while its seed ran). p_template_id NULL: a plain
-- database lease, whose database was made after its provisioning (its pool is that of its kind).
CREATE OR REPLACE FUNCTION pglease.park_seeded_lease(p_lease_id uuid, p_holder uuid, p_template_id bigint)
RETURNS pglease.leases
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_lease pglease.leases;
BEGIN
  IF p_template_id IS NOT NULL AND NOT pglease.is_current_global_template(p_template_id) THEN
    RAISE EXCEPTION 'template % is not the current version of a global template', p_template_id
      USING ERRCODE = 'PGLTS';
  END IF;
  SELECT * INTO v_lease FROM pglease.leases WHERE id = p_lease_id AND state = 'provisioning' FOR UPDATE;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'lease % is no longer parked', p_lease_id USING ERRCODE = 'PGLTG';
  END IF;
  PERFORM pglease.note_seed(p_lease_id, p_template_id);
  INSERT INTO pglease.lease_pool (lease_id, holder, template_id, kind) VALUES (p_lease_id, p_holder, p_template_id, v_lease.kind);
  RETURN v_lease;
END
$$;

-- pglease.activate_seeded_lease: hands a seeded lease to the create that made it, as a claim does
-- (pglease.hand_out), its 'created' event noting the template. Returns a set (of at most one row) so that a
-- throttle check joined LATERAL to it runs after it; PGLTG when the lease is no longer parked.
-- PGLTS when the template was removed while the lease was seeded (by its owner, or with its owner
-- lease's release): its rights ended with it. FOR SHARE waits for a removal in progress.
-- p_template_id NULL: a database lease without a template, parked until its database was made.
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
  IF NOT FOUND AND p_template_id IS NOT NULL THEN
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
