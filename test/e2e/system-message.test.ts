import type Anthropic from '@anthropic-ai/sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { collectUntil, createAgentAndEnvironment, isIdle, listAll, startTestRuntime, type TestRuntime } from '../helpers/runtime.js';

/**
 * `system.message` through the official SDK: privileged context sent with a user turn reaches the
 * model as a `role: "system"` message right after that turn, and stays in the conversation for
 * the turns after it; where the API says it may not stand, it is a 400.
 */
describe('system.message', () => {
  let t: TestRuntime;
  let c: Anthropic;
  let agentId: string;
  let environmentId: string;
  beforeAll(async () => {
    t = await startTestRuntime();
    c = t.client;
    const { agent, environment } = await createAgentAndEnvironment(c);
    agentId = agent.id;
    environmentId = environment.id;
  });
  afterAll(() => t?.close());

  const text = (s: string) => [{ type: 'text' as const, text: s }];

  it('reaches the model as a system message after the turn it accompanies, and on later turns', async () => {
    const session = await c.beta.sessions.create({ agent: agentId, environment_id: environmentId });
    t.fake.push({ kind: 'text', text: 'Noted.' }, { kind: 'text', text: 'Still noted.' });
    const stream = await c.beta.sessions.events.stream(session.id);
    const sent = await c.beta.sessions.events.send(session.id, {
      events: [
        { type: 'user.message', content: text('Summarise the report.') },
        { type: 'system.message', content: text('Answer in French.') },
      ],
    });
    expect(sent.data?.map((e) => e.type)).toEqual(['user.message', 'system.message']);
    await collectUntil(stream, isIdle);
    await c.beta.sessions.events.send(session.id, { events: [{ type: 'user.message', content: text('And the appendix?') }] });
    await collectUntil(stream, isIdle);
    stream.controller.abort();

    const requests = t.fake.requests.filter((r) => JSON.stringify(r.body).includes('Summarise the report.'));
    expect(requests).toHaveLength(2);
    const roles = (r: (typeof requests)[number]) => (r.body.messages ?? []).map((m) => m.role);
    const plain = (m: { role: string; content: unknown }) => ({
      role: m.role,
      content: (m.content as Array<Record<string, unknown>>).map(({ cache_control: _c, ...b }) => b),
    });
    expect(roles(requests[0])).toEqual(['user', 'system']);
    expect(plain(requests[0].body.messages![1])).toEqual({ role: 'system', content: text('Answer in French.') });
    expect(roles(requests[1])).toEqual(['user', 'system', 'assistant', 'user']);
    expect(plain(requests[1].body.messages![1])).toEqual({ role: 'system', content: text('Answer in French.') });
    // The top-level system prompt is not replaced.
    expect(JSON.stringify(requests[1].body.system ?? '')).not.toContain('Answer in French.');

    const stored = await listAll(c, session.id, { types: ['system.message'] });
    expect(stored).toEqual([expect.objectContaining({ type: 'system.message', content: text('Answer in French.'), processed_at: expect.any(String) })]);
  });

  it('is refused where the API says it may not stand, naming why', async () => {
    const session = await c.beta.sessions.create({ agent: agentId, environment_id: environmentId });
    const system = { type: 'system.message' as const, content: text('Be brief.') };
    const user = { type: 'user.message' as const, content: text('Hello') };
    for (const [events, why] of [
      [[system], /must follow the user.message or user.custom_tool_result/],
      [[system, user], /must be the last event/],
      [[user, system, system], /must be the last event/],
      [[user, { type: 'user.interrupt' as const }, system], /must follow/],
      [[user, { type: 'system.message', content: [{ type: 'image', source: { type: 'url', url: 'https://example.com/a.png' } }] }], /events\.1\.content/],
      [[user, { type: 'system.message', content: [] }], /events\.1\.content/],
    ] as const) {
      await expect(c.beta.sessions.events.send(session.id, { events: events as never })).rejects.toMatchObject({ status: 400, message: expect.stringMatching(why) });
    }
    expect(await listAll(c, session.id)).toEqual([]);
  });
});
