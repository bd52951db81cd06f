/**
 * @supabase/postgrest-js, unchanged, as a client of a lease's REST API: select, filters, embedding,
 * count, single, order, range and CSV.
 */
import { PostgrestClient } from '@supabase/postgrest-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startRestFixture, type RestFixture } from './support/rest-fixture.js';

let fixture: RestFixture;
let client: PostgrestClient;

beforeAll(async () => {
  fixture = await startRestFixture();
  // supabase clients send the key as `apikey` (and usually as a bearer token too)
  client = new PostgrestClient(fixture.restUrl, { headers: { apikey: fixture.lease.token } });
});

afterAll(async () => {
  await fixture?.close();
});

describe('postgrest-js', () => {
  it('selects columns', async () => {
    const { data, error, status } = await client.from('directors').select('id, last_name').order('id');
    expect(error).toBeNull();
    expect(status).toBe(200);
    expect(data).toEqual([
      { id: 1, last_name: 'Kubrick' },
      { id: 2, last_name: 'Varda' },
      { id: 3, last_name: 'Campion' },
    ]);
  });

  it('filters', async () => {
    const { data } = await client
      .from('films')
      .select('id')
      .gte('year', 1965)
      .lt('year', 1990)
      .neq('id', 3)
      .in('language', ['en', 'fr'])
      .ilike('title', '%a%')
      .order('id');
    expect(data).toEqual([{ id: 1 }, { id: 5 }]);
    const or = await client.from('films').select('id').or('year.lt.1965,language.is.null').order('id');
    expect(or.data).toEqual([{ id: 2 }, { id: 4 }]);
    const contains = await client.from('films').select('id').contains('tags', ['classic']).order('id');
    expect(contains.data).toEqual([{ id: 1 }, { id: 3 }]);
    const fts = await client.from('documents').select('id').textSearch('search', 'fox', { config: 'english' });
    expect(fts.data).toEqual([{ id: 1 }]);
    const not = await client.from('films').select('id').not('language', 'is', null).order('id');
    expect(not.data).toEqual([{ id: 1 }, { id: 2 }, { id: 3 }, { id: 5 }]);
    const match = await client.from('directors').select('id').match({ first_name: 'Jane', last_name: 'Campion' });
    expect(match.data).toEqual([{ id: 3 }]);
  });

  it('embeds resources, with filters on them', async () => {
    const { data, error } = await client
      .from('directors')
      .select('last_name, films!inner(title, actors(last_name))')
      .eq('films.year', 1993);
    expect(error).toBeNull();
    expect(data).toEqual([{ last_name: 'Campion', films: [{ title: 'The Piano', actors: [{ last_name: 'Hunter' }] }] }]);
  });

  it('counts', async () => {
    const { count, data, status } = await client.from('films').select('*', { count: 'exact', head: true });
    expect(status).toBe(200);
    expect(data).toBeNull();
    expect(count).toBe(5);
    const page = await client.from('films').select('id', { count: 'exact' }).order('id').limit(2);
    expect(page.status).toBe(206);
    expect(page.count).toBe(5);
    expect(page.data).toEqual([{ id: 1 }, { id: 2 }]);
  });

  it('gets a single row, and reports PGRST116 when there is not exactly one', async () => {
    const { data, error } = await client.from('directors').select('last_name').eq('id', 2).single();
    expect(error).toBeNull();
    expect(data).toEqual({ last_name: 'Varda' });
    const many = await client.from('directors').select('last_name').single();
    expect(many.status).toBe(406);
    expect(many.error).toMatchObject({ code: 'PGRST116' });
    const maybe = await client.from('directors').select('last_name').eq('id', 99).maybeSingle();
    expect(maybe.error).toBeNull();
    expect(maybe.data).toBeNull();
  });

  it('orders, including on embedded resources, and pages with range', async () => {
    const { data } = await client.from('films').select('id').order('year', { ascending: false }).range(1, 2);
    expect(data).toEqual([{ id: 5 }, { id: 3 }]);
    const nested = await client.from('directors').select('id, films(id)').eq('id', 1).order('year', { referencedTable: 'films', ascending: false }).limit(1, { referencedTable: 'films' });
    expect(nested.data).toEqual([{ id: 1, films: [{ id: 3 }] }]);
  });

  it('reads CSV', async () => {
    const { data, error } = await client.from('directors').select('id, last_name').order('id').csv();
    expect(error).toBeNull();
    expect(data).toBe('id,last_name\n1,Kubrick\n2,Varda\n3,Campion');
  });

  it('returns PostgREST errors as errors', async () => {
    const { error, status } = await client.from('nope').select('*');
    expect(status).toBe(404);
    expect(error).toMatchObject({ code: 'PGRST205' });
  });
});
