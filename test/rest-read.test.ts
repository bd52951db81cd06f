/**
 * REST reads against a real lease over HTTP: select, filters, order, ranges, counts, media types,
 * roles and PostgREST's errors.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { getJson, startRestFixture, type RestFixture } from './support/rest-fixture.js';

let fixture: RestFixture;

beforeAll(async () => {
  fixture = await startRestFixture();
});

afterAll(async () => {
  await fixture?.close();
});

describe('select', () => {
  it('returns every column of every row by default, as JSON', async () => {
    const { status, headers, body } = await getJson(fixture, '/directors?order=id');
    expect(status).toBe(200);
    expect(headers.get('content-type')).toBe('application/json; charset=utf-8');
    expect(headers.get('content-range')).toBe('0-2/*');
    expect(body).toEqual([
      { id: 1, first_name: 'Stanley', last_name: 'Kubrick' },
      { id: 2, first_name: 'Agnès', last_name: 'Varda' },
      { id: 3, first_name: 'Jane', last_name: 'Campion' },
    ]);
  });

  it('selects columns with aliases, casts and JSON paths', async () => {
    const { body } = await getJson(fixture, '/films?select=id,name:title,year::text,usd:data->budget->>usd,first_tag:data->tags->0&id=eq.1');
    expect(body).toEqual([{ id: 1, name: '2001: A Space Odyssey', year: '1968', usd: '10500000', first_tag: 'sf' }]);
  });

  it('names a JSON path after its last key, and an index path after the last key before it', async () => {
    const { body } = await getJson(fixture, '/films?select=data->budget->usd,data->tags->0&id=eq.1');
    expect(body).toEqual([{ usd: 10500000, tags: 'sf' }]);
  });

  it('applies JSON paths to non-JSON columns through to_jsonb', async () => {
    const { body } = await getJson(fixture, '/films?select=id,tags->0&id=eq.3');
    expect(body).toEqual([{ id: 3, tags: 'horror' }]);
  });

  it('returns empty objects for an empty select', async () => {
    const { body } = await getJson(fixture, '/directors?select=&limit=2');
    expect(body).toEqual([{}, {}]);
  });

  it('reads views like tables', async () => {
    const { body } = await getJson(fixture, '/film_titles?id=lt.3&order=id');
    expect(body).toEqual([
      { id: 1, title: '2001: A Space Odyssey', director_id: 1 },
      { id: 2, title: 'Cléo from 5 to 7', director_id: 2 },
    ]);
  });
});

describe('Content-Location', () => {
  it('names the relation and the query in canonical form: sorted by name, encoded again', async () => {
    const plain = await fixture.get('/directors');
    expect(plain.headers.get('content-location')).toBe('/directors');
    // the same shape twice: once compiled, once from the compiled cache
    for (let i = 0; i < 2; i++) {
      const sorted = await fixture.get('/films?select=id,title&order=id&id=in.(1,2)&title=like.*a%20b*&id=lt.9');
      expect(sorted.status).toBe(200);
      expect(sorted.headers.get('content-location')).toBe('/films?id=in.%281%2C2%29&id=lt.9&order=id&select=id%2Ctitle&title=like.%2Aa+b%2A');
    }
    const head = await fixture.get('/directors?order=id', { method: 'HEAD' });
    expect(head.headers.get('content-location')).toBe('/directors?order=id');
  });
});

describe('filters', () => {
  const ids = async (query: string) => ((await getJson(fixture, `/films?select=id&order=id&${query}`)).body as { id: number }[]).map((row) => row.id);

  it('compares with eq, neq, gt, gte, lt, lte', async () => {
    expect(await ids('year=eq.1968')).toEqual([1]);
    expect(await ids('year=neq.1968')).toEqual([2, 3, 4, 5]);
    expect(await ids('year=gt.1980')).toEqual([4, 5]);
    expect(await ids('year=gte.1980')).toEqual([3, 4, 5]);
    expect(await ids('year=lt.1968')).toEqual([2]);
    expect(await ids('year=lte.1968')).toEqual([1, 2]);
  });

  it('matches patterns with like, ilike (* for %), match and imatch', async () => {
    expect(await ids('title=like.The*')).toEqual([3, 4]);
    expect(await ids('title=ilike.*the*')).toEqual([3, 4]);
    expect(await ids('title=match.^[0-9]')).toEqual([1]);
    expect(await ids('title=imatch.^the s')).toEqual([3]);
  });

  it('tests lists and nulls with in and is', async () => {
    expect(await ids('id=in.(1,3,5)')).toEqual([1, 3, 5]);
    expect(await ids('language=in.(fr,"en")')).toEqual([1, 2, 3, 5]);
    expect(await ids('id=in.()')).toEqual([]);
    expect(await ids('language=is.null')).toEqual([4]);
    expect(await ids('language=not.is.null')).toEqual([1, 2, 3, 5]);
    expect(await ids('language=isdistinct.en')).toEqual([2, 4, 5]);
  });

  it('negates with not. and combines with or/and trees', async () => {
    expect(await ids('year=not.gt.1970')).toEqual([1, 2]);
    expect(await ids('or=(year.lt.1965,year.gt.1990)')).toEqual([2, 4]);
    expect(await ids('or=(id.eq.1,and(language.eq.fr,year.gt.1980))')).toEqual([1, 5]);
    expect(await ids('not.or=(id.eq.1,id.eq.2)')).toEqual([3, 4, 5]);
    expect(await ids('and=(year.gt.1960,or(language.eq.en,language.is.null))')).toEqual([1, 3, 4]);
  });

  it('compares arrays and ranges with cs, cd, ov and range operators', async () => {
    expect(await ids('tags=cs.{classic}')).toEqual([1, 3]);
    expect(await ids('tags=cd.{space,classic,paris}')).toEqual([1, 2, 4]);
    expect(await ids('tags=ov.{paris,horror}')).toEqual([2, 3]);
    const ranges = async (query: string) => ((await getJson(fixture, `/ranges?select=id&order=id&${query}`)).body as { id: number }[]).map((row) => row.id);
    expect(await ranges('span=sl.[6,8)')).toEqual([1]);
    expect(await ranges('span=sr.[6,8)')).toEqual([2]);
    expect(await ranges('span=nxr.[1,9)')).toEqual([1]);
    expect(await ranges('span=nxl.[7,9)')).toEqual([2]);
    expect(await ranges('span=adj.[5,10)')).toEqual([1, 2]);
    expect(await ranges('span=ov.[3,4)')).toEqual([1]);
  });

  it('searches text with fts, plfts, phfts and wfts', async () => {
    const docs = async (query: string) => ((await getJson(fixture, `/documents?select=id&order=id&${query}`)).body as { id: number }[]).map((row) => row.id);
    expect(await docs('search=fts.fox')).toEqual([1]);
    expect(await docs('search=fts(english).jumping')).toEqual([1]);
    expect(await docs('search=plfts.lazy dogs')).toEqual([2]);
    expect(await docs('search=phfts(english).quick brown')).toEqual([1]);
    expect(await docs('search=wfts.dogs -cats')).toEqual([2]);
    expect(await docs('body=fts.fox')).toEqual([1]);
  });

  it('applies any/all modifiers', async () => {
    expect(await ids('title=like(any).{The*,Vag*}')).toEqual([3, 4, 5]);
    expect(await ids('year=gt(all).{1960,1975}')).toEqual([3, 4, 5]);
    expect(await ids('id=eq(any).{2,4}')).toEqual([2, 4]);
  });

  it('filters on JSON paths', async () => {
    expect(await ids('data->budget->usd=gt.1000000')).toEqual([1, 4]); // jsonb comparison
    expect(await ids('data->budget->>usd=eq.64000')).toEqual([2]); // text
    expect(await ids('data->>budget=is.null')).toEqual([3, 5]);
  });
});

describe('order, limit and offset', () => {
  it('orders by several keys with directions and null placement', async () => {
    const { body } = await getJson(fixture, '/films?select=id&order=language.desc.nullsfirst,year.asc');
    expect((body as { id: number }[]).map((row) => row.id)).toEqual([4, 2, 5, 1, 3]);
  });

  it('orders by JSON paths', async () => {
    const { body } = await getJson(fixture, '/films?select=id&data=not.is.null&order=data->budget->usd.desc');
    expect((body as { id: number }[]).map((row) => row.id)).toEqual([1, 4, 2]);
  });

  it('pages with limit and offset and reports the range', async () => {
    const { status, headers, body } = await getJson(fixture, '/films?select=id&order=id&limit=2&offset=1');
    expect(status).toBe(200);
    expect(headers.get('content-range')).toBe('1-2/*');
    expect(body).toEqual([{ id: 2 }, { id: 3 }]);
  });

  it('returns an empty page for limit=0 and refuses a negative limit', async () => {
    const empty = await getJson(fixture, '/films?limit=0');
    expect(empty.body).toEqual([]);
    expect(empty.headers.get('content-range')).toBe('*/*');
    const negative = await getJson(fixture, '/films?limit=-1');
    expect(negative.status).toBe(416);
    expect(negative.body).toEqual({ code: 'PGRST103', message: 'Requested range not satisfiable', details: 'Limit should be greater than or equal to zero.', hint: null });
  });

  it('honours the Range header, intersected with limit', async () => {
    const { headers, body } = await getJson(fixture, '/films?select=id&order=id&limit=3', { headers: { 'range-unit': 'items', range: '0-1' } });
    expect(body).toEqual([{ id: 1 }, { id: 2 }]);
    expect(headers.get('content-range')).toBe('0-1/*');
    const backwards = await getJson(fixture, '/films', { headers: { range: '3-1' } });
    expect(backwards.status).toBe(416);
    expect((backwards.body as { details: string }).details).toMatch(/lower boundary/);
  });
});

