import { randomBytes } from 'node:crypto';
import { beforeEach, describe, expect, it } from 'vitest';
import { AgentCreate, CredentialCreate, EnvironmentCreate, SessionCreate, VaultCreate } from '../../lambdas/core/api/schemas.js';
import type { ModelClient } from '../../lambdas/core/harness/model.js';
import { jsonLogger } from '../../lambdas/core/logger.js';
import { createServices, type CorralServices } from '../../lambdas/core/services.js';
import { CredentialProxyClient, GIT_CAPABILITY_HEADER, ProxyCallError } from '../../lambdas/core/vault/protocol.js';
import { CredentialProxy, repoSlug } from '../../lambdas/core/vault/proxy.js';
import { McpError } from '../../lambdas/core/mcp/gateway.js';
import { ProxyMcpGateway } from '../../lambdas/core/mcp/proxy-gateway.js';
import type { ProxyRequest, ProxyResponse } from '../../lambdas/core/vault/protocol.js';
import type { SecretStore } from '../../lambdas/core/vault/secret-store.js';
import type { SecretFields } from '../../lambdas/core/vault/types.js';
import { DELIVERS_EVERYTHING } from './recipe-support.js';
import { MemoryEventLog, MemoryStateTable } from './memory-store.js';

/**
 * The credential proxy's core in-process: the API's services talk to it through the real client
 * and protocol (an in-process transport instead of a Lambda or a socket), and its git side calls
 * a stand-in for the upstream host (the `fetch` it is given). What is checked: secrets go in and
 * never come out, git capabilities open only their session's repositories and only while open,
 * and the token is added on the way out and named nowhere.
 */
class MemorySecrets implements SecretStore {
  readonly values = new Map<string, SecretFields>();
  async get(ref: string) {
    return this.values.get(ref);
  }
  async put(ref: string, value: SecretFields) {
    this.values.set(ref, { ...value });
  }
  async delete(ref: string) {
    this.values.delete(ref);
  }
}

const TOKEN = 'ghp_repo_token_123456';
const T = 'tnt_p';
let now: number;
let secrets: MemorySecrets;
let proxy: CredentialProxy;
let client: CredentialProxyClient;
let svc: CorralServices;
let logs: string[];
let upstream: Array<{ url: string; method: string; headers: Record<string, string> }>;
let answer: () => Response | Promise<Response>;

beforeEach(() => {
  now = Date.parse('2026-03-01T00:00:00Z');
  secrets = new MemorySecrets();
  logs = [];
  upstream = [];
  answer = () => new Response('0000', { status: 200, headers: { 'content-type': 'application/x-git-upload-pack-advertisement', 'set-cookie': 'a=b' } });
  const table = new MemoryStateTable();
  const key = randomBytes(32);
  proxy = new CredentialProxy({
    table,
    secrets,
    signingKey: async () => key,
    gitEndpoint: null,
    logger: jsonLogger({}, (l) => logs.push(l)),
    now: () => now,
    fetch: (async (url: string, init: RequestInit) => {
      upstream.push({ url, method: String(init.method), headers: Object.fromEntries(new Headers(init.headers).entries()) });
      return answer();
    }) as typeof fetch,
  });
  client = new CredentialProxyClient({ call: (r) => proxy.handle(r) });
  svc = createServices({
    table,
    events: new MemoryEventLog(),
    queue: { wake: async () => undefined },
    sandboxProvider: { recipeSupport: DELIVERS_EVERYTHING, provision: async () => Promise.reject(new Error('none')), release: async () => undefined },
    model: {} as ModelClient,
    credentialProxy: client,
  });
});

