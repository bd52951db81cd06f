/**
 * The session settings of the connections pglease opens as its own role (the service, or the
 * superuser at setup) to run its statements: the search path is `pg_catalog, pg_temp`, and no JIT.
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
/**
 * Why no JIT: pglease's statements are short catalog reads and writes whose planned cost grows
 * with the catalogs, i.e. with the live leases, past `jit_above_cost` (100,000) on a server that has
 * JIT (Debian's and most managed Postgres; the embedded server's package ships no llvmjit.so), where
 * compiling them costs more than running them: the REST introspection of a one-table lease
 * (pglease.rest_schema, which also turns JIT off itself) took 112 ms with JIT and 4 ms without on
 * Postgres 15 with 1,000 leases in the database.
 */
export const SERVICE_SESSION_OPTIONS = '-c search_path=pg_catalog,pg_temp -c jit=off';
