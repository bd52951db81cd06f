/**
 * Real tools against a database lease, each set up the way its documentation says (issue 14): a
 * Knex migration that creates the citext extension, TypeORM with uuid primary keys and
 * `synchronize`, Sequelize with an ENUM, and Drizzle with tables in public and its own migrator
 * (a hand-written migrations folder). Then the same against a schema lease: each fails, and the
 * error it reports says why and points to kind database.
 */
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import knexFactory from 'knex';
import { DataSource, EntitySchema } from 'typeorm';
import { DataTypes, Sequelize } from 'sequelize';
import { drizzle } from 'drizzle-orm/node-postgres';
import { migrate } from 'drizzle-orm/node-postgres/migrator';
import { pgTable, serial, text, integer } from 'drizzle-orm/pg-core';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLease, startTestService, type TestService } from './support/service.js';

let service: TestService;
let workDir: string;

beforeAll(async () => {
  service = await startTestService({ PGLEASE_DATABASE_LEASE_POOL: '0' });
  workDir = await mkdtemp(path.join(tmpdir(), 'pglease-orms-'));
});

afterAll(async () => {
  await service?.close();
  await rm(workDir, { recursive: true, force: true });
});

/** A lease's URL, of the kind asked for. */
async function leaseUrl(kind: 'schema' | 'database'): Promise<string> {
  return (await createLease(service, { kind })).url;
}

/** What a tool's failure says, as its user sees it (message, and Postgres's hint when it has one). */
function reported(error: unknown): string {
  const { message, hint, original, cause } = error as { message: string; hint?: string; original?: { hint?: string }; cause?: { message?: string } };
  return [message, cause?.message, hint ?? original?.hint].filter(Boolean).join(' | ');
}

const POINTS_TO_DATABASE_KIND = /kind "schema".*kind "database"/s;

// --- Knex: a migrations directory, knex.migrate.latest() ---

async function knexMigrationsDir(): Promise<string> {
  const dir = path.join(workDir, `knex-${Math.random().toString(36).slice(2)}`);
  await mkdir(dir);
  await writeFile(
    path.join(dir, '20240101000000_users.cjs'),
    `exports.up = async (knex) => {
       await knex.raw('CREATE EXTENSION IF NOT EXISTS citext');
       await knex.schema.createTable('users', (table) => {
         table.increments('id');
         table.specificType('email', 'citext').notNullable().unique();
       });
     };
     exports.down = (knex) => knex.schema.dropTable('users');`,
  );
  return dir;
}

async function runKnex(url: string): Promise<string[]> {
  const knex = knexFactory({ client: 'pg', connection: url, pool: { min: 0, max: 2 } });
  try {
    await knex.migrate.latest({ directory: await knexMigrationsDir(), loadExtensions: ['.cjs'] });
    await knex('users').insert([{ email: 'Ada@Example.org' }]);
    return (await knex('users').where({ email: 'ada@example.org' }).select('email')).map((row: { email: string }) => row.email);
  } finally {
    await knex.destroy();
  }
}

// --- TypeORM: an EntitySchema with a uuid primary key, synchronize: true ---

interface Account {
  id: string;
  name: string;
}

const AccountEntity = new EntitySchema<Account>({
  name: 'account',
  columns: {
    id: { type: 'uuid', primary: true, generated: 'uuid' },
    name: { type: 'text' },
  },
});

async function runTypeorm(url: string): Promise<Account> {
  const source = new DataSource({ type: 'postgres', url, entities: [AccountEntity], synchronize: true, logging: false });
  await source.initialize();
  try {
    const repository = source.getRepository(AccountEntity);
    return await repository.save(repository.create({ name: 'ada' }));
  } finally {
    await source.destroy();
  }
}

// --- Sequelize: a model with an ENUM, sequelize.sync() ---

async function runSequelize(url: string): Promise<string> {
  const sequelize = new Sequelize(url, { logging: false });
  try {
    const Ticket = sequelize.define('Ticket', { title: DataTypes.STRING, status: DataTypes.ENUM('open', 'closed') });
    await sequelize.sync();
    const ticket = await Ticket.create({ title: 'first', status: 'open' });
    return ticket.get('status') as string;
  } finally {
    await sequelize.close();
  }
}

