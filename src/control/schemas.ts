/**
 * JSON schemas of the control API. Each drives request validation, the TypeScript type of the
 * handler's input, and the OpenAPI document at /openapi.json, from this one declaration.
 */
import { Type, type Static } from '@sinclair/typebox';
import { DURATION_PATTERN } from '../duration.js';
import { controlErrorSchema } from './errors.js';
import { ApiSettingsSchema } from '../leases/api-settings.js';

export const LeaseStateSchema = Type.Union(
  [Type.Literal('provisioning'), Type.Literal('active'), Type.Literal('released'), Type.Literal('expired'), Type.Literal('failed')],
  {
    description:
      'active → released | expired; failed when its objects were dropped outside pglease. provisioning: a lease of a warm pool not yet handed out, which the API never shows',
  },
);

export const LeaseKindSchema = Type.Union([Type.Literal('schema'), Type.Literal('database')], {
  description:
    'schema: a schema of its own in a shared database (the default, PGLEASE_DEFAULT_KIND; the cheapest). ' +
    'database: a database of its own, lease_<hex>, owned by the lease: its public schema, any schemas and types, the trusted extensions (citext, pgcrypto, uuid-ossp, ...)',
});

const Ttl = Type.Union([Type.Integer({ minimum: 1 }), Type.String({ pattern: DURATION_PATTERN }), Type.Null()], {
  description:
    'How long until the lease expires: seconds (600), or a duration ("90s", "10m", "2h", "1d", "1h30m"); default 30m, at most PGLEASE_MAX_TTL (1d by default). ' +
    'null: never expires (admin token only).',
});

/** Text without control characters (C0, DEL, C1): a label ends up in terminals and logs. */
export const NO_CONTROL_CHARACTERS = '^[^\\u0000-\\u001f\\u007f-\\u009f]*$';

export const CreateLeaseBody = Type.Object(
  {
    ttl: Type.Optional(Ttl),
    name: Type.Optional(Type.String({ minLength: 1, maxLength: 200, pattern: NO_CONTROL_CHARACTERS, description: 'A label for the lease (no control characters)' })),
    template: Type.Optional(
      Type.String({ minLength: 1, maxLength: 63, description: 'A template (POST /v1/templates) whose SQL seeds the lease in the same transaction' }),
    ),
    plan: Type.Optional(
      Type.String({ minLength: 1, maxLength: 63, description: 'A plan (GET /v1/plans): the admin may choose any, a lease token one whose token_may_choose is set' }),
    ),
    settings: Type.Optional(ApiSettingsSchema),
    kind: Type.Optional(LeaseKindSchema),
  },
  { additionalProperties: false },
);
export type CreateLeaseBody = Static<typeof CreateLeaseBody>;

export const RenewLeaseBody = Type.Object({ ttl: Ttl }, { additionalProperties: false });
export type RenewLeaseBody = Static<typeof RenewLeaseBody>;

export const ResetCredentialsBody = Type.Object(
  {
    cut_sessions: Type.Optional(
      Type.Boolean({ description: "true: end the login role's open sessions too (default false: they keep working; a password is checked at login only)" }),
    ),
  },
  { additionalProperties: false },
);
export type ResetCredentialsBody = Static<typeof ResetCredentialsBody>;

export const LeaseParams = Type.Object({ id: Type.String({ description: 'Lease id (uuid)' }) });
export type LeaseParams = Static<typeof LeaseParams>;

export const CreateLeaseQuery = Type.Object(
  { format: Type.Optional(Type.Union([Type.Literal('json'), Type.Literal('url')], { description: 'url: answer with the connection URL only' })) },
  { additionalProperties: false },
);
export type CreateLeaseQuery = Static<typeof CreateLeaseQuery>;

export const ListLeasesQuery = Type.Object(
  {
    limit: Type.Optional(Type.String({ pattern: '^[0-9]+$', description: 'Page size, 1 to 1000 (default 100)' })),
    cursor: Type.Optional(Type.String({ description: 'The `next` value of the previous page' })),
    state: Type.Optional(LeaseStateSchema),
  },
  { additionalProperties: false },
);
export type ListLeasesQuery = Static<typeof ListLeasesQuery>;

const Timestamp = Type.String({ format: 'date-time' });