describe('counting', () => {
  it('answers 206 with the exact total when the page is partial', async () => {
    const { status, headers } = await getJson(fixture, '/films?select=id&limit=2', { headers: { prefer: 'count=exact' } });
    expect(status).toBe(206);
    expect(headers.get('content-range')).toBe('0-1/5');
    expect(headers.get('preference-applied')).toBe('count=exact');
  });

  it('answers 200 when the page holds every row, and */0 for nothing', async () => {
    const all = await getJson(fixture, '/films?select=id', { headers: { prefer: 'count=exact' } });
    expect(all.status).toBe(200);
    expect(all.headers.get('content-range')).toBe('0-4/5');
    const none = await getJson(fixture, '/films?id=eq.99', { headers: { prefer: 'count=exact' } });
    expect(none.status).toBe(200);
    expect(none.headers.get('content-range')).toBe('*/0');
  });

  it('answers 416 when the offset is past the last row', async () => {
    const { status, headers, body } = await getJson(fixture, '/films?offset=10', { headers: { prefer: 'count=exact' } });
    expect(status).toBe(416);
    expect(headers.get('content-range')).toBe('*/5');
    expect(body).toEqual({ code: 'PGRST103', message: 'Requested range not satisfiable', details: 'An offset of 10 was requested, but there are only 5 rows.', hint: null });
  });

  it('gives planned and estimated counts', async () => {
    await fixture.sql.query('analyze films');
    const planned = await getJson(fixture, '/films?select=id&limit=1', { headers: { prefer: 'count=planned' } });
    expect(planned.headers.get('content-range')).toMatch(/^0-0\/\d+$/);
    const estimated = await getJson(fixture, '/films?select=id&limit=1', { headers: { prefer: 'count=estimated' } });
    expect(estimated.headers.get('content-range')).toBe('0-0/5');
  });
});

