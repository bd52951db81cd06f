-- Throttling, counted in Postgres from the lease rows themselves (no counters to drift, no Redis):
-- per client address, creations in the last hour and live leases; per lease database, live leases.

-- pglease.check_create_limits: says whether a client may have one more lease, or raises.
--
-- Called twice per create that provisions (a claim from a warm pool has no work to save, and
-- calls only the second):
--   * before provisioning (p_lease NULL): a cheap check that turns a client already at its limit
--     away before any work is done; counts "+1" for the lease about to be made;
--   * in the provisioning transaction, after the new lease's row exists (p_lease its id), or in
--     the statement that claims a pooled lease (sql/pool.sql), after the claim: it
--     charges the lease to the client (quota_ip), locks its client address's slot of
--     pglease.throttle_locks (and the database's when p_max_leases is set), then counts. Statements of a plpgsql function each see everything
--     committed before they start, so the count includes every concurrent create that held the
--     lock before us (they commit before releasing it) plus our own row: 200 parallel creates with
--     a limit of 100 leave exactly 100. The locks are held only from this check to the commit,
--     so creates of one client still provision in parallel.
--
-- Per-client counts use quota_ip, which only leases made under per-client limits carry. NULL or 0
-- disables a limit (the admin token passes NULL for the per-client ones). Raises
--   PGLRL  creations in the last hour >= p_rate_limit        (HTTP 429)
--   PGLAC  live leases of the client  >= p_max_active        (HTTP 429)
--   PGLCP  live leases of the database >= p_max_leases       (HTTP 503)
-- with DETAIL a JSON object {limit, retry_after} (seconds). Returns what the RateLimit-* headers
-- of a successful create report: the hourly quota, what is left of it, and the seconds until the
-- oldest creation counted leaves the window.
CREATE OR REPLACE FUNCTION pglease.check_create_limits(
  p_lease       uuid,
  p_client_ip   inet,
  p_rate_limit  int,
  p_max_active  int,
  p_max_leases  int,
  OUT rate_limit int,
  OUT remaining  int,
  OUT reset_seconds int)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  -- the lease being created is not a row yet during the early check
  v_final    boolean := p_lease IS NOT NULL;
  v_pending  int := CASE WHEN p_lease IS NULL THEN 1 ELSE 0 END;
  v_window   interval := interval '1 hour';
  v_created  int;
  v_oldest   timestamptz;
  v_count    int;
  v_soonest  timestamptz;
  v_per_client boolean := p_client_ip IS NOT NULL AND (coalesce(p_rate_limit, 0) > 0 OR coalesce(p_max_active, 0) > 0);
BEGIN
  IF v_final AND v_per_client THEN
    -- a claim charges its lease itself (sql/pool.sql): no second row version then
    UPDATE pglease.leases SET quota_ip = p_client_ip WHERE id = p_lease AND quota_ip IS DISTINCT FROM p_client_ip;
    -- the address's slot (migrations/0007_throttle-locks.sql): rows of a table leases cannot
    -- touch, where advisory locks could be taken (and held) by any lease
    PERFORM 1 FROM pglease.throttle_locks WHERE slot = 1 + (hashtext(host(p_client_ip)) & 1023) FOR UPDATE;
  END IF;
  IF v_final AND coalesce(p_max_leases, 0) > 0 THEN
    PERFORM 1 FROM pglease.throttle_locks WHERE slot = 0 FOR UPDATE;
  END IF;

  IF coalesce(p_max_leases, 0) > 0 THEN
    -- leases handed out; unclaimed leases of the warm pools (state 'provisioning', sql/pool.sql)
    -- are nobody's yet, and their number is bounded by the pools' sizes
    SELECT count(*), min(expires_at) INTO v_count, v_soonest
      FROM pglease.leases WHERE state = 'active';
    IF v_count + v_pending > p_max_leases THEN
      RAISE EXCEPTION 'this pglease database is full: % live leases (PGLEASE_MAX_LEASES=%)', v_count + v_pending - 1, p_max_leases
        USING ERRCODE = 'PGLCP',
              DETAIL = json_build_object('limit', p_max_leases,
                                         'retry_after', greatest(1, ceil(extract(epoch FROM coalesce(v_soonest - now(), interval '60 seconds')))))::text;
    END IF;
  END IF;

  IF coalesce(p_max_active, 0) > 0 AND p_client_ip IS NOT NULL THEN
    SELECT count(*), min(expires_at) INTO v_count, v_soonest
      FROM pglease.leases WHERE quota_ip = p_client_ip AND state IN ('active', 'provisioning');
    IF v_count + v_pending > p_max_active THEN
      RAISE EXCEPTION 'client % has % live leases, the most a client may hold (PGLEASE_MAX_ACTIVE=%); release one or wait until one expires',
                      host(p_client_ip), v_count + v_pending - 1, p_max_active
        USING ERRCODE = 'PGLAC',
              DETAIL = json_build_object('limit', p_max_active,
                                         'retry_after', greatest(1, ceil(extract(epoch FROM coalesce(v_soonest - now(), interval '60 seconds')))))::text;
    END IF;
  END IF;

  IF coalesce(p_rate_limit, 0) > 0 AND p_client_ip IS NOT NULL THEN
    SELECT count(*), min(created_at) INTO v_created, v_oldest
      FROM pglease.leases WHERE quota_ip = p_client_ip AND created_at > now() - v_window;
    rate_limit := p_rate_limit;
    remaining := greatest(0, p_rate_limit - v_created - v_pending);
    reset_seconds := greatest(1, ceil(extract(epoch FROM coalesce(v_oldest + v_window - now(), v_window))))::int;
    IF v_created + v_pending > p_rate_limit THEN
      RAISE EXCEPTION 'client % created % leases in the last hour, the most allowed (PGLEASE_RATE_LIMIT=%)',
                      host(p_client_ip), v_created + v_pending - 1, p_rate_limit
        USING ERRCODE = 'PGLRL',
              DETAIL = json_build_object('limit', p_rate_limit, 'retry_after', reset_seconds)::text;
    END IF;
  END IF;
END
$$;
