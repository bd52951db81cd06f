-- The handover of a fork's database (sql/fork.sql, step 4), run by the service in the fork's new
-- database before anyone can connect to it. pglease.fork_roles holds the map of the source's roles
-- to the fork's ({"lease_a": "lease_b", "lease_a_anon": "lease_b_anon", ...}), set by the caller
-- in the same session.
--
-- After it, no object, privilege, default privilege or policy of this database refers to a role of
-- the source: the source may end (its roles dropped) while the fork lives, and the other way round.
-- Catalog changes only (GRANT, ALTER DEFAULT PRIVILEGES, ALTER POLICY, REASSIGN OWNED, REVOKE):
-- nothing here plans or runs a function, view, trigger or default of the lease; names are read
-- with search_path pg_catalog and written with format('%I').
-- Not carried over: privileges the owner revoked from itself, and the grantors of grants made
-- with GRANT OPTION by a role other than the owner (the grants are made again by the owner).
-- Relations, columns, routines and types are read from oid 16384 up (FirstNormalObjectId: what
-- was made after initdb; a lease holds no grant option on a system object), by the oid indexes:
-- the whole catalogs of a database just copied are cold, and scanning them was 20 of the
-- handover's ~50 ms. Schemas are read whole: the lease grants on public (oid 2200).
DO $handover$
DECLARE
  v_map   jsonb := current_setting('pglease.fork_roles')::jsonb;
  v_from  text;
  v_to    text;
  v_grant record;
  v_policy record;
  v_owned jsonb;
