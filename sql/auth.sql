-- Who a lease's REST API serves besides its owner: the users of the lease's own app, who send a
-- JWT signed with the lease's secret (or a key of its JWKS) naming one of the roles the lease
-- declared. Everything here touches catalogs and pglease's own tables only: no lease code runs.

-- pglease.new_jwt_secret: 32 random bytes (244 of them random: two version-4 UUIDs, which
-- Postgres draws from its strong random source), base64url without padding: 43 characters, the
-- HMAC key of HS256/384/512 used as its UTF-8 bytes, as PostgREST uses jwt-secret.
CREATE OR REPLACE FUNCTION pglease.new_jwt_secret()
RETURNS text
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT translate(encode(decode(replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', ''), 'hex'), 'base64'), '+/=', '-_')
$$;

-- pglease.leases_new_jwt_secret: row trigger. A lease gets a new JWT secret whenever it gets a new
-- token (its creation, and the hand-out of a parked lease: sql/pool.sql, sql/templates.sql), so
-- that whoever is given the token is the only one who was ever given the secret.
CREATE OR REPLACE FUNCTION pglease.leases_new_jwt_secret()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  NEW.jwt_secret := pglease.new_jwt_secret();
  RETURN NEW;
END
$$;

CREATE OR REPLACE TRIGGER leases_new_jwt_secret
  BEFORE INSERT OR UPDATE OF token_hash ON pglease.leases
  FOR EACH ROW EXECUTE FUNCTION pglease.leases_new_jwt_secret();

-- pglease.rotate_jwt_secret: a new JWT secret for an active lease; JWTs signed with the old one
-- stop working at once (every process drops its cached lookup: the lease-change notification of
-- sql/rest.sql). NULL when the lease is not active.
CREATE OR REPLACE FUNCTION pglease.rotate_jwt_secret(p_id uuid)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_secret text;
BEGIN
  UPDATE pglease.leases SET jwt_secret = pglease.new_jwt_secret()
   WHERE id = p_id AND state = 'active'
   RETURNING jwt_secret INTO v_secret;
  RETURN v_secret;
END
$$;

-- pglease.create_declared_role: makes p_role, a JWT role of lease p_lease (<login role>_<name>):
-- NOLOGIN NOINHERIT, which the lease's authenticator may SET ROLE to without holding its
-- privileges, and which a service role that is no superuser is a member of (to drop it later).
-- Used by pglease.declare_lease_role and by a fork taking its source's roles (sql/fork.sql).
CREATE OR REPLACE FUNCTION pglease.create_declared_role(p_lease pglease.leases, p_role text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  EXECUTE format('CREATE ROLE %I NOLOGIN NOINHERIT', p_role);
  IF current_setting('server_version_num')::int >= 160000 THEN
    EXECUTE format('GRANT %I TO %I WITH INHERIT FALSE, SET TRUE', p_role, p_lease.auth_role);
  ELSE
    EXECUTE format('GRANT %I TO %I', p_role, p_lease.auth_role);
  END IF;
  IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
    EXECUTE format('GRANT %I TO %I', p_role, current_user);
  END IF;
END
$$;

-- pglease.declare_lease_role: makes `p_name` a role the lease's JWTs may name: the NOLOGIN role
-- <lease>_<p_name>, which
--   * the lease's authenticator may SET ROLE to and nothing more (Postgres 16+: WITH INHERIT
--     FALSE, SET TRUE, as for the lease's own two roles in pglease.provision);
--   * has USAGE on the lease's schema and nothing else, so that the owner's GRANTs and policies
--     decide what it sees (any role may GRANT on what it owns to any role, and name any role in
--     a policy: the owner needs no more);
--   * the service role is a member of when it is no superuser, to DROP OWNED BY it with the
--     lease (pglease.drop_lease_objects);
--   * is recorded in pglease.leases.user_roles, whose change every process hears of.
-- Names: lowercase letters, digits and '_', starting with a letter, at most 40 characters (the
-- role name stays within Postgres's 63); 'anon', 'auth' and 'quota' (sql/quota.sql) are the lease's own. At most 32 per
-- lease. Declaring a role twice is a no-op. Returns the role's name; NULL when the lease is not
-- active.
CREATE OR REPLACE FUNCTION pglease.declare_lease_role(p_id uuid, p_name text)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_lease pglease.leases;
  v_role  text;
BEGIN
  IF p_name IS NULL OR p_name !~ '^[a-z][a-z0-9_]{0,39}$' OR p_name IN ('anon', 'auth', 'quota') THEN
    RAISE EXCEPTION 'invalid role name %: lowercase letters, digits and _, starting with a letter, at most 40 characters, not anon, auth or quota', coalesce(p_name, 'NULL')
      USING ERRCODE = '22023';
  END IF;
  SELECT * INTO v_lease FROM pglease.leases WHERE id = p_id AND state = 'active' FOR UPDATE;
  IF NOT FOUND THEN
    RETURN NULL;
  END IF;
  v_role := v_lease.role_name || '_' || p_name;
  IF p_name = ANY (v_lease.user_roles) THEN
    RETURN v_role;
  END IF;
  IF cardinality(v_lease.user_roles) >= 32 THEN
    RAISE EXCEPTION 'a lease declares at most 32 roles' USING ERRCODE = '54000';
  END IF;

  PERFORM pglease.create_declared_role(v_lease, v_role);
  -- a database lease's roles use its public schema as PUBLIC may (Postgres 15+), and other schemas
  -- of its database as the lease grants: pglease never connects there
  IF v_lease.kind = 'schema' THEN
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO %I', v_lease.schema_name, v_role);
  END IF;

  UPDATE pglease.leases SET user_roles = user_roles || p_name WHERE id = p_id;
  RETURN v_role;
END
$$;

-- pglease.set_api_settings: merges `p_settings` into an active lease's API settings (a key set to
-- null is removed: back to its default). The service validates the values. Returns the settings;
-- NULL when the lease is not active.
CREATE OR REPLACE FUNCTION pglease.set_api_settings(p_id uuid, p_settings jsonb)
RETURNS jsonb
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
  UPDATE pglease.leases SET api_settings = jsonb_strip_nulls(api_settings || p_settings)
   WHERE id = p_id AND state = 'active'
  RETURNING api_settings
$$;
