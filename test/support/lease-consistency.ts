/**
 * What must hold on a lease database however its processes were stopped: every lease role and
 * schema belongs to a live lease (active, or parked unclaimed in a warm pool), every live lease has
 * all its objects, a lease not yet handed out is parked in a pool, no ended lease left any, and no
 * lease ended twice. Returns the violations found (empty when consistent).
 */
import type pg from 'pg';

export async function leaseInconsistencies(client: pg.Client | pg.Pool): Promise<string[]> {
  const problems: string[] = [];
  const orphans = await client.query<{ base: string }>(
    `SELECT b.base FROM pglease.lease_objects_of() b(base)
      WHERE NOT EXISTS (SELECT 1 FROM pglease.leases l WHERE l.schema_name = b.base AND l.state IN ('active', 'provisioning'))`,
  );
  for (const row of orphans.rows) problems.push(`${row.base}: role or schema without a live lease`);

  const unparked = await client.query<{ id: string }>(
    `SELECT l.id FROM pglease.leases l
      WHERE l.state = 'provisioning' AND NOT EXISTS (SELECT 1 FROM pglease.lease_pool p WHERE p.lease_id = l.id)`,
  );
  for (const row of unparked.rows) problems.push(`lease ${row.id} is provisioning but in no warm pool`);

  const incomplete = await client.query<{ id: string; schema_name: string; missing: string[] }>(
    `SELECT l.id, l.schema_name, array_remove(ARRAY[
              CASE WHEN NOT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = l.schema_name) THEN 'schema' END,
              CASE WHEN NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = l.role_name) THEN 'login role' END,
              CASE WHEN NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = l.anon_role) THEN 'anon role' END,
              CASE WHEN NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = l.auth_role) THEN 'authenticator' END], NULL) AS missing
       FROM pglease.leases l WHERE l.state IN ('active', 'provisioning')`,
  );
  for (const row of incomplete.rows) {
    if (row.missing.length > 0) problems.push(`lease ${row.id} (${row.schema_name}) is live without its ${row.missing.join(', ')}`);
  }

  const leftovers = await client.query<{ id: string; state: string }>(
    `SELECT l.id, l.state FROM pglease.leases l
      WHERE l.state IN ('released', 'expired', 'failed')
        AND (EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = l.schema_name)
             OR EXISTS (SELECT 1 FROM pg_roles WHERE rolname IN (l.role_name, l.anon_role, l.auth_role)))`,
  );
  for (const row of leftovers.rows) problems.push(`lease ${row.id} is ${row.state} but some of its objects remain`);

  const endedTwice = await client.query<{ lease_id: string; kinds: string[] }>(
    `SELECT lease_id, array_agg(kind ORDER BY id) AS kinds FROM pglease.lease_events
      WHERE kind IN ('released', 'expired', 'failed') GROUP BY lease_id HAVING count(*) > 1`,
  );
  for (const row of endedTwice.rows) problems.push(`lease ${row.lease_id} ended more than once: ${row.kinds.join(', ')}`);

  const stateMismatch = await client.query<{ id: string; state: string }>(
    `SELECT l.id, l.state FROM pglease.leases l
      WHERE l.state IN ('released', 'expired')
        AND NOT EXISTS (SELECT 1 FROM pglease.lease_events e WHERE e.lease_id = l.id AND e.kind = l.state::text)`,
  );
  for (const row of stateMismatch.rows) problems.push(`lease ${row.id} is ${row.state} without its event`);
  return problems;
}
