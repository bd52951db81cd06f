-- Up Migration

-- GRANT <role> TO <new lease role> locks the granted role until the transaction commits, so with
-- one lease group every provisioning transaction waited for the one before it (measured: a second
-- concurrent GRANT of the same group blocks until the first commits). Sixteen groups, each with
-- CONNECT and TEMPORARY on this database, let concurrent creates proceed in parallel; a lease joins
-- the group its random name points at (pglease.lease_group_for). The first migration's single
-- group keeps its grants for the leases made before this one.
DO $$
DECLARE
  v_group text;
BEGIN
  FOR v_shard IN 0..15 LOOP
    v_group := left(current_database(), 50) || '_leases_' || v_shard;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = v_group) THEN
      EXECUTE format('CREATE ROLE %I NOLOGIN NOINHERIT', v_group);
    END IF;
    EXECUTE format('GRANT CONNECT, TEMPORARY ON DATABASE %I TO %I', current_database(), v_group);
  END LOOP;
END
$$;

-- Down Migration
DO $$
BEGIN
  FOR v_shard IN 0..15 LOOP
    EXECUTE format('DROP ROLE IF EXISTS %I', left(current_database(), 50) || '_leases_' || v_shard);
  END LOOP;
END
$$;
