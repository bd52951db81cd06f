-- Hosts (issue 16): which host a create goes to. These run on the control database only (on an
-- extra host pglease.host_registry stays empty). They read and write pglease's own tables only.

-- pglease.place_lease: the host a new lease goes to, among p_usable (the hosts the calling process
-- has open and last found reachable), counted as placed there; NULL when none has room.
-- * Least loaded first: live leases (at the last probe) plus creates placed since, relative to
--   capacity times weight, so a host with twice the capacity (or weight) gets twice the leases.
-- * A draining host, and one whose state is not available, gets none.
-- * Never over capacity, even when creates race: the chosen row is locked (FOR UPDATE), and a
--   create that waited for it sees the row as the other left it and re-checks the room left
--   (Postgres re-evaluates the WHERE on the updated row); it then gets NULL and the caller asks
--   again. One statement and one row lock per create: the only control-database work on the path.
CREATE OR REPLACE FUNCTION pglease.place_lease(p_usable int[])
RETURNS int
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
  UPDATE pglease.host_registry h SET placed = h.placed + 1
   WHERE h.id = (SELECT c.id FROM pglease.host_registry c
                  WHERE c.id = ANY (p_usable) AND c.state = 'available' AND NOT c.draining
                    AND c.live_leases + c.placed < c.capacity
                  ORDER BY (c.live_leases + c.placed + 1) / (c.capacity * c.weight), c.id
                  LIMIT 1
                    FOR UPDATE)
     AND h.state = 'available' AND NOT h.draining AND h.live_leases + h.placed < h.capacity
  RETURNING h.id
$$;

-- pglease.record_host_probe: what one probe of host p_id found: its live leases (p_live; NULL when
-- it could not be reached) and its state. p_placed_before is the host's `placed` read just before
-- the count, so creates placed while the count ran stay counted. A state change stamps state_since.
CREATE OR REPLACE FUNCTION pglease.record_host_probe(p_id int, p_state text, p_error text, p_live int, p_placed_before int)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
  UPDATE pglease.host_registry
     SET state = p_state,
         state_since = CASE WHEN state = p_state THEN state_since ELSE now() END,
         last_error = CASE WHEN p_state = 'available' THEN NULL ELSE p_error END,
         live_leases = coalesce(p_live, live_leases),
         placed = CASE WHEN p_live IS NULL THEN placed ELSE greatest(placed - coalesce(p_placed_before, 0), 0) END,
         probed_at = now()
   WHERE id = p_id
$$;
