/**
 * A call plan → one SQL statement with the same result row as a read (`total`, `page`, `body`,
 * response.headers and response.status):
 * the function called once in a CTE, its arguments read from one JSON bind parameter and typed
 * by the function's own parameter types, then the result shaped by its kind: a table-like
 * result goes through the read plan (select, filters, order, range, embeds) like a table.
 *
 * Shape, for `POST /rpc/best_films?select=title&year=gt.1980` with `{"min_rating": 8}`:
 *
 *   WITH "pgrst_call" AS (
 *     SELECT "pgrst_result".* FROM json_to_record($1::json) AS "pgrst_args"("min_rating" numeric),
 *       LATERAL "lease_x"."best_films"("min_rating" := "pgrst_args"."min_rating") AS "pgrst_result"
 *   ), "pgrst_source" AS (SELECT "films"."title" FROM "pgrst_call" AS "films" WHERE "films"."year" > $2)
 *   SELECT NULL::bigint AS "total", count(*) AS "page", coalesce(json_agg("pgrst_t"), '[]')::text AS "body"
 *   FROM "pgrst_source" AS "pgrst_t"
 *
 * Scalar results are called in the select list (`SELECT "lease_x"."add"(...) AS "pgrst_scalar"`),
 * which also serves `setof` scalars and functions returning an untyped record.
 */
import type { CallArguments, RpcPlan } from '../plan/rpc-plan.js';
import { bodySql, sourcedNodeSql, type Statement } from './read-query.js';
import { cappedBody } from './response-limit.js';
import { ident, Params, RESPONSE_SETTINGS_SQL } from './sql.js';

const CALL = '"pgrst_call"';

/** The call expression, and the FROM item its named arguments come from. */
function callSql(plan: RpcPlan, args: CallArguments, params: Params): { call: string; from?: string } {
  const name = `${ident(plan.routine.schema)}.${ident(plan.routine.name)}`;
  switch (args.kind) {
    case 'none':
      return { call: `${name}()` };
    case 'whole-body':
      return { call: `${name}(${params.add(args.json)}::${args.type})` };
    case 'named': {
      const typed = args.params.map((param) => `${ident(param.name)} ${param.type}`).join(', ');
      const json = params.add(args.json);
      // an array of objects calls the function with the first one
      const from =
        args.shape === 'object'
          ? `json_to_record(${json}::json) AS "pgrst_args"(${typed})`
          : `(SELECT * FROM json_to_recordset(${json}::json) AS "pgrst_args"(${typed}) LIMIT 1) AS "pgrst_args"`;
      const named = args.params.map((param) => `${param.mode === 'v' ? 'VARIADIC ' : ''}${ident(param.name)} := "pgrst_args".${ident(param.name)}`);
      return { call: `${name}(${named.join(', ')})`, from };
    }
  }
}

export function rpcStatement(plan: RpcPlan): Statement {
  const params = new Params();
  const { call, from } = callSql(plan, plan.args, params);
  const representation = plan.representation;
  const tableLike = plan.result === 'row' || plan.result === 'rows';

  let callQuery: string;
  let source: string;
  let body: string;
  let total = 'NULL::bigint';
  if (tableLike) {
    callQuery = `SELECT "pgrst_result".* FROM ${from === undefined ? '' : `${from}, LATERAL `}${call} AS "pgrst_result"`;
    source = sourcedNodeSql(representation.root, params, CALL);
    if (plan.count) total = `(SELECT count(*) FROM (${sourcedNodeSql(representation.root, params, CALL, true)}) AS "pgrst_c")`;
    const rows = representation.media.stripNulls ? 'json_strip_nulls(json_agg("pgrst_t"))' : 'json_agg("pgrst_t")';
    // a function returning one row answers an object, not an array
    body = plan.result === 'row' && representation.media.kind !== 'csv' ? cappedBody(`coalesce((${rows}->0)::text, 'null')`) : bodySql(representation);
  } else {
    callQuery = `SELECT ${call} AS "pgrst_scalar"${from === undefined ? '' : ` FROM ${from}`}`;
    source = `SELECT "pgrst_scalar" FROM ${CALL}`;
    // a set of scalars is a set of rows: limit, offset and db-max-rows apply (PostgREST's read plan of the call)
    const range = representation.root.range;
    if (plan.result === 'scalars' && range.limit !== undefined) source += ` LIMIT ${params.add(String(range.limit))}`;
    if (plan.result === 'scalars' && range.offset > 0) source += ` OFFSET ${params.add(String(range.offset))}`;
    if (plan.count) total = `(SELECT count(*) FROM ${CALL})`;
    body = cappedBody(plan.result === 'scalars' ? `coalesce(json_agg("pgrst_t"."pgrst_scalar"), '[]')::text` : `coalesce((json_agg("pgrst_t"."pgrst_scalar")->0)::text, 'null')`);
  }
  if (representation.headersOnly || plan.result === 'void') body = 'NULL::text';
  const text =
    `WITH ${CALL} AS (${callQuery}), "pgrst_source" AS (${source}) ` +
    `SELECT ${total} AS "total", count(*) AS "page", ${body} AS "body", ${RESPONSE_SETTINGS_SQL} FROM "pgrst_source" AS "pgrst_t"`;
  return { text, values: params.values };
}
