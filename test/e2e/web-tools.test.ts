import Anthropic from '@anthropic-ai/sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { collectUntil, createAgentAndEnvironment, isIdle, listAll, startTestRuntime, type TestRuntime } from '../helpers/runtime.js';
import type { ScriptedBlock } from '../fixtures/fake-messages-api.js';

const text = (t: string) => [{ type: 'text' as const, text: t }];

/**
 * web_search and web_fetch are the Messages API's server tools: offered with the agent's
 * settings, run by the model provider inside the answer, recorded as tool calls and results that
 * keep the provider's blocks, and sent back to the model unchanged. Official SDK -> local runtime
 * -> harness -> the scripted fake model, which answers with server tool blocks.
 */
describe('web_search and web_fetch as server tools', () => {
  let t: TestRuntime;
  let envId: string;
  beforeAll(async () => {
    t = await startTestRuntime();
    envId = (await createAgentAndEnvironment(t.client)).environment.id;
  });
  afterAll(() => t.close());

  const searchResult = {
    type: 'web_search_result',
    url: 'https://docs.example.com/corral',
    title: 'Corral docs',
    encrypted_content: 'ENCRYPTED-PAGE-TEXT',
    page_age: 'April 1, 2026',
  };
  const fetchResult = {
    type: 'web_fetch_result',
    url: 'https://docs.example.com/corral',
    retrieved_at: '2026-04-01T00:00:00Z',
    content: { type: 'document', source: { type: 'text', media_type: 'text/plain', data: 'Corral runs agents.' }, title: 'Corral docs' },
  };
  const answer: ScriptedBlock[] = [
    { type: 'text', text: 'Searching.' },
    { type: 'server_tool_use', id: 'srvtoolu_search1', name: 'web_search', input: { query: 'corral agents' } },
    { type: 'web_search_tool_result', content: [searchResult] },
    { type: 'server_tool_use', id: 'srvtoolu_fetch1', name: 'web_fetch', input: { url: 'https://docs.example.com/corral' } },
    { type: 'web_fetch_tool_result', content: fetchResult },
    { type: 'text', text: 'Corral runs agents.' },
  ];

  it('echoes the web tools’ configs in full, and offers them as server tools with those settings', async () => {
    const agent = await t.client.beta.agents.create({
      name: 'researcher',
      model: 'claude-opus-4-6',
      tools: [
        {
          type: 'agent_toolset_20260401',
          configs: [
            { name: 'web_search', allowed_domains: ['docs.example.com'], user_location: { type: 'approximate', country: 'US', city: 'Boston' } },
            { name: 'web_fetch', blocked_domains: ['ads.example.com'], max_content_tokens: 5000, url_sources: { user_input: 'none', server_tool_results: { type: 'only', tools: [{ type: 'tool_reference', name: 'web_search' }] } } },
          ],
        },
      ],
    });
    const configs = (agent.tools[0] as unknown as { configs: Array<Record<string, unknown>> }).configs;
    expect(configs).toEqual([
      {
        name: 'web_search',
        type: 'web_search',
        enabled: true,
        permission_policy: { type: 'always_allow' },
        allowed_domains: ['docs.example.com'],
        user_location: { type: 'approximate', country: 'US', city: 'Boston' },
      },
      {
        name: 'web_fetch',
        type: 'web_fetch',
        enabled: true,
        permission_policy: { type: 'always_allow' },
        blocked_domains: ['ads.example.com'],
        max_content_tokens: 5000,
        url_sources: {
          client_tool_results: null,
          server_tool_results: { type: 'only', tools: [{ type: 'tool_reference', name: 'web_search' }] },
          user_input: { type: 'none' },
        },
      },
    ]);
    expect(await t.client.beta.agents.retrieve(agent.id)).toEqual(agent);

    const session = await t.client.beta.sessions.create({ agent: agent.id, environment_id: envId });
    const stream = await t.client.beta.sessions.events.stream(session.id);
    const before = t.fake.requests.length;
    await t.client.beta.sessions.events.send(session.id, { events: [{ type: 'user.message', content: text('hi') }] });
    await collectUntil(stream, isIdle);
    const tools = t.fake.requests[before].body.tools!;
    // (the last tool carries the prompt-cache breakpoint of the tool list)
    const web = tools.filter((x) => x.type?.startsWith('web_')).map(({ cache_control: _, ...x }) => x);
    expect(web).toEqual([
      { type: 'web_search_20250305', name: 'web_search', allowed_domains: ['docs.example.com'], user_location: { type: 'approximate', country: 'US', city: 'Boston' } },
      {
        type: 'web_fetch_20250910',
        name: 'web_fetch',
        blocked_domains: ['ads.example.com'],
        max_content_tokens: 5000,
        url_sources: { server_tool_results: { type: 'only', tools: [{ type: 'tool_reference', name: 'web_search' }] }, user_input: { type: 'none' } },
      },
    ]);
    // the sandbox tools are still there, as client tools
    expect(tools.map((x) => x.name)).toContain('bash');
  });

  it('records the provider’s calls and results, ends the turn, and sends the blocks back unchanged', async () => {
    const { agent } = await createAgentAndEnvironment(t.client, { model: 'claude-opus-4-6' });
    const session = await t.client.beta.sessions.create({ agent: agent.id, environment_id: envId });
    const stream = await t.client.beta.sessions.events.stream(session.id);
    const before = t.fake.requests.length;
    t.fake.push({ kind: 'blocks', blocks: answer });
    await t.client.beta.sessions.events.send(session.id, { events: [{ type: 'user.message', content: text('what is corral?') }] });
    const seen = await collectUntil(stream, isIdle);
    // one model call: the provider ran both tools, and the answer ended the turn
    expect(t.fake.requests.length - before).toBe(1);
    expect(seen.map((e) => e.type)).toEqual([
      'user.message',
      'session.status_running',
      'span.model_request_start',
      'agent.message',
      'agent.tool_use',
      'agent.tool_result',
      'agent.tool_use',
      'agent.tool_result',
      'agent.message',
      'span.model_request_end',
      'session.status_idle',
    ]);
    expect(seen.at(-1)).toMatchObject({ stop_reason: { type: 'end_turn' } });
    const [search, searchOut, fetch, fetchOut] = seen.slice(4, 8);
    expect(search).toMatchObject({ name: 'web_search', input: { query: 'corral agents' }, evaluated_permission: 'allow' });
    expect(searchOut).toMatchObject({
      tool_use_id: search.id,
      is_error: false,
      content: [
        { type: 'search_result', source: 'https://docs.example.com/corral', title: 'Corral docs', content: [{ type: 'text', text: 'https://docs.example.com/corral (April 1, 2026)' }], citations: { enabled: false } },
      ],
    });
    expect(fetch).toMatchObject({ name: 'web_fetch', input: { url: 'https://docs.example.com/corral' } });
    expect(fetchOut).toMatchObject({
      tool_use_id: fetch.id,
      content: [{ type: 'document', source: { type: 'url', url: 'https://docs.example.com/corral' }, title: 'Corral docs' }],
    });
    // no sandbox was started for them
    expect(await t.runtime.services.sandboxes.list(session.id)).toHaveLength(0);
    // history agrees with the stream
    expect(await listAll(t.client, session.id)).toEqual(seen);

    // The next request carries the answer as the provider gave it.
    await t.client.beta.sessions.events.send(session.id, { events: [{ type: 'user.message', content: text('thanks') }] });
    await collectUntil(stream, isIdle);
    const messages = t.fake.requests.at(-1)!.body.messages!;
    expect(messages.map((m) => m.role)).toEqual(['user', 'assistant', 'user']);
    const blocks = messages[1].content as Array<Record<string, unknown>>;
    expect(blocks.map((b) => b.type)).toEqual(['text', 'server_tool_use', 'web_search_tool_result', 'server_tool_use', 'web_fetch_tool_result', 'text']);
    expect(blocks[1]).toEqual({ type: 'server_tool_use', id: 'srvtoolu_search1', name: 'web_search', input: { query: 'corral agents' } });
    expect(blocks[2]).toEqual({ type: 'web_search_tool_result', tool_use_id: 'srvtoolu_search1', content: [searchResult] });
    expect(blocks[4]).toEqual({ type: 'web_fetch_tool_result', tool_use_id: 'srvtoolu_fetch1', content: fetchResult });
  });

  it('records a failed web search as an error result', async () => {
    const { agent } = await createAgentAndEnvironment(t.client, { model: 'claude-opus-4-6' });
    const session = await t.client.beta.sessions.create({ agent: agent.id, environment_id: envId });
    const stream = await t.client.beta.sessions.events.stream(session.id);
    t.fake.push({
      kind: 'blocks',
      blocks: [
        { type: 'server_tool_use', name: 'web_search', input: { query: 'x' } },
        { type: 'web_search_tool_result', content: { type: 'web_search_tool_result_error', error_code: 'max_uses_exceeded' } },
        { type: 'text', text: 'No luck.' },
      ],
    });
    await t.client.beta.sessions.events.send(session.id, { events: [{ type: 'user.message', content: text('search') }] });
    const seen = await collectUntil(stream, isIdle);
    expect(seen.find((e) => e.type === 'agent.tool_result')).toMatchObject({ is_error: true, content: [{ type: 'text', text: 'web_search failed: max_uses_exceeded' }] });
  });

  it('offers them by default with the agent toolset, and not when disabled', async () => {
    const on = await createAgentAndEnvironment(t.client, { model: 'claude-opus-4-6' });
    const off = await createAgentAndEnvironment(t.client, {
      model: 'claude-opus-4-6',
      tools: [{ type: 'agent_toolset_20260401', configs: [{ name: 'web_search', enabled: false }, { name: 'web_fetch', enabled: false }] }],
    });
    const offered = async (agentId: string) => {
      const session = await t.client.beta.sessions.create({ agent: agentId, environment_id: envId });
      const stream = await t.client.beta.sessions.events.stream(session.id);
      await t.client.beta.sessions.events.send(session.id, { events: [{ type: 'user.message', content: text('hi') }] });
      await collectUntil(stream, isIdle);
      return t.fake.requests.at(-1)!.body.tools!.filter((x) => x.type).map((x) => x.type);
    };
    expect(await offered(on.agent.id)).toEqual(['web_search_20250305', 'web_fetch_20250910']);
    expect(await offered(off.agent.id)).toEqual([]);
  });

  it('refuses what it cannot honour, naming it: asking before a tool the provider runs, conflicting domain lists', async () => {
    const refused = (tools: unknown): Promise<Error> =>
      t.client.beta.agents.create({ name: 'x', model: 'claude-opus-4-6', tools } as Anthropic.Beta.AgentCreateParams).then(
        () => new Error('accepted'),
        (e: unknown) => e as Error,
      );
    const ask = await refused([{ type: 'agent_toolset_20260401', configs: [{ name: 'web_fetch', permission_policy: { type: 'always_ask' } }] }]);
    expect(ask).toBeInstanceOf(Anthropic.BadRequestError);
    expect(ask.message).toContain('tools.0.configs.0.permission_policy');
    expect(ask.message).toContain('web_fetch');
    // enabled by a config of its own, asking by the default: still refused, naming the default
    const enabledByConfig = await refused([
      { type: 'agent_toolset_20260401', default_config: { permission_policy: { type: 'always_ask' } }, configs: [{ name: 'web_search', enabled: true }] },
    ]);
    expect(enabledByConfig).toBeInstanceOf(Anthropic.BadRequestError);
    expect(enabledByConfig.message).toContain('tools.0.default_config.permission_policy');
    // "ask before every tool" with the web tools left to the default: they are not offered, and the agent says so
    const byDefault = await t.client.beta.agents.create({
      name: 'asks-all',
      model: 'claude-opus-4-6',
      tools: [{ type: 'agent_toolset_20260401', default_config: { permission_policy: { type: 'always_ask' } } }],
    });
    const toolset = byDefault.tools[0] as { configs: Array<{ name: string; enabled: boolean }> };
    expect(toolset.configs.filter((c) => c.name.startsWith('web_'))).toEqual([
      expect.objectContaining({ name: 'web_search', enabled: false }),
      expect.objectContaining({ name: 'web_fetch', enabled: false, url_sources: null }),
    ]);
    const both = await refused([{ type: 'agent_toolset_20260401', configs: [{ name: 'web_search', allowed_domains: ['a.com'], blocked_domains: ['b.com'] }] }]);
    expect(both).toBeInstanceOf(Anthropic.BadRequestError);
    expect(both.message).toContain('tools.0.configs.0.blocked_domains');
    const unknownField = await refused([{ type: 'agent_toolset_20260401', configs: [{ name: 'web_search', max_uses: 3 }] }]);
    expect(unknownField).toBeInstanceOf(Anthropic.BadRequestError);
    expect(unknownField.message).toContain('max_uses');
    // asking first is fine for the sandbox tools when the web tools are left out
    const ok: unknown = await t.client.beta.agents.create({
      name: 'asks',
      model: 'claude-opus-4-6',
      tools: [
        {
          type: 'agent_toolset_20260401',
          default_config: { permission_policy: { type: 'always_ask' } },
          configs: [{ name: 'web_search', enabled: false }, { name: 'web_fetch', permission_policy: { type: 'always_allow' } }],
        },
      ],
    });
    expect(ok).not.toBeInstanceOf(Error);
  });
});
