/**
 * What the hand-written ceiling servers (bench/ceiling-server.ts, bench/ceiling-many-server.ts) do
 * for a request: the statement pglease compiles for it, as a named prepared statement with the
 * URL's value in its place, answered with the body and Content-Range pglease would send.
 */
import type { FastifyReply } from 'fastify';
import type pg from 'pg';

export interface CeilingStatement {
  text: string;
  values: (string | null)[];
  /** The index of the value taken from the URL. */
  param: number;
}

export async function answerRead(pool: pg.Pool, name: string, statement: CeilingStatement, value: string, reply: FastifyReply): Promise<FastifyReply> {
  const values = [...statement.values];
  values[statement.param] = value;
  const { rows } = await pool.query<{ page: string; body: string }>({ name, text: statement.text, values });
  const row = rows[0]!;
  return reply
    .header('content-type', 'application/json; charset=utf-8')
    .header('content-range', `0-${Number(row.page) - 1}/*`)
    .send(row.body);
}
