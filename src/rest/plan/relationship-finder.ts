/**
 * Which relationship `origin?select=target!hint(*)` means, by PostgREST's rules: the target is a
 * table or view name (or, for tables, an FK constraint or FK column name); the hint narrows it
 * down by constraint, column or junction table. None → PGRST200, several → PGRST201 (300).
 */
import { RestError } from '../response/errors.js';
import type { Relationship, SchemaCache } from '../schema/types.js';
import { closest } from './similarity.js';

function singleColumn(relationship: Relationship): [string, string] | undefined {
  return relationship.columns.length === 1 ? relationship.columns[0] : undefined;
}

function matches(relationship: Relationship, target: string, hint: string | undefined): boolean {
  // a computed relationship is named by its function, and takes no hint
  if (relationship.computed !== undefined) return hint === undefined && target === relationship.computed;
  const column = singleColumn(relationship);
  const isToOneWay = relationship.cardinality === 'many-to-one';
  const isToManyWay = relationship.cardinality === 'one-to-many';
  if (relationship.isSelf && relationship.cardinality !== 'many-to-many' && relationship.cardinality !== 'one-to-one') {
    if (hint === undefined) {
      // /family?select=children:family(*) is one-to-many; /family?select=parent(*) (the FK column) many-to-one
      return (target === relationship.foreignTable && isToManyWay) || (column?.[0] === target && isToOneWay);
    }
    // /organizations?select=auditees:organizations!auditor(*)
    return target === relationship.foreignTable && isToManyWay && column?.[1] === hint;
  }
  if (hint === undefined) {
    return (
      target === relationship.foreignTable ||
      (relationship.cardinality !== 'many-to-many' && !relationship.foreignTableIsView && (relationship.constraint === target || column?.[0] === target))
    );
  }
  if (target !== relationship.foreignTable) return false;
  if (relationship.cardinality === 'many-to-many') return relationship.junction?.table === hint;
  return relationship.constraint === hint || column?.[0] === hint || column?.[1] === hint;
}

function columnList(relation: string, columns: string[]): string {
  return `${relation}(${columns.join(', ')})`;
}

/** PGRST201's description of one candidate. */
function describe(relationship: Relationship): { cardinality: string; embedding: string; relationship: string } {
  const embedding = `${relationship.table} with ${relationship.foreignTable}`;
  if (relationship.junction) {
    const junction = relationship.junction;
    return {
      cardinality: 'many-to-many',
      embedding,
      relationship: `${junction.table} using ${junction.originConstraint}(${junction.originColumns.map(([c]) => c).join(', ')}) and ${junction.targetConstraint}(${junction.targetColumns.map(([c]) => c).join(', ')})`,
    };
  }
  return {
    cardinality: relationship.cardinality,
    embedding,
    relationship: `${relationship.constraint} using ${columnList(relationship.table, relationship.columns.map(([c]) => c))} and ${columnList(relationship.foreignTable, relationship.columns.map(([, c]) => c))}`,
  };
}

export function findRelationship(cache: SchemaCache, origin: string, target: string, hint: string | undefined): Relationship {
  const candidates = cache.relationships.get(origin) ?? [];
  const found = candidates.filter((relationship) => matches(relationship, target, hint));
  if (found.length === 1) return found[0]!;
  if (found.length === 0) {
    let suggestion: string | undefined;
    if (!cache.relationships.has(origin)) {
      const parent = closest(origin, cache.relationships.keys(), 0.33);
      if (parent !== undefined) suggestion = `Perhaps you meant '${parent}' instead of '${origin}'.`;
    } else if (!candidates.some((relationship) => relationship.foreignTable === target)) {
      const child = closest(target, new Set(candidates.map((relationship) => relationship.foreignTable)), 0.33);
      if (child !== undefined) suggestion = `Perhaps you meant '${child}' instead of '${target}'.`;
    }
    throw new RestError(
      'PGRST200',
      `Could not find a relationship between '${origin}' and '${target}' in the schema cache`,
      `Searched for a foreign key relationship between '${origin}' and '${target}'${hint === undefined ? '' : ` using the hint '${hint}'`} in the schema '${cache.schema}', but no matches were found.`,
      suggestion ?? null,
    );
  }
  const options = found.map((relationship) => `'${relationship.foreignTable}!${relationship.junction ? relationship.junction.table : relationship.constraint}'`);
  throw new RestError(
    'PGRST201',
    `Could not embed because more than one relationship was found for '${origin}' and '${target}'`,
    found.map(describe),
    `Try changing '${target}' to one of the following: ${options.join(', ')}. Find the desired relationship in the 'details' key.`,
  );
}

export function isToOne(relationship: Relationship): boolean {
  return relationship.cardinality === 'many-to-one' || relationship.cardinality === 'one-to-one';
}
