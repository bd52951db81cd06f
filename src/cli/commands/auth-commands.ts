/**
 * pglease jwt | role | settings: what a lease's REST API needs to serve the users of an app:
 * JWTs for them, the roles those JWTs name, and the lease's PostgREST settings.
 */
import { Command } from 'commander';
import type { CliContext } from '../context.js';
import { examples, parseDuration, UsageError } from '../format.js';
import { println } from '../io.js';
import { withSpinner } from '../spinner.js';

interface SettingsOptions {
  jwtAud?: string;
  jwtRoleClaimKey?: string;
  jwtJwks?: string;
  dbMaxRows?: string;
  dbAggregatesEnabled?: string;
  dbPlanEnabled?: string;
  dbPreRequest?: string;
  openapiMode?: string;
}

/** `on`/`off` (or true/false, yes/no) as a boolean setting. */
function onOff(text: string, option: string): boolean {
  const value = text.toLowerCase();
  if (['on', 'true', 'yes'].includes(value)) return true;
  if (['off', 'false', 'no'].includes(value)) return false;
  throw new UsageError(`${option} takes on or off, got "${text}"`);
}

/**
 * The PATCH body of `pglease settings`: each option given, in the API's names and types; "" sends
 * null (the default again). The server judges the values (a cap out of range, an unknown mode).
 */
function settingsChange(options: SettingsOptions): Record<string, string | number | boolean | null> {
  const change: Record<string, string | number | boolean | null> = {};
  const given: [string, string | undefined, (text: string) => string | number | boolean][] = [
    ['jwt_aud', options.jwtAud, (text) => text],
    ['jwt_role_claim_key', options.jwtRoleClaimKey, (text) => text],
    ['jwt_jwks', options.jwtJwks, (text) => text],
    ['db_max_rows', options.dbMaxRows, (text) => {
      if (!/^\d+$/.test(text)) throw new UsageError(`--db-max-rows takes a whole number, got "${text}"`);
      return Number(text);
    }],
    ['db_aggregates_enabled', options.dbAggregatesEnabled, (text) => onOff(text, '--db-aggregates-enabled')],
    ['db_plan_enabled', options.dbPlanEnabled, (text) => onOff(text, '--db-plan-enabled')],
    ['db_pre_request', options.dbPreRequest, (text) => text],
    ['openapi_mode', options.openapiMode, (text) => text],
  ];
  for (const [key, value, parse] of given) if (value !== undefined) change[key] = value === '' ? null : parse(value);
  return change;
}

/** `key=value` pairs as claims: values that parse as JSON are JSON (numbers, true, objects), others text. */
function parseClaims(pairs: string[]): Record<string, unknown> {
  const claims: Record<string, unknown> = {};
  for (const pair of pairs) {
    const equals = pair.indexOf('=');
    if (equals <= 0) throw new UsageError(`"${pair}" is not a claim: use name=value, e.g. sub=alice or app='{"plan":"pro"}'`);
    const raw = pair.slice(equals + 1);
    let value: unknown = raw;
    try {
      value = JSON.parse(raw);
    } catch {
      // plain text
    }
    claims[pair.slice(0, equals)] = value;
  }
  return claims;
}

export function authCommands(context: CliContext): Command[] {
  const { io } = context;

  const jwt = new Command('jwt')
    .description("Mint a JWT for one of a lease's users, signed with the lease's secret: send it as Authorization: Bearer to its rest_url")
    .argument('<id>', 'lease id, or a unique prefix of one this CLI created')
    .argument('[claims...]', 'more claims as name=value (JSON values are parsed): sub=alice email=a@example.com')
    .option('--role <name>', 'the role claim: a role declared with `pglease role add` (none: the anonymous role)')
    .option('--exp <duration>', 'expires after: 30m, 1h, 7d; never (no exp claim)', '1h')
    .addHelpText(
      'after',
      examples([
        'pglease role add 3f2c9a1e authenticated',
        'curl -H "Authorization: Bearer $(pglease jwt 3f2c9a1e --role authenticated sub=alice)" "$REST_URL/todos"',
      ]),
    )
    .action(async (idOrPrefix: string, pairs: string[], options: { role?: string; exp: string }, command: Command) => {
      const claims = parseClaims(pairs);
      if (options.role !== undefined) claims.role = options.role;
      const expiresIn = parseDuration(options.exp);
      const { id, client } = await context.leaseAccess(command, idOrPrefix);
      const { token } = await client.mintJwt(id, claims, expiresIn);
      println(io.stdout, token);
    });

  const role = new Command('role').description("Roles a lease's JWTs may name");
  role
    .command('add')
    .description('Declare a role: the NOLOGIN role <lease role>_<name>, to GRANT to and write row-level security policies for')
    .argument('<id>', 'lease id, or a unique prefix of one this CLI created')
    .argument('<name>', 'the role as JWTs name it: lowercase letters, digits and _')
    .option('--json', 'print {"name", "role"} as JSON')
    .addHelpText('after', examples(['pglease role add 3f2c9a1e authenticated']))
    .action(async (idOrPrefix: string, name: string, options: { json?: boolean }, command: Command) => {
      const { id, client } = await context.leaseAccess(command, idOrPrefix);
      const declared = await withSpinner(io, 'Declaring…', () => client.declareRole(id, name));
      if (options.json) return println(io.stdout, JSON.stringify(declared, null, 2));
      println(io.stdout, `${context.out.green('✔')} JWTs with "role": "${declared.name}" run as ${context.out.bold(declared.role)}`);
    });

  const settings = new Command('settings')
    .description("Show or change a lease's REST API settings (PostgREST's jwt-aud, jwt-role-claim-key, db-max-rows, db-aggregates-enabled, db-plan-enabled, db-pre-request, openapi-mode, and a JWKS)")
    .argument('<id>', 'lease id, or a unique prefix of one this CLI created')
    .option('--jwt-aud <audience>', 'JWTs with an aud claim must name this audience ("" removes it)')
    .option('--jwt-role-claim-key <path>', 'where the role is in the claims, e.g. .app_metadata.role ("" for the default .role)')
    .option('--jwt-jwks <url>', 'an https URL serving the public keys (RS256, ES256, ...) JWTs may be signed with ("" removes it)')
    .option('--db-max-rows <n>', 'the most rows a read of a table, view or function returns ("" for no cap)')
    .option('--db-aggregates-enabled <on|off>', 'count(), sum(), avg(), min(), max() in select ("" for the default, off)')
    .option('--db-plan-enabled <on|off>', 'Accept: application/vnd.pgrst.plan answers the EXPLAIN of a read ("" for the default, off)')
    .option('--db-pre-request <function>', 'a function of the lease called before every REST request, as its role ("" removes it)')
    .option('--openapi-mode <mode>', 'follow-privileges, ignore-privileges or disabled ("" for the default, follow-privileges)')
    .addHelpText('after', examples(['pglease settings 3f2c9a1e', 'pglease settings 3f2c9a1e --jwt-aud my-app --jwt-jwks https://example.com/.well-known/jwks.json', 'pglease settings 3f2c9a1e --db-max-rows 1000 --db-aggregates-enabled on']))
    .action(async (idOrPrefix: string, options: SettingsOptions, command: Command) => {
      const change = settingsChange(options);
      const { id, client } = await context.leaseAccess(command, idOrPrefix);
      const lease = Object.keys(change).length > 0 ? await client.updateSettings(id, change) : await client.getLease(id);
      println(io.stdout, JSON.stringify({ settings: lease.settings, roles: lease.roles }, null, 2));
    });

  return [jwt, role, settings];
}
