-- Scheduled jobs: the rows of pglease.jobs are the schedule, shared by every pglease process on
-- this database. Processes compute cron times (src/scheduler) but every decision about who runs
-- what is a single conditional UPDATE here, so a due run is claimed exactly once.

-- pglease.ensure_job: declares a built-in job at service start. A new job starts with the
-- configured schedule. An existing job keeps a schedule changed through the API (PATCH /v1/jobs)
-- until the configuration itself asks for a different one than last time; then the configuration
-- wins and next_run_at follows it.
CREATE OR REPLACE FUNCTION pglease.ensure_job(p_name text, p_description text, p_schedule text, p_next_run_at timestamptz)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
  INSERT INTO pglease.jobs AS j (name, description, schedule, configured_schedule, next_run_at)
  VALUES (p_name, p_description, p_schedule, p_schedule, p_next_run_at)
  ON CONFLICT (name) DO UPDATE
    SET description = excluded.description,
        schedule = CASE WHEN j.configured_schedule <> excluded.configured_schedule THEN excluded.schedule ELSE j.schedule END,
        next_run_at = CASE WHEN j.configured_schedule <> excluded.configured_schedule THEN excluded.next_run_at ELSE j.next_run_at END,
        configured_schedule = excluded.configured_schedule,
        updated_at = now()
    WHERE j.configured_schedule <> excluded.configured_schedule
       OR j.description <> excluded.description
$$;

-- pglease.job_holder_alive: whether the process that holds a job still has a session. Each
-- scheduler names its sessions 'pglease-jobs <worker>' (application_name) and keeps one open (its
-- LISTEN connection), so a process killed with -9 frees its jobs at once instead of when its hold
-- runs out.
CREATE OR REPLACE FUNCTION pglease.job_holder_alive(p_worker text)
RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.application_name = 'pglease-jobs ' || p_worker)
$$;

-- pglease.claim_job: takes the run of job p_name that was due at p_scheduled_for. Returns the new
-- pglease.job_runs id, or NULL when another process claimed it first, the job changed, or a run of
-- it is still going on. The UPDATE's WHERE compares next_run_at with the value the caller saw: of
-- several processes racing, the row lock lets the first through and the others then find a
-- different next_run_at. A job still held by another run is taken over only when that run's
-- process has no session left, or when its hold (p_hold, renewed by heartbeats) ran out: the run
-- is then presumed dead and its job_runs row becomes 'abandoned'. A job still held by the caller
-- itself is free too: a scheduler claims only jobs it is not running, so that hold is left over
-- from a run whose end could not be recorded (the database went away meanwhile).
CREATE OR REPLACE FUNCTION pglease.claim_job(
  p_name          text,
  p_scheduled_for timestamptz,
  p_next_run_at   timestamptz,
  p_worker        text,
  p_hold          interval
) RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_run bigint;
BEGIN
  UPDATE pglease.jobs
     SET next_run_at = p_next_run_at, running_by = p_worker, running_until = now() + p_hold, last_run_at = now()
   WHERE name = p_name AND enabled
     AND next_run_at = p_scheduled_for AND next_run_at <= now()
     AND (running_by IS NULL OR running_by = p_worker OR running_until < now() OR NOT pglease.job_holder_alive(running_by));
  IF NOT FOUND THEN
    RETURN NULL;
  END IF;
  -- we hold the job now, so a run of it still marked running belongs to a process that stopped
  UPDATE pglease.job_runs SET outcome = 'abandoned', finished_at = now()
   WHERE job_name = p_name AND outcome = 'running';
  INSERT INTO pglease.job_runs (job_name, scheduled_for, worker)
  VALUES (p_name, p_scheduled_for, p_worker)
  RETURNING id INTO v_run;
  RETURN v_run;
END
$$;

-- pglease.heartbeat_job: a long run extends its hold. False when the job is no longer held by
-- p_worker (it was taken over), so the caller can stop.
CREATE OR REPLACE FUNCTION pglease.heartbeat_job(p_name text, p_worker text, p_hold interval)
RETURNS boolean
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
  WITH held AS (
    UPDATE pglease.jobs SET running_until = now() + p_hold
     WHERE name = p_name AND running_by = p_worker
    RETURNING 1
  )
  SELECT EXISTS (SELECT 1 FROM held)
$$;

-- pglease.finish_job_run: records a run's outcome on its job_runs row and on the job, and releases
-- the job (only if this worker still holds it).
-- p_fold: the run did nothing worth a row of its own (the caller's job says which runs are quiet:
-- an observer run that moved no status, a reaper run that ended no lease). It is folded into the
-- job's latest row when that row is itself folded runs begun within the hour: the row's
-- finished_at moves, rows_affected and the numbers of its result are summed, result.runs counts the
-- runs; otherwise its own row starts such a fold. The observer runs every second: one row a run was
-- 86,400 rows a day (kept PGLEASE_HISTORY_RETENTION, 7 days); folded, a quiet hour is one row, and
-- a run that changed something or failed keeps its own. pglease.jobs still shows the last run.
DROP FUNCTION IF EXISTS pglease.finish_job_run(bigint, text, bigint, jsonb, text);
CREATE OR REPLACE FUNCTION pglease.finish_job_run(
  p_run     bigint,
  p_outcome text,
  p_rows    bigint,
  p_result  jsonb,
  p_error   text,
  p_fold    boolean DEFAULT false
) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_run  pglease.job_runs;
  v_last pglease.job_runs;
