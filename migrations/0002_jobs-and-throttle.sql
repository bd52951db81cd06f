-- Up Migration

-- Scheduled jobs, shared by every pglease process on this database. A process runs a job only after
-- claiming its due run with a conditional update of its row (pglease.claim_job), so a run happens
-- once however many processes watch the table.
CREATE TABLE pglease.jobs (
  name              text PRIMARY KEY CHECK (name ~ '^[a-z][a-z0-9-]{0,62}$'),
  description       text NOT NULL DEFAULT '',
  -- cron: 5 fields, or 6 with seconds first (validated by the service, which computes next_run_at)
  schedule          text NOT NULL,
  -- the schedule the service's configuration last asked for: a schedule changed through the API
  -- survives restarts until the configuration itself changes
  configured_schedule text NOT NULL,
  enabled           boolean NOT NULL DEFAULT true,
  next_run_at       timestamptz NOT NULL DEFAULT now(),
  -- set while a process runs the job; a run whose process died is taken over once this has passed
  running_by        text,
  running_until     timestamptz,
  last_run_at       timestamptz,
  last_finished_at  timestamptz,
  last_outcome      text CHECK (last_outcome IN ('succeeded', 'failed')),
  last_result       jsonb,
  last_error        text,
  updated_at        timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE pglease.job_runs (
  id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  job_name       text NOT NULL REFERENCES pglease.jobs (name) ON DELETE CASCADE,
  -- the next_run_at value this run was claimed for: one row per claimed run
  scheduled_for  timestamptz NOT NULL,
  started_at     timestamptz NOT NULL DEFAULT now(),
  finished_at    timestamptz,
  -- 'abandoned': its process stopped (crash, kill -9) before it finished
  outcome        text NOT NULL DEFAULT 'running' CHECK (outcome IN ('running', 'succeeded', 'failed', 'abandoned')),
  rows_affected  bigint,
  result         jsonb,
  error          text,
  worker         text NOT NULL
);
CREATE INDEX job_runs_by_job ON pglease.job_runs (job_name, started_at DESC);
-- prune-history deletes by age
CREATE INDEX job_runs_by_start ON pglease.job_runs (started_at);

-- The reaper's retry state: a lease whose drop failed keeps its state, records the error in
-- last_error, and is tried again after a growing delay instead of blocking every batch.
ALTER TABLE pglease.leases
  ADD COLUMN reap_attempts int NOT NULL DEFAULT 0,
  ADD COLUMN next_reap_at  timestamptz;

-- Per-client throttling counts a client's creations of the last hour and its live leases by
-- quota_ip: the address a lease counts against, NULL for leases made with the admin token (which
-- bypasses per-client limits and so must not use up its address's quota either).
ALTER TABLE pglease.leases ADD COLUMN quota_ip inet;
CREATE INDEX leases_by_quota_ip ON pglease.leases (quota_ip, created_at) WHERE quota_ip IS NOT NULL;
CREATE INDEX leases_live_by_quota_ip ON pglease.leases (quota_ip) WHERE quota_ip IS NOT NULL AND state IN ('active', 'provisioning');
-- prune-history deletes ended leases by age
CREATE INDEX leases_ended ON pglease.leases (ended_at) WHERE ended_at IS NOT NULL;

-- Down Migration
DROP INDEX pglease.leases_ended;
DROP INDEX pglease.leases_live_by_quota_ip;
DROP INDEX pglease.leases_by_quota_ip;
ALTER TABLE pglease.leases DROP COLUMN quota_ip;
ALTER TABLE pglease.leases DROP COLUMN next_reap_at, DROP COLUMN reap_attempts;
DROP TABLE pglease.job_runs;
DROP TABLE pglease.jobs;
