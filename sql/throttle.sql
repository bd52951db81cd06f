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
--     pglease.throttle_locks, then counts. Statements of a plpgsql function each see everything
--     committed before they start, so the count includes every concurrent create that held the
--     lock before us (they commit before releasing it) plus our own row: 200 parallel creates with
--     a limit of 100 leave exactly 100. The locks are held only from this check to the commit,
--     so creates of one client still provision in parallel.
--   * the database's cap (p_max_leases) takes no lock that all creates wait for while it has room:
--     a create holds one of 64 tickets from its count to its commit, so at most 63 others can
--     commit after its count without being in it, and a count that leaves room for them all
--     stands. Nearer the cap, a create gives its ticket back, takes slot 0 and every ticket, and
--     counts alone: as exact as before (12 parallel creates with a cap of 5 leave exactly 5).
--     Slot 0 for every create halved creates per second at concurrency 8 (session 10).
--
-- The client's connection budget (p_client_connections, PGLEASE_CLIENT_CONNECTIONS): the
-- CONNECTION LIMITs of the login roles of a client's live leases add up to at most the budget, so
-- that one client cannot take every connection slot of the server (15 leases x 20 sessions took
-- all 300 of the embedded server's). The new lease's login role keeps its limit (the per-lease
-- default it was provisioned with, PGLEASE_LEASE_CONNECTIONS) when the budget has room for it,
-- and is lowered to what is left otherwise, by ALTER ROLE in this transaction: a pooled lease was
-- provisioned with the default long before its claim, so the claim lowers it here too. When less
-- than c_budget_minimum (2: a lease is used by a migration tool next to the application, or psql
-- next to a test) or the lease's own limit is left, the create is refused. The sum is read from
-- pg_roles under the same per-client lock, so concurrent creates of one client cannot both get
-- the last connections: each sees the ALTER ROLE of the ones that committed before it. Postgres
-- enforces the limit at login ("too many connections for role"). The lease's authenticator (the
-- REST API's) is not counted: only pglease logs in as it, through pools bounded per lease
-- (PGLEASE_REST_LEASE_CONNECTIONS) and in all (PGLEASE_REST_MAX_CONNECTIONS), whatever the client.
-- Returns the lease's connection limit after the check (NULL in the early check).
--
-- Per-client counts use quota_ip, which only leases made under per-client limits carry. NULL or 0
-- disables a limit (the admin token passes NULL for the per-client ones). Raises
--   PGLRL  creations in the last hour >= p_rate_limit        (HTTP 429)
--   PGLAC  live leases of the client  >= p_max_active        (HTTP 429)
--   PGLCC  connections the client's live leases may open leave less than a lease needs
--          of p_client_connections                           (HTTP 429)
--   PGLCP  live leases of the database >= p_max_leases       (HTTP 503)
-- with DETAIL a JSON object {limit, retry_after} (seconds). Returns what the RateLimit-* headers
-- of a successful create report: the hourly quota, what is left of it, and the seconds until the
-- oldest creation counted leaves the window.
-- p_connection_limit: the lease's login role's connection limit as the caller read it (a provision
-- in the same statement made the role with it), which spares reading pg_roles, a view that costs
-- ~80 us to plan at every call; NULL: read there.
-- (p_client_connections and connection_limit, then p_connection_limit added: the old signatures
-- would stay as overloads)
DROP FUNCTION IF EXISTS pglease.check_create_limits(uuid, inet, int, int, int);
DROP FUNCTION IF EXISTS pglease.check_create_limits(uuid, inet, int, int, int, int);
CREATE OR REPLACE FUNCTION pglease.check_create_limits(
  p_lease       uuid,
  p_client_ip   inet,
  p_rate_limit  int,
  p_max_active  int,
  p_max_leases  int,
  p_client_connections int DEFAULT NULL,
  p_connection_limit int DEFAULT NULL,
  OUT rate_limit int,
  OUT remaining  int,
  OUT reset_seconds int,
  OUT connection_limit int)
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
  v_per_client boolean := p_client_ip IS NOT NULL
    AND (coalesce(p_rate_limit, 0) > 0 OR coalesce(p_max_active, 0) > 0 OR coalesce(p_client_connections, 0) > 0);
  -- the connection budget: what the client's other live leases may open, the new lease's login
  -- role and its limit, and the fewest connections a lease is made with
  v_held     int;
  v_role     name;
  v_own      int;
  v_left     int;
  v_needed   int;
  c_budget_minimum CONSTANT int := 2;
  -- the cap's tickets: slots 1025 to 1088 of pglease.throttle_locks
  c_first_ticket CONSTANT int := 1025;
  c_tickets      CONSTANT int := 64;
BEGIN
  IF v_final AND p_connection_limit IS NOT NULL THEN
    v_own := p_connection_limit;
    connection_limit := v_own;
  ELSIF v_final THEN
    -- read here, where the role a provision in this statement made is visible (the statement's own
    -- snapshot, which the caller's columns are read with, predates it)
    SELECT r.rolname, r.rolconnlimit INTO v_role, v_own
      FROM pglease.leases l JOIN pg_roles r ON r.rolname = l.role_name WHERE l.id = p_lease;
    connection_limit := v_own;
  END IF;
  -- The database's cap first, then the client's slot: a create that waits for every ticket holds
  -- no client's slot, which a ticket's holder may be waiting for.
  IF coalesce(p_max_leases, 0) > 0 THEN
    -- Leases handed out are counted; unclaimed leases of the warm pools (state 'provisioning',
    -- sql/pool.sql) are nobody's yet, and their number is bounded by the pools' sizes.
    IF v_final THEN
      BEGIN
        -- A ticket (migrations/0025_cap-tickets.sql): a free one, or else wait for one. Every create
        -- between this count and its commit holds one, so at most c_tickets - 1 others can commit
        -- after this count without being in it: while the count leaves room for them all, the
        -- cap holds without this create waiting for any other.
        PERFORM 1 FROM (SELECT 1 FROM pglease.throttle_locks WHERE slot BETWEEN c_first_ticket AND c_first_ticket + c_tickets - 1
                         LIMIT 1 FOR UPDATE SKIP LOCKED) free;
        IF NOT FOUND THEN
          PERFORM 1 FROM pglease.throttle_locks WHERE slot = c_first_ticket + floor(random() * c_tickets)::int FOR UPDATE;
        END IF;
        SELECT count(*), min(expires_at) INTO v_count, v_soonest
          FROM pglease.leases WHERE state = 'active';
        IF v_count + c_tickets - 1 > p_max_leases THEN
          -- near the cap: give the ticket back (the block's subtransaction ends) and count alone
          RAISE EXCEPTION USING ERRCODE = 'PGLNC';
        END IF;
      EXCEPTION WHEN SQLSTATE 'PGLNC' THEN
        -- Alone: slot 0 orders such creates; holding every ticket means every create that counted
        -- with one has committed (and is in this count), and any other counts after this commit.
        PERFORM 1 FROM pglease.throttle_locks WHERE slot = 0 FOR UPDATE;
        PERFORM 1 FROM pglease.throttle_locks WHERE slot BETWEEN c_first_ticket AND c_first_ticket + c_tickets - 1
          ORDER BY slot FOR UPDATE;
        SELECT count(*), min(expires_at) INTO v_count, v_soonest
          FROM pglease.leases WHERE state = 'active';
      END;
    ELSE
      SELECT count(*), min(expires_at) INTO v_count, v_soonest
        FROM pglease.leases WHERE state = 'active';
    END IF;
    IF v_count + v_pending > p_max_leases THEN
      RAISE EXCEPTION 'this pglease database is full: % live leases (PGLEASE_MAX_LEASES=%)', v_count + v_pending - 1, p_max_leases
        USING ERRCODE = 'PGLCP',
              DETAIL = json_build_object('limit', p_max_leases,
                                         'retry_after', greatest(1, ceil(extract(epoch FROM coalesce(v_soonest - now(), interval '60 seconds')))))::text;
    END IF;
  END IF;

  IF v_final AND v_per_client THEN
    -- a claim charges its lease itself (sql/pool.sql): no second row version then
    UPDATE pglease.leases SET quota_ip = p_client_ip WHERE id = p_lease AND quota_ip IS DISTINCT FROM p_client_ip;
    -- the address's slot (migrations/0007_throttle-locks.sql): rows of a table leases cannot
    -- touch, where advisory locks could be taken (and held) by any lease
    PERFORM 1 FROM pglease.throttle_locks WHERE slot = 1 + (hashtext(host(p_client_ip)) & 1023) FOR UPDATE;
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

  IF coalesce(p_client_connections, 0) > 0 AND p_client_ip IS NOT NULL THEN
    -- a role without a limit (-1: none of ours; an operator's ALTER ROLE) counts as the whole budget
    SELECT count(*), coalesce(sum(CASE WHEN r.rolconnlimit < 0 THEN p_client_connections ELSE r.rolconnlimit END), 0), min(l.expires_at)
      INTO v_count, v_held, v_soonest
      FROM pglease.leases l JOIN pg_roles r ON r.rolname = l.role_name
     WHERE l.quota_ip = p_client_ip AND l.state IN ('active', 'provisioning') AND l.id IS DISTINCT FROM p_lease;
    v_left := p_client_connections - v_held;
    -- c_budget_minimum, or the lease's own limit when the operator set a smaller one; the early
    -- check does not know the lease's limit and refuses only a client with nothing left
    v_needed := CASE WHEN v_final THEN least(c_budget_minimum, CASE WHEN v_own < 0 THEN c_budget_minimum ELSE v_own END) ELSE 1 END;
    IF v_left < v_needed THEN
      RAISE EXCEPTION 'client % has % live leases that may open % of the % connections one client''s leases may open together (PGLEASE_CLIENT_CONNECTIONS=%), too few left for another lease; release one or wait until one expires',
                      host(p_client_ip), v_count, v_held, p_client_connections, p_client_connections
        USING ERRCODE = 'PGLCC',
              DETAIL = json_build_object('limit', p_client_connections,
                                         'retry_after', greatest(1, ceil(extract(epoch FROM coalesce(v_soonest - now(), interval '60 seconds')))))::text;
    END IF;
    IF v_final THEN
      connection_limit := CASE WHEN v_own < 0 THEN v_left ELSE least(v_own, v_left) END;
      IF connection_limit IS DISTINCT FROM v_own THEN
        IF v_role IS NULL THEN
          SELECT l.role_name INTO v_role FROM pglease.leases l WHERE l.id = p_lease;
        END IF;
        EXECUTE format('ALTER ROLE %I CONNECTION LIMIT %s', v_role, connection_limit);
      END IF;
    END IF;
  END IF;
END
$$;
