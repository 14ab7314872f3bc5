import Anthropic from '@anthropic-ai/sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { collectUntil, createAgentAndEnvironment, isIdle, listAll, startTestRuntime, type TestRuntime } from '../helpers/runtime.js';
import { startFakeBedrockRuntime, type FakeBedrockRuntime } from '../fixtures/fake-bedrock-runtime.js';

const credentials = { accessKeyId: 'AKIDLOCALBEDROCK', secretAccessKey: 'local-bedrock-secret' };

/**
 * A session end to end on the `bedrock` model provider: official SDK -> local runtime -> harness
 * -> the Bedrock runtime stand-in (signed InvokeModelWithResponseStream, event-stream answers)
 * -> the scripted fake model behind it. No model key is configured anywhere.
 */
describe('the bedrock model provider, end to end', () => {
  let bedrock: FakeBedrockRuntime;
  let t: TestRuntime;

  beforeAll(async () => {
    bedrock = await startFakeBedrockRuntime({ region: 'eu-west-1', credentials });
    t = await startTestRuntime({
      runtime: {
        anthropicApiKey: undefined,
        anthropicBaseUrl: undefined,
        modelProvider: 'bedrock',
        models: ['claude-sonnet-4-6', 'claude-haiku-4-5'],
        bedrock: { region: 'eu-west-1', endpoint: bedrock.url, credentials },
      },
    });
  });
  afterAll(async () => {
    await t?.close();
    await bedrock?.close();
  });

  it('runs a turn with a tool call, retrying a throttled call, with usage on span.model_request_end', async () => {
    const { agent, environment } = await createAgentAndEnvironment(t.client, { model: 'claude-sonnet-4-6' });
    bedrock.messages.push(
      { kind: 'error', status: 429 },
      { kind: 'tool_use', text: 'Looking.', calls: [{ name: 'bash', input: { command: 'echo from-the-sandbox' } }] },
      { kind: 'text', text: 'All done.' },
    );
    const session = await t.client.beta.sessions.create({ agent: agent.id, environment_id: environment.id });
    const stream = await t.client.beta.sessions.events.stream(session.id);
    await t.client.beta.sessions.events.send(session.id, { events: [{ type: 'user.message', content: [{ type: 'text', text: 'run it' }] }] });
    await collectUntil(stream, isIdle);
    const events = (await listAll(t.client, session.id)) as Array<{ type: string; [k: string]: unknown }>;

    // Throttling (429 ThrottlingException) was retried, and said so.
    expect(events.find((e) => e.type === 'session.error')).toMatchObject({ error: { type: 'model_rate_limited_error', retry_status: { type: 'retrying' } } });
    const result = events.find((e) => e.type === 'agent.tool_result') as { content: Array<{ text: string }> } | undefined;
    expect(JSON.stringify(result?.content)).toContain('from-the-sandbox');
    expect(events.filter((e) => e.type === 'agent.message').map((e) => JSON.stringify(e.content))).toContainEqual(expect.stringContaining('All done.'));

    const ends = events.filter((e) => e.type === 'span.model_request_end') as unknown as Array<{ is_error: boolean; model_usage: Record<string, number>; time_to_first_token_ms?: number }>;
    const ok = ends.filter((e) => !e.is_error);
    expect(ok).toHaveLength(2);
    for (const end of ok) {
      expect(end.model_usage.input_tokens).toBeGreaterThan(0);
      expect(end.model_usage.output_tokens).toBeGreaterThan(0);
      expect(end.time_to_first_token_ms).toBeGreaterThanOrEqual(0);
    }

    // Bedrock was called on the region's inference profile, signed (checked in full), and the tool
    // result went back to it.
    expect(bedrock.refused).toBe(0);
    expect(bedrock.calls.map((c) => c.modelId)).toEqual(Array(3).fill('eu.anthropic.claude-sonnet-4-6'));
    expect(JSON.stringify(bedrock.calls[2].body.messages)).toContain('from-the-sandbox');
    for (const c of bedrock.calls) expect(c.headers).not.toHaveProperty('x-api-key');

    // Usage and prices come out under the Claude id.
    const usage = (await t.client.beta.sessions.retrieve(session.id)) as unknown as { usage?: Record<string, number> };
    expect(usage.usage?.output_tokens).toBe(ok.reduce((n, e) => n + e.model_usage.output_tokens, 0));
  });

  it('refuses at create an agent whose model the provider cannot serve, or the deployment is not configured for', async () => {
    for (const model of ['claude-fake-echo', 'claude-opus-4-6']) {
      const err = await t.client.beta.agents.create({ name: 'x', model }).catch((e: unknown) => e);
      expect(err, model).toBeInstanceOf(Anthropic.BadRequestError);
      expect((err as Error).message).toContain(model);
      expect((err as Error).message).toContain('bedrock');
    }
    const agent = await t.client.beta.agents.create({ name: 'ok', model: 'claude-haiku-4-5' });
    const err = await t.client.beta.agents.update(agent.id, { version: agent.version, model: 'claude-fake-echo' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Anthropic.BadRequestError);
  });
});