async function sessionWithRepo(extra: Record<string, unknown> = {}) {
  const a = await svc.agents.create(T, AgentCreate.parse({ name: 'a', model: 'claude-sonnet-4-6', mcp_servers: [{ type: 'url', name: 'docs', url: 'https://mcp.example.com/mcp' }] }));
  const e = await svc.environments.create(T, EnvironmentCreate.parse({ name: 'e' }));
  return svc.sessions.create(
    T,
    SessionCreate.parse({ agent: a.id, environment_id: e.id, resources: [{ type: 'github_repository', url: 'https://github.com/octo/repo.git', authorization_token: TOKEN }], ...extra }),
  );
}
const git = (path: string, cap: string | null, init: RequestInit = {}) =>
  proxy.handleGit(new Request(`http://proxy.local${path}`, { ...init, headers: { ...(cap ? { [GIT_CAPABILITY_HEADER]: cap } : {}), cookie: 'session=1', ...(init.headers as object) } }));
const refs = '/r/0/repo.git/info/refs?service=git-upload-pack';
const callError = async (p: Promise<unknown>) => p.then(() => undefined, (e: unknown) => e as ProxyCallError);

describe('secrets through the proxy', () => {
  it('are stored, merged, copied and deleted; a bad or reserved ref is refused', async () => {
    const ref = 'corral/vault/t/x';
    await client.storeSecret(ref, { a: '1', b: '2' });
    await client.storeSecret(ref, { b: '', c: '3' }, { merge: true });
    expect(secrets.values.get(ref)).toEqual({ a: '1', c: '3' });
    await client.copySecret(ref, 'corral/vault/t/y');
    expect(secrets.values.get('corral/vault/t/y')).toEqual({ a: '1', c: '3' });
    await client.deleteSecret(ref);
    expect(secrets.values.has(ref)).toBe(false);
    expect(await callError(client.storeSecret('elsewhere/x', { a: '1' }))).toMatchObject({ kind: 'invalid', message: 'ref: must name a secret under corral/vault/' });
    expect(await callError(client.storeSecret('corral/vault/_proxy/key', { a: '1' }))).toMatchObject({ kind: 'forbidden' });
    expect(await callError(client.storeSecret(ref, { a: 1 } as never))).toMatchObject({ kind: 'invalid', message: 'value: must be an object of strings' });
    expect(await callError(client.copySecret('corral/vault/t/none', 'corral/vault/t/z'))).toMatchObject({ kind: 'invalid' });
    expect(await proxy.handle({ op: 'nope' } as never)).toEqual({ ok: false, error: { kind: 'invalid', message: 'unknown op "nope"' } });
    expect(await proxy.handle(null as never)).toMatchObject({ ok: false, error: { kind: 'invalid' } });
  });

  it('a session keeps its repository token only in the proxy, and the log lines never name it', async () => {
    const s = await sessionWithRepo();
    expect([...secrets.values.values()]).toEqual([{ token: TOKEN }]);
    expect(JSON.stringify(s)).not.toContain(TOKEN);
    await svc.sessions.delete(T, s.id);
    expect(secrets.values.size).toBe(0);
    expect(logs.join('\n')).not.toContain(TOKEN);
  });
});