BEGIN
  -- 1. privileges granted to the source's roles are granted to the fork's (owners' own privileges
  --    follow the REASSIGN below). Tables, views and sequences, their columns, schemas, routines,
  --    types, large objects.
  FOR v_grant IN
    SELECT format('GRANT %s ON %s %s TO %I%s', a.privilege_type, CASE c.relkind WHEN 'S' THEN 'SEQUENCE' ELSE 'TABLE' END,
                  format('%I.%I', n.nspname, c.relname), v_map ->> a.grantee::regrole::text,
                  CASE WHEN a.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END) AS statement
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace, aclexplode(c.relacl) a
     WHERE c.oid >= 16384 AND a.grantee <> 0 AND v_map ? a.grantee::regrole::text
    UNION ALL
    SELECT format('GRANT %s (%I) ON TABLE %I.%I TO %I%s', a.privilege_type, att.attname, n.nspname, c.relname,
                  v_map ->> a.grantee::regrole::text, CASE WHEN a.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END)
      FROM pg_attribute att JOIN pg_class c ON c.oid = att.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace,
           aclexplode(att.attacl) a
     WHERE att.attrelid >= 16384 AND att.attacl IS NOT NULL AND a.grantee <> 0 AND v_map ? a.grantee::regrole::text
    UNION ALL
    SELECT format('GRANT %s ON SCHEMA %I TO %I%s', a.privilege_type, n.nspname, v_map ->> a.grantee::regrole::text,
                  CASE WHEN a.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END)
      FROM pg_namespace n, aclexplode(n.nspacl) a
     WHERE a.grantee <> 0 AND v_map ? a.grantee::regrole::text
    UNION ALL
    SELECT format('GRANT %s ON ROUTINE %s TO %I%s', a.privilege_type, p.oid::regprocedure::text, v_map ->> a.grantee::regrole::text,
                  CASE WHEN a.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END)
      FROM pg_proc p, aclexplode(p.proacl) a
     WHERE p.oid >= 16384 AND a.grantee <> 0 AND v_map ? a.grantee::regrole::text
    UNION ALL
    SELECT format('GRANT %s ON TYPE %s TO %I%s', a.privilege_type, t.oid::regtype::text, v_map ->> a.grantee::regrole::text,
                  CASE WHEN a.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END)
      FROM pg_type t, aclexplode(t.typacl) a
     WHERE t.oid >= 16384 AND a.grantee <> 0 AND v_map ? a.grantee::regrole::text
    UNION ALL
    SELECT format('GRANT %s ON LARGE OBJECT %s TO %I%s', a.privilege_type, m.oid, v_map ->> a.grantee::regrole::text,
                  CASE WHEN a.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END)
      FROM pg_largeobject_metadata m, aclexplode(m.lomacl) a
     WHERE a.grantee <> 0 AND v_map ? a.grantee::regrole::text
  LOOP
    EXECUTE v_grant.statement;
  END LOOP;

  -- 2. default privileges: the fork's login role gets those the source's set (what it granted, and
  --    EXECUTE on functions or USAGE on types taken from PUBLIC); the source's entries here are then
  --    put back to Postgres's defaults, which removes them (REASSIGN OWNED leaves default
  --    privileges alone, and one left here would keep the source's role from being dropped)
  FOR v_grant IN
    SELECT format('ALTER DEFAULT PRIVILEGES FOR ROLE %I%s GRANT %s ON %s TO %s', v_map ->> d.defaclrole::regrole::text,
                  CASE WHEN d.defaclnamespace <> 0 THEN format(' IN SCHEMA %I', d.defaclnamespace::regnamespace::text) ELSE '' END,
                  a.privilege_type, t.objects,
                  CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(coalesce(v_map ->> a.grantee::regrole::text, a.grantee::regrole::text)) END) AS statement
      FROM pg_default_acl d, aclexplode(d.defaclacl) a,
           LATERAL (SELECT CASE d.defaclobjtype WHEN 'r' THEN 'TABLES' WHEN 'S' THEN 'SEQUENCES' WHEN 'f' THEN 'FUNCTIONS'
                                               WHEN 'T' THEN 'TYPES' WHEN 'n' THEN 'SCHEMAS' END AS objects) t
     WHERE v_map ? d.defaclrole::regrole::text
    UNION ALL
    SELECT format('ALTER DEFAULT PRIVILEGES FOR ROLE %I REVOKE %s ON %s FROM PUBLIC', v_map ->> d.defaclrole::regrole::text,
                  CASE d.defaclobjtype WHEN 'f' THEN 'EXECUTE' ELSE 'USAGE' END, CASE d.defaclobjtype WHEN 'f' THEN 'FUNCTIONS' ELSE 'TYPES' END)
      FROM pg_default_acl d
     WHERE v_map ? d.defaclrole::regrole::text AND d.defaclnamespace = 0 AND d.defaclobjtype IN ('f', 'T')
       AND NOT EXISTS (SELECT 1 FROM aclexplode(d.defaclacl) a WHERE a.grantee = 0)
    UNION ALL
    -- the source's global entries back to the defaults: the owner's and PUBLIC's privileges...
    SELECT format('ALTER DEFAULT PRIVILEGES FOR ROLE %I GRANT ALL ON %s TO %I%s', d.defaclrole::regrole::text, t.objects,
                  d.defaclrole::regrole::text,
                  CASE d.defaclobjtype WHEN 'f' THEN '; ALTER DEFAULT PRIVILEGES FOR ROLE ' || quote_ident(d.defaclrole::regrole::text) || ' GRANT EXECUTE ON FUNCTIONS TO PUBLIC'
                                       WHEN 'T' THEN '; ALTER DEFAULT PRIVILEGES FOR ROLE ' || quote_ident(d.defaclrole::regrole::text) || ' GRANT USAGE ON TYPES TO PUBLIC'
                                       ELSE '' END)
      FROM pg_default_acl d,
           LATERAL (SELECT CASE d.defaclobjtype WHEN 'r' THEN 'TABLES' WHEN 'S' THEN 'SEQUENCES' WHEN 'f' THEN 'FUNCTIONS'
                                               WHEN 'T' THEN 'TYPES' WHEN 'n' THEN 'SCHEMAS' END AS objects) t
     WHERE v_map ? d.defaclrole::regrole::text AND d.defaclnamespace = 0
    UNION ALL
    -- ...and nothing for anyone else (an entry for one schema holds only additions: all go)
    SELECT format('ALTER DEFAULT PRIVILEGES FOR ROLE %I%s REVOKE ALL ON %s FROM %s', d.defaclrole::regrole::text,
                  CASE WHEN d.defaclnamespace <> 0 THEN format(' IN SCHEMA %I', d.defaclnamespace::regnamespace::text) ELSE '' END,
                  t.objects, CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(a.grantee::regrole::text) END)
      FROM pg_default_acl d, aclexplode(d.defaclacl) a,
           LATERAL (SELECT CASE d.defaclobjtype WHEN 'r' THEN 'TABLES' WHEN 'S' THEN 'SEQUENCES' WHEN 'f' THEN 'FUNCTIONS'
                                               WHEN 'T' THEN 'TYPES' WHEN 'n' THEN 'SCHEMAS' END AS objects) t
     WHERE v_map ? d.defaclrole::regrole::text
       AND (d.defaclnamespace <> 0 OR (a.grantee <> d.defaclrole AND a.grantee <> 0))
  LOOP
    EXECUTE v_grant.statement;
  END LOOP;

  -- 3. row-level security policies name roles: those of the source's become the fork's
  FOR v_policy IN
    SELECT p.polname, n.nspname, c.relname,
           (SELECT string_agg(CASE WHEN r = 0 THEN 'PUBLIC'
                                   ELSE quote_ident(coalesce(v_map ->> r::regrole::text, r::regrole::text)) END, ', ')
              FROM unnest(p.polroles) r) AS roles
      FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE EXISTS (SELECT 1 FROM unnest(p.polroles) r WHERE r <> 0 AND v_map ? r::regrole::text)
  LOOP
    EXECUTE format('ALTER POLICY %I ON %I.%I TO %s', v_policy.polname, v_policy.nspname, v_policy.relname, v_policy.roles);
  END LOOP;

  -- 4. what the source's roles own becomes the fork's. REASSIGN OWNED also takes the databases a
  --    role owns: a fork of the live database has made the source's database the service's for
  --    this moment; a fork made in advance (sql/ready-forks.sql) leaves the source open, and the
  --    source's database is given back in this transaction, so no other session ever sees it
  --    owned by the fork (catalog reads see committed rows only).
  SELECT coalesce(jsonb_object_agg(d.datname, d.datdba::regrole::text), '{}') INTO v_owned
    FROM pg_database d
   WHERE d.datname <> current_database() AND v_map ? d.datdba::regrole::text;
  FOR v_from, v_to IN SELECT key, value FROM jsonb_each_text(v_map) LOOP
    EXECUTE format('REASSIGN OWNED BY %I TO %I', v_from, v_to);
  END LOOP;
  FOR v_from, v_to IN SELECT key, value FROM jsonb_each_text(v_owned) LOOP
    EXECUTE format('ALTER DATABASE %I OWNER TO %I', v_from, v_to);
  END LOOP;
  --    Had the source's database been given back meanwhile (the bracket's session lost, and the
  --    reaper reopening it: src/leases/copy-bracket.ts), the fork would now own it: refuse.
  IF EXISTS (SELECT 1 FROM pg_database d JOIN jsonb_each_text(v_map) m ON d.datdba = m.value::regrole
              WHERE d.datname <> current_database()) THEN
    RAISE EXCEPTION 'the source''s database was given back to its owner during the fork''s handover' USING ERRCODE = '55006';
  END IF;

  -- 5. privileges the source's roles still hold here are revoked (DROP OWNED would also revoke
  --    their privileges on shared objects: the source's CONNECT on its own database)
  FOR v_grant IN
    SELECT DISTINCT format('REVOKE ALL ON %s %s FROM %I CASCADE', CASE c.relkind WHEN 'S' THEN 'SEQUENCE' ELSE 'TABLE' END,
                  format('%I.%I', n.nspname, c.relname), a.grantee::regrole::text) AS statement
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace, aclexplode(c.relacl) a
     WHERE c.oid >= 16384 AND a.grantee <> 0 AND v_map ? a.grantee::regrole::text
    UNION
    SELECT format('REVOKE ALL (%I) ON TABLE %I.%I FROM %I CASCADE', att.attname, n.nspname, c.relname, a.grantee::regrole::text)
      FROM pg_attribute att JOIN pg_class c ON c.oid = att.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace,
           aclexplode(att.attacl) a
     WHERE att.attrelid >= 16384 AND att.attacl IS NOT NULL AND a.grantee <> 0 AND v_map ? a.grantee::regrole::text
    UNION
    SELECT format('REVOKE ALL ON SCHEMA %I FROM %I CASCADE', n.nspname, a.grantee::regrole::text)
      FROM pg_namespace n, aclexplode(n.nspacl) a
     WHERE a.grantee <> 0 AND v_map ? a.grantee::regrole::text
    UNION
    SELECT format('REVOKE ALL ON ROUTINE %s FROM %I CASCADE', p.oid::regprocedure::text, a.grantee::regrole::text)
      FROM pg_proc p, aclexplode(p.proacl) a
     WHERE p.oid >= 16384 AND a.grantee <> 0 AND v_map ? a.grantee::regrole::text
    UNION
    SELECT format('REVOKE ALL ON TYPE %s FROM %I CASCADE', t.oid::regtype::text, a.grantee::regrole::text)
      FROM pg_type t, aclexplode(t.typacl) a
     WHERE t.oid >= 16384 AND a.grantee <> 0 AND v_map ? a.grantee::regrole::text
    UNION
    SELECT format('REVOKE ALL ON LARGE OBJECT %s FROM %I CASCADE', m.oid, a.grantee::regrole::text)
      FROM pg_largeobject_metadata m, aclexplode(m.lomacl) a
     WHERE a.grantee <> 0 AND v_map ? a.grantee::regrole::text
  LOOP
    EXECUTE v_grant.statement;
  END LOOP;
END
$handover$;
