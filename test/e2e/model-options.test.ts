import Anthropic from '@anthropic-ai/sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { collectUntil, createAgentAndEnvironment, isIdle, startTestRuntime, type TestRuntime } from '../helpers/runtime.js';
import type { RecordedRequest } from '../fixtures/fake-messages-api.js';

const text = (t: string) => [{ type: 'text' as const, text: t }];

/**
 * The agent's model configuration reaches the Messages API request: official SDK -> local
 * runtime -> harness -> the scripted fake model, which records every request it was sent.
 */
describe("the agent's model options reach the model", () => {
  let t: TestRuntime;
  let envId: string;
  beforeAll(async () => {
    t = await startTestRuntime();
    envId = (await createAgentAndEnvironment(t.client)).environment.id;
  });
  afterAll(() => t.close());

  /** One turn of a new session of `agent`; the requests the fake model got during it. */
  async function turn(agent: { id: string }, message: string): Promise<{ sessionId: string; requests: RecordedRequest[] }> {
    const before = t.fake.requests.length;
    const session = await t.client.beta.sessions.create({ agent: agent.id, environment_id: envId });
    const stream = await t.client.beta.sessions.events.stream(session.id);
    await t.client.beta.sessions.events.send(session.id, { events: [{ type: 'user.message', content: text(message) }] });
    await collectUntil(stream, isIdle);
    return { sessionId: session.id, requests: t.fake.requests.slice(before) };
  }

  it('sends effort as output_config.effort, speed with the fast-mode beta, and inference_geo', async () => {
    const agent = await t.client.beta.agents.create({
      name: 'tuned',
      model: { id: 'claude-opus-4-6', effort: 'low', speed: 'fast', inference_geo: 'us' },
    });
    expect(agent.model).toEqual({ id: 'claude-opus-4-6', effort: { type: 'low' }, speed: 'fast', inference_geo: 'us' });
    const { requests } = await turn(agent, 'hello');
    expect(requests).toHaveLength(1);
    const body = requests[0].body;
    expect(body.model).toBe('claude-opus-4-6');
    expect(body.output_config).toEqual({ effort: 'low' });
    expect(body.speed).toBe('fast');
    expect(body.inference_geo).toBe('us');
    expect(body.thinking).toEqual({ type: 'adaptive' });
    expect(requests[0].headers['anthropic-beta']).toContain('fast-mode-2026-02-01');
  });

  it('sends none of them when the agent sets none, and no thinking to a model older than adaptive thinking', async () => {
    const agent = await t.client.beta.agents.create({ name: 'plain', model: 'claude-haiku-4-5' });
    const { requests } = await turn(agent, 'hello');
    const body = requests[0].body;
    for (const field of ['output_config', 'speed', 'inference_geo', 'thinking']) expect(body).not.toHaveProperty(field);
    expect(requests[0].headers['anthropic-beta'] ?? '').not.toContain('fast-mode');
  });

  it('follows an update: the next session runs with the new version’s options', async () => {
    const agent = await t.client.beta.agents.create({ name: 'updated', model: { id: 'claude-opus-4-6', effort: 'max' } });
    const v2 = await t.client.beta.agents.update(agent.id, { version: agent.version, model: { id: 'claude-opus-4-6', effort: { type: 'medium' } } });
    expect(v2.model.effort).toEqual({ type: 'medium' });
    const { requests } = await turn(agent, 'hello');
    expect(requests[0].body.output_config).toEqual({ effort: 'medium' });
    expect(requests[0].body).not.toHaveProperty('inference_geo');
  });

  it('refuses an inference geography the model cannot serve, naming it', async () => {
    const err = await t.client.beta.agents
      .create({ name: 'eu', model: { id: 'claude-opus-4-6', inference_geo: 'eu' } })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Anthropic.BadRequestError);
    expect((err as Error).message).toContain('model.inference_geo');
    expect((err as Error).message).toMatch(/inference_geo \\?"eu\\?" is not supported/);
    const effort = await t.client.beta.agents
      .create({ name: 'e', model: { id: 'claude-opus-4-6', effort: 'extreme' as 'max' } })
      .catch((e: unknown) => e);
    expect(effort).toBeInstanceOf(Anthropic.BadRequestError);
    expect((effort as Error).message).toContain('model.effort');
  });

  it('keeps thinking blocks, signatures intact, and sends them back ahead of the answer they belong to', async () => {
    const agent = await t.client.beta.agents.create({
      name: 'thinker',
      model: { id: 'claude-opus-4-6', effort: 'high' },
      tools: [{ type: 'agent_toolset_20260401' }],
    });
    t.fake.push(
      {
        kind: 'blocks',
        blocks: [
          { type: 'thinking', thinking: 'The user wants its output; run it.', signature: 'sig-one' },
          { type: 'redacted_thinking', data: 'opaque-redacted' },
          { type: 'text', text: 'Running it.' },
          { type: 'tool_use', name: 'bash', input: { command: 'echo thought-$((40+2))' } },
        ],
      },
      { kind: 'blocks', blocks: [{ type: 'thinking', thinking: 'It printed 42.', signature: 'sig-two' }, { type: 'text', text: 'It says 42.' }] },
    );
    const { sessionId, requests } = await turn(agent, 'what does it print?');
    expect(requests).toHaveLength(2);
    expect(requests.every((r) => (r.body.thinking as { type: string }).type === 'adaptive')).toBe(true);
    // The request after the tool call carries the answer with its thinking first, unchanged.
    const assistant = requests[1].body.messages!.filter((m) => m.role === 'assistant');
    expect(assistant).toHaveLength(1);
    const content = assistant[0].content as Array<Record<string, unknown>>;
    expect(content.map((b) => b.type)).toEqual(['thinking', 'redacted_thinking', 'text', 'tool_use']);
    expect(content[0]).toEqual({ type: 'thinking', thinking: 'The user wants its output; run it.', signature: 'sig-one' });
    expect(content[1]).toEqual({ type: 'redacted_thinking', data: 'opaque-redacted' });
    expect(JSON.stringify(requests[1].body.messages!.at(-1))).toContain('thought-42');

    // The log: one agent.thinking per answer, each an SDK agent.thinking event (id, type,
    // processed_at) that also keeps the blocks.
    const events: Array<Record<string, unknown>> = [];
    for await (const e of t.client.beta.sessions.events.list(sessionId)) events.push(e as unknown as Record<string, unknown>);
    const thinking = events.filter((e) => e.type === 'agent.thinking');
    expect(thinking).toHaveLength(2);
    for (const e of thinking) {
      expect(e.id).toEqual(expect.any(String));
      expect(Number.isNaN(Date.parse(String(e.processed_at)))).toBe(false);
    }
    expect(thinking[1].blocks).toEqual([{ type: 'thinking', thinking: 'It printed 42.', signature: 'sig-two' }]);
    const types = events.map((e) => e.type);
    expect(types.indexOf('agent.thinking')).toBeLessThan(types.indexOf('agent.message'));

    // The next turn's request has both answers' thinking, each at the head of its answer.
    const next = await t.client.beta.sessions.events.stream(sessionId);
    const before = t.fake.requests.length;
    await t.client.beta.sessions.events.send(sessionId, { events: [{ type: 'user.message', content: text('thanks') }] });
    await collectUntil(next, isIdle);
    const answers = t.fake.requests[before].body.messages!.filter((m) => m.role === 'assistant');
    expect(answers.map((m) => (m.content as Array<{ type: string }>)[0].type)).toEqual(['thinking', 'thinking']);
    expect((answers[1].content as Array<Record<string, unknown>>)[0]).toMatchObject({ signature: 'sig-two' });
  });
});