describe('media types', () => {
  it('returns one object for application/vnd.pgrst.object+json', async () => {
    const { status, headers, body } = await getJson(fixture, '/directors?id=eq.2', { headers: { accept: 'application/vnd.pgrst.object+json' } });
    expect(status).toBe(200);
    expect(headers.get('content-type')).toBe('application/vnd.pgrst.object+json; charset=utf-8');
    expect(body).toEqual({ id: 2, first_name: 'Agnès', last_name: 'Varda' });
  });

  it('answers 406 PGRST116 when a single object is asked for and there are several rows or none', async () => {
    const many = await getJson(fixture, '/directors', { headers: { accept: 'application/vnd.pgrst.object+json' } });
    expect(many.status).toBe(406);
    expect(many.body).toEqual({ code: 'PGRST116', message: 'Cannot coerce the result to a single JSON object', details: 'The result contains 3 rows', hint: null });
    const none = await getJson(fixture, '/directors?id=eq.9', { headers: { accept: 'application/vnd.pgrst.object+json' } });
    expect((none.body as { details: string }).details).toBe('The result contains 0 rows');
  });

  it('returns CSV for text/csv', async () => {
    const response = await fixture.get('/directors?order=id&select=id,last_name', { headers: { accept: 'text/csv' } });
    expect(response.headers.get('content-type')).toBe('text/csv; charset=utf-8');
    expect(await response.text()).toBe('id,last_name\n1,Kubrick\n2,Varda\n3,Campion');
  });

  it('quotes CSV values that need it', async () => {
    const response = await fixture.get('/films?id=eq.1&select=title,tags', { headers: { accept: 'text/csv' } });
    expect(await response.text()).toBe('title,tags\n"2001: A Space Odyssey","{space,classic}"');
  });

  it('strips nulls with nulls=stripped', async () => {
    const { body } = await getJson(fixture, '/films?id=eq.4&select=id,language', { headers: { accept: 'application/vnd.pgrst.array+json;nulls=stripped' } });
    expect(body).toEqual([{ id: 4 }]);
  });

  it('answers 406 PGRST107 for a media type it cannot produce', async () => {
    const { status, body } = await getJson(fixture, '/films', { headers: { accept: 'text/html' } });
    expect(status).toBe(406);
    expect(body).toEqual({ code: 'PGRST107', message: 'None of these media types are available: text/html', details: null, hint: null });
  });

  it('answers HEAD with headers only', async () => {
    const response = await fixture.get('/films?limit=2', { method: 'HEAD', headers: { prefer: 'count=exact' } });
    expect(response.status).toBe(206);
    expect(response.headers.get('content-range')).toBe('0-1/5');
    expect(await response.text()).toBe('');
  });
});

