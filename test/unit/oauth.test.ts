import { describe, expect, it } from 'vitest';
import { expiresAt, OAuthRefreshError, OAuthTokens, refreshAccessToken, scrubBody, validateMcpOAuth } from '../../lambdas/core/vault/oauth.js';
import { REFRESHED_EXPIRY_FIELD, type Credential, type SecretFields } from '../../lambdas/core/vault/types.js';

/**
 * `mcp_oauth` credentials in the credential proxy: the refresh-token grant as the token endpoint
 * sees it, the expiry bookkeeping, single-flight refreshes, and validation's verdicts. The token
 * endpoint and the MCP server are stand-ins given as `fetch`; no answer or error may carry a
 * secret.
 */
type OAuth = Credential & { auth: Extract<Credential['auth'], { type: 'mcp_oauth' }> };
const NOW = Date.parse('2026-05-01T00:00:00Z');

function credential(tea: 'none' | 'client_secret_basic' | 'client_secret_post' = 'client_secret_basic', expires_at: string | null = null, refresh = true): OAuth {
  return {
    id: 'vcrd_1',
    type: 'vault_credential',
    vault_id: 'vlt_1',
    display_name: null,
    metadata: {},
    created_at: '',
    updated_at: '',
    archived_at: null,
    auth: {
      type: 'mcp_oauth',
      mcp_server_url: 'https://mcp.example.com/mcp',
      expires_at,
      refresh: refresh ? { client_id: 'client id', token_endpoint: 'https://auth.example.com/token', token_endpoint_auth: { type: tea }, resource: 'https://mcp.example.com', scope: 'read write' } : null,
    },
  } as OAuth;
}
const SECRET: SecretFields = { access_token: 'at_old_secret', refresh_token: 'rt_secret', client_secret: 'cs secret' };

/** A token endpoint that records requests and answers from a queue. */
function endpoint(...answers: Array<Response | Error>) {
  const seen: Array<{ url: string; headers: Record<string, string>; body: URLSearchParams }> = [];
  const f = (async (url: string, init: RequestInit) => {
    seen.push({ url, headers: Object.fromEntries(new Headers(init.headers).entries()), body: new URLSearchParams(String(init.body)) });
    const a = answers.shift();
    if (!a) throw new Error('no answer left');
    if (a instanceof Error) throw a;
    return a;
  }) as typeof fetch;
  return { f, seen };
}
const json = (status: number, body: unknown) => new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json' } });

