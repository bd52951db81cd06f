-- Observations and states (Heroku's "feel" and "tick"): the observer job (src/scheduler/jobs.ts)
-- calls pglease.observe_leases every couple of seconds; it looks at the leases that are due, records
-- what it saw in pglease.observations, moves each lease's status (pglease.lease_health) through the
-- state machine below, and restricts or restores its writes (sql/quota.sql). Hosts are observed by
-- pglease.observe_host. Everything is read from catalogs and statistics (pg_class, pg_stat_*,
-- pg_stat_activity, pg_total_relation_size): no query is planned on a lease's table, so no lease
-- code runs here (docs/security.md).

-- pglease.status_after: the state machine of a lease's status, a second dimension next to its
-- lifecycle state (which it never changes):
--
--     available  --(unreachable)-->  uncertain  --(reachable, within plan)-->  available
--     available | uncertain  --(over its size or row limit)-->  over_quota
--     over_quota  --(within its plan again)-->  available (or uncertain when unreachable)
--
-- Over the plan wins over unreachable: the restriction must hold whether or not the lease can log in.
-- An overdue observation also makes a lease uncertain (pglease.observe_leases).
CREATE OR REPLACE FUNCTION pglease.status_after(p_status pglease.lease_status, p_reachable boolean, p_over_plan boolean)
RETURNS pglease.lease_status
LANGUAGE sql IMMUTABLE
AS $$
  SELECT CASE
    WHEN p_over_plan THEN 'over_quota'
    WHEN NOT p_reachable THEN 'uncertain'
    ELSE 'available'
  END::pglease.lease_status
$$;

-- pglease.over_quota_message: what a restricted lease's sessions are told, and the hint.
CREATE OR REPLACE FUNCTION pglease.over_quota_message(
  p_plan text, p_size bigint, p_size_limit bigint, p_rows bigint, p_row_limit bigint, p_interval interval,
  OUT message text, OUT hint text)
LANGUAGE sql IMMUTABLE
AS $$
  SELECT CASE WHEN p_size > p_size_limit
              THEN format('lease over its %s plan "%s" (%s used): delete rows or TRUNCATE, writes come back within %s s',
                          pg_size_pretty(p_size_limit), p_plan, pg_size_pretty(p_size), ceil(extract(epoch FROM p_interval)))
              ELSE format('lease over its %s-row plan "%s" (%s rows): delete rows or TRUNCATE, writes come back within %s s',
                          p_row_limit, p_plan, p_rows, ceil(extract(epoch FROM p_interval)))
         END,
         'INSERT, UPDATE and CREATE are refused while the lease is over its plan; SELECT, DELETE, TRUNCATE and VACUUM FULL '
         || '(which gives back the space a DELETE freed) still work'
$$;

-- pglease.observe_leases: one observation of up to p_limit due leases (next_observation_at passed),
-- then their statuses and restrictions.
-- * Once per interval per lease, however many processes run it: due rows are locked FOR UPDATE
--   SKIP LOCKED and moved to their next time in the same transaction, so a second process takes
--   other leases or none (the job itself is also claimed once per run: sql/jobs.sql).
-- * Next observation: p_interval (10 s), or p_fast (200 ms, the job's quick passes) after a lease's first observation, for a
--   lease above 80% of a limit, and for one growing fast enough to reach its size limit within
--   three intervals at the rate measured since its previous observation. A lease writing as fast as
--   it can is thus seen about every p_fast; one that starts writing after an observation found it
--   quiet, on the next full pass that sees its write count move (below).
-- * Catalogs only, one statement for all leases: a lease's size is pg_total_relation_size of its
--   relations, which waits for a lock held AccessExclusive (a TRUNCATE, an ALTER); a lease holding
--   one is measured from pg_class's page counts instead (size_exact false), and a lock taken in
--   between is waited for at most 200 ms, then the whole pass uses page counts.
-- * Sizes are measured only where something changed: pg_total_relation_size looks at every file of
--   a table, its indexes and TOAST (about 0.3 ms a table with one index, 70% of a pass). A lease
--   whose statistics show no row inserted, updated or deleted, and whose relations have the same
--   files and page counts as when it was last measured (within a minute), keeps that size.
-- * Restricting or restoring a lease (the only part that takes locks on its tables) runs per
--   lease in a subtransaction: a failure (a lock it holds past 1 s: its statements are cancelled,
--   and it is tried again on its next observation, p_fast later) is kept in last_error and does not
--   stop the pass. Subtransactions happen only for leases that change, never thousands per pass.
DROP FUNCTION IF EXISTS pglease.observe_leases(int, interval, interval);
DROP FUNCTION IF EXISTS pglease.observe_leases(int, interval, interval, boolean);
CREATE OR REPLACE FUNCTION pglease.observe_leases(
  p_limit    int DEFAULT 10000,
  p_interval interval DEFAULT '10 seconds',
  p_fast     interval DEFAULT '200 milliseconds',
  -- true: only the leases already due (a run's quick passes between its full ones)
  p_due_only boolean DEFAULT false,
  -- only leases due by then (the start of the caller's run: a lease observed by one of its batches is
  -- not taken again by the next, however soon it is due again); NULL: now
  p_due_by   timestamptz DEFAULT NULL,
  OUT observed int, OUT changed int, OUT errors int, OUT took_ms numeric)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_start  timestamptz := clock_timestamp();
  v_ids    uuid[];
  v_obs    bigint[];
  v_exact  boolean := true;
  v_row    record;
  v_lease  pglease.leases;
  v_msg    record;
  v_reason text;
  v_restricted jsonb;
  v_error  text;
  -- the lease groups' oids, looked up once (pg_roles is a view that is costly per row)
  v_groups oid[] := ARRAY(SELECT g.oid FROM pg_roles g WHERE g.rolname = ANY (pglease.lease_groups()));
BEGIN
  observed := 0;
  changed := 0;
  errors := 0;
  IF NOT p_due_only THEN
    -- leases handed out since the last pass
    INSERT INTO pglease.lease_health (lease_id, next_observation_at)
    SELECT l.id, least(now(), coalesce(p_due_by, now())) FROM pglease.leases l
     WHERE l.state = 'active' AND NOT EXISTS (SELECT 1 FROM pglease.lease_health h WHERE h.lease_id = l.id)
    ON CONFLICT DO NOTHING;
    -- leases that wrote more than 2,000 rows since they were last observed are due now, whatever
    -- their interval: a row takes at most a page (8 kB; TOAST chunks, 2 kB, count as rows too), so a
    -- lease that starts writing after a quiet observation is seen after at most about 16 MB, or a
    -- second of statistics (a writing session reports its counts once a second)
    UPDATE pglease.lease_health h SET next_observation_at = least(now(), coalesce(p_due_by, now()))
      FROM (SELECT l.id, sum(pg_stat_get_tuples_inserted(c.oid) + pg_stat_get_tuples_updated(c.oid)
                             + CASE WHEN c.reltoastrelid <> 0
                                    THEN pg_stat_get_tuples_inserted(c.reltoastrelid) + pg_stat_get_tuples_updated(c.reltoastrelid)
                                    ELSE 0 END) AS writes
              FROM pglease.leases l
              JOIN pg_namespace n ON n.nspname = l.schema_name
              JOIN pg_class c ON c.relnamespace = n.oid AND c.relkind IN ('r', 'm')
             WHERE l.state = 'active'
             GROUP BY l.id) w
     WHERE h.lease_id = w.id AND w.writes > h.writes + 2000 AND h.next_observation_at > now();
  END IF;

  SELECT array_agg(d.lease_id) INTO v_ids FROM (
    SELECT h.lease_id FROM pglease.lease_health h
      JOIN pglease.leases l ON l.id = h.lease_id AND l.state = 'active'
     WHERE h.next_observation_at <= least(now(), coalesce(p_due_by, now()))
     ORDER BY h.next_observation_at
     LIMIT p_limit
       FOR UPDATE OF h SKIP LOCKED) d;
  IF v_ids IS NULL THEN
    took_ms := round(extract(epoch FROM clock_timestamp() - v_start)::numeric * 1000, 3);
    RETURN;
  END IF;

  FOR attempt IN 1..2 LOOP
    BEGIN
      PERFORM set_config('lock_timeout', CASE WHEN v_exact THEN '200ms' ELSE '0' END, true);
      WITH due AS (
        SELECT l.id, l.role_name, l.auth_role, n.oid AS nsp, h.measured_size, h.measured_at, h.measured_changes, h.measured_shape
          FROM pglease.leases l
          JOIN pglease.lease_health h ON h.lease_id = l.id
          LEFT JOIN pg_namespace n ON n.nspname = l.schema_name
         WHERE l.id = ANY (v_ids)
      ), locked AS (
        SELECT DISTINCT c.relnamespace AS nsp
          FROM pg_locks k JOIN pg_class c ON c.oid = k.relation
         WHERE k.locktype = 'relation' AND k.mode = 'AccessExclusiveLock'
           AND k.database = (SELECT d.oid FROM pg_database d WHERE d.datname = current_database())
           AND c.relnamespace IN (SELECT nsp FROM due)
      ), facts AS (
        -- statistics and catalog rows only: cheap for every lease
        SELECT c.relnamespace AS nsp,
               count(*) FILTER (WHERE c.relkind IN ('r', 'p'))::int AS tables,
               coalesce(sum(pg_stat_get_live_tuples(c.oid)) FILTER (WHERE c.relkind IN ('r', 'm')), 0)::bigint AS rows_estimate,
               coalesce(sum(pg_stat_get_numscans(c.oid)) FILTER (WHERE c.relkind IN ('r', 'm')), 0)::bigint AS seq_scans,
               coalesce(sum(pg_stat_get_numscans(c.oid)) FILTER (WHERE c.relkind = 'i'), 0)::bigint AS idx_scans,
               coalesce(sum(pg_stat_get_tuples_inserted(c.oid) + pg_stat_get_tuples_updated(c.oid)
                            + CASE WHEN c.reltoastrelid <> 0
                                   THEN pg_stat_get_tuples_inserted(c.reltoastrelid) + pg_stat_get_tuples_updated(c.reltoastrelid)
                                   ELSE 0 END) FILTER (WHERE c.relkind IN ('r', 'm')), 0)::bigint AS writes,
               coalesce(sum(pg_stat_get_tuples_inserted(c.oid) + pg_stat_get_tuples_updated(c.oid) + pg_stat_get_tuples_deleted(c.oid)
                            + CASE WHEN c.reltoastrelid <> 0
                                   THEN pg_stat_get_tuples_inserted(c.reltoastrelid) + pg_stat_get_tuples_deleted(c.reltoastrelid)
                                   ELSE 0 END) FILTER (WHERE c.relkind IN ('r', 'm')), 0)::bigint AS changes,
               -- a new, dropped or rewritten relation (new relfilenode), or a VACUUM that truncated one
               (count(*) * 1000003 + sum(c.oid::bigint * 7 + c.relfilenode::bigint * 13 + c.relpages::bigint))::bigint AS shape
          FROM pg_class c
         WHERE c.relnamespace IN (SELECT nsp FROM due)
         GROUP BY c.relnamespace
      ), unchanged AS (
        -- measured before with nothing changed since, within the last minute: that size still holds
        SELECT d.nsp FROM due d JOIN facts f ON f.nsp = d.nsp
         WHERE d.measured_at > now() - interval '1 minute' AND d.measured_changes = f.changes AND d.measured_shape = f.shape
      ), rels AS (
        -- the choice between the exact size and the page counts is made per relation, inside the
        -- aggregate: an aggregate in a CASE branch would be computed (and its locks waited for) anyway
        SELECT c.relnamespace AS nsp,
               coalesce(sum(CASE WHEN v_exact AND k.nsp IS NULL
                                 THEN CASE WHEN c.relkind IN ('r', 'm') THEN pg_total_relation_size(c.oid) END
                                 ELSE CASE WHEN c.relkind IN ('r', 'm', 'i')
                                           THEN (c.relpages::bigint + coalesce((SELECT t.relpages FROM pg_class t WHERE t.oid = c.reltoastrelid), 0))
                                                * current_setting('block_size')::bigint END
                            END), 0)::bigint AS size_bytes,
               bool_and(v_exact AND k.nsp IS NULL) AS size_exact
          FROM pg_class c
          LEFT JOIN locked k ON k.nsp = c.relnamespace
         WHERE c.relnamespace IN (SELECT nsp FROM due EXCEPT SELECT nsp FROM unchanged)
         GROUP BY c.relnamespace
      ), sessions AS (
        SELECT a.usename, count(*)::int AS n FROM pg_stat_activity a
         WHERE a.usename IN (SELECT role_name FROM due UNION ALL SELECT auth_role FROM due)
         GROUP BY a.usename
      ), seen AS (
        SELECT d.id,
               coalesce(s1.n, 0) + coalesce(s2.n, 0) AS connections,
               -- CONNECT comes from a lease group (sql/leases.sql); read from the catalog rather than with
               -- has_database_privilege, which raises for a role dropped since this statement's snapshot
               d.nsp IS NOT NULL AND coalesce(r.rolcanlogin, false) AND (r.rolvaliduntil IS NULL OR r.rolvaliduntil > now())
                 AND EXISTS (SELECT 1 FROM pg_auth_members am WHERE am.member = r.oid AND am.roleid = ANY (v_groups))
                 AND (r.rolconnlimit < 0 OR coalesce(s1.n, 0) < r.rolconnlimit) AS reachable,
               coalesce(f.tables, 0) AS tables, coalesce(f.rows_estimate, 0) AS rows_estimate,
               coalesce(x.size_bytes, CASE WHEN u.nsp IS NOT NULL THEN d.measured_size END, 0) AS size_bytes,
               coalesce(x.size_exact, true) AS size_exact, x.nsp IS NOT NULL AS measured,
               coalesce(f.seq_scans, 0) AS seq_scans, coalesce(f.idx_scans, 0) AS idx_scans, coalesce(f.writes, 0) AS writes,
               f.changes, f.shape
          FROM due d
          LEFT JOIN pg_roles r ON r.rolname = d.role_name
          LEFT JOIN sessions s1 ON s1.usename = d.role_name
          LEFT JOIN sessions s2 ON s2.usename = d.auth_role
          LEFT JOIN facts f ON f.nsp = d.nsp
          LEFT JOIN unchanged u ON u.nsp = d.nsp
          LEFT JOIN rels x ON x.nsp = d.nsp
      ), inserted AS (
        INSERT INTO pglease.observations (lease_id, reachable, connections, tables, rows_estimate, size_bytes, size_exact, seq_scans, idx_scans, took_us)
        SELECT id, coalesce(reachable, false), connections, tables, rows_estimate, size_bytes, size_exact, seq_scans, idx_scans,
               (extract(epoch FROM clock_timestamp() - v_start) * 1e6 / cardinality(v_ids))::int
          FROM seen
        RETURNING id
      ), counted AS (
        -- a size measured exactly is remembered with what the relations looked like
        UPDATE pglease.lease_health h
           SET writes = seen.writes,
               measured_size = CASE WHEN seen.measured AND seen.size_exact THEN seen.size_bytes ELSE h.measured_size END,
               measured_at = CASE WHEN seen.measured AND seen.size_exact THEN now() ELSE h.measured_at END,
               measured_changes = CASE WHEN seen.measured AND seen.size_exact THEN seen.changes ELSE h.measured_changes END,
               measured_shape = CASE WHEN seen.measured AND seen.size_exact THEN seen.shape ELSE h.measured_shape END
          FROM seen WHERE h.lease_id = seen.id
      )
      SELECT array_agg(id) INTO v_obs FROM inserted;
      EXIT;
    EXCEPTION WHEN lock_not_available THEN
      -- a lease took an exclusive lock after pg_locks was read: page counts for this pass
      v_exact := false;
    END;
  END LOOP;
  PERFORM set_config('lock_timeout', '0', true);
  observed := coalesce(cardinality(v_obs), 0);

  -- statuses, next times, and the leases whose status or restriction must change
  FOR v_row IN
    WITH cur AS (
      SELECT o.*, h.status AS old_status, h.restricted, l.plan, p.max_rows,
             pglease.lease_size_limit(p.max_size_bytes, hf.disk_free_bytes, o.size_bytes) AS size_limit,
             prev.size_bytes AS prev_size, prev.observed_at AS prev_at
        FROM pglease.observations o
        JOIN pglease.lease_health h ON h.lease_id = o.lease_id
        JOIN pglease.leases l ON l.id = o.lease_id
        JOIN pglease.plans p ON p.name = l.plan
        LEFT JOIN pglease.observations prev ON prev.id = h.last_observation_id
        LEFT JOIN LATERAL (SELECT ho.disk_free_bytes FROM pglease.host_observations ho
                            WHERE ho.host_id = l.host_id ORDER BY ho.observed_at DESC LIMIT 1) hf ON true
       WHERE o.id = ANY (v_obs)
    ), judged AS (
      SELECT cur.*, (size_bytes > size_limit OR (max_rows IS NOT NULL AND rows_estimate > max_rows)) AS over_plan
        FROM cur
    ), moved AS (
      UPDATE pglease.lease_health h
         SET last_observation_id = j.id,
             next_observation_at = now() + CASE
               WHEN j.prev_at IS NULL
                 OR j.size_bytes > 0.8 * j.size_limit OR (j.max_rows IS NOT NULL AND j.rows_estimate > 0.8 * j.max_rows)
                 OR (j.size_bytes > j.prev_size
                     AND j.size_bytes + 3 * (j.size_bytes - j.prev_size)
                         * (extract(epoch FROM p_interval) / greatest(extract(epoch FROM j.observed_at - j.prev_at), 0.1)) >= j.size_limit)
               THEN p_fast ELSE p_interval END
        FROM judged j
       WHERE h.lease_id = j.lease_id
      RETURNING h.lease_id
    )
    SELECT j.*, pglease.status_after(j.old_status, j.reachable, j.over_plan) AS new_status
      FROM judged j
     WHERE pglease.status_after(j.old_status, j.reachable, j.over_plan) <> j.old_status
        OR (j.over_plan AND j.restricted IS NULL)
        OR (NOT j.over_plan AND j.restricted IS NOT NULL)
        OR (j.over_plan AND NOT pglease.restriction_intact((SELECT l FROM pglease.leases l WHERE l.id = j.lease_id)))
  LOOP
    SELECT * INTO v_lease FROM pglease.leases WHERE id = v_row.lease_id;
    BEGIN
      v_restricted := v_row.restricted;
      v_reason := CASE WHEN v_row.new_status = 'uncertain' THEN 'its login role cannot log in (or its schema is gone)'
                       ELSE 'within its plan and reachable' END;
      IF v_row.over_plan THEN
        SELECT * INTO v_msg FROM pglease.over_quota_message(v_row.plan, v_row.size_bytes, v_row.size_limit, v_row.rows_estimate, v_row.max_rows, p_interval);
        v_restricted := pglease.restrict_writes(v_lease, v_msg.message, v_msg.hint, v_row.restricted);
        v_reason := v_msg.message;
      ELSIF v_row.restricted IS NOT NULL THEN
        PERFORM pglease.restore_writes(v_lease, v_row.restricted);
        v_restricted := NULL;
      END IF;
      UPDATE pglease.lease_health
         SET status = v_row.new_status, restricted = v_restricted, last_error = NULL,
             status_since = CASE WHEN v_row.new_status <> v_row.old_status THEN now() ELSE status_since END
       WHERE lease_id = v_row.lease_id;
      IF v_row.new_status <> v_row.old_status THEN
        INSERT INTO pglease.lease_events (lease_id, kind, detail)
        VALUES (v_row.lease_id, 'status', jsonb_build_object(
          'from', v_row.old_status, 'to', v_row.new_status, 'observation_id', v_row.id,
          'reason', v_reason,
          'observation', jsonb_build_object('reachable', v_row.reachable, 'connections', v_row.connections, 'tables', v_row.tables,
                                            'rows_estimate', v_row.rows_estimate, 'size_bytes', v_row.size_bytes,
                                            'size_limit', v_row.size_limit, 'max_rows', v_row.max_rows)));
        changed := changed + 1;
      END IF;
    EXCEPTION WHEN OTHERS THEN
      GET STACKED DIAGNOSTICS v_error = MESSAGE_TEXT;
      errors := errors + 1;
      -- a lease that keeps its tables locked: its statements are cancelled, the next try comes soon
      PERFORM pglease.cancel_lease_statements(v_lease);
      UPDATE pglease.lease_health
         SET last_error = format('%s the lease failed: %s', CASE WHEN v_row.over_plan THEN 'restricting' ELSE 'restoring' END, v_error),
             next_observation_at = now() + p_fast
       WHERE lease_id = v_row.lease_id;
    END;
  END LOOP;

  -- overdue: a lease the observer has not reached for three intervals is uncertain
  WITH overdue AS (
    UPDATE pglease.lease_health h SET status = 'uncertain', status_since = now()
     WHERE h.status = 'available' AND h.next_observation_at < now() - 3 * p_interval
       AND EXISTS (SELECT 1 FROM pglease.leases l WHERE l.id = h.lease_id AND l.state = 'active')
    RETURNING h.lease_id, h.last_observation_id
  )
  INSERT INTO pglease.lease_events (lease_id, kind, detail)
  SELECT lease_id, 'status', jsonb_build_object('from', 'available', 'to', 'uncertain', 'observation_id', last_observation_id,
                                                'reason', 'observation overdue')
    FROM overdue;

  took_ms := round(extract(epoch FROM clock_timestamp() - v_start)::numeric * 1000, 3);
END
$$;

-- pglease.prune_observations: deletes observations (of leases and hosts) older than p_keep, and the
-- health rows of leases that are no longer live (lease_health has no foreign key, see its migration).
CREATE OR REPLACE FUNCTION pglease.prune_observations(p_keep interval)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_leases bigint;
  v_hosts  bigint;
BEGIN
  DELETE FROM pglease.observations WHERE observed_at < now() - p_keep;
  GET DIAGNOSTICS v_leases = ROW_COUNT;
  -- SKIP LOCKED: a row a pass holds belongs to a lease it found live; it goes on the next run
  DELETE FROM pglease.lease_health h
   WHERE h.lease_id IN (SELECT x.lease_id FROM pglease.lease_health x
                         WHERE NOT EXISTS (SELECT 1 FROM pglease.leases l WHERE l.id = x.lease_id AND l.state = 'active')
                           FOR UPDATE SKIP LOCKED);
  DELETE FROM pglease.host_observations WHERE observed_at < now() - p_keep;
  GET DIAGNOSTICS v_hosts = ROW_COUNT;
  RETURN v_leases + v_hosts;
END
$$;

-- pglease.observe_host: one observation of host p_host_id (the server this database is on):
-- connections in use and allowed, the free disk the caller measured (NULL: unknown), live leases.
-- Its status follows the leases' machine: uncertain when connections are nearly all taken (fewer
-- than superuser_reserved_connections + reserved_connections + 5 left) or the disk is nearly full
-- (under 1 GB), available otherwise; each change is logged in the server log by the caller.
CREATE OR REPLACE FUNCTION pglease.observe_host(p_host_id int, p_disk_free bigint)
RETURNS pglease.host_observations
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_start timestamptz := clock_timestamp();
  v_obs   pglease.host_observations;
  v_reserved int := current_setting('superuser_reserved_connections')::int
                    + coalesce(current_setting('reserved_connections', true)::int, 0);
  v_status pglease.lease_status;
BEGIN
  INSERT INTO pglease.host_observations (host_id, reachable, connections, max_connections, disk_free_bytes, leases, took_us)
  VALUES (p_host_id, true,
          (SELECT count(*)::int FROM pg_stat_activity WHERE backend_type = 'client backend'),
          current_setting('max_connections')::int,
          p_disk_free,
          (SELECT count(*)::int FROM pglease.leases WHERE host_id = p_host_id AND state = 'active'),
          0)
  RETURNING * INTO v_obs;
  UPDATE pglease.host_observations SET took_us = (extract(epoch FROM clock_timestamp() - v_start) * 1e6)::int
   WHERE id = v_obs.id RETURNING * INTO v_obs;
  v_status := CASE WHEN v_obs.max_connections - v_obs.connections < v_reserved + 5
                     OR (p_disk_free IS NOT NULL AND p_disk_free < 1073741824)
                   THEN 'uncertain' ELSE 'available' END;
  UPDATE pglease.hosts SET status = v_status, status_since = now() WHERE id = p_host_id AND status <> v_status;
  RETURN v_obs;
END
$$;
