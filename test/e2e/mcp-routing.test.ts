import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { McpError, type McpGateway } from '../../lambdas/core/mcp/gateway.js';
import { collectUntil, isIdle, startTestRuntime, type TestRuntime } from '../helpers/runtime.js';

const text = (t: string) => [{ type: 'text' as const, text: t }];

/**
 * The harness side of MCP: tools listed through the gateway are offered to the model under
 * `mcp__<server>__<tool>`, their calls are recorded as agent.mcp_tool_use / agent.mcp_tool_result,
 * and failures become session.error events of the MCP types. (The gateway here is an in-process
 * object; the credential proxy's tests drive real MCP servers over HTTP.)
 */
class RecordingGateway implements McpGateway {
  calls: Array<{ tool: string; input: unknown; vaultIds: string[] }> = [];
  failList = false;
  failCall: McpError | null = null;
  async listTools() {
    if (this.failList) throw new McpError('connection', 'crm', 'MCP server crm: connection refused');
    return [{ name: 'find_customer', description: 'Find a customer', input_schema: { type: 'object', properties: { q: { type: 'string' } } } }];
  }
  async callTool(req: { tool: string; input: unknown; vaultIds: string[] }) {
    if (this.failCall) throw this.failCall;
    this.calls.push({ tool: req.tool, input: req.input, vaultIds: req.vaultIds });
    return { content: [{ type: 'text' as const, text: 'Ada Lovelace, customer since 1843' }], isError: false };
  }
}

describe('MCP tools in the harness', () => {
  let t: TestRuntime;
  const gateway = new RecordingGateway();
  let agentId: string;
  let envId: string;
  beforeAll(async () => {
    t = await startTestRuntime({ runtime: { mcp: gateway } });
    const agent = await t.client.beta.agents.create({
      name: 'crm-agent',
      model: 'claude-sonnet-4-6',
      mcp_servers: [{ name: 'crm', type: 'url', url: 'https://crm.example.com/mcp' }],
      tools: [{ type: 'mcp_toolset', mcp_server_name: 'crm', default_config: { permission_policy: { type: 'always_allow' } } }],
    });
    agentId = agent.id;
    envId = (await t.client.beta.environments.create({ name: 'mcp' })).id;
  });
  afterAll(() => t.close());

  it('offers the server tools, records the call and its result, and the model sees it', async () => {
    const session = await t.client.beta.sessions.create({ agent: agentId, environment_id: envId });
    t.fake.push({ kind: 'tool_use', calls: [{ name: 'mcp__crm__find_customer', input: { q: 'Ada' } }] });
    const stream = await t.client.beta.sessions.events.stream(session.id);
    await t.client.beta.sessions.events.send(session.id, { events: [{ type: 'user.message', content: text('who is Ada?') }] });
    const seen = await collectUntil(stream, isIdle);
    expect(JSON.stringify(t.fake.requests.at(-2)!.body.tools)).toContain('mcp__crm__find_customer');
    const use = seen.find((e) => e.type === 'agent.mcp_tool_use')!;
    expect(use).toMatchObject({ name: 'find_customer', mcp_server_name: 'crm', input: { q: 'Ada' }, evaluated_permission: 'allow' });
    expect(seen.find((e) => e.type === 'agent.mcp_tool_result')).toMatchObject({ mcp_tool_use_id: use.id, is_error: false });
    expect(gateway.calls).toEqual([{ tool: 'find_customer', input: { q: 'Ada' }, vaultIds: [] }]);
    expect(JSON.stringify(t.fake.requests.at(-1)!.body.messages)).toContain('customer since 1843');
    expect(await t.runtime.services.sandboxes.list(session.id)).toEqual([]);
  });

  it('turns connection and authentication failures into MCP session errors, never a hung session', async () => {
    const session = await t.client.beta.sessions.create({ agent: agentId, environment_id: envId });
    gateway.failCall = new McpError('authentication', 'crm', 'MCP server crm refused the credentials (401)');
    t.fake.push({ kind: 'tool_use', calls: [{ name: 'mcp__crm__find_customer', input: { q: 'Bob' } }] });
    const stream = await t.client.beta.sessions.events.stream(session.id);
    await t.client.beta.sessions.events.send(session.id, { events: [{ type: 'user.message', content: text('who is Bob?') }] });
    const seen = await collectUntil(stream, isIdle);
    gateway.failCall = null;
    expect(seen.find((e) => e.type === 'agent.mcp_tool_result')).toMatchObject({ is_error: true });
    expect(seen.find((e) => e.type === 'session.error')).toMatchObject({
      error: { type: 'mcp_authentication_failed_error', mcp_server_name: 'crm' },
    });
    expect(seen.at(-1)).toMatchObject({ stop_reason: { type: 'end_turn' } });

    // a server that cannot even be listed: reported, and the turn goes on without its tools
    gateway.failList = true;
    const agent2 = await t.client.beta.agents.create({
      name: 'crm-agent-2',
      model: 'claude-sonnet-4-6',
      mcp_servers: [{ name: 'crm', type: 'url', url: 'https://crm2.example.com/mcp' }],
      tools: [{ type: 'mcp_toolset', mcp_server_name: 'crm' }],
    });
    const s2 = await t.client.beta.sessions.create({ agent: agent2.id, environment_id: envId });
    const st2 = await t.client.beta.sessions.events.stream(s2.id);
    await t.client.beta.sessions.events.send(s2.id, { events: [{ type: 'user.message', content: text('hello') }] });
    const seen2 = await collectUntil(st2, isIdle);
    gateway.failList = false;
    expect(seen2.find((e) => e.type === 'session.error')).toMatchObject({ error: { type: 'mcp_connection_failed_error', mcp_server_name: 'crm' } });
    expect(seen2.find((e) => e.type === 'agent.message')).toBeTruthy();
    expect(seen2.at(-1)).toMatchObject({ stop_reason: { type: 'end_turn' } });
  });
});
