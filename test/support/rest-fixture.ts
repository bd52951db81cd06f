/**
 * A lease with a small film database for the REST tests (the shape of PostgREST's documentation
 * examples), created through the lease's own connection URL as a user would, plus helpers to call
 * its REST API.
 */
import pg from 'pg';
import { createLease, startTestService, type CreatedLeaseJson, type TestService } from './service.js';

export const FILM_SCHEMA = `
  create table directors (id int primary key, first_name text, last_name text);
  create table films (
    id int primary key, director_id int references directors, title text not null, year int,
    rating numeric(3,1), language text, tags text[], data jsonb, released date
  );
  comment on table films is 'Films we know';
  create table actors (id int primary key, first_name text, last_name text);
  create table roles (film_id int references films, actor_id int references actors, character text, primary key (film_id, actor_id));
  create table technical_specs (film_id int primary key references films, runtime interval, camera text);
  create table competitions (id int primary key, name text, year int);
  create table nominations (
    id int primary key, competition_id int references competitions, film_id int references films,
    rank int, won boolean
  );
  create table people (id int primary key, name text, mentor_id int references people);
  create table addresses (id int primary key, street text);
  create table shipments (
    id int primary key,
    origin_id int constraint shipments_origin_fkey references addresses,
    destination_id int constraint shipments_destination_fkey references addresses
  );
  create view film_titles as select id, title, director_id from films;
  create table documents (id int primary key, body text, search tsvector generated always as (to_tsvector('english', body)) stored);
  create table ranges (id int primary key, span int4range);

  insert into directors values (1, 'Stanley', 'Kubrick'), (2, 'Agnès', 'Varda'), (3, 'Jane', 'Campion');
  insert into films values
    (1, 1, '2001: A Space Odyssey', 1968, 8.3, 'en', '{space,classic}', '{"budget": {"usd": 10500000}, "tags": ["sf"]}', '1968-04-02'),
    (2, 2, 'Cléo from 5 to 7', 1962, 7.8, 'fr', '{paris}', '{"budget": {"usd": 64000}}', '1962-04-11'),
    (3, 1, 'The Shining', 1980, 8.4, 'en', '{horror,classic}', null, '1980-05-23'),
    (4, 3, 'The Piano', 1993, 7.5, null, '{}', '{"budget": {"usd": 7000000}}', null),
    (5, 2, 'Vagabond', 1985, 7.9, 'fr', null, null, '1985-12-04');
  insert into actors values (1, 'Keir', 'Dullea'), (2, 'Corinne', 'Marchand'), (3, 'Jack', 'Nicholson'), (4, 'Holly', 'Hunter'), (5, 'Shelley', 'Duvall');
  insert into roles values (1, 1, 'Dave Bowman'), (2, 2, 'Cléo'), (3, 3, 'Jack Torrance'), (3, 5, 'Wendy Torrance'), (4, 4, 'Ada McGrath');
  insert into technical_specs values (1, '2 hours 29 minutes', 'Mitchell'), (3, '2 hours 26 minutes', 'Arriflex');
  insert into competitions values (1, 'Cannes', 1962), (2, 'Cannes', 1993), (3, 'Venice', 1985);
  insert into nominations values (1, 1, 2, 1, false), (2, 2, 4, 1, true), (3, 3, 5, 1, true);
  insert into people values (1, 'Ada', null), (2, 'Ben', 1), (3, 'Cy', 1), (4, 'Di', 2);
  insert into addresses values (1, 'Main St'), (2, 'Elm St');
  insert into shipments values (1, 1, 2);
  insert into documents (id, body) values (1, 'The quick brown fox jumps'), (2, 'Lazy dogs sleep all day');
  insert into ranges values (1, '[1,5)'), (2, '[10,20)');
`;

export interface RestFixture {
  service: TestService;
  lease: CreatedLeaseJson;
  /** The lease's own connection (its login role), for DDL and grants in tests. */
  sql: pg.Client;
  restUrl: string;
  /** fetch() on `{rest_url}/path` with the lease token unless `token: null`. */
  get: (path: string, options?: { headers?: Record<string, string>; token?: string | null; method?: string }) => Promise<Response>;
  close: () => Promise<void>;
}

export async function startRestFixture(schema = FILM_SCHEMA): Promise<RestFixture> {
  const service = await startTestService();
  const lease = await createLease(service);
  const sql = new pg.Client({ connectionString: lease.url });
  await sql.connect();
  await sql.query(schema);
  const restUrl = lease.rest_url;
  const get: RestFixture['get'] = (path, options = {}) => {
    const headers: Record<string, string> = { ...(options.headers ?? {}) };
    const token = options.token === undefined ? lease.token : options.token;
    if (token !== null) headers.authorization = `Bearer ${token}`;
    return fetch(`${restUrl}${path}`, { method: options.method ?? 'GET', headers });
  };
  return {
    service,
    lease,
    sql,
    restUrl,
    get,
    close: async () => {
      await sql.end();
      await service.close();
    },
  };
}

/** GET and parse a JSON body, asserting nothing: returns status, headers and body. */
export async function getJson(fixture: RestFixture, path: string, options?: Parameters<RestFixture['get']>[1]): Promise<{ status: number; headers: Headers; body: unknown }> {
  const response = await fixture.get(path, options);
  const text = await response.text();
  return { status: response.status, headers: response.headers, body: text === '' ? undefined : JSON.parse(text) };
}

/** A REST answer with its body both as text and, when it parses, as JSON. */
export interface RestAnswer {
  status: number;
  headers: Headers;
  text: string;
  json: unknown;
}

/**
 * Any method on `{rest_url}/path`: a string body is sent as is, anything else as JSON (with a JSON
 * content type unless `headers` names one); the lease token unless `token` is null.
 */
export async function sendRest(
  fixture: RestFixture,
  method: string,
  path: string,
  body?: unknown,
  headers: Record<string, string> = {},
  token: string | null = fixture.lease.token,
): Promise<RestAnswer> {
  const allHeaders: Record<string, string> = { ...headers };
  if (token !== null) allHeaders.authorization = `Bearer ${token}`;
  let payload: string | undefined;
  if (typeof body === 'string') payload = body;
  else if (body !== undefined) {
    payload = JSON.stringify(body);
    allHeaders['content-type'] ??= 'application/json';
  }
  const response = await fetch(`${fixture.restUrl}${path}`, { method, headers: allHeaders, body: payload });
  const text = await response.text();
  let json: unknown;
  try {
    json = text === '' ? undefined : JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: response.status, headers: response.headers, text, json };
}
