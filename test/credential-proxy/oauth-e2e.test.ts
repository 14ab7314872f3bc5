import type Anthropic from '@anthropic-ai/sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { jsonLogger } from '../../lambdas/core/logger.js';
import { collectUntil, isIdle, listAll, startTestRuntime, type TestRuntime } from '../helpers/runtime.js';
import { startTestMcpServer, type TestMcpServer } from './fixtures/mcp-server.js';
import { startTestOAuthServer, type TestOAuthServer } from './fixtures/oauth-server.js';

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';

const text = (t: string) => [{ type: 'text' as const, text: t }];

/**
 * `mcp_oauth` end to end: the local runtime with its credential proxy process, the official SDK,
 * a loopback token endpoint that rotates refresh tokens and an MCP server that wants the current
 * access token. Every event, every answer and every captured log line is searched for tokens.
 */
describe('mcp_oauth credentials through the local runtime and the official SDK', () => {
  let t: TestRuntime;
  let mcp: TestMcpServer;
  let oauth: TestOAuthServer;
  const lines: string[] = [];
  const answers: unknown[] = [];
  const stamp = Date.now();
  const ACCESS = `at-e2e-${stamp}-initial`;
  const REFRESH = `rt-e2e-${stamp}-initial`;
  const CLIENT_SECRET = `cs-e2e-${stamp}-secret`;
  let envId: string;
  let vault: Anthropic.Beta.Vaults.BetaManagedAgentsVault;
  let cred: Anthropic.Beta.Vaults.BetaManagedAgentsCredential;

  const keep = <T>(x: T): T => {
    answers.push(x);
    return x;
  };

  beforeAll(async () => {
    mcp = await startTestMcpServer({ token: ACCESS });
    oauth = await startTestOAuthServer({
      clientId: 'corral-e2e',
      clientSecret: CLIENT_SECRET,
      auth: 'client_secret_post',
      refreshToken: REFRESH,
      rotate: true,
      onIssue: (tok) => mcp.setToken(tok),
    });
    t = await startTestRuntime({ runtime: { logger: jsonLogger({}, (l) => lines.push(l)) } });
    envId = (await t.client.beta.environments.create({ name: 'oauth-env' })).id;
    vault = await t.client.beta.vaults.create({ display_name: 'oauth vault' });
    cred = keep(
      await t.client.beta.vaults.credentials.create(vault.id, {
        auth: {
          type: 'mcp_oauth',
          access_token: ACCESS,
          mcp_server_url: mcp.url,
          expires_at: new Date(Date.now() + 3600_000).toISOString(),
          refresh: {
            client_id: 'corral-e2e',
            refresh_token: REFRESH,
            token_endpoint: oauth.url,
            token_endpoint_auth: { type: 'client_secret_post', client_secret: CLIENT_SECRET },
          },
        },
      }),
    );
  });
  afterAll(async () => {
    await t?.close();
    await oauth?.close();
    await mcp?.close();
  });

  async function session() {
    const agent = await t.client.beta.agents.create({
      name: 'crm-agent',
      model: 'claude-sonnet-4-6',
      mcp_servers: [{ name: 'crm', type: 'url', url: mcp.url }],
      tools: [{ type: 'mcp_toolset', mcp_server_name: 'crm', default_config: { permission_policy: { type: 'always_allow' } } }],
    });
    return t.client.beta.sessions.create({ agent: agent.id, environment_id: envId, vault_ids: [vault.id] });
  }

  async function runTurn(s: Anthropic.Beta.Sessions.BetaManagedAgentsSession, prompt: string) {
    const stream = await t.client.beta.sessions.events.stream(s.id);
    await t.client.beta.sessions.events.send(s.id, { events: [{ type: 'user.message', content: text(prompt) }] });
    return collectUntil(stream, isIdle);
  }

  it('validates a working credential: valid, nothing refreshed', async () => {
    const v = keep(await t.client.beta.vaults.credentials.mcpOAuthValidate(cred.id, { vault_id: vault.id }));
    expect(v).toEqual({
      type: 'vault_credential_validation',
      credential_id: cred.id,
      vault_id: vault.id,
      status: 'valid',
      has_refresh_token: true,
      mcp_probe: null,
      refresh: null,
      validated_at: expect.any(String),
    });
    expect(Number.isNaN(Date.parse(v.validated_at))).toBe(false);
    expect(oauth.requests).toHaveLength(0);
  });

  it('a session whose token was revoked gets it refreshed on the 401 and the tool call succeeds', async () => {
    mcp.setToken('revoked-by-the-crm');
    const s = await session();
    t.fake.push({ kind: 'tool_use', calls: [{ name: 'mcp__crm__lookup_customer', input: { name: 'Ada' } }] });
    const seen = await runTurn(s, 'who is Ada?');
    expect(seen.find((e) => e.type === 'agent.mcp_tool_result')).toMatchObject({
      is_error: false,
      content: [{ type: 'text', text: 'Ada Lovelace, customer since 1843' }],
    });
    expect(seen.find((e) => e.type === 'session.error')).toBeUndefined();
    expect(oauth.requests.map((r) => r.status)).toEqual([200]);
    answers.push(await listAll(t.client, s.id));
  });

  it('validation after a revocation refreshes (with the rotated refresh token) and reports it', async () => {
    mcp.setToken('revoked-again');
    const rotated = oauth.refreshToken;
    const v = keep(await t.client.beta.vaults.credentials.mcpOAuthValidate(cred.id, { vault_id: vault.id }));
    expect(v).toMatchObject({ status: 'valid', has_refresh_token: true, mcp_probe: null, refresh: { status: 'succeeded', http_response: null } });
    expect(oauth.requests).toHaveLength(2);
    expect(oauth.requests[1].params.refresh_token).toBe(rotated);
  });

  it('a failing token endpoint: the session gets mcp_authentication_failed_error, validation says invalid with the scrubbed answer', async () => {
    mcp.setToken('revoked-for-good');
    oauth.failWith = 400;
    const s = await session();
    t.fake.push({ kind: 'tool_use', calls: [{ name: 'mcp__crm__lookup_customer', input: { name: 'Ada' } }] });
    t.fake.push({ kind: 'text', text: 'The CRM refused me.' });
    const seen = await runTurn(s, 'who is Ada?');
    expect(seen.find((e) => e.type === 'session.error')).toMatchObject({
      error: { type: 'mcp_authentication_failed_error', mcp_server_name: 'crm' },
    });
    expect(seen.at(-1)).toMatchObject({ type: 'session.status_idle' });
    answers.push(await listAll(t.client, s.id));

    const v = keep(await t.client.beta.vaults.credentials.mcpOAuthValidate(cred.id, { vault_id: vault.id }));
    expect(v).toMatchObject({
      status: 'invalid',
      has_refresh_token: true,
      mcp_probe: { method: 'initialize', http_response: { status_code: 401, content_type: 'application/json', body_truncated: false } },
      refresh: { status: 'failed', http_response: { status_code: 400, content_type: 'application/json', body_truncated: false } },
    });
    // the token endpoint quoted the refresh token in its error: scrubbed
    expect(oauth.requests.at(-1)!.params.refresh_token).toBe(oauth.refreshToken);
    expect(v.refresh!.http_response!.body).toContain('server_error');
    expect(v.refresh!.http_response!.body).not.toContain(oauth.refreshToken);
    expect(lines.some((l) => l.includes('credential proxy: oauth token refresh failed"'))).toBe(true);
  });

  it('an unreachable MCP server is unknown; other credential types and unknown params are 400s', async () => {
    const other = await t.client.beta.vaults.create({ display_name: 'other' });
    const far = keep(
      await t.client.beta.vaults.credentials.create(other.id, {
        auth: { type: 'mcp_oauth', access_token: ACCESS, mcp_server_url: 'http://127.0.0.1:9/mcp' },
      }),
    );
    const v = keep(await t.client.beta.vaults.credentials.mcpOAuthValidate(far.id, { vault_id: other.id }));
    expect(v).toMatchObject({ status: 'unknown', has_refresh_token: false, mcp_probe: { method: 'initialize', http_response: null }, refresh: null });

    const bearer = await t.client.beta.vaults.credentials.create(other.id, {
      auth: { type: 'static_bearer', token: ACCESS, mcp_server_url: 'http://127.0.0.1:9/other' },
    });
    await expect(t.client.beta.vaults.credentials.mcpOAuthValidate(bearer.id, { vault_id: other.id })).rejects.toMatchObject({
      status: 400,
      error: { error: { type: 'invalid_request_error', message: expect.stringContaining('only mcp_oauth credentials') } },
    });
    await expect(t.client.beta.vaults.credentials.mcpOAuthValidate(far.id, { vault_id: other.id, workspace_id: 'wrkspc_1' })).rejects.toMatchObject({
      status: 400,
      error: { error: { message: expect.stringContaining('anthropic-workspace-id') } },
    });
    await expect(
      t.client.post(`/v1/vaults/${other.id}/credentials/${far.id}/mcp_oauth_validate`, { body: { probe: 'deep' } }),
    ).rejects.toMatchObject({ status: 400, error: { error: { message: expect.stringContaining('probe') } } });
    await expect(t.client.beta.vaults.credentials.mcpOAuthValidate('vcrd_nope', { vault_id: other.id })).rejects.toMatchObject({ status: 404 });
  });

  it('no token, refresh token or client secret is in any event, answer or log line', async () => {
    answers.push(await t.client.beta.vaults.credentials.retrieve(cred.id, { vault_id: vault.id }));
    answers.push(t.fake.requests.map((r) => r.body));
    const secrets = [ACCESS, REFRESH, CLIENT_SECRET, ...oauth.issued, oauth.refreshToken, ...oauth.requests.map((r) => r.params.refresh_token)];
    expect(oauth.issued.length).toBeGreaterThanOrEqual(2);
    expect(lines.length).toBeGreaterThan(0);
    expect(lines.some((l) => l.includes('credential proxy: oauth token refreshed"'))).toBe(true);
    const everything = JSON.stringify(answers) + '\n' + lines.join('\n');
    for (const s of secrets) expect(everything).not.toContain(s);
  });
});