describe('git through the proxy', () => {
  it('adds the token on the way out, forwards only git headers, and answers with the upstream body', async () => {
    const s = await sessionWithRepo();
    const channel = await client.gitOpen({ sessionId: s.id, sandbox: 'default', repositories: ['https://github.com/octo/repo.git'] });
    expect(channel).toMatchObject({ endpoint: null, repositories: [{ url: 'https://github.com/octo/repo.git', path: '/r/0/repo.git' }] });
    expect(channel.capability).not.toContain(TOKEN);
    const res = await git(refs, channel.capability, { headers: { 'git-protocol': 'version=2' } });
    expect(res.status).toBe(200);
    expect(await res.text()).toBe('0000');
    expect(res.headers.get('set-cookie')).toBeNull();
    expect(upstream).toEqual([
      {
        url: 'https://github.com/octo/repo.git/info/refs?service=git-upload-pack',
        method: 'GET',
        headers: { authorization: `Basic ${Buffer.from(`x-access-token:${TOKEN}`).toString('base64')}`, 'git-protocol': 'version=2', 'user-agent': 'git/corral-credential-proxy' },
      },
    ]);
    expect(logs.join('\n')).not.toContain(TOKEN);
  });

  it('refuses what the capability does not open', async () => {
    const s = await sessionWithRepo();
    const { capability, id } = await client.gitOpen({ sessionId: s.id, sandbox: 'default', repositories: ['https://github.com/octo/repo'] });
    const status = async (path: string, cap: string | null, init?: RequestInit) => (await git(path, cap, init)).status;
    expect(await status(refs, null)).toBe(403);
    expect(await status(refs, capability.slice(0, -2) + 'xx')).toBe(403);
    expect(await status('/r/0/repo.git/objects/info/packs', capability)).toBe(404);
    expect(await status('/r/1/other.git/info/refs?service=git-upload-pack', capability)).toBe(404);
    expect(await status('/r/0/repo.git/info/refs?service=git-dumb', capability)).toBe(400);
    expect(await status('/r/0/repo.git/git-upload-pack', capability, { method: 'GET' })).toBe(405);
    expect(upstream).toEqual([]);
    // another session's repository cannot be named
    expect(await callError(client.gitOpen({ sessionId: s.id, sandbox: 'default', repositories: ['https://github.com/someone/else'] }))).toMatchObject({ kind: 'forbidden' });
    expect(await callError(client.gitOpen({ sessionId: 'sesn_none', sandbox: 'default', repositories: ['https://github.com/octo/repo'] }))).toMatchObject({ kind: 'forbidden' });
    expect(await callError(client.gitOpen({ sessionId: s.id, sandbox: 'default', repositories: [] }))).toMatchObject({ kind: 'invalid', message: 'repositories: 1 to 20 URLs' });
    // closed by another session: nothing is closed (channels are kept per session, so another
    // session names none of them); closed by its own: the capability dies
    await client.gitClose({ sessionId: 'sesn_other', channel: id });
    expect(await status(refs, capability)).toBe(200);
    await client.gitClose({ sessionId: s.id, channel: id });
    expect(await status(refs, capability)).toBe(403);
  });

  it('a capability expires, and dies with its session', async () => {
    const s = await sessionWithRepo();
    const first = await client.gitOpen({ sessionId: s.id, sandbox: 'default', repositories: ['https://github.com/octo/repo'] });
    now += 8 * 24 * 3600_000;
    expect((await git(refs, first.capability)).status).toBe(403);
    const second = await client.gitOpen({ sessionId: s.id, sandbox: 'default', repositories: ['https://github.com/octo/repo'] });
    await svc.sessions.delete(T, s.id);
    expect((await git(refs, second.capability)).status).toBe(403);
  });

  it('turns upstream refusals, redirects and failures into answers that name no secret', async () => {
    const s = await sessionWithRepo();
    const { capability } = await client.gitOpen({ sessionId: s.id, sandbox: 'default', repositories: ['https://github.com/octo/repo'] });
    answer = () => new Response('no', { status: 401 });
    let res = await git(refs, capability);
    expect([res.status, await res.text()]).toEqual([401, 'the repository refused the stored credentials\n']);
    answer = () => new Response(null, { status: 302, headers: { location: 'https://evil.example.com/' } });
    res = await git(refs, capability);
    expect(res.status).toBe(502);
    answer = () => {
      throw new Error(`connect failed for x-access-token:${TOKEN}@github.com`);
    };
    res = await git(refs, capability);
    expect(res.status).toBe(502);
    expect(await res.text()).not.toContain(TOKEN);
    expect(logs.join('\n')).not.toContain(TOKEN);
  });
});

