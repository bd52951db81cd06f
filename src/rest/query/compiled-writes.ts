/**
 * Writes and function calls compiled once per request shape, as reads are (./compiled-reads.ts).
 * Planning and SQL generation were a third of pglease's own work on a one-row insert, and an API's
 * writes repeat a few shapes: `POST /events` with the same keys, `PATCH /films?id=eq.N`.
 *
 * A shape is the request with its comparison values masked (readShape), whether the caller is
 * authenticated, the body's media type, and what the body gives the statement besides its text:
 * one object or an array, and its keys (the columns written, the arguments passed). The body text
 * is one bind parameter; the template is compiled with a sentinel in its place, and where the
 * sentinel lands is where each later request's body goes.
 *
 * Not cached: HTML-form bodies of function calls (their fields become arguments one by one, not
 * one parameter), and any template where a sentinel does not land in exactly a bind parameter.
 */
import type { PipelineStep } from '../executor/pipeline.js';
import type { RpcPlan } from '../plan/rpc-plan.js';
import type { WritePlan } from '../plan/write-plan.js';
import type { Payload } from '../request/body.js';
import { buildApiRequest } from '../request/api-request.js';
import { contentMediaType } from '../request/body.js';
import type { ApiRequest } from '../request/types.js';
import type { SchemaCache } from '../schema/types.js';
import { bindSlots, fillSlots, readShape, type Binding, type ReadRequestParts, type ReadShape } from './compiled-reads.js';
import type { Statement } from './read-query.js';
import { checkValue } from './sql.js';

/** A write or call ready to run: its plan (for the response), its statement, and whether the
 * request.* settings must be published (the schema's readsRequestSettings). */
export interface CompiledWrite {
  kind: 'write';
  plan: WritePlan;
  statement: Statement;
  publishRequest: boolean;
}

export interface CompiledRpc {
  kind: 'rpc';
  plan: RpcPlan;
  statement: Statement;
  publishRequest: boolean;
}

export type CompiledCall = CompiledWrite | CompiledRpc;

export interface CallShape extends ReadShape {
  /** The body's media type, as the body parser reads it. */
  mediaType: string;
}

/** What the compiled templates of a request shape are: writes to a relation, or function calls. */
export type CallKind = CompiledCall['kind'];

/** Stands for the body text in a template, unlike any value the compiler binds of its own. */
export const BODY_SENTINEL = '\u0001pglease-body\u0001';
const MAX_SHAPES_PER_SCHEMA = 256;
const MAX_BODIES_PER_SHAPE = 16;

export interface ShapeEntry {
  kind: CallKind;
  /** By body key: the template, or null when that body's statement is not cacheable. */
  bodies: Map<string, Template | null>;
}

interface Template {
  compiled: CompiledCall;
  bindings: Binding[];
  /** The parameter the body text goes to; undefined when the statement does not read it. */
  bodyIndex: number | undefined;
}

export function callShape(parts: ReadRequestParts, authenticated: boolean): CallShape {
  const shape = readShape(parts);
  const mediaType = contentMediaType(parts.headers['content-type']);
  return { ...shape, key: `${shape.key}\u0000${authenticated ? 'auth' : 'anon'}\u0000${mediaType}`, mediaType };
}

/** What of a body the compiled statement depends on; undefined for a body that is never cached. */
function bodyKey(payload: Payload | undefined): string | undefined {
  if (payload === undefined) return '';
  if (payload.formFields !== undefined) return undefined;
  const keys = payload.keys;
  if (keys === undefined) return `${payload.shape}\u0000${payload.rawType ?? ''}\u0000columns`;
  // joined by NUL, which no column or argument name can hold: a key with one is compiled each
  // time (and refused by the planner), so that two bodies can never share a key
  for (const key of keys) if (key.includes('\u0000')) return undefined;
  return `${payload.shape}\u0000${payload.rawType ?? ''}\u0000${keys.length}\u0000${keys.join('\u0000')}`;
}

/** The payload a template is compiled with: the same keys, the sentinel for its text. */
function sentinelPayload(payload: Payload | undefined): Payload | undefined {
  return payload === undefined ? undefined : { ...payload, json: BODY_SENTINEL };
}

