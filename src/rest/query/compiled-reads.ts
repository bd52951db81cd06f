/**
 * Reads compiled once per request shape. Most API traffic repeats a few shapes with different
 * values (`/films?id=eq.1`, `/films?id=eq.2`, ...), and parsing, planning and SQL generation are
 * about half of pglease's own work on a small read. So the compiled statements of a GET/HEAD are
 * kept per schema cache (any schema change makes a new SchemaCache and drops them), keyed by the
 * request with its plain values masked: comparison filter values (`eq.`, `like.`, ...) and `limit`.
 *
 * The template of a shape is compiled from the request with each masked value replaced by a
 * sentinel; where each sentinel lands among the bind parameters is where that value goes in later
 * requests of the shape. A shape whose sentinels do not each land somewhere (a value the planner
 * interprets rather than binds) is remembered as not cacheable and always compiled afresh.
 */
import type { PipelineStep } from '../executor/pipeline.js';
import type { ReadPlan } from '../plan/types.js';
import { splitQueryString } from '../request/query-params.js';
import { leastRecentlyUsed } from '../least-recently-used.js';
import type { SchemaCache } from '../schema/types.js';
import { checkValue } from './sql.js';

export interface CompiledRead {
  plan: ReadPlan;
  /** The statements after the request settings (planned count, then the read). */
  steps: PipelineStep[];
  preferenceApplied: string[];
  /** Whether the request.* settings must be published (the schema's readsRequestSettings). */
  publishRequest: boolean;
  /** Prefer: timezone=..., when it names a time zone of the server. */
  timezone?: string;
}

/** What a read request's plan and SQL depend on. */
export interface ReadRequestParts {
  method: string;
  path: string;
  query: string;
  headers: Record<string, string | string[] | undefined>;
}

type Transform = 'none' | 'like';

interface Slot {
  value: string;
  transform: Transform;
}

export interface ReadShape {
  key: string;
  slots: Slot[];
  /** The query string with each slot's value replaced by its sentinel. */
  sentinelQuery: string;
  /** The query string has `columns=` (which decides how a body is read). */
  columnsGiven: boolean;
}

/** Where each slot's value goes: step, parameter index, slot. */
export interface Binding {
  step: number;
  index: number;
  slot: number;
}

interface Template {
  compiled: CompiledRead;
  bindings: Binding[];
}

/** A shape's template (null: not cacheable), stamped with its last use (see schema-caches.ts). */
interface Entry {
  template: Template | null;
  used: number;
}

/** A value filter whose value is bound as one parameter: `[not.]op.value`. */
const COMPARISON = /^((?:not\.)?(eq|neq|gt|gte|lt|lte|like|ilike|match|imatch|cs|cd|ov|sl|sr|nxr|nxl|adj|isdistinct)\.)([\s\S]*)$/;
const LIMIT_KEY = /(^|\.)limit$/;
const MAX_PER_SCHEMA = 256;

function headerText(value: string | string[] | undefined): string {
  return value === undefined ? '' : Array.isArray(value) ? value.join('\n') : value;
}

function sentinel(slot: number, transform: Transform | 'integer'): string {
  // limit must stay a whole number to be planned as one; text sentinels cannot occur in real values
  return transform === 'integer' ? String(9_000_000_000 + slot) : `\u0001pglease-slot-${slot}\u0001`;
}

