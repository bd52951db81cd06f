-- Up Migration

-- What a lease's REST API needs to serve the lease's own users (issue 15):
--   jwt_secret    the HMAC secret (HS256/384/512) its JWTs are signed with: made at creation
--                 (sql/auth.sql), shown once with the lease's token, rotatable;
--   user_roles    the NOLOGIN roles the lease declared for its JWTs to name ('editor' is the role
--                 <lease>_editor), dropped with the lease;
--   api_settings  its PostgREST settings (jwt_aud, jwt_role_claim_key, jwt_jwks, db_max_rows ...).
ALTER TABLE pglease.leases
  ADD COLUMN jwt_secret text,
  ADD COLUMN user_roles text[] NOT NULL DEFAULT '{}',
  ADD COLUMN api_settings jsonb NOT NULL DEFAULT '{}';

-- Live leases get a secret now (gen_random_uuid is a strong random source: 2 x 122 bits).
UPDATE pglease.leases
   SET jwt_secret = translate(encode(decode(replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', ''), 'hex'), 'base64'), '+/=', '-_')
 WHERE state IN ('active', 'provisioning');

-- Down Migration
ALTER TABLE pglease.leases DROP COLUMN jwt_secret, DROP COLUMN user_roles, DROP COLUMN api_settings;
