import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { DynamoStateTable } from '../../lambdas/adapters/aws/dynamodb-state-table.js';
import { ensureTables } from '../../lambdas/adapters/aws/tables.js';
import { startDynalite, type EmbeddedDynamo } from '../../lambdas/adapters/local/dynalite.js';
import { jsonLogger } from '../../lambdas/core/logger.js';
import { CredentialProxyClient, type ProxyCallError } from '../../lambdas/core/vault/protocol.js';
import { CredentialProxy } from '../../lambdas/core/vault/proxy.js';
import type { SecretStore } from '../../lambdas/core/vault/secret-store.js';
import { REFRESHED_EXPIRY_FIELD, type SecretFields } from '../../lambdas/core/vault/types.js';
import { VaultService } from '../../lambdas/core/vault/vaults.js';
import type { StateTable } from '../../lambdas/core/store.js';
import { startTestMcpServer, type TestMcpServer } from './fixtures/mcp-server.js';
import { startTestOAuthServer, type TestOAuthServer } from './fixtures/oauth-server.js';

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';

class MemorySecrets implements SecretStore {
  readonly map = new Map<string, SecretFields>();
  async get(ref: string) {
    const v = this.map.get(ref);
    return v ? { ...v } : undefined;
  }
  async put(ref: string, value: SecretFields) {
    this.map.set(ref, { ...value });
  }
  async delete(ref: string) {
    this.map.delete(ref);
  }
}

/**
 * `mcp_oauth` credentials in the credential proxy, against a real token endpoint and a real MCP
 * server on loopback: refresh before expiry and on a 401, rotated refresh tokens, failures, and
 * refreshes of one credential by two proxies at once.
 */
