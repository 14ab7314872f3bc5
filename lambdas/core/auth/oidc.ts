import { createPublicKey, verify as verifySignature, constants, type KeyObject, type JsonWebKey } from 'node:crypto';
import { AuthenticationError, PermissionError } from '../errors.js';
import { isRole, ROLES, type Role } from './roles.js';

/**
 * OIDC bearer tokens (JWTs) from configured issuers, verified with node:crypto against the keys
 * the issuer publishes (its discovery document's `jwks_uri`). No library: the part of JOSE a
 * resource server needs is small, and the API function's bundle stays as it was.
 *
 * What a token must be: a JWS in compact form signed with RS256/384/512, PS256/384/512 or
 * ES256/384/512 (`none` and the HMAC algorithms are refused: with a public key as the HMAC secret
 * anyone could sign), by a key of its issuer's JWKS; `iss` one of the configured issuers, `aud`
 * one of that issuer's audiences, `exp` in the future and `nbf`/`iat` not in it, each within the
 * clock skew.
 *
 * Error messages name what is wrong with the token, never its content.
 */

/** One trusted issuer, bound to one tenant (`CORRAL_OIDC_ISSUERS`, parsed in core/config.ts). */
export interface OidcIssuer {
  /** The `iss` of its tokens, exactly; its discovery document is under `<issuer>/.well-known/openid-configuration`. */
  issuer: string;
  /** Accepted `aud` values: a token must carry at least one. */
  audiences: string[];
  /** The tenant its tokens act in. */
  tenant: string;
  /** The claim holding the person's groups (an array of strings, or one string). @default 'groups' */
  groupsClaim: string;
  /** Group -> role; a person with several mapped groups gets the highest of their roles. */
  roles: Record<string, Role>;
  /** The public client id `corral login` and the console use (device code, PKCE), or null. */
  clientId: string | null;
  /** Scopes a client asks for. @default ['openid', 'profile', 'offline_access'] */
  scopes: string[];
  /** Tolerated clock difference, seconds. @default 60 */
  clockSkewSeconds: number;
}

/** Who a verified token is. */
export interface OidcPrincipal {
  tenant: string;
  role: Role;
  issuer: string;
  subject: string;
}

/** Signature algorithms accepted, with the JWK key type and the parameters node:crypto needs. */
const ALGORITHMS: Record<string, { kty: 'RSA' | 'EC'; hash: string; pss?: boolean; crv?: string }> = {
  RS256: { kty: 'RSA', hash: 'sha256' },
  RS384: { kty: 'RSA', hash: 'sha384' },
  RS512: { kty: 'RSA', hash: 'sha512' },
  PS256: { kty: 'RSA', hash: 'sha256', pss: true },
  PS384: { kty: 'RSA', hash: 'sha384', pss: true },
  PS512: { kty: 'RSA', hash: 'sha512', pss: true },
  ES256: { kty: 'EC', hash: 'sha256', crv: 'P-256' },
  ES384: { kty: 'EC', hash: 'sha384', crv: 'P-384' },
  ES512: { kty: 'EC', hash: 'sha512', crv: 'P-521' },
};

/** Longest token looked at (a JWT with a long groups list is a few KB). */
export const MAX_TOKEN_CHARS = 16_384;
/** Largest discovery document or JWKS read. */
const MAX_DOCUMENT_BYTES = 256 * 1024;

/** Whether a bearer credential is shaped like a JWS (three base64url parts, a JSON header) rather than an API key. */
export function looksLikeJwt(token: string): boolean {
  return token.startsWith('eyJ') && /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/.test(token);
}

/** Whether `url` is https, or http on the loopback interface (a local issuer, tests). */
export function isAllowedIssuerUrl(url: string): boolean {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return false;
  }
  if (u.username || u.password || u.search || u.hash) return false;
  if (u.protocol === 'https:') return true;
  return u.protocol === 'http:' && ['127.0.0.1', 'localhost', '[::1]'].includes(u.hostname);
}

export interface OidcVerifierOptions {
  /** Clock, ms (tests). */
  now?: () => number;
  /** The least time between two fetches of one issuer's keys: a flood of unknown `kid`s fetches at most once per interval. @default 60_000 */
  minRefetchMs?: number;
  /** Keys older than this are fetched again at the next token. @default 3_600_000 */
  maxKeyAgeMs?: number;
  /** Timeout of each HTTP request to an issuer. @default 5_000 */
  fetchTimeoutMs?: number;
  fetch?: typeof fetch;
}

interface KeySet {
  keys: Array<{ kid?: string; alg?: string; use?: string; kty: string; crv?: string; key: KeyObject }>;
  fetchedAt: number;
}

/** Verifies bearer tokens of the configured issuers; keeps each issuer's keys in memory. */
export class OidcVerifier {
  private readonly byIssuer = new Map<string, OidcIssuer[]>();
  private readonly keySets = new Map<string, KeySet>();
  /** One fetch of an issuer's keys at a time. */
  private readonly inFlight = new Map<string, Promise<KeySet>>();
  /** When each issuer's keys were last asked for (even a failed fetch counts, so a down issuer is not hammered). */
  private readonly lastAttempt = new Map<string, number>();
  private readonly now: () => number;
  private readonly minRefetchMs: number;
  private readonly maxKeyAgeMs: number;
  private readonly fetchTimeoutMs: number;
  private readonly fetch: typeof fetch;

