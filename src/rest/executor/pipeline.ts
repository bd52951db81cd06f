/**
 * Runs several statements in one round trip: Parse (first use on a connection only) / Bind /
 * Execute for each, then a single Sync. Postgres treats everything up to the Sync as one implicit
 * transaction, so `set_config(..., true)` in the first statement (the role switch and request
 * settings) applies to the next ones and cannot leak into the following request; an error in any
 * statement skips the rest and rolls the transaction back.
 *
 * It is a node-postgres "Submittable" (the mechanism pg-cursor uses): the client hands it the
 * connection when it is the client's turn and routes the backend's replies to its handle* methods.
 * Rows arrive as text fields exactly as Postgres sent them: nothing is parsed here.
 *
 * Statements are prepared under a name per connection (named statements were measured 1.2–1.5x
 * faster than unnamed ones here), kept in a bounded per-connection registry and closed when evicted.
 */
import { leastRecentlyUsed } from '../least-recently-used.js';

export interface PipelineStep {
  text: string;
  values: (string | null)[];
}

/** The text fields of each row, per step. */
export type StepRows = (string | null)[][];

/** The part of node-postgres's Connection this module drives (pg/lib/connection.js). */
interface WireConnection {
  parse(query: { name: string; text: string; types: number[] }): void;
  bind(config: { portal: string; statement: string; values: (string | null)[] }): void;
  execute(config: { portal: string; rows: number }): void;
  close(message: { type: 'S'; name: string }): void;
  sync(): void;
  stream: { cork?: () => void; uncork?: () => void };
}

/**
 * Prepared statements of one connection: SQL text → statement name, each stamped with its last use;
 * only a new statement past the capacity looks for the least recently used (../least-recently-used.ts).
 */
class StatementRegistry {
  readonly names = new Map<string, { name: string; used: number }>();
  /** Names whose Close must be sent before the next batch (evicted, or possibly half-prepared). */
  readonly toClose: string[] = [];
  private counter = 0;
  private uses = 0;

  constructor(private readonly capacity: number) {}

  /** The name of `text`, and whether it still has to be parsed on this connection. */
  lookup(text: string): { name: string; parse: boolean } {
    const existing = this.names.get(text);
    if (existing !== undefined) {
      existing.used = ++this.uses;
      return { name: existing.name, parse: false };
    }
    const name = `pglease_${++this.counter}`;
    this.names.set(text, { name, used: ++this.uses });
    while (this.names.size > this.capacity) {
      const oldest = leastRecentlyUsed(this.names);
      this.toClose.push(this.names.get(oldest)!.name);
      this.names.delete(oldest);
    }
    return { name, parse: true };
  }

  /** After a failed batch: statements parsed in it may or may not exist; close and re-parse them. */
  forget(texts: string[]): void {
    for (const text of texts) {
      const entry = this.names.get(text);
      if (entry === undefined) continue;
      this.names.delete(text);
      this.toClose.push(entry.name);
    }
  }
}

const registries = new WeakMap<object, StatementRegistry>();
const STATEMENTS_PER_CONNECTION = 200;

function registryOf(connection: object): StatementRegistry {
  let registry = registries.get(connection);
  if (!registry) {
    registry = new StatementRegistry(STATEMENTS_PER_CONNECTION);
    registries.set(connection, registry);
  }
  return registry;
}

interface ProtocolMessage {
  fields?: (string | null)[];
}

/** Submit with `client.query(pipeline)`, then `await pipeline.result`. */
export class Pipeline {
  readonly result: Promise<StepRows[]>;
  private resolve!: (rows: StepRows[]) => void;
  private reject!: (error: Error) => void;
  private readonly rows: StepRows[];
  private step = 0;
  private parsedTexts: string[] = [];
  private registry: StatementRegistry | undefined;
  private settled = false;
  /** Read by node-postgres when the query is queued. */
  callback: undefined;

  constructor(private readonly steps: PipelineStep[]) {
    this.rows = steps.map(() => []);
    this.result = new Promise((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
  }

  /** Called by the client when the connection is ready for this query. Returns an error or null. */
  submit(connection: WireConnection): Error | null {
    const registry = registryOf(connection);
    this.registry = registry;
    connection.stream.cork?.();
    try {
      for (const name of registry.toClose.splice(0)) connection.close({ type: 'S', name });
      // Each step is parsed right before it runs: parse analysis resolves names with the
      // privileges of the moment, i.e. after the first step has switched role.
      for (const step of this.steps) {
        const { name, parse } = registry.lookup(step.text);
        if (parse) {
          connection.parse({ name, text: step.text, types: [] });
          this.parsedTexts.push(step.text);
        }
        connection.bind({ portal: '', statement: name, values: step.values });
        connection.execute({ portal: '', rows: 0 });
      }
      connection.sync();
    } finally {
      connection.stream.uncork?.();
    }
    return null;
  }

  handleRowDescription(): void {}

  handleDataRow(message: ProtocolMessage): void {
    this.rows[this.step]?.push(message.fields ?? []);
  }

  handleCommandComplete(): void {
    this.step++;
  }

  handleEmptyQuery(): void {
    this.step++;
  }

  handlePortalSuspended(): void {}

  handleCopyInResponse(): void {}

  handleCopyData(): void {}

  handleError(error: Error): void {
    // whatever this batch parsed may not exist on the server now: close and re-parse next time
    this.registry?.forget(this.parsedTexts);
    this.settle(error);
  }

  handleReadyForQuery(): void {
    this.settle();
  }

  private settle(error?: Error): void {
    if (this.settled) return;
    this.settled = true;
    if (error) this.reject(error);
    else this.resolve(this.rows);
  }
}
