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
});
