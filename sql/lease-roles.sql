-- pglease.make_lease_roles: the roles, grants and schema of a new lease, for pglease.provision.
--
-- Why a function of its own, installed twice. Every CREATE ROLE and GRANT resets each backend's
-- cache of role memberships, and the next privilege check the current role makes recomputes its
-- memberships from the catalog, one lookup per role it belongs to. The service role belongs to every
-- lease's three roles, so a create that ran these statements as the service paid a recomputation
-- over all of them, about ten times (at 600 live leases: 7-11 ms per CREATE ROLE or GRANT, 2 ms per
-- ALTER ROLE SET, against 0.1-0.3 ms for a role with few memberships or a superuser: session 9,
-- bench/live-creates.ts). A superuser skips those checks. So:
--   * when pglease is given a superuser, src/db/superuser-setup.ts installs this text again as
--     pglease_admin.make_lease_roles, SECURITY DEFINER, owned by that superuser and executable by
--     the service role alone, and pglease.provision calls that one;
--   * otherwise (a managed Postgres, no superuser), this invoker's copy runs as the service.
-- The two copies are one text, so they cannot drift. It reads only catalogs and calls nothing of
-- the schema pglease (a superuser must never run the service role's code: the service owns that
-- schema and could replace what is in it).
--
-- What a superuser copy lets the service do that it could not already: nothing. It makes only new
-- roles named like a lease's (CREATE ROLE fails on an existing name), with fixed attributes and
-- SCRAM verifiers only, grants them only this database's lease groups and reserve roles, and makes
-- the service their admin as the service's own CREATE ROLE would. It runs no lease code: the roles
-- and schema it touches did not exist before it. A schema lease's group membership is granted by
-- whoever runs this copy, and quota-schema.sql's restrict_large_objects changes it through
-- pglease_admin.set_lease_group_inherit, which changes that grant and adds none beside it. A
-- database lease's (restricted in its own database, where no superuser's function is) is recorded
-- as granted by the service (GRANTED BY), so that the service's own change is to that grant.
--
-- In one transaction with the caller's: a failure anywhere rolls the whole lease back.
CREATE OR REPLACE FUNCTION pglease.make_lease_roles(
  p_base              text,          -- schema and login role name, 'lease_' + 16 hex digits
  p_login_verifier    text,          -- SCRAM verifiers: the secrets never reach the server
  p_auth_verifier     text,
  p_connection_limit  int,
  p_auth_connections  int,
  p_statement_timeout text,
  p_idle_timeout      text,
  p_group             text,          -- the lease group to join; NULL: the one its name points at
  p_kind              text           -- 'schema', or 'database' (no schema here; no lease group)
) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_login    text := p_base;
  v_anon     text := p_base || '_anon';
  v_auth     text := p_base || '_auth';
  v_db       text := current_database();
  v_pg16     boolean := current_setting('server_version_num')::int >= 160000;
  -- the service role: the owner of the schema pglease (a catalog read)
  v_service  text := (SELECT pg_get_userbyid(n.nspowner) FROM pg_namespace n WHERE n.nspname = 'pglease');
  v_as_service boolean;
  v_superuser boolean;
  v_service_superuser boolean;
  v_has_reserve boolean;
  c_verifier CONSTANT text := '^SCRAM-SHA-256\$[1-9][0-9]{0,9}:[A-Za-z0-9+/]{4,}={0,2}\$[A-Za-z0-9+/]{43}=:[A-Za-z0-9+/]{43}=$';
  v_group    text;
  v_reserve  text;
  v_schema_kind boolean := p_kind = 'schema';
