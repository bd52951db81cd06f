/**
 * PostgREST's `jwt-role-claim-key`: the path of the claim that names the role, like `.role`
 * (the default), `."https://example.com/role"`, `.app_metadata.roles[0]`. Keys are `.name`
 * (letters, digits, `_`, `-`) or `."any text"`; `[n]` indexes an array. A path is parsed once,
 * when the lease's setting is saved and when its verifier is built.
 */

export type ClaimPathStep = { kind: 'key'; key: string } | { kind: 'index'; index: number };

export const DEFAULT_ROLE_CLAIM_KEY = '.role';

/** The steps of a claim path, or an explanation of why it is not one. */
export function parseClaimPath(path: string): ClaimPathStep[] | { error: string } {
  const steps: ClaimPathStep[] = [];
  let at = 0;
  while (at < path.length) {
    if (path.startsWith('."', at)) {
      const end = path.indexOf('"', at + 2);
      if (end === -1) return { error: `unterminated quoted key at column ${at + 1}` };
      steps.push({ kind: 'key', key: path.slice(at + 2, end) });
      at = end + 1;
    } else if (path[at] === '.') {
      const match = /^[A-Za-z0-9_$-]+/.exec(path.slice(at + 1));
      if (!match) return { error: `expected a key after '.' at column ${at + 1}` };
      steps.push({ kind: 'key', key: match[0] });
      at += 1 + match[0].length;
    } else if (path[at] === '[') {
      const match = /^\[(\d{1,6})\]/.exec(path.slice(at));
      if (!match) return { error: `expected [n] at column ${at + 1}` };
      steps.push({ kind: 'index', index: Number(match[1]) });
      at += match[0].length;
    } else {
      return { error: `unexpected '${path[at]}' at column ${at + 1}: a path is made of .key, ."key" and [n]` };
    }
  }
  if (steps.length === 0) return { error: 'a claim path names at least one key, like .role' };
  return steps;
}

/** The value at `steps` in `claims`, undefined when the path leads nowhere. */
export function claimAt(claims: unknown, steps: readonly ClaimPathStep[]): unknown {
  let value = claims;
  for (const step of steps) {
    if (step.kind === 'key') {
      if (value === null || typeof value !== 'object' || Array.isArray(value) || !Object.hasOwn(value, step.key)) return undefined;
      value = (value as Record<string, unknown>)[step.key];
    } else {
      if (!Array.isArray(value) || step.index >= value.length) return undefined;
      value = value[step.index];
    }
  }
  return value;
}
