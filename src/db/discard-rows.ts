/**
 * Runs SQL (one statement or many, the simple query protocol) and drops the rows it returns as
 * they arrive. node-postgres's own query keeps every row of every statement until the end: a
 * template's seed SQL, written by a lease's token holder, could select millions of rows and
 * grow the service's memory until the process dies. This is a node-postgres "submittable" (the
 * interface pg-cursor uses): the client hands it the protocol messages of its query.
 */
import type pg from 'pg';

interface Connection {
  query(text: string): void;
  sendCopyFail(message: string): void;
}

class RowDiscardingQuery {
  private settle!: (error: Error | undefined) => void;
  readonly finished = new Promise<void>((resolve, reject) => {
    this.settle = (error) => (error ? reject(error) : resolve());
  });

  constructor(private readonly text: string) {}

  submit(connection: Connection): void {
    connection.query(this.text);
  }

  handleRowDescription(): void {}
  handleDataRow(): void {}
  handleCommandComplete(): void {}
  handleEmptyQuery(): void {}
  handlePortalSuspended(): void {}
  handleCopyData(): void {}

  /** COPY ... FROM STDIN: there is no client data to send. */
  handleCopyInResponse(connection: Connection): void {
    connection.sendCopyFail('COPY FROM STDIN has no data here: put the rows in the SQL (INSERT ... VALUES)');
  }

  /** The first error ends the query (the client no longer counts it as active), as in node-postgres. */
  handleError(error: Error): void {
    this.settle(error);
  }

  handleReadyForQuery(): void {
    this.settle(undefined);
  }
}

/** Runs `sql` on `client`, keeping none of its rows; rejects with its first error. */
export function runDiscardingRows(client: pg.Client, sql: string): Promise<void> {
  const query = new RowDiscardingQuery(sql);
  client.query(query as unknown as pg.QueryConfig);
  return query.finished;
}
