/**
 * The lease issue 14's fork goal is measured on: 20 tables of 50 rows each, with keys, an index on a
 * text column and a foreign key to the table before: 1,000 rows (bench:fork, bench:fork-phases,
 * bench:leases).
 */
export const TWENTY_TABLES_SQL = Array.from({ length: 20 }, (_, i) => `
  CREATE TABLE t${i} (id serial PRIMARY KEY, parent int ${i > 0 ? `REFERENCES t${i - 1}` : ''}, title text NOT NULL, at timestamptz DEFAULT now());
  CREATE INDEX ON t${i} (title);
  INSERT INTO t${i} (parent, title) SELECT ${i > 0 ? 'g' : 'NULL'}, 'row ' || g FROM generate_series(1, 50) g;`).join('\n');
