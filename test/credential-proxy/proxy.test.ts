import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DynamoStateTable } from '../../lambdas/adapters/aws/dynamodb-state-table.js';
import { ensureTables } from '../../lambdas/adapters/aws/tables.js';
import { startDynalite, type EmbeddedDynamo } from '../../lambdas/adapters/local/dynalite.js';
import { ProxyMcpGateway } from '../../lambdas/core/mcp/proxy-gateway.js';
import { McpError } from '../../lambdas/core/mcp/gateway.js';
import { McpCallFailure, McpConnector } from '../../lambdas/core/vault/mcp-connector.js';
import { CredentialProxyClient, GIT_CAPABILITY_HEADER, ProxyCallError } from '../../lambdas/core/vault/protocol.js';
import { CredentialProxy } from '../../lambdas/core/vault/proxy.js';
import type { SecretStore } from '../../lambdas/core/vault/secret-store.js';
import type { SecretFields } from '../../lambdas/core/vault/types.js';
import { VaultService } from '../../lambdas/core/vault/vaults.js';
import type { StateTable } from '../../lambdas/core/store.js';
import { startTestMcpServer, type TestMcpServer } from './fixtures/mcp-server.js';

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';

class MemorySecrets implements SecretStore {
  readonly map = new Map<string, SecretFields>();
  reads = 0;
  async get(ref: string) {
    this.reads++;
    return this.map.get(ref);
  }
  async put(ref: string, value: SecretFields) {
    this.map.set(ref, { ...value });
  }
  async delete(ref: string) {
    this.map.delete(ref);
  }
}

/**
 * The credential proxy's core on its own: grants read from the state table (never from the
 * caller), MCP through the MCP SDK with retries and failure classes, and git capabilities.
 */