  constructor(
    readonly issuers: readonly OidcIssuer[],
    opts: OidcVerifierOptions = {},
  ) {
    for (const i of issuers) this.byIssuer.set(i.issuer, [...(this.byIssuer.get(i.issuer) ?? []), i]);
    this.now = opts.now ?? Date.now;
    this.minRefetchMs = opts.minRefetchMs ?? 60_000;
    this.maxKeyAgeMs = opts.maxKeyAgeMs ?? 3_600_000;
    this.fetchTimeoutMs = opts.fetchTimeoutMs ?? 5_000;
    this.fetch = opts.fetch ?? fetch;
  }

  /** The tenant, role and subject of a valid token; `AuthenticationError` otherwise. */
  async verify(token: string): Promise<OidcPrincipal> {
    if (token.length > MAX_TOKEN_CHARS || !looksLikeJwt(token)) throw new AuthenticationError('invalid bearer token: not a JWT');
    const [h, p, s] = token.split('.');
    const header = decodeJson(h);
    const payload = decodeJson(p);
    if (!header || !payload) throw new AuthenticationError('invalid bearer token: malformed JWT');
    if (header.crit !== undefined) throw new AuthenticationError('invalid bearer token: critical header parameters are not supported');
    const alg = typeof header.alg === 'string' ? header.alg : '';
    const spec = Object.hasOwn(ALGORITHMS, alg) ? ALGORITHMS[alg] : undefined;
    if (!spec) throw new AuthenticationError(`invalid bearer token: signature algorithm ${JSON.stringify(alg.slice(0, 16))} is not accepted (use RS*, PS* or ES*)`);
    const iss = typeof payload.iss === 'string' ? payload.iss : undefined;
    const candidates = iss === undefined ? undefined : this.byIssuer.get(iss);
    if (!candidates) throw new AuthenticationError('invalid bearer token: its issuer is not trusted by this Corral');
    const auds = typeof payload.aud === 'string' ? [payload.aud] : Array.isArray(payload.aud) ? payload.aud.filter((a): a is string => typeof a === 'string') : [];
    const config = candidates.find((c) => c.audiences.some((a) => auds.includes(a)));
    if (!config) throw new AuthenticationError('invalid bearer token: its audience is not accepted');

    const kid = typeof header.kid === 'string' ? header.kid : undefined;
    const key = await this.keyFor(config.issuer, kid, alg, spec);
    const data = Buffer.from(`${h}.${p}`);
    const signature = Buffer.from(s, 'base64url');
    let ok = false;
    try {
      ok = verifySignature(
        spec.hash,
        data,
        spec.kty === 'EC'
          ? { key, dsaEncoding: 'ieee-p1363' }
          : spec.pss
            ? { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: constants.RSA_PSS_SALTLEN_DIGEST }
            : key,
        signature,
      );
    } catch {
      ok = false;
    }
    if (!ok) throw new AuthenticationError('invalid bearer token: bad signature');

    const now = this.now() / 1000;
    const skew = config.clockSkewSeconds;
    if (typeof payload.exp !== 'number') throw new AuthenticationError('invalid bearer token: no exp');
    if (payload.exp <= now - skew) throw new AuthenticationError('invalid bearer token: expired');
    if (payload.nbf !== undefined && (typeof payload.nbf !== 'number' || payload.nbf > now + skew)) throw new AuthenticationError('invalid bearer token: not valid yet (nbf)');
    if (payload.iat !== undefined && (typeof payload.iat !== 'number' || payload.iat > now + skew)) throw new AuthenticationError('invalid bearer token: issued in the future (iat)');
    const subject = typeof payload.sub === 'string' ? payload.sub : '';
    if (!subject) throw new AuthenticationError('invalid bearer token: no sub');

    const role = roleOf(config, payload[config.groupsClaim]);
    return { tenant: config.tenant, role, issuer: config.issuer, subject };
  }

  /** The key `kid` names (or the only key of the right type when there is no `kid`), fetching the issuer's keys when needed. */
  private async keyFor(issuer: string, kid: string | undefined, alg: string, spec: (typeof ALGORITHMS)[string]): Promise<KeyObject> {
    const pick = (set: KeySet | undefined) => {
      const usable = (set?.keys ?? []).filter(
        (k) => k.kty === spec.kty && (!k.alg || k.alg === alg) && (!k.use || k.use === 'sig') && (!spec.crv || k.crv === spec.crv),
      );
      if (kid !== undefined) return usable.find((k) => k.kid === kid)?.key;
      return usable.length === 1 ? usable[0].key : undefined;
    };
    let set = this.keySets.get(issuer);
    const stale = !set || this.now() - set.fetchedAt >= this.maxKeyAgeMs;
    let key = stale ? undefined : pick(set);
    if (!key) {
      // Fetch again only if the last attempt is old enough: unknown kids cannot make Corral hammer the issuer.
      const last = this.lastAttempt.get(issuer);
      if (last === undefined || this.now() - last >= this.minRefetchMs || this.inFlight.has(issuer)) {
        try {
          set = await this.refresh(issuer);
        } catch {
          // A failed fetch keeps the keys we had (an issuer's outage does not sign everyone out).
          if (!set) throw new AuthenticationError('invalid bearer token: the keys of its issuer could not be fetched');
        }
      }
      key = pick(set);
    }
    if (!key) throw new AuthenticationError('invalid bearer token: no key of its issuer matches it');
    return key;
  }

