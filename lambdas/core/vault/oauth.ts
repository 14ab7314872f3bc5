import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { ErrorCode, McpError as ProtocolError } from '@modelcontextprotocol/sdk/types.js';
import type { Logger } from '../logger.js';
import { redactSecrets } from './secret-store.js';
import { REFRESHED_EXPIRY_FIELD, type Credential, type SecretFields } from './types.js';

/**
 * `mcp_oauth` credentials in the credential proxy: the OAuth 2.0 refresh-token grant (RFC 6749
 * §6) against the credential's `token_endpoint`, the bookkeeping of a refreshed token's expiry,
 * and the probe behind `mcp_oauth_validate`. Only the proxy runs this code; nothing here returns,
 * logs or throws a token: HTTP bodies that leave this module are scrubbed first.
 *
 * Where the expiry lives: the credential record's `auth.expires_at` is what the API client last
 * set. When the proxy refreshes, it keeps the new token's expiry beside the tokens in the secret
 * (`access_token_expires_at`, an RFC 3339 time or `unknown`), written in the same `put` as the
 * token it belongs to, so a token and its expiry can never be mixed up. The API removes that field
 * whenever a client sets a new `access_token` or `expires_at`, and the record's value counts again.
 */

export { REFRESHED_EXPIRY_FIELD };

type OAuthCredential = Credential & { auth: Extract<Credential['auth'], { type: 'mcp_oauth' }> };

export function isOAuth(c: Credential): c is OAuthCredential {
  return c.auth.type === 'mcp_oauth';
}

/** An HTTP answer as `mcp_oauth_validate` reports it (`BetaManagedAgentsRefreshHTTPResponse`). */
export interface CapturedHttpResponse {
  status_code: number;
  content_type: string;
  body: string;
  body_truncated: boolean;
}

/** The outcome of one refresh-token exchange (the `status` values of `BetaManagedAgentsRefreshObject`). */
export type RefreshOutcome =
  | { status: 'succeeded'; access_token: string; refresh_token?: string; expires_at: string | null }
  | { status: 'failed'; http_response: CapturedHttpResponse; error_code?: string }
  | { status: 'connect_error'; reason: string }
  | { status: 'no_refresh_token' };

const BODY_LIMIT = 2048;
/** JSON keys and form fields whose values are never shown, whatever server sent them. */
const SENSITIVE_KEY = /token|secret|password|assertion|code|authorization|cookie/i;

/**
 * An HTTP body fit for a response: every known secret and every value of a sensitive-looking key
 * (`access_token`, `refresh_token`, `client_secret`, ... in JSON or form encoding) replaced, then
 * cut at 2 KiB. Scrubbing comes before cutting, so half a secret never survives at the cut.
 */
