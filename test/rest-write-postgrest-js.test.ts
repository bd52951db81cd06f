/**
 * @supabase/postgrest-js, unchanged, writing to a lease and calling its functions: insert (one,
 * bulk, with select), upsert (merge, ignore, onConflict), update, delete, count, single, rpc
 * (POST, GET, head, filters on a set result) and the errors it surfaces.
 */
import { PostgrestClient } from '@supabase/postgrest-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startRestFixture, type RestFixture } from './support/rest-fixture.js';

let fixture: RestFixture;
let client: PostgrestClient;

const SCHEMA = `
  create table teams (id int primary key, name text not null unique);
  create table players (id serial primary key, name text not null, team_id int references teams, goals int default 0);
  insert into teams values (1, 'Reds'), (2, 'Blues');
  create function add_goals(player int, amount int default 1) returns players language sql volatile
    as $$ update players set goals = goals + amount where id = player returning * $$;
  create function top_scorers(min_goals int) returns setof players language sql stable
    as $$ select * from players where goals >= min_goals order by goals desc, id $$;
  create function total_goals() returns bigint language sql stable as $$ select coalesce(sum(goals), 0) from players $$;
`;

beforeAll(async () => {
  fixture = await startRestFixture(SCHEMA);
  client = new PostgrestClient(fixture.restUrl, { headers: { apikey: fixture.lease.token, authorization: `Bearer ${fixture.lease.token}` } });
});

afterAll(async () => {
  await fixture?.close();
});

describe('postgrest-js writes', () => {
  it('inserts one row and many, returning them with select()', async () => {
    const one = await client.from('players').insert({ name: 'Ada', team_id: 1 });
    expect(one.error).toBeNull();
    expect(one.status).toBe(201);
    const many = await client
      .from('players')
      .insert([
        { name: 'Ben', team_id: 1, goals: 3 },
        { name: 'Cy', team_id: 2, goals: 5 },
      ])
      .select('name, goals, teams(name)');
    expect(many.error).toBeNull();
    expect(many.data).toEqual([
      { name: 'Ben', goals: 3, teams: { name: 'Reds' } },
      { name: 'Cy', goals: 5, teams: { name: 'Blues' } },
    ]);
    const counted = await client.from('players').insert({ name: 'Di', team_id: 2 }, { count: 'exact' });
    expect(counted.count).toBe(1);
  });

  it('inserts with defaultToNull: false (missing=default) and single()', async () => {
    const { data, error } = await client
      .from('players')
      .insert([{ name: 'Eve', team_id: 2 }, { name: 'Fay', goals: 1 }], { defaultToNull: false })
      .select('name, team_id, goals');
    expect(error).toBeNull();
    expect(data).toEqual([
      { name: 'Eve', team_id: 2, goals: 0 },
      { name: 'Fay', team_id: null, goals: 1 },
    ]);
    const single = await client.from('players').insert({ name: 'Gus' }).select('name').single();
    expect(single.data).toEqual({ name: 'Gus' });
  });

  it('upserts: merge on the primary key, ignore duplicates, or resolve on another unique column', async () => {
    const merged = await client.from('teams').upsert([{ id: 1, name: 'Red Devils' }, { id: 3, name: 'Greens' }]).select();
    expect(merged.error).toBeNull();
    expect(merged.status).toBe(201);
    expect(merged.data).toEqual([{ id: 1, name: 'Red Devils' }, { id: 3, name: 'Greens' }]);
    const ignored = await client.from('teams').upsert({ id: 1, name: 'Nope' }, { ignoreDuplicates: true }).select();
    expect(ignored.data).toEqual([]);
    const byName = await client.from('teams').upsert({ id: 4, name: 'Greens' }, { onConflict: 'name' }).select();
    expect(byName.data).toEqual([{ id: 4, name: 'Greens' }]);
    const { data } = await client.from('teams').select('id, name').order('id');
    expect(data).toEqual([{ id: 1, name: 'Red Devils' }, { id: 2, name: 'Blues' }, { id: 4, name: 'Greens' }]);
  });

  it('updates and deletes with filters', async () => {
    const updated = await client.from('players').update({ goals: 10 }).eq('name', 'Ada').select('name, goals');
    expect(updated.error).toBeNull();
    expect(updated.data).toEqual([{ name: 'Ada', goals: 10 }]);
    const counted = await client.from('players').update({ team_id: 2 }, { count: 'exact' }).is('team_id', null);
    expect(counted.status).toBe(204);
    expect(counted.count).toBe(2);
    const deleted = await client.from('players').delete().in('name', ['Fay', 'Gus']).select('name');
    expect(deleted.data).toEqual([{ name: 'Fay' }, { name: 'Gus' }]);
    const { count } = await client.from('players').select('*', { count: 'exact', head: true });
    expect(count).toBe(5);
  });

  it('surfaces constraint errors with their codes', async () => {
    const { error, status } = await client.from('teams').insert({ id: 2, name: 'Again' });
    expect(status).toBe(409);
    expect(error).toMatchObject({ code: '23505', details: 'Key (id)=(2) already exists.' });
    const unknown = await client.from('teams').insert({ id: 9, nickname: 'x' });
    expect(unknown.error).toMatchObject({ code: 'PGRST204', message: "Could not find the 'nickname' column of 'teams' in the schema cache" });
  });
});

describe('postgrest-js rpc', () => {
  it('calls a volatile function with POST and a stable one with GET', async () => {
    const { data: ada } = await client.from('players').select('id').eq('name', 'Ada').single();
    const scored = await client.rpc('add_goals', { player: (ada as { id: number }).id, amount: 2 });
    expect(scored.error).toBeNull();
    expect(scored.data).toMatchObject({ name: 'Ada', goals: 12 });
    const total = await client.rpc('total_goals', {}, { get: true });
    expect(total.error).toBeNull();
    expect(total.data).toBe(20);
  });

  it('filters, orders and counts a set result', async () => {
    const { data, error, count } = await client.rpc('top_scorers', { min_goals: 1 }, { count: 'exact' }).select('name, goals').lt('goals', 10).limit(1);
    expect(error).toBeNull();
    expect(count).toBe(2);
    expect(data).toEqual([{ name: 'Cy', goals: 5 }]);
    const head = await client.rpc('top_scorers', { min_goals: 0 }, { head: true, count: 'exact' });
    expect(head.status).toBe(200);
    expect(head.count).toBe(5);
  });

  it('reports an unknown function', async () => {
    const { error, status } = await client.rpc('nope');
    expect(status).toBe(404);
    expect(error).toMatchObject({ code: 'PGRST202' });
  });
});
