/**
 * Which host a lease lives on, read from its id alone (migration 0018, pglease.new_lease_id): a
 * lease made on an extra host has a version-8 UUID whose first 32 bits are the host's registry id;
 * every other id (version 4, made by the control database) is the control host's. So the control
 * API and the REST API find a lease's host without a lookup, and a lease keeps its host for life.
 */

/** The registry id of the host a lease id names; 0 for the control host. */
export function hostTagOfLease(id: string): number {
  // xxxxxxxx-xxxx-Vxxx-...: V, the version nibble, is the 15th character
  return id.length === 36 && id[14] === '8' ? Number.parseInt(id.slice(0, 8), 16) : 0;
}
