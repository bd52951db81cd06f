-- Up Migration

-- Many Postgres hosts (issue 16). Every host is a full lease database (these same migrations and
-- sql/ functions): a lease lives entirely on its host, so its create, renew, release and reap stay
-- one transaction there. The control database (the first host's: DATABASE_URL or the embedded
-- server) also keeps the registry of the others. pglease.host_registry is read by the service role
-- only: the schema is closed to PUBLIC (migration 0001), so no lease role can read the URLs (and
-- their passwords) stored here.
CREATE TABLE pglease.host_registry (
  -- also the tag in the ids of the host's leases (pglease.new_lease_id below)
  id           int GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  name         text NOT NULL UNIQUE CHECK (name ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
  -- URL of a role with CREATEROLE and CREATEDB (or a superuser) on the host; NULL: the control
  -- database's own server, whose URL is the service's DATABASE_URL
  url          text,
  capacity     int  NOT NULL DEFAULT 1000 CHECK (capacity >= 0),
  weight       real NOT NULL DEFAULT 1 CHECK (weight > 0),
  draining     boolean NOT NULL DEFAULT false,
  -- host and port written into lease URLs; NULL: the URL's
  public_host  text,
  public_port  int CHECK (public_port BETWEEN 1 AND 65535),
  -- how pglease connects: libpq's sslmode (disable, require, verify-full) and the CA it verifies with
  tls          text NOT NULL DEFAULT 'verify-full' CHECK (tls IN ('disable', 'require', 'verify-full')),
  ca_pem       text,
  -- reachability as the processes serving it last saw it (src/hosts/host-probe.ts)
  state        text NOT NULL DEFAULT 'available' CHECK (state IN ('available', 'uncertain', 'down')),
  state_since  timestamptz NOT NULL DEFAULT now(),
  last_error   text,
  -- live leases at the last probe, and creates placed on the host since (pglease.place_lease)
  live_leases  int NOT NULL DEFAULT 0,
  placed       int NOT NULL DEFAULT 0,
  probed_at    timestamptz,
  created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX host_registry_one_control ON pglease.host_registry ((url IS NULL)) WHERE url IS NULL;

-- Which host of which registry this lease database is: 0 (or no row) on the control database,
-- the registry id on an extra host. Written once by the process that registers the host.
CREATE TABLE pglease.lease_id_tag (
  only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
  tag      int NOT NULL CHECK (tag >= 0)
);

-- A lease id says its host: on an extra host it is an RFC 9562 version-8 UUID whose first 32 bits
-- are the host's registry id (90 random bits remain: at a million leases per host the chance of a
-- collision is 2^-50, and a collision is retried as any other); on the control database it is
-- gen_random_uuid()'s version 4, as before. So finding a lease's host needs no lookup.
CREATE FUNCTION pglease.new_lease_id()
RETURNS uuid
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT CASE WHEN coalesce(t.tag, 0) = 0 THEN gen_random_uuid()
              ELSE (lpad(to_hex(t.tag), 8, '0') || substr(r, 9, 4) || '8' || substr(r, 14, 19))::uuid END
    FROM (SELECT replace(gen_random_uuid()::text, '-', '') AS r) AS random
    LEFT JOIN pglease.lease_id_tag t ON true
$$;

ALTER TABLE pglease.leases ALTER COLUMN id SET DEFAULT pglease.new_lease_id();

-- Down Migration
ALTER TABLE pglease.leases ALTER COLUMN id SET DEFAULT gen_random_uuid();
DROP FUNCTION pglease.new_lease_id();
DROP TABLE pglease.lease_id_tag;
DROP TABLE pglease.host_registry;