export const LeaseSchema = Type.Object({
  id: Type.String({ format: 'uuid' }),
  name: Type.Union([Type.String(), Type.Null()]),
  url: Type.String({ description: 'postgresql:// URL; carries the password only in the response that created the lease' }),
  token: Type.Optional(Type.String({ description: 'The lease token; returned once, when the lease is created' })),
  jwt_secret: Type.Optional(
    Type.String({ description: 'The HMAC secret (HS256/384/512) the JWTs of the lease\'s users are signed with; returned once, when the lease is created (POST /v1/leases/:id/jwt-secret makes a new one)' }),
  ),
  kind: LeaseKindSchema,
  schema: Type.String({ description: 'The schema the URL lands in: the lease\'s own (a schema lease), or public (a database lease, which may make others)' }),
  role: Type.String(),
  anon_role: Type.String({ description: 'NOLOGIN role used for REST requests without a token' }),
  database: Type.String({ description: 'The database the URL names: the shared lease database, or the lease\'s own (a database lease)' }),
  host: Type.String(),
  port: Type.Integer(),
  rest_url: Type.String(),
  created_at: Timestamp,
  expires_at: Type.Union([Timestamp, Type.Null()]),
  ended_at: Type.Union([Timestamp, Type.Null()]),
  state: LeaseStateSchema,
  plan: Type.String({ description: 'The plan whose limits the lease lives within (GET /v1/plans)' }),
  roles: Type.Array(Type.Object({ name: Type.String(), role: Type.String() }), {
    description: 'Roles the lease declared for its JWTs (POST /v1/leases/:id/roles): a JWT with `"role": name` runs as `role`',
  }),
  settings: ApiSettingsSchema,
  connection_limit: Type.Union([Type.Integer(), Type.Null()], {
    description:
      'Sessions the lease\'s role may open at once: PGLEASE_LEASE_CONNECTIONS, or less when the client\'s other live leases ' +
      'hold most of PGLEASE_CLIENT_CONNECTIONS; null once the lease has ended',
  }),
  usage: Type.Optional(
    Type.Object(
      {
        status: Type.Union([Type.Literal('available'), Type.Literal('uncertain'), Type.Literal('over_quota')]),
        size_bytes: Type.Union([Type.Integer(), Type.Null()]),
        size_limit_bytes: Type.Integer(),
        rows: Type.Union([Type.Integer(), Type.Null()]),
        rows_limit: Type.Union([Type.Integer(), Type.Null()]),
        connections: Type.Union([Type.Integer(), Type.Null()]),
        observed_at: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
      },
      { description: 'The lease against its plan, from its latest observation (GET /v1/leases/:id; GET /v1/leases/:id/info has more). Null figures: not observed yet' },
    ),
  ),
});
export type LeaseJson = Static<typeof LeaseSchema>;

export const LeaseListSchema = Type.Object({
  items: Type.Array(LeaseSchema),
  next: Type.Union([Type.String(), Type.Null()]),
});

export const ErrorSchema = Type.Unsafe<{ code: string; message: string; field?: string }>(controlErrorSchema);

export const DeclareRoleBody = Type.Object(
  { name: Type.String({ minLength: 1, maxLength: 40, description: 'The role as JWTs name it: lowercase letters, digits and _, starting with a letter; not anon or auth' }) },
  { additionalProperties: false },
);
export type DeclareRoleBody = Static<typeof DeclareRoleBody>;

export const DeclaredRoleSchema = Type.Object({
  name: Type.String(),
  role: Type.String({ description: 'The Postgres role: GRANT to it and name it in policies' }),
});

export const JwtSecretSchema = Type.Object({ jwt_secret: Type.String() });

export const MintJwtBody = Type.Object(
  {
    claims: Type.Record(Type.String(), Type.Unknown(), { description: 'The claims, e.g. {"role": "authenticated", "sub": "alice"}' }),
    expires_in: Type.Optional(Type.Union([Type.Integer({ minimum: 1, maximum: 10 * 365 * 86_400 }), Type.Null()], { description: 'Seconds until exp (3600); null: no exp' })),
  },
  { additionalProperties: false },
);
export type MintJwtBody = Static<typeof MintJwtBody>;

export const MintedJwtSchema = Type.Object({ token: Type.String({ description: 'A JWT signed (HS256) with the lease\'s secret' }) });

export const ForkLeaseBody = Type.Object(
  {
    ttl: Type.Optional(Ttl),
    name: Type.Optional(Type.String({ maxLength: 200, description: 'A label for the fork (default: none)' })),
  },
  { additionalProperties: false },
);
export type ForkLeaseBody = Static<typeof ForkLeaseBody>;

export const ForkedLeaseSchema = Type.Composite([
  LeaseSchema,
  Type.Object({
    forked_from: Type.String({ format: 'uuid', description: 'The lease this one is a copy of' }),
    source_sessions_ended: Type.Integer({
      description: 'Sessions of the source that were ended for the copy (a database cannot be copied with sessions on it); they may reconnect at once',
    }),
    copied_from_snapshot: Type.Union([Type.String(), Type.Null()], {
      description:
        "The source's snapshot whose contents the fork got, the source having run no transaction since that snapshot or a restore from it: a fork or a copy made in advance (milliseconds instead of a copy of the live database), or a copy of the snapshot made after the source was reopened; null for a copy of the live database",
    }),
  }),
]);