describe('MCP through the proxy', () => {
  it('refuses servers that are not the agent\'s and vaults that are not the session\'s, before any request', async () => {
    const v = await svc.vaults.create(T, VaultCreate.parse({ display_name: 'v' }));
    await svc.vaults.createCredential(T, v.id, CredentialCreate.parse({ auth: { type: 'static_bearer', token: 'mcp_tok', mcp_server_url: 'https://mcp.example.com/mcp' } }));
    const s = await sessionWithRepo({ vault_ids: [v.id] });
    const server = { name: 'docs', url: 'https://mcp.example.com/mcp' };
    expect(await callError(client.mcpListTools({ sessionId: s.id, vaultIds: [v.id], server: { name: 'docs', url: 'https://attacker.example.com/mcp' } }))).toMatchObject({ kind: 'forbidden', serverName: 'docs' });
    expect(await callError(client.mcpListTools({ sessionId: s.id, vaultIds: ['vlt_not_attached'], server }))).toMatchObject({ kind: 'forbidden', message: `vaults not attached to session ${s.id} were named` });
    expect(await callError(client.mcpListTools({ sessionId: 'sesn_none', vaultIds: [], server }))).toMatchObject({ kind: 'forbidden' });
    expect(await callError(client.mcpListTools({ sessionId: s.id, vaultIds: [], server: {} as never }))).toMatchObject({ kind: 'invalid' });
  });

  it('validates only mcp_oauth credentials of the caller\'s tenant', async () => {
    const v = await svc.vaults.create(T, VaultCreate.parse({ display_name: 'v' }));
    const c = await svc.vaults.createCredential(T, v.id, CredentialCreate.parse({ auth: { type: 'static_bearer', token: 'mcp_tok', mcp_server_url: 'https://mcp.example.com/mcp' } }));
    expect(await callError(client.mcpOAuthValidate({ tenant: 'tnt_other', vaultId: v.id, credentialId: c.id }))).toMatchObject({ kind: 'forbidden' });
    expect(await callError(client.mcpOAuthValidate({ tenant: T, vaultId: v.id, credentialId: c.id }))).toMatchObject({ kind: 'invalid', message: `credential ${c.id} is static_bearer, not mcp_oauth` });
    expect(await callError(client.mcpOAuthValidate({ tenant: T, vaultId: '', credentialId: c.id }))).toMatchObject({ kind: 'invalid', message: 'vaultId: required' });
  });
});

describe('repoSlug', () => {
  it('names a repository by its last path segment, safely', () => {
    expect(repoSlug('https://github.com/octo/repo.git')).toBe('repo');
    expect(repoSlug('https://host/a/b c?x#y')).toBe('b_c');
    expect(repoSlug('https://host/..')).toBe('repository');
  });
});

describe('the harness\'s MCP gateway over the proxy', () => {
  it('passes lists and calls through, and turns proxy failures into MCP errors by kind', async () => {
    const sent: ProxyRequest[] = [];
    let reply: ProxyResponse | Error = { ok: true, result: [{ name: 't', input_schema: {} }] };
    const gw = new ProxyMcpGateway(
      new CredentialProxyClient({
        call: async (r) => {
          sent.push(r);
          if (reply instanceof Error) throw reply;
          return reply;
        },
      }),
    );
    const base = { sessionId: 'sesn_1', vaultIds: ['vlt_1'], server: { name: 'docs', url: 'https://mcp.example.com' } };
    expect(await gw.listTools(base)).toEqual([{ name: 't', input_schema: {} }]);
    reply = { ok: true, result: { content: [], isError: false } };
    expect(await gw.callTool({ ...base, tool: 't', input: { a: 1 }, idempotencyKey: 'k' })).toEqual({ content: [], isError: false });
    expect(sent).toEqual([
      { op: 'mcp_list_tools', ...base },
      { op: 'mcp_call_tool', ...base, tool: 't', input: { a: 1 }, idempotencyKey: 'k' },
    ]);
    reply = { ok: false, error: { kind: 'authentication', message: 'MCP server docs: refused', serverName: 'docs' } };
    const auth = await gw.listTools(base).catch((e: unknown) => e);
    expect(auth).toBeInstanceOf(McpError);
    expect(auth).toMatchObject({ kind: 'authentication', serverName: 'docs', message: 'MCP server docs: refused' });
    reply = { ok: false, error: { kind: 'unreachable' as never, message: 'MCP server docs: timed out' } };
    expect(await gw.callTool({ ...base, tool: 't', input: {} }).catch((e: unknown) => e)).toMatchObject({ kind: 'connection', message: 'MCP server docs: timed out' });
    reply = new Error('socket closed');
    expect(await gw.listTools(base).catch((e: unknown) => e)).toMatchObject({ kind: 'connection', message: 'the credential proxy could not be reached: socket closed' });
  });
});