/** The shape of a read request: its cache key, and the values masked out of it. */
export function readShape(parts: ReadRequestParts): ReadShape {
  if (parts.query === '') {
    // the common case of writes and calls: nothing to mask
    const key = `${parts.method}\u0000${parts.path}\u0000\u0000${headerText(parts.headers.accept)}\u0000${headerText(parts.headers.prefer)}\u0000${headerText(parts.headers.range)}`;
    return { key, slots: [], sentinelQuery: '', columnsGiven: false };
  }
  const slots: Slot[] = [];
  const shaped: string[] = [];
  const sentinelPairs: string[] = [];
  let columnsGiven = false;
  for (const [key, value] of splitQueryString(parts.query)) {
    if (key === 'columns') columnsGiven = true;
    const encodedKey = encodeURIComponent(key);
    const comparison = COMPARISON.exec(value);
    if (LIMIT_KEY.test(key) && /^\d+$/.test(value)) {
      shaped.push(`${encodedKey}=#`);
      sentinelPairs.push(`${encodedKey}=${sentinel(slots.length, 'integer')}`);
      slots.push({ value, transform: 'none' });
    } else if (comparison && !key.startsWith('select') && key !== 'columns' && key !== 'on_conflict' && !/(^|\.)(order|offset|and|or)$/.test(key)) {
      const transform: Transform = comparison[2] === 'like' || comparison[2] === 'ilike' ? 'like' : 'none';
      shaped.push(`${encodedKey}=${encodeURIComponent(comparison[1]!)}#`);
      sentinelPairs.push(`${encodedKey}=${encodeURIComponent(comparison[1]! + sentinel(slots.length, transform))}`);
      slots.push({ value: comparison[3]!, transform });
    } else {
      const pair = `${encodedKey}=${encodeURIComponent(value)}`;
      shaped.push(pair);
      sentinelPairs.push(pair);
    }
  }
  const key = [parts.method, parts.path, shaped.join('&'), headerText(parts.headers.accept), headerText(parts.headers.prefer), headerText(parts.headers.range)].join('\u0000');
  return { key, slots, sentinelQuery: sentinelPairs.join('&'), columnsGiven };
}

/**
 * Finds each slot's sentinel among a template's parameters; undefined when one is missing, or when
 * one also appears in the SQL text (a value the compiler wrote into the statement, not bound).
 */
export function bindSlots(shape: ReadShape, steps: PipelineStep[]): Binding[] | undefined {
  const bindings: Binding[] = [];
  const found = new Set<number>();
  steps.forEach((step, stepIndex) => {
    step.values.forEach((value, index) => {
      if (value === null) return;
      for (let slot = 0; slot < shape.slots.length; slot++) {
        if (value === sentinel(slot, 'integer') || value === sentinel(slot, 'none')) {
          bindings.push({ step: stepIndex, index, slot });
          found.add(slot);
        }
      }
    });
  });
  if (found.size !== shape.slots.length) return undefined;
  for (let slot = 0; slot < shape.slots.length; slot++) {
    if (steps.some((step) => step.text.includes(sentinel(slot, 'integer')) || step.text.includes(sentinel(slot, 'none')))) return undefined;
  }
  return bindings;
}

/** Copies of the template's steps with this request's values in their slots. */
export function fillSlots(shape: ReadShape, steps: PipelineStep[], bindings: Binding[]): PipelineStep[] {
  const filled = steps.map((step) => ({ text: step.text, values: [...step.values] }));
  for (const { step, index, slot } of bindings) {
    const { value, transform } = shape.slots[slot]!;
    checkValue(value);
    filled[step]!.values[index] = transform === 'like' ? value.replace(/\*/g, '%') : value;
  }
  return filled;
}

export class CompiledReads {
  private readonly bySchema = new WeakMap<SchemaCache, Map<string, Entry>>();
  private uses = 0;

  /** The statements for this request if its shape was compiled before against this schema. */
  get(cache: SchemaCache, shape: ReadShape): CompiledRead | undefined {
    const entry = this.bySchema.get(cache)?.get(shape.key);
    if (!entry?.template) return undefined;
    entry.used = ++this.uses;
    const { template } = entry;
    return { ...template.compiled, steps: fillSlots(shape, template.compiled.steps, template.bindings) };
  }

  /** Whether the shape is known (cacheable or not): no need to compile its sentinel request. */
  has(cache: SchemaCache, shape: ReadShape): boolean {
    return this.bySchema.get(cache)?.has(shape.key) ?? false;
  }

  /** Remembers the template compiled from `shape.sentinelQuery` (or that there is none). */
  set(cache: SchemaCache, shape: ReadShape, sentinelCompiled: CompiledRead | undefined): void {
    let entries = this.bySchema.get(cache);
    if (!entries) {
      entries = new Map();
      this.bySchema.set(cache, entries);
    }
    const bindings = sentinelCompiled && bindSlots(shape, sentinelCompiled.steps);
    entries.set(shape.key, { template: sentinelCompiled && bindings ? { compiled: sentinelCompiled, bindings } : null, used: ++this.uses });
    if (entries.size > MAX_PER_SCHEMA) entries.delete(leastRecentlyUsed(entries));
  }
}
