/**
 * JWT authentication of a lease's users, as PostgREST 12 does it (its `references/auth.rst` and
 * `jwt-*` settings): `Authorization: Bearer <jwt>` signed with the lease's secret (HS256/384/512,
 * the secret's UTF-8 bytes as the key) or with a key of the lease's JWKS (RS*, PS*, ES*, EdDSA; a
 * JWKS document, or a URL fetched and cached), `exp` and `nbf` checked with 30 s of clock skew and
 * `iat` not more than 30 s ahead, `aud` checked only when the lease sets `jwt_aud` and the token has
 * one. Every failure is PostgREST 12's 401 PGRST301 with its message; a lease with neither secret nor
 * JWKS answers 500 PGRST300. Signatures are `jose`'s: no hand-written crypto here.
 *
 * Verified tokens are cached per lease (PostgREST's JWT cache) until they expire, at most 1,000 per
 * lease, so a request with a known token costs a Map lookup: a JWT read is served like a
 * lease-token read. A verifier is kept per lease for as long as the lease's secret and settings
 * stay the same; a rotation or a settings change makes a new one (an empty cache), so a token
 * signed with the old secret stops working as soon as this process hears of the change.
 *
 * A JWKS URL is fetched by this process, with a 5 s timeout, at most once per cooldown (5 s) when a
 * token names a key it lacks (a key rotation), and again when 10 minutes old. Only https URLs are
 * fetched unless the operator allows http (PGLEASE_JWKS_ALLOW_HTTP: tests, a local identity
 * provider): the request goes from pglease's network, which a lease holder does not otherwise reach.
 */
import { createLocalJWKSet, createRemoteJWKSet, errors as joseErrors, jwtVerify, type CryptoKey, type JSONWebKeySet, type JWSHeaderParameters, type JWTPayload } from 'jose';
import { claimAt, DEFAULT_ROLE_CLAIM_KEY, parseClaimPath, type ClaimPathStep } from './claim-path.js';

/** PostgREST's allowed clock skew for exp, nbf and iat, in seconds. */
export const CLOCK_SKEW_SECONDS = 30;

const HMAC_ALGORITHMS = ['HS256', 'HS384', 'HS512'];
const PUBLIC_KEY_ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA', 'Ed25519'];

/** A JWKS document or the URL it is served at. */
export type JwksSource = JSONWebKeySet | string;

/** What a lease's JWTs are checked against. */
export interface LeaseJwtSettings {
  /** The lease's HMAC secret (pglease.leases.jwt_secret); null for a lease made before it had one. */
  secret: string | null;
  jwks?: JwksSource;
  /** jwt-aud: when set, a token with an `aud` must name it. */
  audience?: string;
  /** jwt-role-claim-key, `.role` by default. */
  roleClaimKey?: string;
}

/** A token this process verified, with what a request needs of it. */
export interface VerifiedJwt {
  claims: JWTPayload;
  /** The claims as JSON, as request.jwt.claims publishes them. */
  claimsJson: string;
  /** The role the claims name (at the role claim key), undefined when they name none. */
  role: string | undefined;
  /** When the cached verification stops counting (ms since the epoch). */
  validUntil: number;
}

/** PostgREST's JWT errors: PGRST300 (the server has no key) and PGRST301 (the token is refused). */
export class JwtError extends Error {
  constructor(
    readonly code: 'PGRST300' | 'PGRST301',
    message: string,
  ) {
    super(message);
    this.name = 'JwtError';
  }
}

export interface JwtVerifiersOptions {
  /** Fetch JWKS from http:// URLs too (PGLEASE_JWKS_ALLOW_HTTP). */
  allowHttpJwks?: boolean;
  /** Least time between two fetches of a JWKS URL for an unknown key, ms (5 s). */
  jwksCooldownMs?: number;
  /** Verified tokens cached per lease (1,000). */
  maxCachedTokens?: number;
}

/** The lease's JWT verifiers, one per lease, kept while its settings stay the same. */
export class JwtVerifiers {
  private readonly verifiers = new Map<string, LeaseJwtVerifier>();

