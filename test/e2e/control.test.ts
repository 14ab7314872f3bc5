import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { echoModel } from '../fixtures/fake-messages-api.js';
import { collectUntil, isIdle, listAll, startTestRuntime, type TestRuntime } from '../helpers/runtime.js';

const text = (t: string) => [{ type: 'text' as const, text: t }];

describe('session control through the official SDK', () => {
  let t: TestRuntime;
  let envId: string;
  beforeAll(async () => {
    t = await startTestRuntime();
    envId = (await t.client.beta.environments.create({ name: 'control' })).id;
  });
  afterAll(() => t.close());

  it('asks before a tool whose policy is always_ask; allow runs it, deny returns the reason', async () => {
    const agent = await t.client.beta.agents.create({
      name: 'careful',
      model: 'claude-sonnet-4-6',
      tools: [{ type: 'agent_toolset_20260401', configs: [{ name: 'bash', permission_policy: { type: 'always_ask' } }] }],
    });
    const session = await t.client.beta.sessions.create({ agent: agent.id, environment_id: envId });
    const stream = await t.client.beta.sessions.events.stream(session.id);

    await t.client.beta.sessions.events.send(session.id, { events: [{ type: 'user.message', content: text('run `echo allowed`') }] });
    let seen = await collectUntil(stream, isIdle);
    const use = seen.find((e) => e.type === 'agent.tool_use')!;
    expect(use).toMatchObject({ name: 'bash', evaluated_permission: 'ask', evaluation: { type: 'always_ask' } });
    expect(seen.at(-1)).toMatchObject({ stop_reason: { type: 'requires_action', event_ids: [use.id] } });
    expect((await t.client.beta.sessions.retrieve(session.id)).status).toBe('idle');
    expect(await t.runtime.services.sandboxes.list(session.id)).toEqual([]); // nothing ran

    await t.client.beta.sessions.events.send(session.id, { events: [{ type: 'user.tool_confirmation', tool_use_id: use.id, result: 'allow' }] });
    seen = await collectUntil(stream, isIdle);
    expect(seen.find((e) => e.type === 'agent.tool_result')).toMatchObject({ tool_use_id: use.id, is_error: false, content: text('allowed\n') });
    expect(seen.at(-1)).toMatchObject({ stop_reason: { type: 'end_turn' } });

    await t.client.beta.sessions.events.send(session.id, { events: [{ type: 'user.message', content: text('run `rm -rf /tmp/x`') }] });
    seen = await collectUntil(stream, isIdle);
    const risky = seen.find((e) => e.type === 'agent.tool_use')!;
    await t.client.beta.sessions.events.send(session.id, {
      events: [{ type: 'user.tool_confirmation', tool_use_id: risky.id, result: 'deny', deny_message: 'not on my machine' }],
    });
    seen = await collectUntil(stream, isIdle);
    const denied = seen.find((e) => e.type === 'agent.tool_result')!;
    expect(denied).toMatchObject({ tool_use_id: risky.id, is_error: true });
    expect(JSON.stringify(denied.content)).toContain('not on my machine');
    // the model saw the refusal
    expect(JSON.stringify(t.fake.requests.at(-1)!.body)).toContain('not on my machine');
  });

  it('hands custom tools to the client and continues with its result', async () => {
    const agent = await t.client.beta.agents.create({
      name: 'custom',
      model: 'claude-sonnet-4-6',
      tools: [{ type: 'custom', name: 'lookup_order', description: 'Look up an order', input_schema: { type: 'object', properties: { id: { type: 'string' } } } }],
    });
    const session = await t.client.beta.sessions.create({ agent: agent.id, environment_id: envId });
    t.fake.push({ kind: 'tool_use', calls: [{ name: 'lookup_order', input: { id: 'A-17' } }] });
    const stream = await t.client.beta.sessions.events.stream(session.id);
    await t.client.beta.sessions.events.send(session.id, { events: [{ type: 'user.message', content: text('where is A-17?') }] });
    let seen = await collectUntil(stream, isIdle);
    const use = seen.find((e) => e.type === 'agent.custom_tool_use')!;
    expect(use).toMatchObject({ name: 'lookup_order', input: { id: 'A-17' } });
    expect(seen.at(-1)).toMatchObject({ stop_reason: { type: 'requires_action', event_ids: [use.id] } });
    // the model was offered the custom tool
    expect(JSON.stringify(t.fake.requests.at(-1)!.body.tools)).toContain('lookup_order');

    await t.client.beta.sessions.events.send(session.id, {
      events: [{ type: 'user.custom_tool_result', custom_tool_use_id: use.id, content: text('shipped yesterday') }],
    });
    seen = await collectUntil(stream, isIdle);
    expect(seen.map((e) => e.type)).toContain('agent.message');
    expect(JSON.stringify(seen.find((e) => e.type === 'agent.message')!.content)).toContain('shipped yesterday');
    expect(seen.at(-1)).toMatchObject({ stop_reason: { type: 'end_turn' } });
  });

  it('stops issuing model requests when the budget is spent', async () => {
    const agent = await t.client.beta.agents.create({
      name: 'thrifty',
      model: 'claude-sonnet-4-6',
      system: 'context '.repeat(12_000), // ~ 24,000 input tokens a request: ~7 cents at list price
      tools: [{ type: 'agent_toolset_20260401' }],
    });
    const session = await t.client.beta.sessions.create({
      agent: agent.id,
      environment_id: envId,
      budget: { type: 'limit', max_list_cost: { amount: '10', currency: 'USD' } },
    });
    // a loop of tool calls that would go on, but the budget allows about two requests
    t.fake.setFallback(() => ({ kind: 'tool_use', calls: [{ name: 'bash', input: { command: 'echo again' } }] }));
    const stream = await t.client.beta.sessions.events.stream(session.id);
    await t.client.beta.sessions.events.send(session.id, { events: [{ type: 'user.message', content: text('loop') }] });
    const seen = await collectUntil(stream, isIdle);
    t.fake.setFallback(echoModel);
    expect(seen.at(-1)).toMatchObject({ stop_reason: { type: 'budget_reached' } });
    const requests = seen.filter((e) => e.type === 'span.model_request_start').length;
    expect(requests).toBeGreaterThanOrEqual(1);
    expect(requests).toBeLessThanOrEqual(3);
    const after = await t.client.beta.sessions.retrieve(session.id);
    expect(Number(after.usage.list_cost?.amount)).toBeGreaterThanOrEqual(10);
    // a session without a price for its model cannot be measured, so it does not start
    const unpriced = await t.client.beta.agents.create({ name: 'mystery', model: 'some-other-model' });
    const s2 = await t.client.beta.sessions.create({
      agent: unpriced.id,
      environment_id: envId,
      budget: { type: 'limit', max_list_cost: { amount: '1000', currency: 'USD' } },
    });
    const st2 = await t.client.beta.sessions.events.stream(s2.id);
    await t.client.beta.sessions.events.send(s2.id, { events: [{ type: 'user.message', content: text('hi') }] });
    const seen2 = await collectUntil(st2, isIdle);
    expect(seen2.at(-1)).toMatchObject({ stop_reason: { type: 'budget_reached' } });
    expect(seen2.some((e) => e.type === 'span.model_request_start')).toBe(false);
    expect((await listAll(t.client, s2.id)).map((e) => e.type)).toEqual(['user.message', 'session.status_running', 'session.status_idle']);
  });
});