describe('CredentialProxy', () => {
  let dynamo: EmbeddedDynamo;
  let table: StateTable;
  let mcp: TestMcpServer;
  let secrets: MemorySecrets;
  let proxy: CredentialProxy;
  let client: CredentialProxyClient;
  let vaults: VaultService;
  const TOKEN = 'proxy-test-token-0123456789';
  const KEY = Buffer.alloc(32, 9);
  let now = Date.now();

  async function putSession(id: string, data: Record<string, unknown>, extra: Record<string, unknown> = {}) {
    await table.put({
      pk: `session#${id}`,
      sk: 'head',
      tenant: 't1',
      rev: 0,
      data: { id, vault_ids: [], resources: [], agent: { mcp_servers: [{ name: 'crm', type: 'url', url: mcp.url }] }, ...data },
      ...extra,
    });
  }

  beforeAll(async () => {
    dynamo = await startDynalite();
    await ensureTables(dynamo.client, { events: 'events', state: 'state' });
    table = new DynamoStateTable(dynamo.client, 'state');
    mcp = await startTestMcpServer({ token: TOKEN });
    secrets = new MemorySecrets();
    proxy = new CredentialProxy({ table, secrets, signingKey: async () => KEY, gitEndpoint: { kind: 'unix', socketPath: '/x/git.sock' }, now: () => now, secretCacheMs: 60_000 });
    client = new CredentialProxyClient({ call: (r) => proxy.handle(r) });
    vaults = new VaultService(table, client);
  });
  afterAll(async () => {
    await proxy?.close();
    await mcp?.close();
    await dynamo?.close();
  });

  it('uses the credential of the session\'s vault for the server, and only that', async () => {
    const v = await vaults.create('t1', { display_name: 'v' });
    await vaults.createCredential('t1', v.id, { auth: { type: 'static_bearer', token: TOKEN, mcp_server_url: `${mcp.url}/` } });
    await putSession('s-ok', { vault_ids: [v.id] });
    const gateway = new ProxyMcpGateway(client);
    const server = { name: 'crm', url: mcp.url };
    const tools = await gateway.listTools({ sessionId: 's-ok', vaultIds: [v.id], server });
    expect(tools.map((x) => x.name).sort()).toEqual(['echo_text', 'lookup_customer']);
    const result = await gateway.callTool({ sessionId: 's-ok', vaultIds: [v.id], server, tool: 'lookup_customer', input: { name: 'Ada' } });
    expect(result).toEqual({ content: [{ type: 'text', text: 'Ada Lovelace, customer since 1843' }], isError: false });
    // A server that echoes the token back gets it redacted.
    const echoed = await gateway.callTool({ sessionId: 's-ok', vaultIds: [v.id], server, tool: 'echo_text', input: { text: `you sent ${TOKEN}` } });
    expect(JSON.stringify(echoed)).not.toContain(TOKEN);
    expect(echoed.content[0]).toEqual({ type: 'text', text: 'you sent [redacted]' });
    // an unknown tool is the tool's error, not a connection failure
    const unknown = await gateway.callTool({ sessionId: 's-ok', vaultIds: [v.id], server, tool: 'nope', input: {} });
    expect(unknown.isError).toBe(true);
  });

  it('environment_variable credentials: metadata for the provider; the secret only where the credential allows, only from the local process', async () => {
    const SECRET = 'env-secret-value-0123456789';
    const v = await vaults.create('t1', { display_name: 'env' });
    const c = await vaults.createCredential('t1', v.id, {
      auth: { type: 'environment_variable', secret_name: 'API_KEY', secret_value: SECRET, networking: { type: 'limited', allowed_hosts: ['api.example.com', '*.svc.example.com'] }, injection_location: { header: true, body: false } },
    });
    await putSession('s-env', { vault_ids: [v.id] });
    await putSession('s-env-none', { vault_ids: [] });
    const grants = await client.egressCredentials({ sessionId: 's-env' });
    expect(grants).toEqual([{ credential_id: c.id, vault_id: v.id, secret_name: 'API_KEY', allowed_hosts: ['api.example.com', '*.svc.example.com'], injection_location: { header: true, body: false } }]);
    expect(JSON.stringify(grants)).not.toContain(SECRET);
    expect(await client.egressCredentials({ sessionId: 's-env-none' })).toEqual([]);

    // This proxy is not the local process: it never answers with a secret.
    await expect(client.egressSecret({ sessionId: 's-env', vaultId: v.id, credentialId: c.id, host: 'api.example.com' })).rejects.toMatchObject({ kind: 'forbidden' });
    const local = new CredentialProxy({ table, secrets, signingKey: async () => KEY, egressSecrets: true });
    const localClient = new CredentialProxyClient({ call: (r) => local.handle(r) });
    const ask = (r: Partial<{ sessionId: string; vaultId: string; credentialId: string; host: string }>) =>
      localClient.egressSecret({ sessionId: 's-env', vaultId: v.id, credentialId: c.id, host: 'api.example.com', ...r });
    expect(await ask({})).toBe(SECRET);
    expect(await ask({ host: 'a.svc.example.com' })).toBe(SECRET);
    for (const host of ['evil.example', 'svc.example.com', 'example.com']) {
      const err = await ask({ host }).catch((e: unknown) => e);
      expect(err).toMatchObject({ kind: 'forbidden' });
      expect(String((err as Error).message)).not.toContain(SECRET);
    }
    // The session's own record decides: another session, or a vault it does not list, gets nothing.
    await expect(ask({ sessionId: 's-env-none' })).rejects.toMatchObject({ kind: 'forbidden' });
    await expect(ask({ vaultId: 'vlt_other' })).rejects.toMatchObject({ kind: 'forbidden' });
    // An archived credential stops at once.
    await vaults.archiveCredential('t1', v.id, c.id);
    await expect(ask({})).rejects.toMatchObject({ kind: 'forbidden' });
    await local.close();
  });

  it('refuses what the session\'s own record does not grant, whatever the caller says', async () => {
    const v = await vaults.create('t1', { display_name: 'v2' });
    await putSession('s-grants', { vault_ids: [] });
    const server = { name: 'crm', url: mcp.url };
    const ask = (r: object) => client.mcpListTools({ sessionId: 's-grants', vaultIds: [], server, ...r });
    await expect(ask({ sessionId: 'no-such-session' })).rejects.toMatchObject({ kind: 'forbidden' });
    await expect(ask({ server: { name: 'crm', url: 'http://127.0.0.1:1/elsewhere' } })).rejects.toMatchObject({ kind: 'forbidden' });
    await expect(ask({ vaultIds: [v.id] })).rejects.toMatchObject({ kind: 'forbidden' });
    // no credential granted: the call goes out bare and the server says 401
    await expect(ask({})).rejects.toMatchObject({ kind: 'authentication' });
  });

  it('ignores archived vaults, archived credentials and other tenants\' vaults', async () => {
    const archivedVault = await vaults.create('t1', { display_name: 'archived' });
    await vaults.createCredential('t1', archivedVault.id, { auth: { type: 'static_bearer', token: TOKEN, mcp_server_url: mcp.url } });
    await vaults.archive('t1', archivedVault.id);
    const foreign = await vaults.create('t2', { display_name: 'foreign' });
    await vaults.createCredential('t2', foreign.id, { auth: { type: 'static_bearer', token: TOKEN, mcp_server_url: mcp.url } });
    const archivedCred = await vaults.create('t1', { display_name: 'archived cred' });
    const c = await vaults.createCredential('t1', archivedCred.id, { auth: { type: 'static_bearer', token: TOKEN, mcp_server_url: mcp.url } });
    await vaults.archiveCredential('t1', archivedCred.id, c.id);
    await putSession('s-ignored', { vault_ids: [archivedVault.id, foreign.id, archivedCred.id] });
    await expect(
      client.mcpListTools({ sessionId: 's-ignored', vaultIds: [], server: { name: 'crm', url: mcp.url } }),
    ).rejects.toMatchObject({ kind: 'authentication' });
  });

  it('a rotated secret is picked up even while the old one is cached', async () => {
    const v = await vaults.create('t1', { display_name: 'rotate' });
    const cred = await vaults.createCredential('t1', v.id, { auth: { type: 'static_bearer', token: 'old-token-xxxx', mcp_server_url: mcp.url } });
    await putSession('s-rotate', { vault_ids: [v.id] });
    const list = () => client.mcpListTools({ sessionId: 's-rotate', vaultIds: [v.id], server: { name: 'crm', url: mcp.url } });
    await expect(list()).rejects.toMatchObject({ kind: 'authentication' }); // cached now: the old token
    // rotated behind the proxy's back (another proxy instance wrote it)
    const ref = [...secrets.map.keys()].find((k) => k.endsWith(cred.id))!;
    secrets.map.set(ref, { token: TOKEN });
    expect((await list()).length).toBe(2);
  });

  it('store_secret only writes under corral/vault/ and never the proxy\'s own secrets; errors name no value', async () => {
    await expect(client.storeSecret('other/place', { token: 'x' })).rejects.toMatchObject({ kind: 'invalid' });
    await expect(client.storeSecret('corral/vault/_proxy/git-signing-key', { key: 'x' })).rejects.toMatchObject({ kind: 'forbidden' });
    const failing = new CredentialProxy({
      table,
      secrets: { get: async () => undefined, put: async (_r, v) => Promise.reject(new Error(`boom ${JSON.stringify(v)}`)), delete: async () => {} },
      signingKey: async () => KEY,
    });
    const answer = await failing.handle({ op: 'store_secret', ref: 'corral/vault/t/v/c', value: { token: 'value-that-must-not-leak' } });
    expect(answer).toMatchObject({ ok: false, error: { kind: 'internal' } });
    expect(JSON.stringify(answer)).not.toContain('value-that-must-not-leak');
  });

  describe('git channels', () => {
    const repo = 'http://127.0.0.1:1/org/repo.git';
    const gitReq = (path: string, cap: string | null, init: RequestInit = {}) =>
      proxy.handleGit(new Request(`http://proxy${path}`, { ...init, headers: { ...(cap ? { [GIT_CAPABILITY_HEADER]: cap } : {}) } }));

    it('opens only http(s) repositories that are resources of the session', async () => {
      await putSession('s-git', { resources: [{ id: 'r1', type: 'github_repository', url: repo }] });
      const channel = await client.gitOpen({ sessionId: 's-git', sandbox: 'default', repositories: [repo] });
      expect(channel).toMatchObject({ endpoint: { kind: 'unix', socketPath: '/x/git.sock' }, repositories: [{ url: repo, path: '/r/0/repo.git' }] });
      await expect(client.gitOpen({ sessionId: 's-git', sandbox: 'default', repositories: ['http://127.0.0.1:1/org/other.git'] })).rejects.toMatchObject({ kind: 'forbidden' });
      await expect(client.gitOpen({ sessionId: 's-git', sandbox: 'default', repositories: ['/srv/repo.git'] })).rejects.toMatchObject({ kind: 'invalid' });
      await expect(client.gitOpen({ sessionId: 'nope', sandbox: 'default', repositories: [repo] })).rejects.toBeInstanceOf(ProxyCallError);
    });

    it('answers only smart-HTTP paths with a valid, unexpired capability of a living session', async () => {
      await putSession('s-git2', { resources: [{ id: 'r1', type: 'github_repository', url: repo }] });
      const { capability } = await client.gitOpen({ sessionId: 's-git2', sandbox: 'default', repositories: [repo] });
      const refs = '/r/0/repo.git/info/refs?service=git-upload-pack';
      expect((await gitReq(refs, null)).status).toBe(403);
      const [v, payload, mac] = capability.split('.');
      const forged = Buffer.from(JSON.stringify({ ...JSON.parse(Buffer.from(payload, 'base64url').toString()), r: ['http://127.0.0.1:1/org/other.git'] })).toString('base64url');
      expect((await gitReq(refs, `${v}.${forged}.${mac}`)).status).toBe(403);
      expect((await gitReq('/r/0/repo.git/HEAD', capability)).status).toBe(404);
      expect((await gitReq('/r/0/repo.git/info/refs', capability)).status).toBe(400); // dumb protocol
      expect((await gitReq('/r/0/repo.git/git-upload-pack', capability)).status).toBe(405); // GET
      expect((await gitReq('/r/1/repo.git/info/refs?service=git-upload-pack', capability)).status).toBe(404);
      expect((await gitReq('/r/0/../../x/info/refs?service=git-upload-pack', capability)).status).toBe(404);
      // with a valid capability the proxy goes upstream (nothing listens on port 1: 502)
      expect((await gitReq(refs, capability)).status).toBe(502);
      // the session's repository list is read again at every request
      await putSession('s-git2', { resources: [] });
      expect((await gitReq(refs, capability)).status).toBe(403);
      await table.delete('session#s-git2', 'head');
      expect((await gitReq(refs, capability)).status).toBe(403);
      // and capabilities expire
      await putSession('s-git3', { resources: [{ id: 'r1', type: 'github_repository', url: repo }] });
      const later = await client.gitOpen({ sessionId: 's-git3', sandbox: 'default', repositories: [repo] });
      now += 8 * 24 * 3600_000;
      expect((await gitReq(refs, later.capability)).status).toBe(403);
      now = Date.now();
    });
  });
});