BEGIN
  SELECT * INTO v_run FROM pglease.job_runs WHERE id = p_run FOR UPDATE;
  IF NOT FOUND THEN
    RETURN; -- pruned meanwhile: nothing to record
  END IF;
  IF p_fold AND p_outcome = 'succeeded' THEN
    SELECT * INTO v_last FROM pglease.job_runs
     WHERE job_name = v_run.job_name AND id <> p_run AND outcome <> 'running'
     ORDER BY started_at DESC, id DESC LIMIT 1
       FOR UPDATE;
  END IF;
  IF p_fold AND p_outcome = 'succeeded' AND v_last.result ? 'runs' AND v_last.outcome = 'succeeded'
     AND v_last.started_at > now() - interval '1 hour' THEN
    UPDATE pglease.job_runs
       SET finished_at = now(), worker = v_run.worker,
           rows_affected = coalesce(rows_affected, 0) + coalesce(p_rows, 0),
           result = (SELECT coalesce(jsonb_object_agg(n.key, CASE WHEN jsonb_typeof(n.value) = 'number' AND jsonb_typeof(o.value) = 'number'
                                                                  THEN to_jsonb(o.value::text::numeric + n.value::text::numeric)
                                                                  ELSE n.value END), '{}')
                       FROM jsonb_each(coalesce(p_result, '{}')) n LEFT JOIN jsonb_each(v_last.result) o ON o.key = n.key)
                    || jsonb_build_object('runs', (v_last.result ->> 'runs')::bigint + 1)
     WHERE id = v_last.id;
    DELETE FROM pglease.job_runs WHERE id = p_run;
  ELSE
    UPDATE pglease.job_runs
       SET outcome = p_outcome, finished_at = now(), rows_affected = p_rows, error = p_error,
           result = CASE WHEN p_fold AND p_outcome = 'succeeded' THEN coalesce(p_result, '{}') || '{"runs": 1}' ELSE p_result END
     WHERE id = p_run;
  END IF;
  UPDATE pglease.jobs
     SET running_by = NULL, running_until = NULL, last_finished_at = now(),
         last_outcome = p_outcome, last_result = p_result, last_error = p_error
   WHERE name = v_run.job_name AND running_by = v_run.worker;
END
$$;

-- pglease.notify_job_change: wakes every scheduler (channel pglease_jobs, payload the job's name)
-- when a job's schedule, enabled flag, or an earlier next_run_at makes its wake-up time stale.
-- Claims move next_run_at later and do not notify.
CREATE OR REPLACE FUNCTION pglease.notify_job_change()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  PERFORM pg_notify('pglease_jobs', NEW.name);
  RETURN NULL;
END
$$;

CREATE OR REPLACE TRIGGER jobs_notify_insert
  AFTER INSERT ON pglease.jobs
  FOR EACH ROW EXECUTE FUNCTION pglease.notify_job_change();

CREATE OR REPLACE TRIGGER jobs_notify_update
  AFTER UPDATE ON pglease.jobs
  FOR EACH ROW
  WHEN (OLD.schedule IS DISTINCT FROM NEW.schedule
        OR OLD.enabled IS DISTINCT FROM NEW.enabled
        OR NEW.next_run_at < OLD.next_run_at)
  EXECUTE FUNCTION pglease.notify_job_change();

-- pglease.reap_at_expiry: a lease that expires before the reaper's next run pulls that run forward
-- to its expiry, so a 1-second lease is not left alive for a whole reaper interval. The UPDATE
-- only matches (and locks the job row) when the expiry is earlier than the planned run, which is
-- rare: expiries of a steady stream of leases come after the run already planned.
CREATE OR REPLACE FUNCTION pglease.reap_at_expiry()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  UPDATE pglease.jobs SET next_run_at = NEW.expires_at
   WHERE name = 'reap-expired' AND enabled AND next_run_at > NEW.expires_at;
  RETURN NULL;
END
$$;

CREATE OR REPLACE TRIGGER leases_reap_at_expiry
  AFTER INSERT OR UPDATE OF expires_at ON pglease.leases
  FOR EACH ROW
  WHEN (NEW.expires_at IS NOT NULL AND NEW.state = 'active')
  EXECUTE FUNCTION pglease.reap_at_expiry();

-- pglease.prune_history: forgets what is older than p_retention: ended leases (their events go
-- with them) and finished job runs. Until then GET /v1/leases/:id still answers for an ended lease.
-- Per-client throttling counts the last hour of leases, so the service keeps p_retention >= 1 hour.
CREATE OR REPLACE FUNCTION pglease.prune_history(p_retention interval, OUT leases_deleted bigint, OUT runs_deleted bigint)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  DELETE FROM pglease.leases
   WHERE ended_at < now() - p_retention AND state IN ('released', 'expired', 'failed');
  GET DIAGNOSTICS leases_deleted = ROW_COUNT;
  DELETE FROM pglease.job_runs
   WHERE started_at < now() - p_retention AND outcome <> 'running';
  GET DIAGNOSTICS runs_deleted = ROW_COUNT;
END
$$;