  constructor(private readonly options: JwtVerifiersOptions = {}) {}

  /** The verifier of lease `leaseId` with these settings (the one in use when they are unchanged). */
  of(leaseId: string, settings: LeaseJwtSettings): LeaseJwtVerifier {
    const fingerprint = JSON.stringify([settings.secret, settings.jwks ?? null, settings.audience ?? null, settings.roleClaimKey ?? null]);
    const known = this.verifiers.get(leaseId);
    if (known && known.fingerprint === fingerprint) return known;
    const verifier = new LeaseJwtVerifier(fingerprint, settings, this.options);
    this.verifiers.delete(leaseId);
    this.verifiers.set(leaseId, verifier);
    // leases come and go: the oldest verifiers make room (each holds at most its token cache)
    while (this.verifiers.size > 10_000) this.verifiers.delete(this.verifiers.keys().next().value as string);
    return verifier;
  }

  forget(leaseId: string): void {
    this.verifiers.delete(leaseId);
  }
}

type KeyResolver = (header: JWSHeaderParameters) => Promise<Uint8Array | CryptoKey> | Uint8Array | CryptoKey;

export class LeaseJwtVerifier {
  private readonly verified = new Map<string, VerifiedJwt>();
  private readonly resolveKey: KeyResolver | undefined;
  private readonly roleClaimPath: ClaimPathStep[];
  private readonly maxCachedTokens: number;

  constructor(
    readonly fingerprint: string,
    private readonly settings: LeaseJwtSettings,
    options: JwtVerifiersOptions,
  ) {
    this.maxCachedTokens = options.maxCachedTokens ?? 1000;
    const parsed = parseClaimPath(settings.roleClaimKey ?? DEFAULT_ROLE_CLAIM_KEY);
    // settings are validated when saved; a path that no longer parses falls back to the default
    this.roleClaimPath = Array.isArray(parsed) ? parsed : (parseClaimPath(DEFAULT_ROLE_CLAIM_KEY) as ClaimPathStep[]);
    const hmacKey = settings.secret === null ? undefined : new TextEncoder().encode(settings.secret);
    const jwks = settings.jwks === undefined ? undefined : jwksResolver(settings.jwks, options);
    if (hmacKey === undefined && jwks === undefined) return;
    this.resolveKey = (header) => {
      const algorithm = header.alg ?? '';
      if (HMAC_ALGORITHMS.includes(algorithm)) {
        if (hmacKey === undefined) throw new JwtError('PGRST301', 'JWSError JWSNoValidSignatures');
        return hmacKey;
      }
      if (jwks === undefined) throw new JwtError('PGRST301', 'JWSError JWSNoValidSignatures');
      return jwks(header);
    };
  }

  /** The verification of `token` if this process made it and it still counts (no waiting). */
  cached(token: string): VerifiedJwt | undefined {
    const known = this.verified.get(token);
    if (known === undefined) return undefined;
    if (known.validUntil > Date.now()) return known;
    this.verified.delete(token);
    return undefined;
  }

