/**
 * The session settings of the connections pglease opens as its own role (the service, or the
 * superuser at setup) to run its statements: the search path is `pg_catalog, pg_temp`.
 *
 * Why not the server's default (`"$user", public`): `public` of the lease database is not open to
 * PUBLIC (migration 0001) and the service reaches it only as the database's owner, through
 * `pg_database_owner`. Postgres recomputes a session's search path after every change to
 * `pg_namespace` or to role memberships (each lease's create and release makes both), and checks
 * USAGE on each schema of the path; for `public` that check walks the service's memberships, which
 * hold every live lease's roles (three a lease), and the walk is quadratic (each role is appended
 * to a list it is first searched in). Measured on Postgres 15 with creates at concurrency 8 and
 * live leases growing to 800: that walk was 38% of the backends' CPU samples, and creates went
 * from 70/s to 169/s without it. Every name pglease's own SQL uses is schema-qualified (`pglease.`)
 * or in pg_catalog, and its functions set the same path for themselves; with nothing but
 * pg_catalog on the path, no unqualified name can resolve to anything a lease made either.
 */
export const SERVICE_SEARCH_PATH = '-c search_path=pg_catalog,pg_temp';
