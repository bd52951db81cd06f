/**
 * A lease's REST API settings: PostgREST's configuration, per lease (pglease.leases.api_settings),
 * settable at create and later (PATCH /v1/leases/:id/settings). Keys are PostgREST's names in
 * snake case (`jwt-aud` is `jwt_aud`); an absent key means PostgREST's default. One schema drives
 * the validation, the TypeScript type and the OpenAPI document.
 */
import { Type, type Static } from '@sinclair/typebox';
import { parseClaimPath } from '../auth/claim-path.js';

/** A function name as db-pre-request takes it: `name` or `schema.name`, each a plain identifier (taken as written). */
const PRE_REQUEST_PATTERN = '^[A-Za-z_][A-Za-z0-9_$]{0,62}(\\.[A-Za-z_][A-Za-z0-9_$]{0,62})?$';

const settingSchemas = {
  jwt_aud: Type.String({ minLength: 1, maxLength: 1000, description: 'jwt-aud: a JWT with an `aud` claim must name this audience' }),
  jwt_role_claim_key: Type.String({
    minLength: 2,
    maxLength: 200,
    description: 'jwt-role-claim-key: where the role is in the claims (`.role` by default), like `.app_metadata.role` or `."https://example.com/role"`',
  }),
  db_max_rows: Type.Integer({ minimum: 1, maximum: 1_000_000, description: 'db-max-rows: a read of a table or view, or a function\'s result, returns at most this many rows (as if limit were at most this)' }),
  db_aggregates_enabled: Type.Boolean({ description: 'db-aggregates-enabled: count(), sum(), avg(), min() and max() in `select` of a table, view or function result, and of embedded resources, grouped by the other columns' }),
  db_plan_enabled: Type.Boolean({
    description: 'db-plan-enabled: `Accept: application/vnd.pgrst.plan+json` (or `+text`; `options=analyze|verbose|settings|buffers|wal`) on a read answers its EXPLAIN',
  }),
  openapi_mode: Type.Union([Type.Literal('follow-privileges'), Type.Literal('ignore-privileges'), Type.Literal('disabled')], {
    description: 'openapi-mode: the root document shows what the caller\'s role may do (follow-privileges, the default), everything (ignore-privileges), or nothing (disabled: 404 PGRST126)',
  }),
  db_pre_request: Type.String({
    minLength: 1,
    maxLength: 127,
    pattern: PRE_REQUEST_PATTERN,
    description:
      'db-pre-request: a function of the lease (`check_request`, or schema-qualified) called with no arguments before every request to a table, view, function or the root document, as the request\'s role, after the request.* settings are set, in the request\'s transaction; a RAISE in it is the answer (`PT403` is 403, `PGRST` chooses it all)',
  }),
  jwt_jwks: Type.Union(
    [
      Type.String({ minLength: 8, maxLength: 2000, description: 'An https URL serving a JWKS, fetched and cached' }),
      Type.Object({ keys: Type.Array(Type.Object({ kty: Type.String() }, { additionalProperties: true }), { maxItems: 100 }) }, { additionalProperties: true, description: 'A JWKS document' }),
    ],
    { description: 'Public keys (RS256, ES256, ...) JWTs may be signed with, besides the lease secret (HS256)' },
  ),
};

export const ApiSettingsSchema = Type.Object(
  {
    jwt_aud: Type.Optional(settingSchemas.jwt_aud),
    jwt_role_claim_key: Type.Optional(settingSchemas.jwt_role_claim_key),
    jwt_jwks: Type.Optional(settingSchemas.jwt_jwks),
    db_max_rows: Type.Optional(settingSchemas.db_max_rows),
    db_aggregates_enabled: Type.Optional(settingSchemas.db_aggregates_enabled),
    db_plan_enabled: Type.Optional(settingSchemas.db_plan_enabled),
    openapi_mode: Type.Optional(settingSchemas.openapi_mode),
    db_pre_request: Type.Optional(settingSchemas.db_pre_request),
  },
  { additionalProperties: false },
);

/** A change of settings: a setting given null goes back to its default. */
export const ApiSettingsPatchSchema = Type.Object(
  {
    jwt_aud: Type.Optional(Type.Union([settingSchemas.jwt_aud, Type.Null()])),
    jwt_role_claim_key: Type.Optional(Type.Union([settingSchemas.jwt_role_claim_key, Type.Null()])),
    jwt_jwks: Type.Optional(Type.Union([settingSchemas.jwt_jwks, Type.Null()])),
    db_max_rows: Type.Optional(Type.Union([settingSchemas.db_max_rows, Type.Null()])),
    db_aggregates_enabled: Type.Optional(Type.Union([settingSchemas.db_aggregates_enabled, Type.Null()])),
    db_plan_enabled: Type.Optional(Type.Union([settingSchemas.db_plan_enabled, Type.Null()])),
    openapi_mode: Type.Optional(Type.Union([settingSchemas.openapi_mode, Type.Null()])),
    db_pre_request: Type.Optional(Type.Union([settingSchemas.db_pre_request, Type.Null()])),
  },
  { additionalProperties: false },
);
export type ApiSettingsPatch = Static<typeof ApiSettingsPatchSchema>;

export type ApiSettings = Static<typeof ApiSettingsSchema>;

/** What the schema cannot say about a setting: undefined when all are valid, else the field and why. */
export function apiSettingsProblem(settings: Partial<Record<keyof ApiSettings, unknown>>): { field: keyof ApiSettings; message: string } | undefined {
  if (typeof settings.jwt_role_claim_key === 'string') {
    const parsed = parseClaimPath(settings.jwt_role_claim_key);
    if (!Array.isArray(parsed)) return { field: 'jwt_role_claim_key', message: `jwt_role_claim_key is not a claim path: ${parsed.error}` };
  }
  if (typeof settings.jwt_jwks === 'string' && !(/^https?:\/\//i.test(settings.jwt_jwks) && URL.canParse(settings.jwt_jwks))) {
    return { field: 'jwt_jwks', message: 'jwt_jwks must be a JWKS document or an https URL' };
  }
  return undefined;
}