  /** Verifies `token`, or throws the JwtError PostgREST 12 would answer. */
  async verify(token: string): Promise<VerifiedJwt> {
    const known = this.cached(token);
    if (known) return known;
    if (this.resolveKey === undefined) throw new JwtError('PGRST300', 'Server lacks JWT secret');
    const parts = token.split('.').length;
    if (parts !== 3) throw new JwtError('PGRST301', `JWSError (CompactDecodeError Invalid number of parts: Expected 3 parts; got ${parts})`);
    let claims: JWTPayload;
    try {
      ({ payload: claims } = await jwtVerify(token, this.resolveKey, {
        algorithms: [...HMAC_ALGORITHMS, ...PUBLIC_KEY_ALGORITHMS],
        clockTolerance: CLOCK_SKEW_SECONDS,
      }));
    } catch (error) {
      throw postgrestJwtError(error);
    }
    const nowSeconds = Date.now() / 1000;
    if (typeof claims.iat === 'number' && claims.iat > nowSeconds + CLOCK_SKEW_SECONDS) throw new JwtError('PGRST301', 'JWTIssuedAtFuture');
    const audience = this.settings.audience;
    if (audience !== undefined && claims.aud !== undefined) {
      const audiences = Array.isArray(claims.aud) ? claims.aud : [claims.aud];
      if (!audiences.includes(audience)) throw new JwtError('PGRST301', 'JWTNotInAudience');
    }
    const role = claimAt(claims, this.roleClaimPath);
    const verified: VerifiedJwt = {
      claims,
      claimsJson: JSON.stringify(claims),
      role: typeof role === 'string' ? role : undefined,
      // until it expires (no exp: an hour, so that a long-lived token is re-verified now and then)
      validUntil: typeof claims.exp === 'number' ? (claims.exp + CLOCK_SKEW_SECONDS) * 1000 : Date.now() + 3_600_000,
    };
    this.verified.set(token, verified);
    while (this.verified.size > this.maxCachedTokens) this.verified.delete(this.verified.keys().next().value as string);
    return verified;
  }
}

function jwksResolver(source: JwksSource, options: JwtVerifiersOptions): KeyResolver {
  if (typeof source !== 'string') {
    const local = createLocalJWKSet(source);
    return (header) => local(header);
  }
  const url = URL.canParse(source) ? new URL(source) : undefined;
  if (url === undefined) {
    return () => {
      throw new JwtError('PGRST301', 'JWSError JWSNoValidSignatures: the lease\'s JWKS URL is not a URL');
    };
  }
  if (url.protocol !== 'https:' && !(url.protocol === 'http:' && options.allowHttpJwks)) {
    return () => {
      throw new JwtError('PGRST301', `JWSError JWSNoValidSignatures: the JWKS URL must be https (${url.protocol} is not fetched)`);
    };
  }
  const remote = createRemoteJWKSet(url, { timeoutDuration: 5_000, cooldownDuration: options.jwksCooldownMs ?? 5_000, cacheMaxAge: 600_000 });
  return (header) => remote(header);
}

/** jose's error as PostgREST 12 words it (jose-haskell's JWTError, shown). */
function postgrestJwtError(error: unknown): JwtError {
  if (error instanceof JwtError) return error;
  if (error instanceof joseErrors.JWTExpired) return new JwtError('PGRST301', 'JWT expired');
  if (error instanceof joseErrors.JWTClaimValidationFailed) {
    if (error.claim === 'nbf') return new JwtError('PGRST301', 'JWTNotYetValid');
    if (error.claim === 'iat') return new JwtError('PGRST301', 'JWTIssuedAtFuture');
    return new JwtError('PGRST301', `JWTClaimsSetDecodeError "${error.message}"`);
  }
  if (error instanceof joseErrors.JWSSignatureVerificationFailed) return new JwtError('PGRST301', 'JWSError JWSInvalidSignature');
  if (error instanceof joseErrors.JWKSNoMatchingKey || error instanceof joseErrors.JOSEAlgNotAllowed || error instanceof joseErrors.JWKSMultipleMatchingKeys) {
    return new JwtError('PGRST301', 'JWSError JWSNoValidSignatures');
  }
  if (error instanceof joseErrors.JWKSTimeout || error instanceof joseErrors.JWKSInvalid) {
    return new JwtError('PGRST301', `JWSError JWSNoValidSignatures: the lease's JWKS could not be loaded (${error.message})`);
  }
  if (error instanceof joseErrors.JOSEError) return new JwtError('PGRST301', `JWSError (CompactDecodeError ${error.message})`);
  // a JWKS URL that does not answer, or answers something else than JSON
  if (error instanceof Error) return new JwtError('PGRST301', `JWSError JWSNoValidSignatures: the lease's JWKS could not be loaded (${error.message})`);
  return new JwtError('PGRST301', 'JWSError JWSInvalidSignature');
}