// --- Drizzle: tables in public, drizzle-orm's migrator over a hand-written migrations folder ---

const authors = pgTable('authors', { id: serial('id').primaryKey(), name: text('name').notNull() });
const books = pgTable('books', { id: serial('id').primaryKey(), title: text('title').notNull(), authorId: integer('author_id').references(() => authors.id) });

async function drizzleMigrationsFolder(): Promise<string> {
  const dir = path.join(workDir, `drizzle-${Math.random().toString(36).slice(2)}`);
  await mkdir(path.join(dir, 'meta'), { recursive: true });
  await writeFile(
    path.join(dir, '0000_init.sql'),
    `CREATE TABLE "public"."authors" ("id" serial PRIMARY KEY NOT NULL, "name" text NOT NULL);
--> statement-breakpoint
CREATE TABLE "public"."books" ("id" serial PRIMARY KEY NOT NULL, "title" text NOT NULL, "author_id" integer REFERENCES "public"."authors"("id"));`,
  );
  await writeFile(
    path.join(dir, 'meta', '_journal.json'),
    JSON.stringify({ version: '7', dialect: 'postgresql', entries: [{ idx: 0, version: '7', when: 1_700_000_000_000, tag: '0000_init', breakpoints: true }] }),
  );
  return dir;
}

async function runDrizzle(url: string): Promise<{ title: string; name: string }[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const db = drizzle(client);
    await migrate(db, { migrationsFolder: await drizzleMigrationsFolder() });
    const [author] = await db.insert(authors).values({ name: 'Ursula' }).returning();
    await db.insert(books).values({ title: 'The Dispossessed', authorId: author!.id });
    const rows = await db.select({ title: books.title, authorId: books.authorId }).from(books);
    const names = await db.select().from(authors);
    return rows.map((row) => ({ title: row.title, name: names.find((a) => a.id === row.authorId)!.name }));
  } finally {
    await client.end();
  }
}

describe('on a database lease, as their docs say', () => {
  it('Knex: a migration that creates the citext extension', async () => {
    expect(await runKnex(await leaseUrl('database'))).toEqual(['Ada@Example.org']);
  });

  it('TypeORM: uuid primary keys with synchronize', async () => {
    const account = await runTypeorm(await leaseUrl('database'));
    expect(account.id).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('Sequelize: a model with an ENUM', async () => {
    expect(await runSequelize(await leaseUrl('database'))).toBe('open');
  });

  it("Drizzle: tables in public and drizzle-orm's migrator", async () => {
    expect(await runDrizzle(await leaseUrl('database'))).toEqual([{ title: 'The Dispossessed', name: 'Ursula' }]);
  });
});

describe('on a schema lease, the error says why and points to kind database', () => {
  it('Knex', async () => {
    const error = await runKnex(await leaseUrl('schema')).then(() => undefined, (caught: unknown) => caught);
    expect(reported(error)).toMatch(/permission denied to create extension citext/);
    expect(reported(error)).toMatch(POINTS_TO_DATABASE_KIND);
  });

  it('TypeORM', async () => {
    const error = await runTypeorm(await leaseUrl('schema')).then(() => undefined, (caught: unknown) => caught);
    expect(reported(error)).toMatch(/function uuid_generate_v4\(\) does not exist: it comes from the extension "uuid-ossp"/);
    expect(reported(error)).toMatch(POINTS_TO_DATABASE_KIND);
  });

  it('Sequelize', async () => {
    const error = await runSequelize(await leaseUrl('schema')).then(() => undefined, (caught: unknown) => caught);
    expect(reported(error)).toMatch(/permission denied for schema public/);
    expect(reported(error)).toMatch(POINTS_TO_DATABASE_KIND);
  });

  it('Drizzle', async () => {
    const error = await runDrizzle(await leaseUrl('schema')).then(() => undefined, (caught: unknown) => caught);
    expect(reported(error)).toMatch(/permission denied to create a schema/);
    expect(reported(error)).toMatch(POINTS_TO_DATABASE_KIND);
  });
});