describe('OPTIONS and aggregates', () => {
  it('answers OPTIONS with the methods a resource allows', async () => {
    await fixture.sql.query('create view director_counts as select director_id, count(*) as films from films group by director_id');
    const allow = async (path: string) => {
      const response = await fixture.get(path, { method: 'OPTIONS' });
      expect(response.status).toBe(200);
      return response.headers.get('allow');
    };
    expect(await allow('/films')).toBe('OPTIONS,GET,HEAD,POST,PUT,PATCH,DELETE');
    expect(await allow('/director_counts')).toBe('OPTIONS,GET,HEAD');
    expect(await allow('/')).toBe('OPTIONS,GET,HEAD');
    expect((await getJson(fixture, '/nope', { method: 'OPTIONS' })).body).toMatchObject({ code: 'PGRST205' });
  });

  it('refuses aggregate functions, disabled as in PostgREST by default (PGRST123)', async () => {
    for (const select of ['count()', 'id,rating.sum()', 'total:rating.avg()']) {
      const { status, body } = await getJson(fixture, `/films?select=${select}`);
      expect(status).toBe(400);
      expect(body).toEqual({ code: 'PGRST123', message: 'Use of aggregate functions is not allowed', details: null, hint: null });
    }
  });
});

describe('preferences', () => {
  it('applies Prefer: timezone for a known time zone, and reports it', async () => {
    await fixture.sql.query("create table stamps (id int primary key, t timestamptz); insert into stamps values (1, '2023-10-18 12:37:59.611+00')");
    const { body, headers } = await getJson(fixture, '/stamps', { headers: { prefer: 'timezone=America/Los_Angeles' } });
    expect(body).toEqual([{ id: 1, t: '2023-10-18T05:37:59.611-07:00' }]);
    expect(headers.get('preference-applied')).toBe('timezone=America/Los_Angeles');
  });

  it('ignores an unknown time zone, or refuses it with handling=strict', async () => {
    const lenient = await getJson(fixture, '/stamps', { headers: { prefer: 'timezone=Invalid/Timezone' } });
    expect(lenient.status).toBe(200);
    expect(lenient.headers.get('preference-applied')).toBeNull();
    const strict = await getJson(fixture, '/stamps', { headers: { prefer: 'handling=strict, timezone=Invalid/Timezone' } });
    expect(strict.status).toBe(400);
    expect(strict.body).toEqual({ code: 'PGRST122', message: 'Invalid preferences given with handling=strict', details: 'Invalid preferences: timezone=Invalid/Timezone', hint: null });
  });

  it('refuses unknown preferences with handling=strict, across several Prefer headers', async () => {
    const response = await fetch(`${fixture.restUrl}/directors`, { headers: [['authorization', `Bearer ${fixture.lease.token}`], ['prefer', 'handling=strict'], ['prefer', 'something, else']] });
    expect(response.status).toBe(400);
    expect(await response.json()).toEqual({ code: 'PGRST122', message: 'Invalid preferences given with handling=strict', details: 'Invalid preferences: something, else', hint: null });
    const lenient = await getJson(fixture, '/directors', { headers: { prefer: 'handling=lenient, anything' } });
    expect(lenient.status).toBe(200);
    expect(lenient.headers.get('preference-applied')).toBe('handling=lenient');
  });
});