/** Compiles a write or call (the request's own, or its shape's template). */
export type CallCompiler = (request: ApiRequest, payload: Payload | undefined) => CompiledCall;

export class CompiledWrites {
  private readonly bySchema = new WeakMap<SchemaCache, Map<string, ShapeEntry>>();

  /**
   * The templates of this shape, if a request of it was compiled before: then everything but the
   * body is known to be valid, and the body may be read first (as the entry's kind reads it).
   */
  known(cache: SchemaCache, shape: CallShape): ShapeEntry | undefined {
    return this.bySchema.get(cache)?.get(shape.key);
  }

  /** This request's statement, when its body keys were compiled before for the shape's entry. */
  fill(entry: ShapeEntry, shape: CallShape, payload: Payload | undefined): CompiledCall | undefined {
    const key = bodyKey(payload);
    if (key === undefined) return undefined;
    const template = entry.bodies.get(key);
    if (!template) return undefined;
    const { compiled } = template;
    const [step] = fillSlots(shape, [compiled.statement], template.bindings);
    if (template.bodyIndex !== undefined) {
      checkValue(payload!.json);
      step!.values[template.bodyIndex] = payload!.json;
    }
    return { ...compiled, statement: step! };
  }

  /** Whether this shape and body are known already (compiled, or known not to be cacheable). */
  has(cache: SchemaCache, shape: CallShape, payload: Payload | undefined): boolean {
    const key = bodyKey(payload);
    return key === undefined || (this.bySchema.get(cache)?.get(shape.key)?.bodies.has(key) ?? false);
  }

  /**
   * After a request was planned: compiles its shape's template (the request with sentinels for its
   * masked values and its body) unless that shape and body keys are known already.
   */
  remember(cache: SchemaCache, parts: ReadRequestParts, request: ApiRequest, payload: Payload | undefined, compile: CallCompiler): void {
    const shape = callShape(parts, request.authenticated);
    if (this.has(cache, shape, payload)) return;
    let template: CompiledCall | undefined;
    try {
      // preferences come from the headers, part of the shape: those of the request, already checked
      const sentinelRequest = { ...buildApiRequest({ ...parts, query: shape.sentinelQuery, authenticated: request.authenticated }), preferences: request.preferences };
      template = compile(sentinelRequest, sentinelPayload(payload));
    } catch {
      template = undefined;
    }
    this.set(cache, shape, request.target.kind === 'routine' ? 'rpc' : 'write', payload, template);
  }

  /** Remembers the template compiled from the shape's sentinels (or that there is none). */
  private set(cache: SchemaCache, shape: CallShape, kind: CallKind, payload: Payload | undefined, sentinelCompiled: CompiledCall | undefined): void {
    const key = bodyKey(payload);
    if (key === undefined) return;
    let shapes = this.bySchema.get(cache);
    if (!shapes) {
      shapes = new Map();
      this.bySchema.set(cache, shapes);
    }
    let entry = shapes.get(shape.key);
    if (!entry) {
      entry = { kind, bodies: new Map() };
      shapes.set(shape.key, entry);
      if (shapes.size > MAX_SHAPES_PER_SCHEMA) shapes.delete(shapes.keys().next().value as string);
    }
    const bodies = entry.bodies;
    bodies.set(key, sentinelCompiled ? templateOf(shape, sentinelCompiled) : null);
    if (bodies.size > MAX_BODIES_PER_SHAPE) bodies.delete(bodies.keys().next().value as string);
  }
}

function templateOf(shape: CallShape, compiled: CompiledCall): Template | null {
  // the answer to a limited update or delete compares the rows it changed with the limit, which
  // in a template is a sentinel: such writes are compiled each time
  if (compiled.kind === 'write' && compiled.plan.kind !== 'insert' && compiled.plan.limit?.range.limit !== undefined) return null;
  const steps: PipelineStep[] = [compiled.statement];
  const bindings = bindSlots(shape, steps);
  if (!bindings || compiled.statement.text.includes(BODY_SENTINEL)) return null;
  const bodyIndexes = compiled.statement.values.flatMap((value, index) => (value === BODY_SENTINEL ? [index] : []));
  if (bodyIndexes.length > 1) return null;
  return { compiled, bindings, bodyIndex: bodyIndexes[0] };
}