describe('the refresh-token grant', () => {
  it('authenticates the client as the credential says, and sends scope and resource', async () => {
    const basic = endpoint(json(200, { access_token: 'at_new', token_type: 'Bearer', expires_in: 3600, refresh_token: 'rt_new' }));
    expect(await refreshAccessToken(credential('client_secret_basic'), SECRET, { fetch: basic.f, now: () => NOW })).toEqual({
      status: 'succeeded',
      access_token: 'at_new',
      refresh_token: 'rt_new',
      expires_at: '2026-05-01T01:00:00.000Z',
    });
    const [req] = basic.seen;
    expect(req.url).toBe('https://auth.example.com/token');
    expect(req.headers.authorization).toBe(`Basic ${Buffer.from('client+id:cs+secret').toString('base64')}`);
    expect(Object.fromEntries(req.body)).toEqual({ grant_type: 'refresh_token', refresh_token: 'rt_secret', scope: 'read write', resource: 'https://mcp.example.com' });

    const post = endpoint(json(200, { access_token: 'at_new' }));
    expect(await refreshAccessToken(credential('client_secret_post'), SECRET, { fetch: post.f })).toMatchObject({ status: 'succeeded', expires_at: null });
    expect(post.seen[0].headers.authorization).toBeUndefined();
    expect(post.seen[0].body.get('client_id')).toBe('client id');
    expect(post.seen[0].body.get('client_secret')).toBe('cs secret');

    const none = endpoint(json(200, { access_token: 'at_new', expires_in: '60' }));
    expect(await refreshAccessToken(credential('none'), SECRET, { fetch: none.f, now: () => NOW })).toMatchObject({ expires_at: '2026-05-01T00:01:00.000Z' });
    expect(none.seen[0].body.get('client_secret')).toBeNull();
  });

  it('reports failures with the answer scrubbed of every secret', async () => {
    const refused = endpoint(json(400, { error: 'invalid_grant', error_description: 'refresh token rt_secret is revoked', refresh_token: 'rt_secret' }));
    const out = await refreshAccessToken(credential(), SECRET, { fetch: refused.f });
    expect(out).toMatchObject({ status: 'failed', error_code: 'invalid_grant', http_response: { status_code: 400, content_type: 'application/json', body_truncated: false } });
    expect(JSON.stringify(out)).not.toContain('rt_secret');
    expect(await refreshAccessToken(credential(), SECRET, { fetch: endpoint(json(200, { token_type: 'mac', access_token: 'at_leak' })).f })).toMatchObject({ status: 'failed', error_code: 'unsupported_token_type' });
    const noToken = await refreshAccessToken(credential(), SECRET, { fetch: endpoint(new Response('not json', { status: 200 })).f });
    expect(noToken).toMatchObject({ status: 'failed', error_code: 'no_access_token' });
    expect(await refreshAccessToken(credential(), SECRET, { fetch: endpoint(new Error('ECONNREFUSED')).f })).toEqual({ status: 'connect_error', reason: 'unreachable' });
    expect(await refreshAccessToken(credential(), { access_token: 'a' }, { fetch: endpoint().f })).toEqual({ status: 'no_refresh_token' });
    expect(await refreshAccessToken(credential('none', null, false), SECRET, { fetch: endpoint().f })).toEqual({ status: 'no_refresh_token' });
  });

  it('scrubBody hides secrets and sensitive-looking fields, then cuts at 2 KiB', () => {
    expect(scrubBody('{"access_token":"x1","error":"bad","nested":{"client_secret":"y"}}', [])).toEqual({ body: '{"access_token":"[redacted]","error":"bad","nested":{"client_secret":"[redacted]"}}', body_truncated: false });
    expect(scrubBody('refresh_token=abc&state=1', []).body).toBe('refresh_token=[redacted]&state=1');
    expect(scrubBody('the key is s3cr3t-value', ['s3cr3t-value']).body).toBe('the key is [redacted]');
    const long = scrubBody('x'.repeat(5000), []);
    expect([long.body.length, long.body_truncated]).toEqual([2048, true]);
  });
});