  private refresh(issuer: string): Promise<KeySet> {
    const running = this.inFlight.get(issuer);
    if (running) return running;
    this.lastAttempt.set(issuer, this.now());
    const p = this.fetchKeys(issuer).then(
      (set) => {
        this.keySets.set(issuer, set);
        this.inFlight.delete(issuer);
        return set;
      },
      (err: unknown) => {
        this.inFlight.delete(issuer);
        throw err;
      },
    );
    this.inFlight.set(issuer, p);
    return p;
  }

  private async fetchKeys(issuer: string): Promise<KeySet> {
    const discovery = await fetchDiscovery(issuer, { fetch: this.fetch, timeoutMs: this.fetchTimeoutMs });
    const jwksUri = discovery.jwks_uri;
    if (typeof jwksUri !== 'string' || !isAllowedIssuerUrl(jwksUri)) throw new Error('discovery document has no usable jwks_uri');
    const jwks = await getJson(jwksUri, { fetch: this.fetch, timeoutMs: this.fetchTimeoutMs });
    const keys: KeySet['keys'] = [];
    for (const jwk of Array.isArray(jwks.keys) ? (jwks.keys as Array<Record<string, unknown>>) : []) {
      if (!jwk || typeof jwk !== 'object' || (jwk.kty !== 'RSA' && jwk.kty !== 'EC')) continue;
      if ('d' in jwk) continue; // never use a published private key
      try {
        const key = createPublicKey({ key: jwk as JsonWebKey, format: 'jwk' });
        keys.push({
          kid: typeof jwk.kid === 'string' ? jwk.kid : undefined,
          alg: typeof jwk.alg === 'string' ? jwk.alg : undefined,
          use: typeof jwk.use === 'string' ? jwk.use : undefined,
          kty: jwk.kty,
          crv: typeof jwk.crv === 'string' ? jwk.crv : undefined,
          key,
        });
      } catch {
        // A key node cannot read is skipped; the others still serve.
      }
      if (keys.length >= 100) break;
    }
    return { keys, fetchedAt: this.now() };
  }
}

/** The highest role any of the person's groups maps to; a valid token whose groups map to none is refused. */
function roleOf(config: OidcIssuer, claim: unknown): Role {
  const groups = typeof claim === 'string' ? [claim] : Array.isArray(claim) ? claim.filter((g): g is string => typeof g === 'string') : [];
  let best = -1;
  for (const g of groups) {
    const role = Object.hasOwn(config.roles, g) ? config.roles[g] : undefined;
    if (isRole(role)) best = Math.max(best, ROLES.indexOf(role));
  }
  if (best < 0) throw new PermissionError(`none of your groups (claim ${config.groupsClaim}) has a Corral role`);
  return ROLES[best];
}

function decodeJson(part: string): Record<string, unknown> | undefined {
  try {
    const v: unknown = JSON.parse(Buffer.from(part, 'base64url').toString('utf8'));
    return v && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/** `GET` a JSON object, bounded in time and size; no redirects (the URL is the issuer's own). */
export async function getJson(url: string, opts: { fetch?: typeof fetch; timeoutMs?: number } = {}): Promise<Record<string, unknown>> {
  const res = await (opts.fetch ?? fetch)(url, { redirect: 'error', signal: AbortSignal.timeout(opts.timeoutMs ?? 5_000), headers: { accept: 'application/json' } });
  if (!res.ok) throw new Error(`GET ${url}: HTTP ${res.status}`);
  const text = await res.text();
  if (text.length > MAX_DOCUMENT_BYTES) throw new Error(`GET ${url}: response too large`);
  const v: unknown = JSON.parse(text);
  if (!v || typeof v !== 'object' || Array.isArray(v)) throw new Error(`GET ${url}: not a JSON object`);
  return v as Record<string, unknown>;
}

/** The issuer's discovery document, checked to be its own (`issuer` equal to the one asked for). */
export async function fetchDiscovery(issuer: string, opts: { fetch?: typeof fetch; timeoutMs?: number } = {}): Promise<Record<string, unknown>> {
  const doc = await getJson(`${issuer.replace(/\/$/, '')}/.well-known/openid-configuration`, opts);
  if (doc.issuer !== issuer) throw new Error('discovery document names another issuer');
  return doc;
}
