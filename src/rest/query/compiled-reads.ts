/**
 * Reads compiled once per schema: the plan and SQL of a GET/HEAD, keyed by everything that shapes
 * them (method, path, query string, Accept, Prefer, Range), kept with the schema cache they were
 * planned against so that any schema change (a new SchemaCache) drops them. A repeated request
 * skips parsing, planning and SQL generation: about half of pglease's own work on a small read.
 */
import type { ReadPlan } from '../plan/types.js';
import type { SchemaCache } from '../schema/types.js';
import type { PipelineStep } from '../executor/pipeline.js';

export interface CompiledRead {
  plan: ReadPlan;
  /** The statements after the request settings (planned count, then the read). */
  steps: PipelineStep[];
  preferenceApplied: string[];
}

/** What a read request's plan and SQL depend on. */
export interface ReadKeyParts {
  method: string;
  path: string;
  query: string;
  headers: Record<string, string | string[] | undefined>;
}

const MAX_PER_SCHEMA = 256;

function headerText(value: string | string[] | undefined): string {
  return value === undefined ? '' : Array.isArray(value) ? value.join('\n') : value;
}

export function readKey(parts: ReadKeyParts): string {
  return [parts.method, parts.path, parts.query, headerText(parts.headers.accept), headerText(parts.headers.prefer), headerText(parts.headers.range)].join('\u0000');
}

export class CompiledReads {
  private readonly bySchema = new WeakMap<SchemaCache, Map<string, CompiledRead>>();

  get(cache: SchemaCache, key: string): CompiledRead | undefined {
    const entries = this.bySchema.get(cache);
    const found = entries?.get(key);
    if (found && entries) {
      entries.delete(key);
      entries.set(key, found);
    }
    return found;
  }

  set(cache: SchemaCache, key: string, compiled: CompiledRead): void {
    let entries = this.bySchema.get(cache);
    if (!entries) {
      entries = new Map();
      this.bySchema.set(cache, entries);
    }
    entries.set(key, compiled);
    if (entries.size > MAX_PER_SCHEMA) entries.delete(entries.keys().next().value as string);
  }
}
