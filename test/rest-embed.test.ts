/**
 * Resource embedding over HTTP: many-to-one, one-to-many, one-to-one, many-to-many, nesting,
 * !inner, hints, aliases, spreads, views, and filters/order/limit on embedded resources.
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

const body = async (path: string) => {
  const response = await getJson(fixture, path);
  expect(response.status, JSON.stringify(response.body)).toBe(200);
  return response.body;
};

describe('relationships', () => {
  it('embeds a many-to-one resource as an object (null when there is none)', async () => {
    expect(await body('/films?select=title,directors(last_name)&id=in.(1,4)&order=id')).toEqual([
      { title: '2001: A Space Odyssey', directors: { last_name: 'Kubrick' } },
      { title: 'The Piano', directors: { last_name: 'Campion' } },
    ]);
    await fixture.sql.query('insert into films (id, title) values (90, \'No director\')');
    try {
      expect(await body('/films?select=id,directors(id)&id=eq.90')).toEqual([{ id: 90, directors: null }]);
    } finally {
      await fixture.sql.query('delete from films where id = 90');
    }
  });

  it('embeds a one-to-many resource as an array (empty when there is none)', async () => {
    expect(await body('/directors?select=last_name,films(id)&order=id&films.order=id')).toEqual([
      { last_name: 'Kubrick', films: [{ id: 1 }, { id: 3 }] },
      { last_name: 'Varda', films: [{ id: 2 }, { id: 5 }] },
      { last_name: 'Campion', films: [{ id: 4 }] },
    ]);
    expect(await body('/actors?select=id,roles(character)&id=eq.99')).toEqual([]);
  });

  it('embeds a one-to-one resource as an object, both ways', async () => {
    expect(await body('/films?select=id,technical_specs(camera)&id=in.(1,2)&order=id')).toEqual([
      { id: 1, technical_specs: { camera: 'Mitchell' } },
      { id: 2, technical_specs: null },
    ]);
    expect(await body('/technical_specs?select=camera,films(title)&film_id=eq.3')).toEqual([{ camera: 'Arriflex', films: { title: 'The Shining' } }]);
  });

  it('embeds many-to-many through a junction table', async () => {
    expect(await body('/films?select=title,actors(last_name)&id=eq.3&actors.order=last_name')).toEqual([
      { title: 'The Shining', actors: [{ last_name: 'Duvall' }, { last_name: 'Nicholson' }] },
    ]);
    expect(await body('/actors?select=last_name,films(title)&id=eq.4')).toEqual([{ last_name: 'Hunter', films: [{ title: 'The Piano' }] }]);
  });

  it('nests embeddings', async () => {
    expect(await body('/directors?select=last_name,films(title,roles(character,actors(first_name)))&id=eq.3')).toEqual([
      { last_name: 'Campion', films: [{ title: 'The Piano', roles: [{ character: 'Ada McGrath', actors: { first_name: 'Holly' } }] }] },
    ]);
  });

  it('renames embedded resources with aliases, and embeds the same table twice', async () => {
    expect(await body('/shipments?select=id,from:addresses!shipments_origin_fkey(street),to:addresses!shipments_destination_fkey(street)')).toEqual([
      { id: 1, from: { street: 'Main St' }, to: { street: 'Elm St' } },
    ]);
  });

  it('refuses the same table embedded twice under one name with 400 42712, as PostgREST does', async () => {
    // PostgREST's SQL gives both subqueries the same alias; pglease used to answer an object with the key twice
    const { status, body: error } = await getJson(fixture, '/shipments?select=id,addresses!shipments_origin_fkey(street),addresses!shipments_destination_fkey(street)');
    expect(status).toBe(400);
    expect(error).toMatchObject({ code: '42712', message: 'table name "addresses" specified more than once', details: null, hint: null });
    const aliased = await getJson(fixture, '/shipments?select=id,a:addresses!shipments_origin_fkey(street),a:addresses!shipments_destination_fkey(street)');
    expect(aliased.status).toBe(400);
    expect((aliased.body as { code: string }).code).toBe('42712');
  });

  it('disambiguates with a column hint too', async () => {
    expect(await body('/shipments?select=id,addresses!destination_id(street)')).toEqual([{ id: 1, addresses: { street: 'Elm St' } }]);
  });

  it('embeds by foreign key column name', async () => {
    expect(await body('/films?select=id,director:director_id(last_name)&id=eq.2')).toEqual([{ id: 2, director: { last_name: 'Varda' } }]);
  });

  it('follows self-references: the FK column for the parent, the table for the children', async () => {
    expect(await body('/people?select=name,mentor:mentor_id(name),mentees:people(name)&id=eq.2')).toEqual([
      { name: 'Ben', mentor: { name: 'Ada' }, mentees: [{ name: 'Di' }] },
    ]);
  });

  it('embeds through views, which inherit their base tables\' foreign keys', async () => {
    expect(await body('/film_titles?select=title,directors(last_name)&id=eq.5')).toEqual([{ title: 'Vagabond', directors: { last_name: 'Varda' } }]);
    expect(await body('/directors?select=last_name,film_titles(title)&id=eq.3')).toEqual([{ last_name: 'Campion', film_titles: [{ title: 'The Piano' }] }]);
  });
});

describe('partitions and materialized views', () => {
  it('embeds partitioned tables through their own foreign keys, not their partitions\' copies', async () => {
    await fixture.sql.query(`
      create table sales (id int, film_id int references films, sold date, primary key (id, sold)) partition by range (sold);
      create table sales_2020 partition of sales for values from ('2020-01-01') to ('2021-01-01');
      insert into sales values (1, 1, '2020-05-01'), (2, 1, '2020-06-01');`);
    expect(await body('/films?select=id,sales(id)&id=eq.1&sales.order=id')).toEqual([{ id: 1, sales: [{ id: 1 }, { id: 2 }] }]);
    expect(await body('/sales?select=id,films(title)&id=eq.2')).toEqual([{ id: 2, films: { title: '2001: A Space Odyssey' } }]);
    const partition = await getJson(fixture, '/sales_2020?select=id,films(id)');
    expect(partition.status).toBe(400);
    expect(partition.body).toMatchObject({ code: 'PGRST200' });
  });

  it('embeds through materialized views', async () => {
    await fixture.sql.query('create materialized view film_stats as select id, director_id, title from films');
    expect(await body('/film_stats?select=title,directors(last_name)&id=eq.2')).toEqual([{ title: 'Cléo from 5 to 7', directors: { last_name: 'Varda' } }]);
  });
});

describe('embedded filters, order and limits', () => {
  it('filters embedded rows without filtering the parents', async () => {
    expect(await body('/directors?select=id,films(id)&films.year=gt.1980&order=id')).toEqual([
      { id: 1, films: [] },
      { id: 2, films: [{ id: 5 }] },
      { id: 3, films: [{ id: 4 }] },
    ]);
  });

  it('filters the parents with !inner', async () => {
    expect(await body('/directors?select=id,films!inner(id)&films.year=gt.1980&order=id')).toEqual([
      { id: 2, films: [{ id: 5 }] },
      { id: 3, films: [{ id: 4 }] },
    ]);
    expect(await body('/films?select=id,directors!inner(last_name)&directors.last_name=eq.Kubrick&order=id')).toEqual([
      { id: 1, directors: { last_name: 'Kubrick' } },
      { id: 3, directors: { last_name: 'Kubrick' } },
    ]);
  });

  it('filters parents by whether an embedded resource matched (is.null / not.is.null)', async () => {
    expect(await body('/films?select=id,technical_specs(film_id)&technical_specs=is.null&order=id')).toEqual([
      { id: 2, technical_specs: null },
      { id: 4, technical_specs: null },
      { id: 5, technical_specs: null },
    ]);
    expect(await body('/films?select=id,technical_specs()&technical_specs=not.is.null&order=id')).toEqual([{ id: 1 }, { id: 3 }]);
  });

  it('orders and limits embedded resources', async () => {
    expect(await body('/directors?select=id,films(id)&id=eq.1&films.order=year.desc&films.limit=1')).toEqual([{ id: 1, films: [{ id: 3 }] }]);
    expect(await body('/directors?select=id,films(id)&id=eq.2&films.order=id&films.offset=1')).toEqual([{ id: 2, films: [{ id: 5 }] }]);
  });

  it('applies or/and trees to embedded resources', async () => {
    expect(await body('/directors?select=id,films(id)&id=eq.1&films.or=(year.lt.1970,language.is.null)')).toEqual([{ id: 1, films: [{ id: 1 }] }]);
  });

  it('filters on nested embed paths', async () => {
    expect(await body('/directors?select=id,films(id,roles(character))&id=eq.1&films.roles.character=like.Jack*&films.order=id')).toEqual([
      { id: 1, films: [{ id: 1, roles: [] }, { id: 3, roles: [{ character: 'Jack Torrance' }] }] },
    ]);
  });

  it('orders parents by a to-one embedded column', async () => {
    expect(await body('/films?select=id,directors(last_name)&order=directors(last_name).desc,id')).toEqual([
      { id: 2, directors: { last_name: 'Varda' } },
      { id: 5, directors: { last_name: 'Varda' } },
      { id: 1, directors: { last_name: 'Kubrick' } },
      { id: 3, directors: { last_name: 'Kubrick' } },
      { id: 4, directors: { last_name: 'Campion' } },
    ]);
  });

  it('embeds for filtering only with empty parentheses', async () => {
    expect(await body('/films?select=title,actors!inner()&actors.last_name=eq.Hunter')).toEqual([{ title: 'The Piano' }]);
  });
});

describe('spread', () => {
  it('merges the columns of a to-one resource into its parent', async () => {
    expect(await body('/films?select=title,...directors(director:last_name)&id=eq.2')).toEqual([{ title: 'Cléo from 5 to 7', director: 'Varda' }]);
  });

  it('spreads nested resources, embeds included', async () => {
    expect(await body('/roles?select=character,...films(title,...directors(last_name))&film_id=eq.4')).toEqual([
      { character: 'Ada McGrath', title: 'The Piano', last_name: 'Campion' },
    ]);
  });

  it('orders parents by a column of a spread resource, selected or not', async () => {
    expect(await body('/films?select=id,...directors(last_name)&order=directors(last_name).desc,id')).toEqual([
      { id: 2, last_name: 'Varda' },
      { id: 5, last_name: 'Varda' },
      { id: 1, last_name: 'Kubrick' },
      { id: 3, last_name: 'Kubrick' },
      { id: 4, last_name: 'Campion' },
    ]);
    // ordered by a column the spread does not show
    expect(await body('/films?select=id,...directors(first_name)&order=directors(last_name),id&limit=3')).toEqual([
      { id: 4, first_name: 'Jane' },
      { id: 1, first_name: 'Stanley' },
      { id: 3, first_name: 'Stanley' },
    ]);
  });

  it('refuses to spread a to-many resource (PGRST119)', async () => {
    const { status, body: error } = await getJson(fixture, '/directors?select=id,...films(title)');
    expect(status).toBe(400);
    expect(error).toMatchObject({ code: 'PGRST119' });
  });
});

describe('computed relationships', () => {
  it("embed a function of the parent's row by its name: to-many for SETOF, to-one for ROWS 1, with filters and order", async () => {
    await fixture.sql.query(`
      create function cast_of(films) returns setof roles language sql stable as $$ select * from roles r where r.film_id = $1.id $$;
      create function lead_role(films) returns setof roles rows 1 language sql stable as $$
        select * from roles r where r.film_id = $1.id order by r.character limit 1 $$;`);
    expect(await body('/films?select=id,cast_of(character)&id=in.(3,5)&order=id&cast_of.order=character.desc')).toEqual([
      { id: 3, cast_of: [{ character: 'Wendy Torrance' }, { character: 'Jack Torrance' }] },
      { id: 5, cast_of: [] },
    ]);
    expect(await body('/films?select=id,lead:lead_role(character)&id=in.(3,5)&order=id')).toEqual([
      { id: 3, lead: { character: 'Jack Torrance' } },
      { id: 5, lead: null },
    ]);
    expect(await body('/films?select=id,cast_of!inner(character)&cast_of.character=like.Wendy*')).toEqual([{ id: 3, cast_of: [{ character: 'Wendy Torrance' }] }]);
    // an FK relationship of the same tables is still there
    expect(await body('/films?select=id,roles(character)&id=eq.4')).toEqual([{ id: 4, roles: [{ character: 'Ada McGrath' }] }]);
  });
});

describe('embedding errors', () => {
  it('answers 400 PGRST200 for an unrelated resource, with a hint', async () => {
    const { status, body: error } = await getJson(fixture, '/films?select=*,actor(*)');
    expect(status).toBe(400);
    expect(error).toEqual({
      code: 'PGRST200',
      message: "Could not find a relationship between 'films' and 'actor' in the schema cache",
      details: `Searched for a foreign key relationship between 'films' and 'actor' in the schema '${fixture.lease.schema}', but no matches were found.`,
      hint: "Perhaps you meant 'actors' instead of 'actor'.",
    });
  });

  it('answers 300 PGRST201 for an ambiguous embedding, listing the candidates', async () => {
    const { status, body: error } = await getJson(fixture, '/shipments?select=*,addresses(*)');
    expect(status).toBe(300);
    expect(error).toMatchObject({
      code: 'PGRST201',
      message: "Could not embed because more than one relationship was found for 'shipments' and 'addresses'",
      hint: "Try changing 'addresses' to one of the following: 'addresses!shipments_destination_fkey', 'addresses!shipments_origin_fkey'. Find the desired relationship in the 'details' key.",
    });
    expect((error as { details: unknown[] }).details).toContainEqual({
      cardinality: 'many-to-one',
      embedding: 'shipments with addresses',
      relationship: 'shipments_origin_fkey using shipments(origin_id) and addresses(id)',
    });
  });

  it('answers 400 PGRST108 for a filter on a resource that is not embedded', async () => {
    const { status, body: error } = await getJson(fixture, '/films?select=id&roles.character=eq.x');
    expect(status).toBe(400);
    expect(error).toEqual({
      code: 'PGRST108',
      message: "'roles' is not an embedded resource in this request",
      details: null,
      hint: "Verify that 'roles' is included in the 'select' query parameter.",
    });
  });

  it('answers 400 PGRST118 for ordering by a to-many resource', async () => {
    const { body: error } = await getJson(fixture, '/directors?select=id,films(id)&order=films(id)');
    expect(error).toMatchObject({ code: 'PGRST118' });
  });

  it('answers 400 PGRST120 for an operator other than is.null on an embedded resource', async () => {
    const { body: error } = await getJson(fixture, '/films?select=id,directors(id)&directors=eq.1');
    expect(error).toMatchObject({ code: 'PGRST120' });
  });
});
