/**
 * Which of a lease's roles a request with a JWT runs as. A lease's JWTs may name:
 *   * a role the lease declared (pglease.declare_lease_role, sql/auth.sql), by its short name
 *     (`editor`) or its Postgres name (`<lease>_editor`);
 *   * `anon`, or no role at all: the lease's anonymous role, as PostgREST falls back to db-anon-role;
 *   * the lease's own login role by its Postgres name: the owner (the secret is the owner's to share).
 * Anything else is no role of this lease: PostgREST answers what Postgres says to SET ROLE of a role
 * that does not exist (401, 22023), and so does pglease, without asking Postgres: a role of another
 * lease must never reach set_config('role', ...) from here.
 */

/** What role resolution needs of a lease. */
export interface LeaseRoles {
  /** The lease's login role (the owner). */
  role: string;
  anonRole: string;
  /** The short names of the roles the lease declared. */
  userRoles: readonly string[];
}

/** The Postgres role a JWT's role claim names in this lease; undefined when the lease has no such role. */
export function leaseRoleFor(lease: LeaseRoles, claimed: string | undefined): string | undefined {
  if (claimed === undefined || claimed === 'anon' || claimed === lease.anonRole) return lease.anonRole;
  if (claimed === lease.role) return lease.role;
  if (lease.userRoles.includes(claimed)) return declaredRoleName(lease.role, claimed);
  const prefix = lease.role + '_';
  if (claimed.startsWith(prefix) && lease.userRoles.includes(claimed.slice(prefix.length))) return claimed;
  return undefined;
}

/** The Postgres name of a role a lease declared as `name`. */
export function declaredRoleName(leaseRole: string, name: string): string {
  return `${leaseRole}_${name}`;
}

/** Every role a lease's requests may run as: its own two, then those it declared (Postgres names). */
export function leaseRequestRoles(lease: LeaseRoles): string[] {
  return [lease.role, lease.anonRole, ...lease.userRoles.map((name) => declaredRoleName(lease.role, name))];
}
