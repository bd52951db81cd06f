-- Up Migration

-- The pglease schema holds the service's state next to the leases it describes. No lease role
-- may use it: the schema is owned by the service's role and PUBLIC gets nothing on it.
CREATE SCHEMA IF NOT EXISTS pglease;
REVOKE ALL ON SCHEMA pglease FROM PUBLIC;

-- Lease roles live in this database and must not touch the public schema. Revoking here (rather
-- than at each provision) costs nothing per lease.
REVOKE ALL ON SCHEMA public FROM PUBLIC;

-- Lease roles reach this database through one group role per lease database, never through
-- PUBLIC: PUBLIC loses CONNECT here as on every other database of the host (see
-- pglease.restrict_other_databases), so several lease databases can share a host without their
-- leases reaching each other's database.
DO $$
DECLARE
  v_group text := left(current_database(), 56) || '_leases';
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = v_group) THEN
    EXECUTE format('CREATE ROLE %I NOLOGIN NOINHERIT', v_group);
  END IF;
  EXECUTE format('GRANT CONNECT, TEMPORARY ON DATABASE %I TO %I', current_database(), v_group);
  EXECUTE format('REVOKE ALL ON DATABASE %I FROM PUBLIC', current_database());
END
$$;

-- Functions created later in pglease are not executable by PUBLIC either.
ALTER DEFAULT PRIVILEGES IN SCHEMA pglease REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;

-- One row per Postgres host this database's leases live on. Today a pglease database manages its
-- own host; the table keeps the host a lease was made on explicit for later multi-host routing.
CREATE TABLE pglease.hosts (
  id            int GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  name          text NOT NULL UNIQUE,
  -- host and port written into lease URLs
  public_host   text NOT NULL,
  public_port   int  NOT NULL CHECK (public_port BETWEEN 1 AND 65535),
  database_name text NOT NULL,
  created_at    timestamptz NOT NULL DEFAULT now(),
  updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TYPE pglease.lease_state AS ENUM ('provisioning', 'active', 'released', 'expired', 'failed');

CREATE TABLE pglease.leases (
  id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  label         text CHECK (length(label) <= 200),
  host_id       int NOT NULL REFERENCES pglease.hosts (id),
  -- the schema and its owning login role share one name
  schema_name   name NOT NULL UNIQUE,
  role_name     name NOT NULL UNIQUE,
  -- NOLOGIN role for unauthenticated REST requests
  anon_role     name NOT NULL UNIQUE,
  -- this lease's own authenticator: may SET ROLE to role_name and anon_role and nothing else
  auth_role     name NOT NULL UNIQUE,
  -- sha256 of the lease token; the token itself is never stored
  token_hash    bytea NOT NULL UNIQUE,
  state         pglease.lease_state NOT NULL,
  client_ip     inet,
  created_at    timestamptz NOT NULL DEFAULT now(),
  -- NULL: the lease never expires (admin only)
  expires_at    timestamptz,
  ended_at      timestamptz,
  -- the last error met while provisioning or dropping this lease
  last_error    text,
  CHECK (expires_at IS NULL OR expires_at > created_at)
);
-- the reaper's scan: live leases by expiry
CREATE INDEX leases_live_expiry ON pglease.leases (expires_at) WHERE state IN ('active', 'provisioning');
-- the admin listing: newest first, cursor on (created_at, id)
CREATE INDEX leases_listing ON pglease.leases (created_at DESC, id DESC);

CREATE TABLE pglease.lease_events (
  id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  lease_id    uuid NOT NULL REFERENCES pglease.leases (id) ON DELETE CASCADE,
  kind        text NOT NULL CHECK (kind IN ('created', 'renewed', 'released', 'expired', 'failed')),
  client_ip   inet,
  at          timestamptz NOT NULL DEFAULT now(),
  detail      jsonb
);
CREATE INDEX lease_events_by_lease ON pglease.lease_events (lease_id, at);

-- Service secrets shared by every pglease process on this database (e.g. the key from which each
-- lease authenticator's password is derived). Only the service role can read them.
CREATE TABLE pglease.secrets (
  name        text PRIMARY KEY,
  value       bytea NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now()
);
INSERT INTO pglease.secrets (name, value)
VALUES ('authenticator_key', decode(replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', ''), 'hex'));

-- The SQL function files of sql/ applied to this database, by content hash: on start pglease
-- re-applies a file only when its text changed (repeatable migrations; see src/db/migrate.ts).
CREATE TABLE pglease.sql_sources (
  file        text PRIMARY KEY,
  sha256      text NOT NULL,
  applied_at  timestamptz NOT NULL DEFAULT now()
);

-- Down Migration
DROP SCHEMA pglease CASCADE;
