import type Anthropic from '@anthropic-ai/sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { collectUntil, isIdle, listAll, startTestRuntime, type TestRuntime } from '../helpers/runtime.js';
import { startTestMcpServer, type TestMcpServer } from '../credential-proxy/fixtures/mcp-server.js';

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';

const text = (t: string) => [{ type: 'text' as const, text: t }];

/**
 * MCP through the credential proxy, end to end: a real MCP server (the MCP SDK, Streamable HTTP
 * on loopback) that wants a bearer token, a vault credential holding it, an agent session driven
 * through the official SDK, and the local runtime with its credential proxy process.
 */
describe('MCP tools with vault credentials, through the credential proxy', () => {
  let t: TestRuntime;
  let mcp: TestMcpServer;
  const TOKEN = `mcp-token-${Date.now()}-right`;
  let envId: string;

  beforeAll(async () => {
    mcp = await startTestMcpServer({ token: TOKEN });
    t = await startTestRuntime();
    envId = (await t.client.beta.environments.create({ name: 'mcp-env' })).id;
  });
  afterAll(async () => {
    await t?.close();
    await mcp?.close();
  });

  async function agentFor(url: string) {
    return t.client.beta.agents.create({
      name: 'crm-agent',
      model: 'claude-sonnet-4-6',
      mcp_servers: [{ name: 'crm', type: 'url', url }],
      tools: [{ type: 'mcp_toolset', mcp_server_name: 'crm', default_config: { permission_policy: { type: 'always_allow' } } }],
    });
  }

  async function runTurn(session: Anthropic.Beta.Sessions.BetaManagedAgentsSession, prompt: string) {
    const stream = await t.client.beta.sessions.events.stream(session.id);
    await t.client.beta.sessions.events.send(session.id, { events: [{ type: 'user.message', content: text(prompt) }] });
    return collectUntil(stream, isIdle);
  }

  it('calls a protected tool with the vault credential; the token appears nowhere', async () => {
    const vault = await t.client.beta.vaults.create({ display_name: 'crm vault' });
    const cred = await t.client.beta.vaults.credentials.create(vault.id, {
      auth: { type: 'static_bearer', token: TOKEN, mcp_server_url: mcp.url },
      display_name: 'crm bearer',
    });
    expect(JSON.stringify(cred)).not.toContain(TOKEN);
    expect(cred.auth).toEqual({ type: 'static_bearer', mcp_server_url: mcp.url });

    const agent = await agentFor(mcp.url);
    const session = await t.client.beta.sessions.create({ agent: agent.id, environment_id: envId, vault_ids: [vault.id] });
    t.fake.push({ kind: 'tool_use', calls: [{ name: 'mcp__crm__lookup_customer', input: { name: 'Ada' } }] });
    const seen = await runTurn(session, 'who is Ada?');

    const use = seen.find((e) => e.type === 'agent.mcp_tool_use');
    expect(use).toMatchObject({ name: 'lookup_customer', mcp_server_name: 'crm', input: { name: 'Ada' } });
    expect(seen.find((e) => e.type === 'agent.mcp_tool_result')).toMatchObject({
      mcp_tool_use_id: use!.id,
      is_error: false,
      content: [{ type: 'text', text: 'Ada Lovelace, customer since 1843' }],
    });
    expect(seen.find((e) => e.type === 'session.error')).toBeUndefined();
    expect(mcp.calls).toEqual([{ tool: 'lookup_customer', args: { name: 'Ada' } }]);
    // The server saw the token; the model, the log and the API never did.
    expect(mcp.authorizations.every((a) => a === `Bearer ${TOKEN}`)).toBe(true);
    const log = JSON.stringify(await listAll(t.client, session.id));
    expect(log).not.toContain(TOKEN);
    expect(JSON.stringify(t.fake.requests.map((r) => r.body))).not.toContain(TOKEN);
    expect(JSON.stringify(await t.client.beta.sessions.retrieve(session.id))).not.toContain(TOKEN);
    expect(JSON.stringify(await t.client.beta.vaults.credentials.retrieve(cred.id, { vault_id: vault.id }))).not.toContain(TOKEN);
  });

  it('a wrong credential is mcp_authentication_failed_error and an error result, not a hung session', async () => {
    const vault = await t.client.beta.vaults.create({ display_name: 'wrong vault' });
    await t.client.beta.vaults.credentials.create(vault.id, {
      auth: { type: 'static_bearer', token: 'not-the-token', mcp_server_url: mcp.url },
    });
    const agent = await agentFor(mcp.url);
    const session = await t.client.beta.sessions.create({ agent: agent.id, environment_id: envId, vault_ids: [vault.id] });
    t.fake.push({ kind: 'text', text: 'I could not reach the CRM.' });
    const seen = await runTurn(session, 'who is Ada?');
    expect(seen.find((e) => e.type === 'session.error')).toMatchObject({
      error: { type: 'mcp_authentication_failed_error', mcp_server_name: 'crm' },
    });
    expect(seen.at(-1)).toMatchObject({ type: 'session.status_idle', stop_reason: { type: 'end_turn' } });
    expect(JSON.stringify(seen)).not.toContain('not-the-token');
  });

  it('an unreachable server is mcp_connection_failed_error', async () => {
    const agent = await agentFor('http://127.0.0.1:9/mcp'); // discard port: nothing listens
    const session = await t.client.beta.sessions.create({ agent: agent.id, environment_id: envId });
    t.fake.push({ kind: 'text', text: 'No CRM today.' });
    const seen = await runTurn(session, 'who is Ada?');
    expect(seen.find((e) => e.type === 'session.error')).toMatchObject({
      error: { type: 'mcp_connection_failed_error', mcp_server_name: 'crm' },
    });
    expect(seen.at(-1)).toMatchObject({ type: 'session.status_idle' });
  });
});
