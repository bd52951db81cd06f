-- Up Migration

-- Forks made in advance (sql/ready-forks.sql): a parked database lease whose database is a copy of
-- a source lease's snapshot, already handed over to its own roles, kept by the pglease process that
-- knows its password (holder) until a fork of the source, as that snapshot left it, takes it. Its
-- lease row expires like any parked lease's, and the reaper drops it then, database and all.
CREATE TABLE pglease.ready_forks (
  lease_id      uuid PRIMARY KEY REFERENCES pglease.leases (id) ON DELETE CASCADE,
  holder        uuid NOT NULL,
  source_id     uuid NOT NULL REFERENCES pglease.leases (id) ON DELETE CASCADE,
  -- the snapshot copied, by name and by the moment it was taken (a snapshot replaced under the
  -- same name is another snapshot)
  snapshot_name text NOT NULL,
  snapshot_at   timestamptz NOT NULL,
  -- the JWT roles the source had declared when the copy was handed over (the copy holds theirs)
  user_roles    text[] NOT NULL,
  made_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ready_forks_by_source ON pglease.ready_forks (source_id);

-- Down Migration
DROP TABLE pglease.ready_forks;