describe('McpConnector: retries and failure classes', () => {
  let mcp: TestMcpServer;
  const TOKEN = 'connector-token-123456';
  beforeAll(async () => {
    mcp = await startTestMcpServer({ token: TOKEN });
  });
  afterAll(() => mcp?.close());

  const refused = () => Object.assign(new TypeError('fetch failed'), { cause: Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }) });

  it('retries connection failures that never reached the server, with backoff, then succeeds', async () => {
    let failures = 2;
    const sleeps: number[] = [];
    const c = new McpConnector({
      fetch: (async (input: string | URL | Request, init?: RequestInit) => {
        if (failures > 0) {
          failures--;
          throw refused();
        }
        return fetch(input, init);
      }) as typeof fetch,
      sleep: async (ms) => void sleeps.push(ms),
    });
    const server = { name: 'crm', url: mcp.url };
    expect((await c.listTools('s', server, TOKEN)).length).toBe(2);
    expect(sleeps).toEqual([200, 400]);
    // a second request reuses the client: no new initialization
    const before = mcp.authorizations.length;
    await c.callTool('s', server, TOKEN, 'lookup_customer', { name: 'Ada' });
    expect(mcp.authorizations.length - before).toBe(1);
    expect(c.size).toBe(1);
    await c.close();
    expect(c.size).toBe(0);
  });

  it('gives up after the bounded attempts: a connection failure', async () => {
    const sleeps: number[] = [];
    const c = new McpConnector({ attempts: 3, fetch: (async () => Promise.reject(refused())) as typeof fetch, sleep: async (ms) => void sleeps.push(ms) });
    const err = await c.listTools('s', { name: 'crm', url: mcp.url }, TOKEN).catch((e) => e);
    expect(err).toBeInstanceOf(McpCallFailure);
    expect(err).toMatchObject({ kind: 'connection', message: expect.stringContaining('ECONNREFUSED') });
    expect(sleeps).toEqual([200, 400]);
  });

  it('401 and 403 are authentication failures, never retried; their messages quote nothing the server said', async () => {
    for (const status of [401, 403]) {
      let calls = 0;
      const c = new McpConnector({
        fetch: (async () => {
          calls++;
          return new Response(`denied, and here is your token: ${TOKEN}`, { status });
        }) as typeof fetch,
        sleep: async () => {},
      });
      const err = await c.callTool('s', { name: 'crm', url: mcp.url }, TOKEN, 'lookup_customer', {}).catch((e) => e);
      expect(err).toMatchObject({ kind: 'authentication', message: `MCP server crm refused the credentials (${status})` });
      expect(calls).toBe(1);
    }
  });

  it('a server that does not answer in time is a connection failure', async () => {
    const c = new McpConnector({
      attempts: 1,
      listTimeoutMs: 200,
      fetch: ((_i: string | URL | Request, init?: RequestInit) =>
        new Promise((_r, reject) => init?.signal?.addEventListener('abort', () => reject(new DOMException('aborted', 'AbortError'))))) as typeof fetch,
    });
    const err = await c.listTools('s', { name: 'crm', url: mcp.url }, TOKEN).catch((e) => e);
    expect(err).toMatchObject({ kind: 'connection' });
    await c.close();
  });

  it('the gateway maps proxy failures to McpError kinds', async () => {
    const gw = new ProxyMcpGateway(new CredentialProxyClient({ call: async () => ({ ok: false, error: { kind: 'authentication', message: 'refused (401)', serverName: 'crm' } }) }));
    await expect(gw.listTools({ sessionId: 's', vaultIds: [], server: { name: 'crm', url: 'u' } })).rejects.toMatchObject({ kind: 'authentication', serverName: 'crm' });
    const down = new ProxyMcpGateway(new CredentialProxyClient({ call: async () => Promise.reject(new Error('socket gone')) }));
    const err = await down.callTool({ sessionId: 's', vaultIds: [], server: { name: 'crm', url: 'u' }, tool: 't', input: {} }).catch((e) => e);
    expect(err).toBeInstanceOf(McpError);
    expect(err).toMatchObject({ kind: 'connection' });
  });
});