export function scrubBody(text: string, secrets: Iterable<string>): { body: string; body_truncated: boolean } {
  let out = redactSecrets(text, secrets);
  try {
    const parsed = JSON.parse(out) as unknown;
    const walk = (v: unknown, key?: string): unknown => {
      if (key !== undefined && SENSITIVE_KEY.test(key) && key !== 'error' && (typeof v === 'string' || typeof v === 'number')) return '[redacted]';
      if (Array.isArray(v)) return v.map((x) => walk(x));
      if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, walk(x, k)]));
      return v;
    };
    out = JSON.stringify(walk(parsed));
  } catch {
    out = out.replace(/\b([A-Za-z_]*(?:token|secret|password|assertion|code)[A-Za-z_]*)=([^&\s"]+)/gi, '$1=[redacted]');
  }
  const chars = [...out];
  return chars.length > BODY_LIMIT ? { body: chars.slice(0, BODY_LIMIT).join(''), body_truncated: true } : { body: out, body_truncated: false };
}

/** The secret values a message about this credential must never contain. */
function knownSecrets(secret: SecretFields | undefined, extra: Array<string | undefined> = []): string[] {
  return [secret?.access_token, secret?.refresh_token, secret?.client_secret, ...extra].filter((s): s is string => Boolean(s));
}

async function capture(res: Response, secrets: string[]): Promise<CapturedHttpResponse> {
  const text = await res.text().catch(() => '');
  return { status_code: res.status, content_type: res.headers.get('content-type') ?? '', ...scrubBody(text, secrets) };
}

/** RFC 6749 appendix B: client credentials in HTTP basic auth are form-encoded first (§2.3.1). */
const formEncode = (s: string) => encodeURIComponent(s).replace(/%20/g, '+');

/**
 * One refresh-token grant (RFC 6749 §6): a form POST to the token endpoint with the refresh token,
 * the client authenticated as the credential says (`none`: `client_id` in the body;
 * `client_secret_basic`: HTTP basic; `client_secret_post`: `client_id` and `client_secret` in the
 * body), `scope` and `resource` (RFC 8707) when set. Redirects are not followed. A 200 must carry
 * an `access_token` of `token_type` Bearer (or none given); `expires_in` sets the new expiry,
 * its absence makes it unknown.
 */
export async function refreshAccessToken(
  credential: OAuthCredential,
  secret: SecretFields | undefined,
  opts: { fetch?: typeof fetch; now?: () => number; timeoutMs?: number } = {},
): Promise<RefreshOutcome> {
  const settings = credential.auth.refresh;
  const refreshToken = secret?.refresh_token;
  if (!settings || !refreshToken) return { status: 'no_refresh_token' };
  const form = new URLSearchParams({ grant_type: 'refresh_token', refresh_token: refreshToken });
  const headers: Record<string, string> = { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' };
  const auth = settings.token_endpoint_auth.type;
  if (auth === 'client_secret_basic') {
    const basic = `${formEncode(settings.client_id)}:${formEncode(secret?.client_secret ?? '')}`;
    headers.authorization = `Basic ${Buffer.from(basic, 'utf8').toString('base64')}`;
  } else {
    form.set('client_id', settings.client_id);
    if (auth === 'client_secret_post') form.set('client_secret', secret?.client_secret ?? '');
  }
  if (settings.scope) form.set('scope', settings.scope);
  if (settings.resource) form.set('resource', settings.resource);

  let res: Response;
  try {
    res = await (opts.fetch ?? fetch)(settings.token_endpoint, {
      method: 'POST',
      headers,
      body: form.toString(),
      redirect: 'manual',
      signal: AbortSignal.timeout(opts.timeoutMs ?? 15_000),
    });
  } catch (err) {
    const name = (err as Error)?.name;
    return { status: 'connect_error', reason: name === 'TimeoutError' || name === 'AbortError' ? 'timed out' : 'unreachable' };
  }
  const secrets = knownSecrets(secret);
  if (res.status !== 200) {
    const http_response = await capture(res, secrets);
    return { status: 'failed', http_response, ...errorCode(http_response.body) };
  }
  const text = await res.text().catch(() => '');
  let body: Record<string, unknown> | undefined;
  try {
    const parsed = JSON.parse(text) as unknown;
    if (parsed && typeof parsed === 'object' && !Array.isArray(parsed)) body = parsed as Record<string, unknown>;
  } catch {
    // not JSON: reported below as a failure
  }
  const accessToken = body?.access_token;
  const tokenType = body?.token_type;
  const bearer = tokenType === undefined || (typeof tokenType === 'string' && tokenType.toLowerCase() === 'bearer');
  if (typeof accessToken !== 'string' || !accessToken || !bearer) {
    const extra = typeof accessToken === 'string' ? [accessToken] : [];
    return {
      status: 'failed',
      http_response: { status_code: res.status, content_type: res.headers.get('content-type') ?? '', ...scrubBody(text, [...secrets, ...extra]) },
      error_code: !bearer ? 'unsupported_token_type' : 'no_access_token',
    };
  }
  const expiresIn = body?.expires_in;
  const seconds = typeof expiresIn === 'number' ? expiresIn : typeof expiresIn === 'string' && /^\d+$/.test(expiresIn) ? Number(expiresIn) : undefined;
  const now = (opts.now ?? Date.now)();
  return {
    status: 'succeeded',
    access_token: accessToken,
    ...(typeof body?.refresh_token === 'string' && body.refresh_token ? { refresh_token: body.refresh_token } : {}),
    expires_at: seconds !== undefined && seconds > 0 ? new Date(now + seconds * 1000).toISOString() : null,
  };
}

/** The OAuth error code of an error answer (`invalid_grant`, ...), if it is one (RFC 6749 §5.2). */
function errorCode(body: string): { error_code?: string } {
  try {
    const e = (JSON.parse(body) as { error?: unknown }).error;
    return typeof e === 'string' && /^[a-z_]{1,64}$/.test(e) ? { error_code: e } : {};
  } catch {
    return {};
  }
}

/** When the stored access token stops being usable (ms since the epoch), or null when unknown. */
export function expiresAt(credential: OAuthCredential, secret: SecretFields | undefined): number | null {
  const refreshed = secret?.[REFRESHED_EXPIRY_FIELD];
  const iso = refreshed !== undefined ? (refreshed === 'unknown' ? null : refreshed) : credential.auth.expires_at;
  if (!iso) return null;
  const t = Date.parse(iso);
  return Number.isNaN(t) ? null : t;
}

/** Where the proxy reads and writes secrets (its cache in front of the secret store). */
export interface SecretAccess {
  read(ref: string, fresh: boolean): Promise<SecretFields | undefined>;
  write(ref: string, value: SecretFields): Promise<void>;
}

export interface OAuthTokensOptions {
  secrets: SecretAccess;
  fetch?: typeof fetch;
  now?: () => number;
  logger?: Logger;
  /** Refresh this long before the stored expiry. @default 60000 */
  marginMs?: number;
  /** The token endpoint's time to answer. @default 15000 */
  timeoutMs?: number;
}

/** Why an access token could not be had; `message` names no secret and is fit for the model. */
export class OAuthRefreshError extends Error {
  constructor(
    message: string,
    readonly outcome: RefreshOutcome,
  ) {
    super(message);
    this.name = 'OAuthRefreshError';
  }
}

/**
 * Access tokens of `mcp_oauth` credentials, refreshed when due.
 *
 * Concurrency. Within one proxy process, refreshes of one credential are single-flight: callers
 * that need one at the same time share it. Proxies in different processes (Lambda instances on
 * AWS) cannot lock each other out (Secrets Manager has no conditional write, and the proxy's role
 * may only read the state table), so each refresh is bracketed by fresh reads of the secret:
 * - before it, a token someone else stored meanwhile (different from the one found stale, and
 *   not due) is used instead of refreshing again;
 * - after a refused exchange, a refresh token someone else rotated meanwhile means that other
 *   refresh won (a server that rotates refresh tokens refuses the old one), and its stored token
 *   is used.
 * What remains is last-writer-wins between two exchanges that both succeeded, which a server only
 * allows when it does not rotate or accepts the old refresh token for a grace period; then both
 * stored pairs were issued by it and either works. Tokens and their expiry go in one `put`, so a
 * stored pair is never half of one exchange and half of another.
 */
export class OAuthTokens {
  private readonly inflight = new Map<string, Promise<SecretFields>>();
  private readonly now: () => number;
  private readonly marginMs: number;

  constructor(private readonly opts: OAuthTokensOptions) {
    this.now = opts.now ?? Date.now;
    this.marginMs = opts.marginMs ?? 60_000;
  }

  /** Due for a refresh: it expires within the margin (an unknown expiry is never due). */
  due(credential: OAuthCredential, secret: SecretFields | undefined): boolean {
    const at = expiresAt(credential, secret);
    return at !== null && at - this.now() <= this.marginMs;
  }

  /**
   * The access token to call the MCP server with: the stored one, refreshed first when it is due
   * and the credential can be refreshed (`tried`). If that refresh fails, a token that has not
   * expired yet is still used; an expired one is an `OAuthRefreshError`.
   */
  async current(credential: OAuthCredential, ref: string): Promise<{ token: string | undefined; refreshed: boolean; tried: boolean }> {
    const secret = await this.opts.secrets.read(ref, false);
    if (!secret?.access_token || !this.due(credential, secret) || !credential.auth.refresh || !secret.refresh_token) {
      return { token: secret?.access_token, refreshed: false, tried: false };
    }
    try {
      const next = await this.refresh(credential, ref, secret.access_token, 'expiry');
      return { token: next.access_token, refreshed: true, tried: true };
    } catch (err) {
      const at = expiresAt(credential, secret);
      if (err instanceof OAuthRefreshError && at !== null && at > this.now()) return { token: secret.access_token, refreshed: false, tried: true };
      throw err;
    }
  }

  /**
   * A new access token in place of `rejected` (refused by the MCP server): refreshed, or the one
   * another caller stored meanwhile. Throws `OAuthRefreshError` when there is none.
   */
  async replace(credential: OAuthCredential, ref: string, rejected: string | undefined): Promise<string> {
    return (await this.refresh(credential, ref, rejected, 'rejected')).access_token;
  }

  /** Refresh (single-flight per secret) and store; returns the secret as stored. */
  refresh(credential: OAuthCredential, ref: string, stale: string | undefined, reason: 'expiry' | 'rejected' | 'validate'): Promise<SecretFields> {
    const running = this.inflight.get(ref);
    if (running) return running;
    const p = this.exchange(credential, ref, stale, reason).finally(() => this.inflight.delete(ref));
    this.inflight.set(ref, p);
    return p;
  }

  /** As `refresh`, also answering how the exchange went (for `mcp_oauth_validate`). */
  async refreshReporting(credential: OAuthCredential, ref: string, stale: string | undefined): Promise<{ refresh: ValidationRefresh; secret?: SecretFields }> {
    try {
      const secret = await this.refresh(credential, ref, stale, 'validate');
      return { refresh: { status: 'succeeded', http_response: null }, secret };
    } catch (err) {
      if (!(err instanceof OAuthRefreshError) || err.outcome.status === 'succeeded') throw err;
      return { refresh: { status: err.outcome.status, http_response: err.outcome.status === 'failed' ? err.outcome.http_response : null } };
    }
  }

  private async exchange(credential: OAuthCredential, ref: string, stale: string | undefined, reason: string): Promise<SecretFields> {
    const log = this.opts.logger;
    const before = await this.opts.secrets.read(ref, true);
    if (before?.access_token && before.access_token !== stale && !this.due(credential, before)) {
      log?.info('oauth token already refreshed elsewhere', { credential: credential.id, reason });
      return before;
    }
    const outcome = await refreshAccessToken(credential, before, { fetch: this.opts.fetch, now: this.now, timeoutMs: this.opts.timeoutMs });
    if (outcome.status !== 'succeeded') {
      if (outcome.status === 'failed') {
        // A refresh token rotated by a concurrent refresh elsewhere: that refresh's token stands.
        const after = await this.opts.secrets.read(ref, true);
        if (after?.access_token && after.refresh_token !== before?.refresh_token && after.access_token !== stale) {
          log?.info('oauth token refreshed concurrently elsewhere', { credential: credential.id, reason });
          return after;
        }
      }
      log?.warn('oauth token refresh failed', {
        credential: credential.id,
        reason,
        status: outcome.status,
        ...(outcome.status === 'failed' ? { http_status: outcome.http_response.status_code, error_code: outcome.error_code ?? null } : {}),
      });
      throw new OAuthRefreshError(describeFailure(credential, outcome), outcome);
    }
    const next: SecretFields = {
      ...before,
      access_token: outcome.access_token,
      ...(outcome.refresh_token ? { refresh_token: outcome.refresh_token } : {}),
      [REFRESHED_EXPIRY_FIELD]: outcome.expires_at ?? 'unknown',
    };
    await this.opts.secrets.write(ref, next);
    log?.info('oauth token refreshed', {
      credential: credential.id,
      reason,
      refresh_token_rotated: Boolean(outcome.refresh_token && outcome.refresh_token !== before?.refresh_token),
      expires_at: outcome.expires_at,
    });
    return next;
  }
}

function describeFailure(credential: OAuthCredential, o: Exclude<RefreshOutcome, { status: 'succeeded' }>): string {
  const what = `the access token of credential ${credential.id} could not be refreshed`;
  switch (o.status) {
    case 'no_refresh_token':
      return `${what}: it has no refresh token`;
    case 'connect_error':
      return `${what}: the token endpoint could not be reached (${o.reason})`;
    case 'failed':
      return `${what}: the token endpoint answered HTTP ${o.http_response.status_code}${o.error_code ? ` (${o.error_code})` : ''}`;
  }
}

// --- mcp_oauth_validate -------------------------------------------------------------------------

/** The failing step of a probe (`BetaManagedAgentsMCPProbe`). */
export interface McpProbe {
  method: string;
  http_response: CapturedHttpResponse | null;
}

export type ProbeResult = { ok: true } | { ok: false; probe: McpProbe; verdict: 'unauthorized' | 'rejected' | 'unknown' };

/**
 * Connect to the MCP server with `token` and list its tools, as a session would: `initialize`,
 * then `tools/list` (each given `timeoutMs`, default 5 s). The first HTTP error answer to a JSON-RPC request is captured (scrubbed);
 * 401 is `unauthorized`, 403 `rejected`, anything else that kept the probe from finishing
 * (another status, a network error, a timeout) `unknown`. A JSON-RPC error after the server
 * accepted the token still shows the token works.
 */
export async function probeMcp(url: string, token: string, opts: { fetch?: typeof fetch; timeoutMs?: number; secrets?: string[] } = {}): Promise<ProbeResult> {
  const f = opts.fetch ?? fetch;
  const secrets = [token, ...(opts.secrets ?? [])];
  let method = 'initialize';
  let failure: McpProbe | undefined;
  const capturing: typeof fetch = async (input, init) => {
    let rpc: string | undefined;
    if (init?.method === 'POST' && typeof init.body === 'string') {
      try {
        const m = (JSON.parse(init.body) as { method?: unknown }).method;
        if (typeof m === 'string') rpc = m;
      } catch {
        // not JSON-RPC
      }
    }
    if (rpc && !rpc.startsWith('notifications/')) method = rpc;
    const res = await f(input, init);
    if (rpc && !res.ok && !failure) failure = { method: rpc, http_response: await capture(res.clone(), secrets) };
    return res;
  };
  const transport = new StreamableHTTPClientTransport(new URL(url), {
    requestInit: { headers: { Authorization: `Bearer ${token}` } },
    fetch: capturing,
    reconnectionOptions: { maxRetries: 0, initialReconnectionDelay: 1000, maxReconnectionDelay: 1000, reconnectionDelayGrowFactor: 1 },
  });
  const client = new Client({ name: 'corral-credential-proxy', version: '0.1.0' });
  client.onerror = () => {};
  const timeout = opts.timeoutMs ?? 5_000;
  try {
    await client.connect(transport, { timeout });
    if (client.getServerCapabilities()?.tools) await client.listTools(undefined, { timeout });
    return { ok: true };
  } catch (err) {
    if (failure?.http_response) {
      const code = failure.http_response.status_code;
      return { ok: false, probe: failure, verdict: code === 401 ? 'unauthorized' : code === 403 ? 'rejected' : 'unknown' };
    }
    // The server answered a JSON-RPC error: the transport, token included, was accepted.
    if (err instanceof ProtocolError && err.code !== ErrorCode.ConnectionClosed && err.code !== ErrorCode.RequestTimeout) return { ok: true };
    return { ok: false, probe: { method, http_response: null }, verdict: 'unknown' };
  } finally {
    await client.close().catch(() => {});
  }
}

/** `BetaManagedAgentsCredentialValidation`. */
export interface CredentialValidation {
  type: 'vault_credential_validation';
  credential_id: string;
  vault_id: string;
  status: 'valid' | 'invalid' | 'unknown';
  has_refresh_token: boolean;
  mcp_probe: McpProbe | null;
  refresh: ValidationRefresh | null;
  validated_at: string;
}

/** `BetaManagedAgentsRefreshObject`. */
export interface ValidationRefresh {
  status: RefreshOutcome['status'];
  http_response: CapturedHttpResponse | null;
}

/**
 * Validate an `mcp_oauth` credential as the API describes it: probe its MCP server with the
 * stored access token; on a 401, exchange the refresh token (storing what it yields, as any
 * refresh does) and probe again with the new token.
 * - `valid`: the (last) probe succeeded;
 * - `invalid`: the server refused the token (401 without a working refresh, or 403), or no access
 *   token is stored;
 * - `unknown`: the probe or the token endpoint could not be reached or answered otherwise, or a
 *   refresh succeeded with too little of the budget left to test the new token.
 * Probe requests time out after 5 s and the token endpoint after 15 s, so the whole stays under
 * API Gateway's 29 s.
 * `mcp_probe` is the failing step of the last probe; `refresh` the exchange, when one was tried.
 */
export async function validateMcpOAuth(
  credential: OAuthCredential,
  ref: string,
  deps: {
    tokens: OAuthTokens;
    secrets: Pick<SecretAccess, 'read'>;
    fetch?: typeof fetch;
    now?: () => number;
    /** The whole validation's budget; a second probe needs 4 s of it left. @default 26000 (API Gateway stops at 29 s) */
    budgetMs?: number;
  },
): Promise<CredentialValidation> {
  const started = Date.now();
  const budget = deps.budgetMs ?? 26_000;
  const secret = await deps.secrets.read(ref, true);
  const base = {
    type: 'vault_credential_validation' as const,
    credential_id: credential.id,
    vault_id: credential.vault_id,
    has_refresh_token: Boolean(credential.auth.refresh && secret?.refresh_token),
    validated_at: new Date((deps.now ?? Date.now)()).toISOString(),
  };
  if (!secret?.access_token) return { ...base, status: 'invalid', mcp_probe: null, refresh: null };
  const probe = (token: string, held: SecretFields) =>
    probeMcp(credential.auth.mcp_server_url, token, { fetch: deps.fetch, secrets: knownSecrets(held) });
  const first = await probe(secret.access_token, secret);
  if (first.ok) return { ...base, status: 'valid', mcp_probe: null, refresh: null };
  if (first.verdict !== 'unauthorized') {
    return { ...base, status: first.verdict === 'rejected' ? 'invalid' : 'unknown', mcp_probe: first.probe, refresh: null };
  }
  const { refresh, secret: stored } = await deps.tokens.refreshReporting(credential, ref, secret.access_token);
  if (!stored?.access_token) {
    return { ...base, status: refresh.status === 'connect_error' ? 'unknown' : 'invalid', mcp_probe: first.probe, refresh };
  }
  const has_refresh_token = Boolean(stored.refresh_token);
  // Too little time left to test the new token: the API's own word for this is `unknown`.
  if (Date.now() - started > budget - 4_000) return { ...base, has_refresh_token, status: 'unknown', mcp_probe: null, refresh };
  const second = await probe(stored.access_token, stored);
  if (second.ok) return { ...base, has_refresh_token, status: 'valid', mcp_probe: null, refresh };
  return { ...base, has_refresh_token, status: second.verdict === 'unknown' ? 'unknown' : 'invalid', mcp_probe: second.probe, refresh };
}