describe('mcp_oauth refresh in the credential proxy', () => {
  let dynamo: EmbeddedDynamo;
  let table: StateTable;
  let mcp: TestMcpServer;
  let secrets: MemorySecrets;
  const lines: string[] = [];
  const proxies: CredentialProxy[] = [];
  const servers: TestOAuthServer[] = [];
  let n = 0;

  function newProxy() {
    const proxy = new CredentialProxy({
      table,
      secrets,
      signingKey: async () => Buffer.alloc(32, 1),
      logger: jsonLogger({}, (l) => lines.push(l)),
      secretCacheMs: 60_000,
    });
    proxies.push(proxy);
    return { proxy, client: new CredentialProxyClient({ call: (r) => proxy.handle(r) }) };
  }

  /** A vault with one mcp_oauth credential for the MCP server, and a session that uses it. */
  async function setup(opts: {
    auth: 'none' | 'client_secret_basic' | 'client_secret_post';
    rotate?: boolean;
    expiresAt?: string | null;
    scope?: string;
    resource?: string;
    issueToMcp?: boolean;
  }) {
    const id = ++n;
    const accessToken = `at-initial-${id}-${Date.now()}`;
    const refreshToken = `rt-initial-${id}-${Date.now()}`;
    const clientSecret = `client-secret-${id}-${Date.now()}`;
    const oauth = await startTestOAuthServer({
      clientId: `client-${id}`,
      clientSecret,
      auth: opts.auth,
      refreshToken,
      rotate: opts.rotate,
      scope: opts.scope,
      resource: opts.resource,
      onIssue: opts.issueToMcp === false ? undefined : (t) => mcp.setToken(t),
    });
    servers.push(oauth);
    mcp.setToken(accessToken);
    const { client } = newProxy();
    const vaults = new VaultService(table, client);
    const vault = await vaults.create('t1', { display_name: `oauth ${id}` });
    const cred = await vaults.createCredential('t1', vault.id, {
      auth: {
        type: 'mcp_oauth',
        access_token: accessToken,
        mcp_server_url: mcp.url,
        expires_at: opts.expiresAt ?? null,
        refresh: {
          client_id: `client-${id}`,
          refresh_token: refreshToken,
          token_endpoint: oauth.url,
          token_endpoint_auth: opts.auth === 'none' ? { type: 'none' } : { type: opts.auth, client_secret: clientSecret },
          scope: opts.scope ?? null,
          resource: opts.resource ?? null,
        },
      },
    });
    const sessionId = `s-oauth-${id}`;
    await table.put({
      pk: `session#${sessionId}`,
      sk: 'head',
      tenant: 't1',
      rev: 0,
      data: { id: sessionId, vault_ids: [vault.id], resources: [], agent: { mcp_servers: [{ name: 'crm', type: 'url', url: mcp.url }] } },
    });
    const ref = [...secrets.map.keys()].find((k) => k.endsWith(cred.id))!;
    const call = (c: CredentialProxyClient = client) =>
      c.mcpCallTool({ sessionId, vaultIds: [vault.id], server: { name: 'crm', url: mcp.url }, tool: 'lookup_customer', input: { name: 'Ada' } });
    return { oauth, client, vaults, vault, cred, ref, call, accessToken, refreshToken, clientSecret };
  }

  /** Every secret value a test used: none may be in a log line. */
  function allTokens(): string[] {
    const out = new Set<string>();
    for (const v of secrets.map.values()) for (const [k, x] of Object.entries(v)) if (k !== REFRESHED_EXPIRY_FIELD) out.add(x);
    for (const s of servers) {
      for (const t of s.issued) out.add(t);
      for (const r of s.requests) for (const k of ['refresh_token', 'client_secret']) if (r.params[k]) out.add(r.params[k]);
    }
    return [...out];
  }

  beforeAll(async () => {
    dynamo = await startDynalite();
    await ensureTables(dynamo.client, { events: 'events', state: 'state' });
    table = new DynamoStateTable(dynamo.client, 'state');
    mcp = await startTestMcpServer({ token: 'nobody-has-this-yet' });
    secrets = new MemorySecrets();
  });
  afterEach(() => {
    // No token, refresh token or client secret in any log line, whatever the test did.
    const log = lines.join('\n');
    for (const t of allTokens()) expect(log).not.toContain(t);
  });
  afterAll(async () => {
    for (const p of proxies) await p.close();
    for (const s of servers) await s.close();
    await mcp?.close();
    await dynamo?.close();
  });

  it('refreshes a token about to expire before the call (client_secret_basic, scope, resource)', async () => {
    const t = await setup({
      auth: 'client_secret_basic',
      expiresAt: new Date(Date.now() + 30_000).toISOString(), // inside the 60 s margin
      scope: 'crm.read crm.write',
      resource: 'https://crm.example.com/',
    });
    mcp.authorizations.length = 0;
    const result = await t.call();
    expect(result.isError).toBe(false);
    expect(t.oauth.requests).toHaveLength(1);
    const [req] = t.oauth.requests;
    expect(req.params).toEqual({ grant_type: 'refresh_token', refresh_token: t.refreshToken, scope: 'crm.read crm.write', resource: 'https://crm.example.com/' });
    expect(req.authorization).toBe(`Basic ${Buffer.from(`client-${n}:${t.clientSecret}`).toString('base64')}`);
    // the old token never went out: the refresh came first
    expect(mcp.authorizations.length).toBeGreaterThan(0);
    expect(mcp.authorizations.every((a) => a === `Bearer ${t.oauth.issued[0]}`)).toBe(true);
    const stored = secrets.map.get(t.ref)!;
    expect(stored.access_token).toBe(t.oauth.issued[0]);
    expect(stored.refresh_token).toBe(t.refreshToken); // not rotated: kept
    expect(Date.parse(stored[REFRESHED_EXPIRY_FIELD])).toBeGreaterThan(Date.now() + 3000_000);
    // Now valid for an hour: the next call does not refresh again.
    await t.call();
    expect(t.oauth.requests).toHaveLength(1);
    expect(lines.some((l) => l.includes('"oauth token refreshed"') && l.includes('"reason":"expiry"'))).toBe(true);
    // A client that sets a new access token makes the record's expiry count again.
    await t.vaults.updateCredential('t1', t.vault.id, t.cred.id, { auth: { type: 'mcp_oauth', access_token: t.oauth.issued[0] } });
    expect(secrets.map.get(t.ref)![REFRESHED_EXPIRY_FIELD]).toBeUndefined();
  });

  it('a 401 triggers one refresh and the call is retried once; a rotated refresh token is stored and used next time', async () => {
    const t = await setup({ auth: 'client_secret_post', rotate: true });
    mcp.setToken('revoked-elsewhere-1'); // the stored access token is no longer accepted
    mcp.authorizations.length = 0;
    expect((await t.call()).isError).toBe(false);
    expect(t.oauth.requests).toHaveLength(1);
    expect(t.oauth.requests[0].params).toEqual({
      grant_type: 'refresh_token',
      refresh_token: t.refreshToken,
      client_id: `client-${n}`,
      client_secret: t.clientSecret,
    });
    expect(t.oauth.requests[0].authorization).toBeUndefined();
    expect(mcp.authorizations[0]).toBe(`Bearer ${t.accessToken}`);
    expect(mcp.authorizations.at(-1)).toBe(`Bearer ${t.oauth.issued[0]}`);
    const rotated = t.oauth.refreshToken;
    expect(rotated).not.toBe(t.refreshToken);
    expect(secrets.map.get(t.ref)!.refresh_token).toBe(rotated);

    mcp.setToken('revoked-elsewhere-2');
    expect((await t.call()).isError).toBe(false);
    expect(t.oauth.requests).toHaveLength(2);
    expect(t.oauth.requests[1].params.refresh_token).toBe(rotated);
    expect(t.oauth.requests[1].status).toBe(200);
  });

  it('refreshes only once: a server that refuses the new token too is an authentication error', async () => {
    const t = await setup({ auth: 'none', issueToMcp: false });
    mcp.setToken('accepts-none-of-ours');
    await expect(t.call()).rejects.toMatchObject({ kind: 'authentication', serverName: 'crm' });
    expect(t.oauth.requests).toHaveLength(1);
    expect(t.oauth.requests[0].params).toEqual({ grant_type: 'refresh_token', refresh_token: t.refreshToken, client_id: `client-${n}` });
  });

  it('a failing token endpoint gives the call an authentication error naming no secret, and a log line', async () => {
    const t = await setup({ auth: 'client_secret_post', expiresAt: new Date(Date.now() - 1000).toISOString() });
    t.oauth.failWith = 500;
    const err = (await t.call().catch((e) => e)) as ProxyCallError;
    expect(err).toMatchObject({ kind: 'authentication', serverName: 'crm' });
    expect(err.message).toContain(`the access token of credential ${t.cred.id} could not be refreshed: the token endpoint answered HTTP 500 (server_error)`);
    for (const s of [t.accessToken, t.refreshToken, t.clientSecret]) expect(err.message).not.toContain(s);
    expect(lines.some((l) => l.includes('"oauth token refresh failed"') && l.includes(t.cred.id) && l.includes('"http_status":500'))).toBe(true);

    // a 401 whose refresh fails: the same error
    t.oauth.failWith = null;
    const u = await setup({ auth: 'client_secret_post' });
    mcp.setToken('revoked-elsewhere-3');
    u.oauth.failWith = 400;
    await expect(u.call()).rejects.toMatchObject({ kind: 'authentication', message: expect.stringContaining('could not be refreshed') });
    // and an unreachable one
    await u.oauth.close();
    await expect(u.call()).rejects.toMatchObject({ kind: 'authentication', message: expect.stringContaining('could not be reached') });
  });

  it('a refresh before expiry that fails still lets a not-yet-expired token through, and is not tried twice', async () => {
    const t = await setup({ auth: 'none', expiresAt: new Date(Date.now() + 20_000).toISOString() });
    t.oauth.failWith = 503;
    mcp.authorizations.length = 0;
    expect((await t.call()).isError).toBe(false);
    expect(mcp.authorizations.every((a) => a === `Bearer ${t.accessToken}`)).toBe(true);
    expect(t.oauth.requests).toHaveLength(1);
    mcp.setToken('revoked-elsewhere-4');
    await expect(t.call()).rejects.toMatchObject({ kind: 'authentication', message: expect.stringContaining('(401)') });
    expect(t.oauth.requests).toHaveLength(2); // one per call
  });

  it('concurrent calls in one proxy share one refresh', async () => {
    const t = await setup({ auth: 'none', rotate: true, expiresAt: new Date(Date.now() + 5_000).toISOString() });
    const results = await Promise.all([t.call(), t.call(), t.call()]);
    expect(results.every((r) => r.isError === false)).toBe(true);
    expect(t.oauth.requests).toHaveLength(1);
  });

  it('two proxies refreshing the same credential at once: the loser of a rotation uses the winner\'s tokens', async () => {
    const t = await setup({ auth: 'none', rotate: true, expiresAt: new Date(Date.now() + 5_000).toISOString() });
    const other = newProxy().client;
    let secondArrived!: () => void;
    const arrived = new Promise<void>((r) => (secondArrived = r));
    let firstDone: Promise<unknown> = Promise.resolve();
    // Both exchanges reach the endpoint with the same refresh token; the first wins and rotates
    // it, the second is answered (invalid_grant) only after the winner's call has finished.
    t.oauth.beforeAnswer = async (i) => {
      if (i === 1) await arrived;
      if (i === 2) {
        secondArrived();
        await firstDone;
      }
    };
    const a = t.call();
    const b = t.call(other);
    firstDone = Promise.race([a, b].map((p) => p.catch(() => {})));
    const [ra, rb] = await Promise.all([a, b]);
    expect(ra.isError).toBe(false);
    expect(rb.isError).toBe(false);
    expect(t.oauth.requests.map((r) => r.status)).toEqual([200, 400]);
    expect(t.oauth.requests[1].params.refresh_token).toBe(t.refreshToken);
    // what is stored is the pair the server issued last, which it still accepts
    expect(secrets.map.get(t.ref)).toMatchObject({ access_token: t.oauth.issued[0], refresh_token: t.oauth.refreshToken });
    expect(lines.some((l) => l.includes('"oauth token refreshed concurrently elsewhere"'))).toBe(true);
  });
});
