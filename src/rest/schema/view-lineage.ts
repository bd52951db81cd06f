/**
 * Which base-table column each view column comes from, read from the view's rewrite rule
 * (pg_rewrite.ev_action, Postgres's node-tree text). Embedding through views needs it: a view
 * that exposes `projects.client_id` inherits the `projects → clients` foreign key.
 *
 * The rule is `({QUERY ... :targetList ({TARGETENTRY ... :resno 1 ... :resorigtbl 16386
 * :resorigcol 2 ...} ...) ...})`. Only the top-level query's target list maps view columns
 * (`:resno` = view column number); nested queries (subqueries, CTEs) are skipped by tracking brace
 * depth. Tokens escape `{}()` and spaces with a backslash, so escaped characters are skipped too.
 */

export interface ColumnOrigin {
  /** View column number (pg_attribute.attnum of the view). */
  viewColumn: number;
  /** oid of the relation the column is taken from unchanged (0 when it is an expression). */
  relationOid: number;
  /** Column number in that relation. */
  column: number;
}

export function parseViewLineage(rule: string): ColumnOrigin[] {
  // Find ":targetList" at brace depth 1 (a field of the top-level QUERY node).
  let depth = 0;
  let start = -1;
  for (let i = 0; i < rule.length; i++) {
    const char = rule[i];
    if (char === '\\') {
      i++;
      continue;
    }
    if (char === '{') depth++;
    else if (char === '}') {
      depth--;
      if (depth === 0) break; // end of the first (top-level) QUERY node
    } else if (depth === 1 && char === ':' && rule.startsWith(':targetList ', i)) {
      start = i + ':targetList '.length;
      break;
    }
  }
  if (start === -1) return [];

  // Walk the list: each TARGETENTRY opens at brace depth 2 relative to the QUERY.
  const origins: ColumnOrigin[] = [];
  let level = 0;
  let entryStart = -1;
  for (let i = start; i < rule.length; i++) {
    const char = rule[i];
    if (char === '\\') {
      i++;
      continue;
    }
    if (char === '(' && level === 0 && entryStart === -1 && i === start) continue;
    if (char === '{') {
      if (level === 0) entryStart = i;
      level++;
    } else if (char === '}') {
      level--;
      if (level === 0 && entryStart !== -1) {
        const origin = entryOrigin(rule, entryStart, i);
        if (origin) origins.push(origin);
        entryStart = -1;
      }
    } else if (char === ')' && level === 0) {
      break; // end of the target list
    } else if (level === 0 && rule.startsWith('<>', i)) {
      break; // empty target list
    }
  }
  return origins;
}

/** Reads `:resno`, `:resorigtbl`, `:resorigcol` and `:resjunk` of one TARGETENTRY at its own level. */
function entryOrigin(rule: string, from: number, to: number): ColumnOrigin | undefined {
  if (!rule.startsWith('{TARGETENTRY', from)) return undefined;
  // the entry's own fields follow its :expr node, so search from the last nested node's end
  let level = 0;
  let ownFieldsFrom = from;
  for (let i = from + 1; i < to; i++) {
    const char = rule[i];
    if (char === '\\') {
      i++;
      continue;
    }
    if (char === '{') level++;
    else if (char === '}') {
      level--;
      if (level === 0) ownFieldsFrom = i;
    }
  }
  const fields = rule.slice(ownFieldsFrom, to);
  const resno = /:resno (\d+)/.exec(fields);
  const table = /:resorigtbl (\d+)/.exec(fields);
  const column = /:resorigcol (\d+)/.exec(fields);
  const junk = /:resjunk (true|false)/.exec(fields);
  if (!resno || !table || !column || junk?.[1] === 'true') return undefined;
  return { viewColumn: Number(resno[1]), relationOid: Number(table[1]), column: Number(column[1]) };
}