describe('roles and leases', () => {
  it('runs requests without a token as the anonymous role, which has no privileges until granted', async () => {
    const denied = await getJson(fixture, '/actors', { token: null });
    expect(denied.status).toBe(401);
    expect(denied.headers.get('www-authenticate')).toBe('Bearer');
    expect(denied.body).toMatchObject({ code: '42501', message: 'permission denied for table actors' });
    await fixture.sql.query(`grant select on actors to ${fixture.lease.anon_role}`);
    const granted = await getJson(fixture, '/actors?id=eq.1', { token: null });
    expect(granted.status).toBe(200);
    expect(granted.body).toEqual([{ id: 1, first_name: 'Keir', last_name: 'Dullea' }]);
  });

  it('answers 403 to the lease role when it lacks a privilege', async () => {
    await fixture.sql.query('create table secrets (id int); revoke all on secrets from current_user');
    const { status, body } = await getJson(fixture, '/secrets');
    expect(status).toBe(403);
    expect(body).toMatchObject({ code: '42501' });
  });

  it('accepts the token in the apikey header', async () => {
    const response = await fixture.get('/directors?id=eq.1', { token: null, headers: { apikey: fixture.lease.token } });
    expect(response.status).toBe(200);
  });

  it('refuses a wrong token with 401 PGRST301', async () => {
    const { status, headers, body } = await getJson(fixture, '/directors', { token: 'pgl_wrong' });
    expect(status).toBe(401);
    expect(headers.get('www-authenticate')).toMatch(/^Bearer error="invalid_token"/);
    expect(body).toMatchObject({ code: 'PGRST301' });
  });

  it('answers 404 for an unknown lease', async () => {
    const response = await fetch(`${fixture.service.baseUrl}/v1/leases/00000000-0000-4000-8000-000000000000/rest/films`);
    expect(response.status).toBe(404);
    expect(await response.json()).toMatchObject({ code: 'PGLEASE_NOT_FOUND' });
  });
});

describe('errors', () => {
  it('answers 404 PGRST205 with a hint for an unknown table', async () => {
    const { status, body } = await getJson(fixture, '/film');
    expect(status).toBe(404);
    expect(body).toEqual({
      code: 'PGRST205',
      message: `Could not find the table '${fixture.lease.schema}.film' in the schema cache`,
      details: null,
      hint: `Perhaps you meant the table '${fixture.lease.schema}.films'`,
    });
  });

  it('answers 400 with the Postgres error for an unknown column', async () => {
    const { status, body } = await getJson(fixture, '/films?select=nope');
    expect(status).toBe(400);
    expect(body).toMatchObject({ code: '42703', message: 'column films.nope does not exist' });
  });

  it('answers 400 PGRST100 for an unparsable query string', async () => {
    const select = await getJson(fixture, '/films?select=id,(');
    expect(select.status).toBe(400);
    expect(select.body).toMatchObject({ code: 'PGRST100' });
    expect((select.body as { message: string }).message).toMatch(/^"failed to parse select parameter \(id,\(\)" \(line 1, column \d+\)$/);
    // a parameter on a table is a filter: without an operator it does not parse, as in PostgREST
    // (only a GET on a function takes such parameters, as its arguments)
    for (const query of ['id=noop.1', 'id=5', '_=1700000000']) {
      const bare = await getJson(fixture, `/films?${query}`);
      expect(bare.status).toBe(400);
      expect(bare.body).toMatchObject({ code: 'PGRST100' });
      expect((bare.body as { message: string }).message).toBe(`"failed to parse filter (${query.split('=')[1]})" (line 1, column ${query === 'id=noop.1' ? 6 : 1})`);
    }
    const unknown = await getJson(fixture, '/films?id=not.noop.1');
    expect(unknown.body).toMatchObject({ code: 'PGRST100', details: 'unknown single value operator noop' });
    const order = await getJson(fixture, '/films?order=id.sideways');
    expect(order.body).toMatchObject({ code: 'PGRST100' });
  });

  it('answers 400 with the Postgres error for a value of the wrong type', async () => {
    const { status, body } = await getJson(fixture, '/films?id=eq.abc');
    expect(status).toBe(400);
    expect(body).toMatchObject({ code: '22P02' });
  });

  it('answers a write without a body in PostgREST format (writes: test/rest-write.test.ts)', async () => {
    const { status, body } = await getJson(fixture, '/films', { method: 'PATCH' });
    expect(status).toBe(400);
    expect(body).toMatchObject({ code: 'PGRST102', message: 'Empty or invalid json' });
  });
});