describe('access tokens', () => {
  it('expire when the proxy last refreshed them, or when the client said', () => {
    expect(expiresAt(credential('none', '2026-05-01T00:10:00Z'), SECRET)).toBe(NOW + 600_000);
    expect(expiresAt(credential('none', '2026-05-01T00:10:00Z'), { ...SECRET, [REFRESHED_EXPIRY_FIELD]: '2026-05-01T02:00:00Z' })).toBe(NOW + 7_200_000);
    expect(expiresAt(credential('none', '2026-05-01T00:10:00Z'), { ...SECRET, [REFRESHED_EXPIRY_FIELD]: 'unknown' })).toBeNull();
    expect(expiresAt(credential('none', null), SECRET)).toBeNull();
  });

  function store(initial: SecretFields) {
    const values = new Map([['ref', { ...initial }]]);
    return { values, access: { read: async (ref: string) => values.get(ref), write: async (ref: string, v: SecretFields) => void values.set(ref, { ...v }) } };
  }

  it('are refreshed when due, once for callers at the same time, and stored with their expiry', async () => {
    const s = store(SECRET);
    const ep = endpoint(json(200, { access_token: 'at_new', expires_in: 3600 }));
    const tokens = new OAuthTokens({ secrets: s.access, fetch: ep.f, now: () => NOW });
    const due = credential('client_secret_basic', '2026-05-01T00:00:30Z');
    const [a, b] = await Promise.all([tokens.current(due, 'ref'), tokens.current(due, 'ref')]);
    expect(a).toEqual({ token: 'at_new', refreshed: true, tried: true });
    expect(b.token).toBe('at_new');
    expect(ep.seen).toHaveLength(1);
    expect(s.values.get('ref')).toEqual({ ...SECRET, access_token: 'at_new', [REFRESHED_EXPIRY_FIELD]: '2026-05-01T01:00:00.000Z' });
    // no longer due: the stored token is used as it is
    expect(await tokens.current(due, 'ref')).toEqual({ token: 'at_new', refreshed: false, tried: false });
  });

  it('keep a token that has not expired when its refresh fails, and name no secret when it has', async () => {
    const soon = credential('client_secret_basic', '2026-05-01T00:00:30Z');
    const fails = () => endpoint(json(400, { error: 'invalid_grant' })).f;
    expect(await new OAuthTokens({ secrets: store(SECRET).access, fetch: fails(), now: () => NOW }).current(soon, 'ref')).toEqual({ token: 'at_old_secret', refreshed: false, tried: true });
    const expired = credential('client_secret_basic', '2026-04-30T23:00:00Z');
    const err = await new OAuthTokens({ secrets: store(SECRET).access, fetch: fails(), now: () => NOW }).current(expired, 'ref').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OAuthRefreshError);
    expect((err as Error).message).toBe('the access token of credential vcrd_1 could not be refreshed: the token endpoint answered HTTP 400 (invalid_grant)');
    const unreachable = await new OAuthTokens({ secrets: store(SECRET).access, fetch: endpoint(new Error('down')).f, now: () => NOW }).replace(expired, 'ref', 'at_old_secret').catch((e: unknown) => e);
    expect((unreachable as Error).message).toBe('the access token of credential vcrd_1 could not be refreshed: the token endpoint could not be reached (unreachable)');
  });

  it('use a token another proxy stored meanwhile instead of refreshing again', async () => {
    const s = store({ ...SECRET, access_token: 'at_from_elsewhere' });
    const ep = endpoint();
    const tokens = new OAuthTokens({ secrets: s.access, fetch: ep.f, now: () => NOW });
    expect(await tokens.replace(credential(), 'ref', 'at_old_secret')).toBe('at_from_elsewhere');
    expect(ep.seen).toHaveLength(0);
  });
});

describe('mcp_oauth_validate', () => {
  const deps = (secret: SecretFields | undefined, mcp: typeof fetch, token: typeof fetch) => {
    const values = new Map(secret ? [['ref', secret]] : []);
    const access = { read: async (r: string) => values.get(r), write: async (r: string, v: SecretFields) => void values.set(r, v) };
    return { tokens: new OAuthTokens({ secrets: access, fetch: token, now: () => NOW }), secrets: access, fetch: mcp, now: () => NOW };
  };
  const status = (code: number) => (async () => new Response(JSON.stringify({ error: 'no', access_token: 'leak?' }), { status: code, headers: { 'content-type': 'application/json' } })) as typeof fetch;

  it('is invalid without a stored token, or when the server refuses it and no refresh helps', async () => {
    expect(await validateMcpOAuth(credential(), 'ref', deps(undefined, status(500), endpoint().f))).toMatchObject({ status: 'invalid', mcp_probe: null, refresh: null, has_refresh_token: false });
    const refused = await validateMcpOAuth(credential(), 'ref', deps(SECRET, status(401), endpoint(json(400, { error: 'invalid_grant' })).f));
    expect(refused).toMatchObject({
      type: 'vault_credential_validation',
      credential_id: 'vcrd_1',
      vault_id: 'vlt_1',
      status: 'invalid',
      has_refresh_token: true,
      mcp_probe: { method: 'initialize', http_response: { status_code: 401 } },
      refresh: { status: 'failed' },
      validated_at: '2026-05-01T00:00:00.000Z',
    });
    expect(JSON.stringify(refused)).not.toContain('at_old_secret');
    expect(await validateMcpOAuth(credential(), 'ref', deps(SECRET, status(403), endpoint().f))).toMatchObject({ status: 'invalid', refresh: null });
    expect(await validateMcpOAuth(credential(), 'ref', deps(SECRET, status(500), endpoint().f))).toMatchObject({ status: 'unknown' });
    expect(await validateMcpOAuth(credential(), 'ref', deps(SECRET, status(401), endpoint(new Error('down')).f))).toMatchObject({ status: 'unknown', refresh: { status: 'connect_error' } });
  });
});
