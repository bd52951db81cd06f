/**
 * Trapped lease objects: every kind of object through which a lease can make Postgres run its own
 * code, each wired to a lease function `trap(class)` that tells who ran it. For the tests of the
 * rule "no statement pglease runs with its own privileges plans or executes lease code"
 * (test/lease-code-privileges.test.ts).
 *
 * What counts as a breach: lease code run by a session that did not log in as one of the lease's
 * roles (`session_user` not `lease_<hex>`, `lease_<hex>_auth` or `lease_<hex>_anon`). A session of
 * the service that only SET ROLE or called a SECURITY DEFINER function of the lease still breaks
 * the rule: what the code leaves to run at commit, and the session itself, are the service's.
 *
 * Detection survives whatever the breaching statement does afterwards (fails, is rolled back, is
 * read-only) because every channel is non-transactional:
 *   - sequences of a witness lease (granted to PUBLIC): a hit takes a slot with nextval and writes
 *     class, lease, session_user and current_user into it with setval. Neither is rolled back, but
 *     both fail in a read-only transaction (BEGIN READ ONLY, as GET /stats runs);
 *   - a session-level advisory lock (pg_try_advisory_lock), which works in a read-only transaction
 *     and outlives a rollback: pg_locks then names the breaching session (and so its role) for as
 *     long as that session lives, which for a service pool connection is at least its idle timeout;
 *   - COPY ... TO PROGRAM 'cat >> file', the superuser-only act the reported attack used: it works
 *     (read-only or not) only when the code runs as a superuser, and the file then says who.
 * Calls from the lease's own sessions are recorded too (an advisory lock of another key, and a
 * counter), so a test can show that the code did run, and as whom, where running it is allowed.
 *
 * The functions are SECURITY INVOKER (the default), so they run as whoever evaluates them, and
 * name what they call through their own search_path (SET search_path FROM CURRENT): they resolve
 * whatever search_path the session that runs them has, as an attacker's would.
 */
import { readFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import type pg from 'pg';

/** A kind of lease object that runs lease code when something plans, reads or writes it. */
export interface TrapClass {
  key: string;
  label: string;
  /** Statements (in the trapped lease's schema) after which this class's code has run, for whoever runs them. */
  exercise: (schema: string) => string[];
}

const q = (identifier: string) => `"${identifier.replace(/"/g, '""')}"`;

/**
 * Left out, because a lease cannot make them: base types (their input, output, receive, send,
 * typmod and analyze functions must be C functions, and only a superuser may create those; a
 * PL/pgSQL function cannot take or return cstring or internal), event triggers (superuser only),
 * foreign tables (no foreign-data wrapper is installed, and installing one needs a superuser),
 * operator selectivity estimators and a range type's canonical function (they take internal or a
 * shell type, which PL/pgSQL refuses), table access methods and text search parsers (C, superuser).
 */
export const TRAP_CLASSES: TrapClass[] = [
  // planned: the planner folds the constant part of these expressions (eval_const_expressions), and
  // so runs an IMMUTABLE lease function, before any row is read
  { key: 'index_expression', label: 'index expression', exercise: (s) => [`SELECT count(*) FROM ${q(s)}.t_index_expression`] },
  { key: 'partial_index', label: 'partial-index predicate', exercise: (s) => [`SELECT count(*) FROM ${q(s)}.t_partial_index`] },
  { key: 'statistics', label: 'statistics object on an expression', exercise: (s) => [`SELECT count(*) FROM ${q(s)}.t_statistics`] },
  { key: 'partition_key', label: 'partition key expression', exercise: (s) => [`SELECT count(*) FROM ${q(s)}.t_partition_key`] },
  { key: 'operator', label: 'operator (a partial-index predicate, a view)', exercise: (s) => [`SELECT count(*) FROM ${q(s)}.t_operator`, `SELECT * FROM ${q(s)}.v_operator`] },
  // read
  { key: 'view', label: 'view whose query calls lease code', exercise: (s) => [`SELECT * FROM ${q(s)}.v_calls_code`] },
  { key: 'view_over_index', label: 'view over a table with an index expression (the view, or its table)', exercise: (s) => [`SELECT count(*) FROM ${q(s)}.v_over_index`] },
  { key: 'materialized_view', label: 'materialized view (its query, an index expression on it)', exercise: (s) => [`SELECT count(*) FROM ${q(s)}.mv_trapped`, `REFRESH MATERIALIZED VIEW ${q(s)}.mv_trapped`] },
  {
    key: 'rls_policy',
    label: 'row-level security policy (FORCE ROW LEVEL SECURITY)',
    // a superuser bypasses row-level security: the calibration reads as a role that does not
    exercise: (s) => [`SET LOCAL ROLE ${q(`${s}_anon`)}`, `SELECT count(*) FROM ${q(s)}.t_rls`],
  },
  {
    key: 'catalog_lookalike',
    label: 'pg_catalog look-alike (now, lower, quote_ident, pg_total_relation_size, count)',
    // only a search_path that names the lease schema (before pg_catalog, or with a better argument match) reaches them
    exercise: (s) => [`SET LOCAL search_path = ${q(s)}, pg_catalog`, `SELECT now(), quote_ident(nspname), pg_total_relation_size(oid) FROM pg_namespace LIMIT 1`],
  },
  // written
  { key: 'trigger_before_row', label: 'trigger BEFORE ... FOR EACH ROW', exercise: (s) => [`INSERT INTO ${q(s)}.t_triggers VALUES (1)`] },
  { key: 'trigger_after_row', label: 'trigger AFTER ... FOR EACH ROW', exercise: (s) => [`UPDATE ${q(s)}.t_triggers SET a = a`] },
  { key: 'trigger_before_statement', label: 'trigger BEFORE ... FOR EACH STATEMENT (INSERT, UPDATE, DELETE, TRUNCATE)', exercise: (s) => [`TRUNCATE ${q(s)}.t_triggers`] },
  { key: 'trigger_after_statement', label: 'trigger AFTER ... FOR EACH STATEMENT (INSERT, UPDATE, DELETE, TRUNCATE)', exercise: (s) => [`DELETE FROM ${q(s)}.t_triggers`] },
  { key: 'trigger_instead_of', label: 'trigger INSTEAD OF on a view', exercise: (s) => [`INSERT INTO ${q(s)}.v_instead VALUES (1)`] },
  {
    key: 'constraint_trigger_deferred',
    label: 'constraint trigger DEFERRABLE INITIALLY DEFERRED',
    exercise: (s) => [`INSERT INTO ${q(s)}.t_triggers VALUES (2)`, 'SET CONSTRAINTS ALL IMMEDIATE'],
  },
  { key: 'column_default', label: 'column default', exercise: (s) => [`INSERT INTO ${q(s)}.t_columns (a) VALUES (1)`] },
  { key: 'generated_column', label: 'generated column', exercise: (s) => [`INSERT INTO ${q(s)}.t_columns (a, b) VALUES (1, 1)`] },
  { key: 'check_constraint', label: 'CHECK constraint', exercise: (s) => [`INSERT INTO ${q(s)}.t_check VALUES (1)`] },
  { key: 'rule', label: 'rule (CREATE RULE ... DO ALSO)', exercise: (s) => [`INSERT INTO ${q(s)}.t_rule VALUES (1)`] },
  // types a lease can make
  { key: 'domain_check', label: 'domain with a CHECK', exercise: (s) => [`SELECT 1::${q(s)}.d_checked`] },
  // ANALYZE computes a range column's length histogram with subtype_diff
  { key: 'range_subtype_diff', label: 'range type subtype_diff', exercise: (s) => [`ANALYZE ${q(s)}.t_types`] },
  { key: 'composite_type', label: 'composite type (its field\'s domain CHECK runs on input)', exercise: (s) => [`SELECT '(1,"[1,2)")'::${q(s)}.c_trapped`] },
];

export const TRAP_CLASS_KEYS = TRAP_CLASSES.map((trapClass) => trapClass.key);
const CLASS_BY_NUMBER = new Map(TRAP_CLASSES.map((trapClass, index) => [index + 1, trapClass]));

/** Hit slots of the witness: hits beyond these are counted, not described. */
const SLOTS = 192;
/** where = class number * 256 + lease tag, plus this when not a client backend (autovacuum, say). */
const OTHER_BACKEND = 65_536;

/** Where the trapped leases record: a lease with nothing but sequences, granted to PUBLIC. */
export function witnessSql(): string {
  return `
    CREATE SEQUENCE hits;
    CREATE SEQUENCE allowed;
    CREATE SEQUENCE allowed_session;
    DO $$ BEGIN
      FOR i IN 1..${SLOTS} LOOP
        EXECUTE format('CREATE SEQUENCE slot_%1$s_where; CREATE SEQUENCE slot_%1$s_session; CREATE SEQUENCE slot_%1$s_current', i);
      END LOOP;
      EXECUTE format('GRANT USAGE ON SCHEMA %I TO PUBLIC', current_schema());
      EXECUTE format('GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA %I TO PUBLIC', current_schema());
    END $$;`;
}

export interface TrapSettings {
  /** Schema of the witness lease. */
  witness: string;
  /** Advisory lock key (int4) of calls by a foreign session. */
  hitKey: number;
  /** Advisory lock key (int4) of calls by one of the lease's own sessions. */
  allowedKey: number;
  /** File that COPY TO PROGRAM appends to (its directory writable by the Postgres OS user). */
  copyFile: string;
}

/**
 * The SQL that creates every trapped object in the current schema, run by the lease (through its
 * URL, or as a template's seed). `tag` (0-255) names the lease in the records. Each table gets a
 * row; everything is granted to PUBLIC, so that a service role that is no superuser can be lured
 * into reading it too.
 */
export function trappedObjectsSql(settings: TrapSettings, tag: number): string {
  const witness = q(settings.witness);
  const classes = TRAP_CLASS_KEYS.map((key) => `'${key}'`).join(', ');
  const copy = `cat >> ${settings.copyFile}`;
  const trapSearchPath = 'SET search_path FROM CURRENT';
  return `
CREATE FUNCTION trap(class text) RETURNS boolean LANGUAGE plpgsql VOLATILE ${trapSearchPath} AS $trap$
DECLARE
  -- the lease: its schema's owner, or in a database lease's own database (public belongs to
  -- pg_database_owner there) the database's
  v_owner   text := (SELECT CASE WHEN n.nspowner = 'pg_database_owner'::regrole
                                 THEN (SELECT pg_get_userbyid(d.datdba) FROM pg_database d WHERE d.datname = current_database())
                                 ELSE pg_get_userbyid(n.nspowner) END
                       FROM pg_namespace n WHERE n.nspname = current_schema());
  v_foreign boolean := NOT coalesce(session_user::text = ANY (ARRAY[v_owner, v_owner || '_auth', v_owner || '_anon']), false);
  v_where   int := coalesce(array_position(ARRAY[${classes}]::text[], class), 0) * 256 + ${tag}
                   + CASE WHEN coalesce((SELECT a.backend_type <> 'client backend' FROM pg_stat_activity a WHERE a.pid = pg_backend_pid()), false)
                          THEN ${OTHER_BACKEND} ELSE 0 END;
  v_slot    bigint;
BEGIN
  BEGIN
    PERFORM pg_try_advisory_lock(CASE WHEN v_foreign THEN ${settings.hitKey} ELSE ${settings.allowedKey} END, v_where);
  EXCEPTION WHEN OTHERS THEN NULL;
  END;
  IF NOT v_foreign THEN
    BEGIN
      PERFORM nextval('${witness}.allowed'), setval('${witness}.allowed_session', (SELECT oid::bigint FROM pg_roles WHERE rolname = session_user));
    EXCEPTION WHEN OTHERS THEN NULL;
    END;
    RETURN true;
  END IF;
  BEGIN
    v_slot := nextval('${witness}.hits');
    IF v_slot <= ${SLOTS} THEN
      PERFORM setval(format('${witness}.slot_%s_current', v_slot)::regclass, (SELECT oid::bigint FROM pg_roles WHERE rolname = current_user)),
              setval(format('${witness}.slot_%s_session', v_slot)::regclass, (SELECT oid::bigint FROM pg_roles WHERE rolname = session_user)),
              setval(format('${witness}.slot_%s_where', v_slot)::regclass, v_where);
    END IF;
  EXCEPTION WHEN OTHERS THEN NULL;
  END;
  BEGIN
    EXECUTE format('COPY (SELECT %s, %L, session_user, current_user, current_query()) TO PROGRAM %L', v_where, class, '${copy}');
  EXCEPTION WHEN OTHERS THEN NULL;
  END;
  RETURN true;
END
$trap$;

-- one IMMUTABLE function for expressions that must be immutable (indexes, statistics, partition keys, generated columns)
CREATE FUNCTION code_of(class text, i int) RETURNS int LANGUAGE plpgsql IMMUTABLE ${trapSearchPath}
  AS $$ BEGIN PERFORM trap(class); RETURN i; END $$;

CREATE TABLE t_index_expression (a int);
CREATE INDEX ON t_index_expression ((code_of('index_expression', 1) + a));
CREATE TABLE t_partial_index (a int);
CREATE INDEX ON t_partial_index (a) WHERE a > code_of('partial_index', 0);
CREATE TABLE t_statistics (a int, b int);
CREATE STATISTICS s_expression ON (code_of('statistics', 1) + a), b FROM t_statistics;
CREATE TABLE t_partition_key (a int) PARTITION BY RANGE ((code_of('partition_key', 1) + a));
CREATE TABLE t_partition_key_all PARTITION OF t_partition_key FOR VALUES FROM (MINVALUE) TO (MAXVALUE);

CREATE FUNCTION op_equals(x int, y int) RETURNS boolean LANGUAGE plpgsql IMMUTABLE ${trapSearchPath}
  AS $$ BEGIN PERFORM trap('operator'); RETURN x = y; END $$;
CREATE OPERATOR === (leftarg = int, rightarg = int, function = op_equals);
CREATE TABLE t_operator (a int);
CREATE INDEX ON t_operator (a) WHERE a > 0 AND 1 === 1;
CREATE VIEW v_operator AS SELECT a FROM t_operator WHERE a === 1;

CREATE VIEW v_calls_code AS SELECT trap('view') AS ran;
CREATE TABLE t_under_view (a int);
CREATE INDEX ON t_under_view ((code_of('view_over_index', 1) + a));
CREATE VIEW v_over_index AS SELECT a FROM t_under_view;
CREATE MATERIALIZED VIEW mv_trapped AS SELECT trap('materialized_view') AS ran, 1 AS a;
CREATE INDEX ON mv_trapped ((code_of('materialized_view', 1) + a));

CREATE FUNCTION policy_allows() RETURNS boolean LANGUAGE plpgsql STABLE ${trapSearchPath}
  AS $$ BEGIN RETURN trap('rls_policy'); END $$;
CREATE TABLE t_rls (a int);
ALTER TABLE t_rls ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY everyone ON t_rls USING (policy_allows());

CREATE FUNCTION now() RETURNS timestamptz LANGUAGE plpgsql STABLE ${trapSearchPath}
  AS $$ BEGIN PERFORM trap('catalog_lookalike'); RETURN pg_catalog.now(); END $$;
CREATE FUNCTION lower(text) RETURNS text LANGUAGE plpgsql IMMUTABLE ${trapSearchPath}
  AS $$ BEGIN PERFORM trap('catalog_lookalike'); RETURN pg_catalog.lower($1); END $$;
CREATE FUNCTION quote_ident(name) RETURNS text LANGUAGE plpgsql IMMUTABLE ${trapSearchPath}
  AS $$ BEGIN PERFORM trap('catalog_lookalike'); RETURN pg_catalog.quote_ident($1::text); END $$;
CREATE FUNCTION pg_total_relation_size(oid) RETURNS bigint LANGUAGE plpgsql VOLATILE ${trapSearchPath}
  AS $$ BEGIN PERFORM trap('catalog_lookalike'); RETURN 0; END $$;
CREATE FUNCTION count_step(bigint, int) RETURNS bigint LANGUAGE plpgsql IMMUTABLE ${trapSearchPath}
  AS $$ BEGIN PERFORM trap('catalog_lookalike'); RETURN $1 + 1; END $$;
CREATE AGGREGATE count(int) (sfunc = count_step, stype = bigint, initcond = '0');

CREATE FUNCTION on_trigger() RETURNS trigger LANGUAGE plpgsql ${trapSearchPath} AS $$
BEGIN
  PERFORM trap(TG_ARGV[0]);
  IF TG_LEVEL = 'STATEMENT' THEN RETURN NULL; END IF;
  IF TG_OP = 'DELETE' THEN RETURN OLD; END IF;
  RETURN NEW;
END $$;
CREATE TABLE t_triggers (a int);
CREATE TRIGGER before_row BEFORE INSERT OR UPDATE OR DELETE ON t_triggers FOR EACH ROW EXECUTE FUNCTION on_trigger('trigger_before_row');
CREATE TRIGGER after_row AFTER INSERT OR UPDATE OR DELETE ON t_triggers FOR EACH ROW EXECUTE FUNCTION on_trigger('trigger_after_row');
CREATE TRIGGER before_statement BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON t_triggers FOR EACH STATEMENT EXECUTE FUNCTION on_trigger('trigger_before_statement');
CREATE TRIGGER after_statement AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON t_triggers FOR EACH STATEMENT EXECUTE FUNCTION on_trigger('trigger_after_statement');
CREATE CONSTRAINT TRIGGER deferred AFTER INSERT OR UPDATE OR DELETE ON t_triggers DEFERRABLE INITIALLY DEFERRED
  FOR EACH ROW EXECUTE FUNCTION on_trigger('constraint_trigger_deferred');
CREATE VIEW v_instead AS SELECT a FROM t_triggers;
CREATE TRIGGER instead INSTEAD OF INSERT OR UPDATE OR DELETE ON v_instead FOR EACH ROW EXECUTE FUNCTION on_trigger('trigger_instead_of');

CREATE TABLE t_columns (a int, b int DEFAULT code_of('column_default', 1), c int GENERATED ALWAYS AS (code_of('generated_column', a)) STORED);
CREATE TABLE t_check (a int CHECK (code_of('check_constraint', a) IS NOT NULL));
CREATE TABLE t_rule (a int);
CREATE RULE on_insert AS ON INSERT TO t_rule DO ALSO SELECT trap('rule');
CREATE RULE on_update AS ON UPDATE TO t_rule DO ALSO SELECT trap('rule');
CREATE RULE on_delete AS ON DELETE TO t_rule DO ALSO SELECT trap('rule');

CREATE DOMAIN d_checked AS int CHECK (code_of('domain_check', VALUE) IS NOT NULL);
CREATE FUNCTION range_diff(x float8, y float8) RETURNS float8 LANGUAGE plpgsql IMMUTABLE ${trapSearchPath}
  AS $$ BEGIN PERFORM trap('range_subtype_diff'); RETURN x - y; END $$;
CREATE TYPE r_trapped AS RANGE (subtype = float8, subtype_diff = range_diff);
CREATE DOMAIN d_in_composite AS int CHECK (code_of('composite_type', VALUE) IS NOT NULL);
CREATE TYPE c_trapped AS (d d_in_composite, r r_trapped);
CREATE TABLE t_types (d d_checked, r r_trapped, c c_trapped);
CREATE INDEX ON t_types USING gist (r);

INSERT INTO t_index_expression VALUES (1);
INSERT INTO t_partial_index VALUES (1);
INSERT INTO t_statistics VALUES (1, 1);
INSERT INTO t_partition_key VALUES (1);
INSERT INTO t_operator VALUES (1);
INSERT INTO t_under_view VALUES (1);
INSERT INTO t_rls VALUES (1);
INSERT INTO t_triggers VALUES (1);
INSERT INTO t_columns (a) VALUES (1);
INSERT INTO t_check VALUES (1);
INSERT INTO t_rule VALUES (1);
INSERT INTO t_types VALUES (1, '[1,2)', ROW(1, '[1,2)'));

DO $$ BEGIN
  EXECUTE format('GRANT USAGE ON SCHEMA %I TO PUBLIC', current_schema());
  EXECUTE format('GRANT ALL ON ALL TABLES IN SCHEMA %I TO PUBLIC', current_schema());
  EXECUTE format('GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA %I TO PUBLIC', current_schema());
END $$;
`;
}

/** One record of lease code run by a session that is not one of the lease's. */
export interface TrapHit {
  classKey: string;
  /** The tag of the lease whose object ran. */
  tag: number;
  sessionUser: string;
  /** Unknown when only the advisory lock saw it. */
  currentUser: string | null;
  /** 'client backend', or the backend type that ran it (autovacuum worker, ...). */
  backend: string;
  channel: 'sequence' | 'advisory lock' | 'COPY TO PROGRAM';
  /** The statement that ran it, when COPY TO PROGRAM could say. */
  query: string | null;
}

/** A call from one of the lease's own sessions, as the advisory lock shows it. */
export interface AllowedCall {
  classKey: string;
  tag: number;
  sessionUser: string;
}

interface AdvisoryLock {
  pid: number;
  where_code: number;
  usename: string | null;
  rolsuper: boolean | null;
  backend: string | null;
  /** With the pid, tells a session from a later one that got the same pid. */
  started: string | null;
}

function decodeWhere(where: number): { classKey: string; tag: number; otherBackend: boolean } {
  const otherBackend = where >= OTHER_BACKEND;
  const rest = where % OTHER_BACKEND;
  return { classKey: CLASS_BY_NUMBER.get(Math.floor(rest / 256))?.key ?? `unknown class ${Math.floor(rest / 256)}`, tag: rest % 256, otherBackend };
}

/** COPY's text format: backslash escapes. */
function unescapeCopy(field: string): string {
  return field.replace(/\\(.)/g, (_match, character: string) => ({ n: '\n', t: '\t', r: '\r', '\\': '\\' })[character] ?? character);
}

/**
 * Reads the channels `trappedObjectsSql` writes to, on a superuser connection to the lease
 * database (the test's, not the service's): each call of `collect` returns what appeared since
 * the previous one.
 */
export class TrapObserver {
  private slotsSeen = 0;
  private overflowSeen = 0;
  private readonly locksSeen = new Set<string>();
  private readonly allowedLocksSeen = new Set<string>();
  private fileOffset = 0;
  private allowedSeen = 0;

  constructor(
    private readonly superuser: pg.Client,
    private readonly settings: TrapSettings,
  ) {}

  private async roleNames(oids: number[]): Promise<Map<number, string>> {
    const { rows } = await this.superuser.query<{ oid: number; rolname: string; rolsuper: boolean }>(
      'SELECT oid::int, rolname, rolsuper FROM pg_roles WHERE oid = ANY ($1::oid[])',
      [oids],
    );
    const names = new Map(rows.map((row) => [row.oid, row.rolsuper ? `${row.rolname} (superuser)` : row.rolname]));
    for (const oid of oids) if (!names.has(oid)) names.set(oid, `a role dropped since (oid ${oid}: a template check's scratch lease, say)`);
    return names;
  }

  private async fromSequences(): Promise<TrapHit[]> {
    const witness = q(this.settings.witness);
    const counted = (await this.superuser.query<{ n: string }>(`SELECT CASE WHEN is_called THEN last_value ELSE 0 END AS n FROM ${witness}.hits`)).rows[0]!;
    const total = Number(counted.n);
    const upTo = Math.min(total, SLOTS);
    // hits beyond the slots are counted, not described: still hits
    const overflow = Math.max(0, total - SLOTS) - this.overflowSeen;
    this.overflowSeen += overflow;
    const undescribed: TrapHit[] = overflow === 0 ? [] : [{
      classKey: `${overflow} hit(s) of unknown class (beyond the witness's ${SLOTS} slots)`,
      tag: 0,
      sessionUser: 'unknown',
      currentUser: null,
      backend: 'client backend',
      channel: 'sequence',
      query: null,
    }];
    if (upTo <= this.slotsSeen) return undescribed;
    const slots = Array.from({ length: upTo - this.slotsSeen }, (_, index) => this.slotsSeen + index + 1);
    const { rows } = await this.superuser.query<{ slot: number; filled: boolean; where_code: string; session: string; current: string }>(
      slots
        .map((slot) => `SELECT ${slot} AS slot, w.is_called AS filled, w.last_value AS where_code, s.last_value AS session, c.last_value AS current
                          FROM ${witness}.slot_${slot}_where w, ${witness}.slot_${slot}_session s, ${witness}.slot_${slot}_current c`)
        .join(' UNION ALL ') + ' ORDER BY slot',
    );
    // a slot taken but not yet written (its trap is running right now) is read next time
    const filled = rows.filter((row, index) => row.filled && rows.slice(0, index).every((before) => before.filled));
    this.slotsSeen += filled.length;
    const names = await this.roleNames(filled.flatMap((row) => [Number(row.session), Number(row.current)]));
    return undescribed.concat(filled.map((row) => {
      const where = decodeWhere(Number(row.where_code));
      return {
        classKey: where.classKey,
        tag: where.tag,
        sessionUser: names.get(Number(row.session))!,
        currentUser: names.get(Number(row.current))!,
        backend: where.otherBackend ? 'not a client backend' : 'client backend',
        channel: 'sequence' as const,
        query: null,
      };
    }));
  }

  private async advisoryLocks(key: number): Promise<AdvisoryLock[]> {
    const { rows } = await this.superuser.query<AdvisoryLock>(
      `SELECT l.pid, l.objid::int AS where_code, a.usename, r.rolsuper, a.backend_type AS backend, a.backend_start::text AS started
         FROM pg_locks l
         LEFT JOIN pg_stat_activity a ON a.pid = l.pid
         LEFT JOIN pg_roles r ON r.oid = a.usesysid
        WHERE l.locktype = 'advisory' AND l.objsubid = 2 AND l.classid = $1::oid
          AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())`,
      [key],
    );
    return rows;
  }

  private async fromAdvisoryLocks(): Promise<TrapHit[]> {
    const hits: TrapHit[] = [];
    for (const lock of await this.advisoryLocks(this.settings.hitKey)) {
      const id = `${lock.pid}/${lock.started}/${lock.where_code}`;
      if (this.locksSeen.has(id)) continue;
      this.locksSeen.add(id);
      const where = decodeWhere(lock.where_code);
      hits.push({
        classKey: where.classKey,
        tag: where.tag,
        sessionUser: lock.usename === null ? `a session that has ended (pid ${lock.pid})` : lock.rolsuper ? `${lock.usename} (superuser)` : lock.usename,
        currentUser: null,
        backend: lock.backend ?? 'unknown',
        channel: 'advisory lock',
        query: null,
      });
    }
    return hits;
  }

  private async fromCopyFile(): Promise<TrapHit[]> {
    if (!existsSync(this.settings.copyFile)) return [];
    const content = await readFile(this.settings.copyFile);
    const fresh = content.subarray(this.fileOffset).toString('utf8');
    const complete = fresh.slice(0, fresh.lastIndexOf('\n') + 1);
    this.fileOffset += Buffer.byteLength(complete);
    return complete
      .split('\n')
      .filter((line) => line !== '')
      .map((line) => {
        const [where = '0', , session = '', current = '', query = ''] = line.split('\t').map(unescapeCopy);
        const decoded = decodeWhere(Number(where));
        return {
          classKey: decoded.classKey,
          tag: decoded.tag,
          sessionUser: session,
          currentUser: current,
          backend: decoded.otherBackend ? 'not a client backend' : 'client backend',
          channel: 'COPY TO PROGRAM' as const,
          query: query.replace(/\s+/g, ' ').slice(0, 300),
        };
      });
  }

  /** Lease code run by a foreign session since the previous call, from every channel. */
  async collect(): Promise<TrapHit[]> {
    return [...(await this.fromSequences()), ...(await this.fromAdvisoryLocks()), ...(await this.fromCopyFile())];
  }

  /**
   * Calls from the lease's own sessions since the previous call: the advisory locks they hold
   * now (a session that has ended has let go of its lock), and how many the counter saw (which
   * read-only transactions cannot advance).
   */
  async collectAllowed(): Promise<{ calls: AllowedCall[]; counted: number }> {
    const calls: AllowedCall[] = [];
    for (const lock of await this.advisoryLocks(this.settings.allowedKey)) {
      const id = `${lock.pid}/${lock.started}/${lock.where_code}`;
      if (this.allowedLocksSeen.has(id)) continue;
      this.allowedLocksSeen.add(id);
      const where = decodeWhere(lock.where_code);
      calls.push({ classKey: where.classKey, tag: where.tag, sessionUser: lock.usename ?? `a session that has ended (pid ${lock.pid})` });
    }
    const witness = q(this.settings.witness);
    const counter = (await this.superuser.query<{ n: string }>(`SELECT CASE WHEN is_called THEN last_value ELSE 0 END AS n FROM ${witness}.allowed`)).rows[0]!;
    const counted = Number(counter.n) - this.allowedSeen;
    this.allowedSeen = Number(counter.n);
    return { calls, counted };
  }
}

export function classLabel(key: string): string {
  return TRAP_CLASSES.find((trapClass) => trapClass.key === key)?.label ?? key;
}