BEGIN
  IF p_base IS NULL OR p_base !~ '^lease_[0-9a-f]{16}$' THEN
    RAISE EXCEPTION 'invalid lease name %', p_base USING ERRCODE = '22023';
  END IF;
  IF p_kind IS NULL OR p_kind NOT IN ('schema', 'database') THEN
    RAISE EXCEPTION 'a lease is of kind schema or database, not %', p_kind USING ERRCODE = '22023';
  END IF;
  -- whole verifiers (iterations, salt, then the two 32-byte keys in base64): a superuser writes
  -- the login role's into pg_authid itself, where nothing else parses it
  IF p_login_verifier IS NULL OR p_auth_verifier IS NULL
     OR p_login_verifier !~ c_verifier OR p_auth_verifier !~ c_verifier THEN
    RAISE EXCEPTION 'lease passwords arrive as SCRAM-SHA-256 verifiers' USING ERRCODE = '22023';
  END IF;
  IF p_connection_limit IS NULL OR p_connection_limit < -1 OR p_auth_connections IS NULL OR p_auth_connections < -1 THEN
    RAISE EXCEPTION 'invalid connection limit' USING ERRCODE = '22023';
  END IF;
  IF v_service IS NULL THEN
    RAISE EXCEPTION 'no schema pglease in database %', v_db USING ERRCODE = '3F000';
  END IF;
  -- the lease groups of this database (as pglease.lease_groups and lease_group_for name them): the
  -- one a lease's name points at is one of them; a group given is checked
  v_group := coalesce(p_group, left(v_db, 50) || '_leases_' || ('x' || lpad(substr(p_base, 7, 1), 8, '0'))::bit(32)::int);
  IF p_group IS NOT NULL THEN
    IF NOT p_group IN (SELECT left(v_db, 56) || '_leases' UNION ALL SELECT left(v_db, 50) || '_leases_' || n FROM generate_series(0, 15) n) THEN
      RAISE EXCEPTION '% is not a lease group of this database', p_group USING ERRCODE = '22023';
    END IF;
  END IF;
  IF NOT v_schema_kind THEN
    -- no lease group: a database lease connects to its own database only; this group only marks
    -- its roles as ours
    v_group := left(v_db, 53) || '_dbleases';
  END IF;
  -- the service itself runs this copy (no superuser): it is then the grantor of everything, and its
  -- own CREATE ROLE already made it the roles' admin (Postgres 16+)
  v_as_service := current_user = v_service;
  -- The authenticator may use the server's reserved connections (pglease_admin.ensure_rest_reserve,
  -- made by a superuser at setup; absent otherwise): the REST API logs in while the leases' own
  -- logins hold every other slot. Sharded as the lease groups are.
  v_reserve := left(v_db, 50) || '_rest_' || ('x' || lpad(substr(p_base, 7, 1), 8, '0'))::bit(32)::int;
  -- what this function needs to know of three roles, in one statement: each statement here is
  -- parsed and planned again at every call (a create's CREATE SCHEMA makes every session of the
  -- database drop its cached plans), and pg_roles is a view, about 40 us to plan per read
  SELECT coalesce(bool_or(r.rolsuper) FILTER (WHERE r.rolname = current_user), false),
         coalesce(bool_or(r.rolsuper) FILTER (WHERE r.rolname = v_service), false),
         coalesce(bool_or(true) FILTER (WHERE r.rolname = v_reserve), false)
    INTO v_superuser, v_service_superuser, v_has_reserve
    FROM pg_roles r WHERE r.rolname IN (current_user, v_service, v_reserve);

  -- All statements in one EXECUTE, in this order: one string made by one expression, where a
  -- statement each (with its format() as an expression of its own) was planned again at each call,
  -- about 45% of a provision's CPU went to planning on Postgres 15 (session 11, perf at
  -- concurrency 8). Utility statements in an EXECUTE are not planned.
  EXECUTE concat_ws(E';\n',
    format('CREATE ROLE %I NOLOGIN NOINHERIT', v_anon),
    -- The login role's verifier has PGLEASE_SCRAM_ITERATIONS (4096) iterations, and CREATE ROLE
    -- ... PASSWORD derives the empty password's key at that count to refuse an empty password:
    -- 3.0-3.2 ms of CPU on Postgres 15 and 17 here, about half of a whole provision (session 10,
    -- bench/leases.ts --pg15). The password is 256 random bits, never empty, so a superuser (this
    -- function's owner when pglease_admin's copy runs) stores the verifier in pg_authid itself,
    -- as CREATE ROLE would: 0.85 ms for both statements. The service without a superuser cannot.
    format('CREATE ROLE %I LOGIN INHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS CONNECTION LIMIT %s%s',
           v_login, p_connection_limit, CASE WHEN v_superuser THEN '' ELSE format(' PASSWORD %L', p_login_verifier) END),
    CASE WHEN v_superuser THEN format('UPDATE pg_catalog.pg_authid SET rolpassword = %L WHERE rolname = %L', p_login_verifier, v_login) END,
    format('CREATE ROLE %I LOGIN INHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS CONNECTION LIMIT %s PASSWORD %L',
           v_auth, p_auth_connections, p_auth_verifier),
    -- the authenticator may SET ROLE to the lease's roles without holding their privileges itself;
    -- before Postgres 16 membership always inherits: the authenticator then holds the owner's
    -- privileges before SET ROLE, which stays within the lease
    format('GRANT %I, %I TO %I%s', v_login, v_anon, v_auth, CASE WHEN v_pg16 THEN ' WITH INHERIT FALSE, SET TRUE' ELSE '' END),
    -- A service role that is not superuser must be a member of the lease's roles to make the
    -- schema theirs, set default privileges, and later DROP OWNED BY; and their admin, to alter and
    -- drop them.
    CASE WHEN NOT v_service_superuser THEN
      format('GRANT %I, %I, %I TO %I%s', v_login, v_anon, v_auth, v_service,
             CASE WHEN v_as_service THEN '' WHEN v_pg16 THEN ' WITH ADMIN TRUE, INHERIT TRUE, SET TRUE' ELSE ' WITH ADMIN OPTION' END)
    END,
    CASE WHEN v_schema_kind THEN format('CREATE SCHEMA %I AUTHORIZATION %I', p_base, v_login) END,
    CASE WHEN v_schema_kind THEN format('GRANT USAGE ON SCHEMA %I TO %I', p_base, v_anon) END,
    -- Functions are executable by PUBLIC by default; a lease's anonymous role gets only what its
    -- owner grants, so new functions start private. (A database lease gets the same in its own
    -- database, from its first session: default privileges belong to a database.)
    CASE WHEN v_schema_kind THEN format('ALTER DEFAULT PRIVILEGES FOR ROLE %I REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC', v_login) END,
    -- in its own database, public is the lease's (owned by pg_database_owner, Postgres 15+)
    format('ALTER ROLE %I SET search_path TO %s', v_login, CASE WHEN v_schema_kind THEN quote_ident(p_base) ELSE '"$user", public' END),
    format('ALTER ROLE %I SET search_path TO %s', v_auth, CASE WHEN v_schema_kind THEN quote_ident(p_base) ELSE '"$user", public' END),
    format('ALTER ROLE %I SET statement_timeout TO %L', v_login, p_statement_timeout),
    format('ALTER ROLE %I SET statement_timeout TO %L', v_auth, p_statement_timeout),
    format('ALTER ROLE %I SET idle_in_transaction_session_timeout TO %L', v_login, p_idle_timeout),
    format('ALTER ROLE %I SET idle_in_transaction_session_timeout TO %L', v_auth, p_idle_timeout),
    -- granted just before the group, so that concurrent creates wait for each other no more than
    -- they already do
    CASE WHEN v_has_reserve THEN format('GRANT %I TO %I%s', v_reserve, v_auth, CASE WHEN v_pg16 THEN ' WITH INHERIT TRUE, SET FALSE' ELSE '' END) END,
    -- CONNECT on this database comes from a lease group (inherited), nothing else does. Last,
    -- because the grant locks the group until commit: the shorter that is, the less concurrent
    -- creates wait. Without SET (Postgres 16 and later): a lease that could SET ROLE to its group
    -- could make objects the group owns (large objects), which outlive the lease and which every
    -- lease of the group can reach. Older servers grant SET with membership; cleanup_orphans
    -- unlinks those. A schema lease's grantor is whoever runs this copy: GRANTED BY the service
    -- made Postgres check that the service administers the group by walking its memberships in
    -- every lease's roles (11 ms at 990 live leases, Postgres 16+); its later changes go through
    -- pglease_admin.set_lease_group_inherit. A database lease's is the service (restricted in its
    -- own database, where no superuser's function is).
    CASE WHEN NOT v_schema_kind THEN
      format('GRANT %I TO %I, %I%s', v_group, v_login, v_auth, CASE WHEN v_as_service THEN '' ELSE format(' GRANTED BY %I', v_service) END)
    ELSE
      format('GRANT %I TO %I, %I%s', v_group, v_login, v_auth, CASE WHEN v_pg16 THEN ' WITH INHERIT TRUE, SET FALSE' ELSE '' END)
    END);
END
$$;
REVOKE ALL ON FUNCTION pglease.make_lease_roles(text, text, text, int, int, text, text, text, text) FROM PUBLIC;
