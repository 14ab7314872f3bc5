import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { collectUntil, isIdle, startTestRuntime, type TestRuntime } from '../helpers/runtime.js';
import { call } from './api-helpers.js';

/**
 * Attack: a `user.tool_confirmation` (or `user.custom_tool_result`) for a tool call that does not
 * exist, or was already answered, used to be accepted and stored. Now it is a 400 naming the id,
 * and nothing is appended.
 */
describe('answers to tool calls that are not waiting', () => {
  let t: TestRuntime;
  let envId: string;
  beforeAll(async () => {
    t = await startTestRuntime();
    envId = (await t.client.beta.environments.create({ name: 'confirm' })).id;
  });
  afterAll(() => t.close());

  it('refuses unknown and repeated confirmations and custom tool results, naming the id', async () => {
    const agent = await t.client.beta.agents.create({
      name: 'careful',
      model: 'claude-sonnet-4-6',
      tools: [{ type: 'agent_toolset_20260401', configs: [{ name: 'bash', permission_policy: { type: 'always_ask' } }] }],
    });
    const session = await t.client.beta.sessions.create({ agent: agent.id, environment_id: envId });
    const stream = await t.client.beta.sessions.events.stream(session.id);
    const events = async () => (await call(t, 'GET', `/v1/sessions/${session.id}/events?limit=1000`)).body.data as Array<{ type: string }>;

    // before any tool call: nothing to confirm
    const early = await call(t, 'POST', `/v1/sessions/${session.id}/events`, { events: [{ type: 'user.tool_confirmation', tool_use_id: 'sevt_01ABCDEFGHJKMNPQRSTVWXYZ01', result: 'allow' }] });
    expect(early.status).toBe(400);
    expect(early.body.error?.message).toMatch(/events\.0\.tool_use_id: sevt_01ABCDEFGHJKMNPQRSTVWXYZ01 is not a tool call/);
    expect(await events()).toEqual([]);

    await t.client.beta.sessions.events.send(session.id, { events: [{ type: 'user.message', content: [{ type: 'text', text: 'run `echo ok`' }] }] });
    const seen = await collectUntil(stream, isIdle);
    const use = seen.find((e) => e.type === 'agent.tool_use')!;
    expect(seen.at(-1)).toMatchObject({ stop_reason: { type: 'requires_action' } });
    const count = (await events()).length;

    const attempts: Array<Record<string, string>> = [
      { type: 'user.tool_confirmation', tool_use_id: 'sevt_nope', result: 'allow' },
      { type: 'user.custom_tool_result', custom_tool_use_id: use.id }, // a bash call is not a custom tool
      { type: 'user.custom_tool_result', custom_tool_use_id: 'sevt_nope' },
    ];
    for (const e of attempts) {
      const res = await call(t, 'POST', `/v1/sessions/${session.id}/events`, { events: [e] });
      expect(res.status).toBe(400);
      expect(res.body.error?.message).toContain(e.tool_use_id ?? e.custom_tool_use_id);
    }
    // the same id twice in one request: the second is refused, and so is the whole request
    const twice = await call(t, 'POST', `/v1/sessions/${session.id}/events`, {
      events: [
        { type: 'user.tool_confirmation', tool_use_id: use.id, result: 'allow' },
        { type: 'user.tool_confirmation', tool_use_id: use.id, result: 'deny' },
      ],
    });
    expect(twice.status).toBe(400);
    expect(twice.body.error?.message).toMatch(/events\.1\.tool_use_id/);
    expect((await events()).length).toBe(count);

    // the real one is accepted once
    const ok = await call(t, 'POST', `/v1/sessions/${session.id}/events`, { events: [{ type: 'user.tool_confirmation', tool_use_id: use.id, result: 'allow' }] });
    expect(ok.status).toBe(200);
    await collectUntil(stream, isIdle);
    const again = await call(t, 'POST', `/v1/sessions/${session.id}/events`, { events: [{ type: 'user.tool_confirmation', tool_use_id: use.id, result: 'allow' }] });
    expect(again.status).toBe(400);
  });
});
