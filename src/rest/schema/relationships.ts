/**
 * The relationships resource embedding follows, derived from foreign keys as PostgREST derives
 * them: each FK gives a many-to-one (or one-to-one, when its columns are unique) relationship and
 * its reverse; a junction table whose two FKs are part of one composite key gives a many-to-many
 * relationship between the two tables it links; and views take part through the base-table
 * columns they expose unchanged.
 */
import type { Cardinality, Relation, Relationship } from './types.js';

export interface ForeignKey {
  constraint: string;
  table: string;
  foreignTable: string;
  /** (column of table, column of foreignTable) pairs in key order. */
  columns: [string, string][];
}

/** For each view: view column name → the (base table, column) it shows unchanged. */
export type ViewColumnOrigins = Map<string, Map<string, { table: string; column: string }>>;

function sameSet(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((name) => b.includes(name));
}

function isUniqueKey(relation: Relation | undefined, columns: string[]): boolean {
  return relation !== undefined && relation.uniqueKeys.some((key) => sameSet(key, columns));
}

/**
 * Every relation (the table itself and each view exposing all `columns` of it) with the
 * corresponding column names.
 */
function exposures(table: string, columns: string[], relations: Map<string, Relation>, views: ViewColumnOrigins): { name: string; columns: string[]; isView: boolean }[] {
  const found: { name: string; columns: string[]; isView: boolean }[] = [];
  if (relations.has(table)) found.push({ name: table, columns, isView: false });
  for (const [view, origins] of views) {
    const mapped: string[] = [];
    for (const column of columns) {
      let viewColumn: string | undefined;
      for (const [name, origin] of origins) {
        if (origin.table === table && origin.column === column) {
          viewColumn = name;
          break;
        }
      }
      if (viewColumn === undefined) break;
      mapped.push(viewColumn);
    }
    if (mapped.length === columns.length) found.push({ name: view, columns: mapped, isView: true });
  }
  return found;
}

export function buildRelationships(relations: Map<string, Relation>, foreignKeys: ForeignKey[], views: ViewColumnOrigins): Map<string, Relationship[]> {
  const byOrigin = new Map<string, Relationship[]>();
  const add = (relationship: Relationship) => {
    const list = byOrigin.get(relationship.table);
    if (list) list.push(relationship);
    else byOrigin.set(relationship.table, [relationship]);
  };

  for (const fk of foreignKeys) {
    const sourceColumns = fk.columns.map(([column]) => column);
    const targetColumns = fk.columns.map(([, column]) => column);
    const oneToOne = isUniqueKey(relations.get(fk.table), sourceColumns);
    const forward: Cardinality = oneToOne ? 'one-to-one' : 'many-to-one';
    const backward: Cardinality = oneToOne ? 'one-to-one' : 'one-to-many';
    for (const source of exposures(fk.table, sourceColumns, relations, views)) {
      for (const target of exposures(fk.foreignTable, targetColumns, relations, views)) {
        const isSelf = source.name === target.name;
        const pairs = source.columns.map((column, i): [string, string] => [column, target.columns[i]!]);
        add({
          table: source.name,
          foreignTable: target.name,
          cardinality: forward,
          constraint: fk.constraint,
          columns: pairs,
          isSelf,
          tableIsView: source.isView,
          foreignTableIsView: target.isView,
        });
        add({
          table: target.name,
          foreignTable: source.name,
          cardinality: backward,
          constraint: fk.constraint,
          columns: pairs.map(([a, b]): [string, string] => [b, a]),
          isSelf,
          tableIsView: target.isView,
          foreignTableIsView: source.isView,
        });
      }
    }
  }

  // Many-to-many through junction tables (base tables only, like PostgREST's FK-based detection).
  const fksByTable = new Map<string, ForeignKey[]>();
  for (const fk of foreignKeys) {
    const list = fksByTable.get(fk.table);
    if (list) list.push(fk);
    else fksByTable.set(fk.table, [fk]);
  }
  for (const [junctionName, junctionFks] of fksByTable) {
    const junction = relations.get(junctionName);
    if (!junction || junctionFks.length < 2) continue;
    const compositeKeys = junction.uniqueKeys.filter((key) => key.length > 1);
    for (const toOrigin of junctionFks) {
      for (const toTarget of junctionFks) {
        if (toOrigin === toTarget) continue;
        const used = [...toOrigin.columns.map(([column]) => column), ...toTarget.columns.map(([column]) => column)];
        if (!compositeKeys.some((key) => used.every((column) => key.includes(column)))) continue;
        for (const origin of exposures(toOrigin.foreignTable, toOrigin.columns.map(([, column]) => column), relations, views)) {
          for (const target of exposures(toTarget.foreignTable, toTarget.columns.map(([, column]) => column), relations, views)) {
            add({
              table: origin.name,
              foreignTable: target.name,
              cardinality: 'many-to-many',
              constraint: toTarget.constraint,
              columns: [],
              junction: {
                table: junctionName,
                originConstraint: toOrigin.constraint,
                originColumns: toOrigin.columns.map(([junctionColumn], i): [string, string] => [junctionColumn, origin.columns[i]!]),
                targetConstraint: toTarget.constraint,
                targetColumns: toTarget.columns.map(([junctionColumn], i): [string, string] => [junctionColumn, target.columns[i]!]),
              },
              isSelf: origin.name === target.name,
              tableIsView: origin.isView,
              foreignTableIsView: target.isView,
            });
          }
        }
      }
    }
  }
  return byOrigin;
}
