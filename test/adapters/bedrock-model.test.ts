import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BedrockModel } from '../../lambdas/adapters/aws/bedrock-model.js';
import { ModelError, type ModelDelta, type ModelRequest } from '../../lambdas/core/harness/model.js';
import { startFakeBedrockRuntime, type FakeBedrockRuntime } from '../fixtures/fake-bedrock-runtime.js';
import { startFakeMessagesApi } from '../fixtures/fake-messages-api.js';
import { createAwsModel } from '../../lambdas/adapters/aws/model.js';

const credentials = { accessKeyId: 'AKIDBEDROCKTEST', secretAccessKey: 'bedrock-test-secret' };

describe('the bedrock provider against the Bedrock runtime stand-in', () => {
  let bedrock: FakeBedrockRuntime;
  let model: BedrockModel;
  const request = (over: Partial<ModelRequest> = {}): ModelRequest => ({
    model: 'claude-sonnet-4-5',
    system: 'be brief',
    messages: [{ role: 'user', content: [{ type: 'text', text: 'list files' }] }],
    tools: [{ name: 'bash', description: 'run a command', input_schema: { type: 'object' } }],
    maxTokens: 1000,
    ...over,
  });

  beforeAll(async () => {
    bedrock = await startFakeBedrockRuntime({ region: 'us-west-2', credentials });
    model = new BedrockModel({ region: 'us-west-2', endpoint: bedrock.url, credentials });
  });
  afterAll(() => bedrock?.close());

  it('streams a tool call through a signed InvokeModelWithResponseStream on the region inference profile', async () => {
    bedrock.messages.push({ kind: 'tool_use', text: 'Running it.', calls: [{ name: 'bash', input: { command: 'ls -la' }, id: 'toolu_1' }] });
    const deltas: ModelDelta[] = [];
    const answer = await model.complete(request({ options: { betas: ['interleaved-thinking-2025-05-14'] } }), { onDelta: (d) => deltas.push(d) });
    expect(answer.stopReason).toBe('tool_use');
    expect(answer.content).toEqual([
      expect.objectContaining({ type: 'text', text: 'Running it.' }),
      { type: 'tool_use', id: 'toolu_1', name: 'bash', input: { command: 'ls -la' } },
    ]);
    expect(answer.usage.input_tokens).toBeGreaterThan(0);
    expect(answer.usage.output_tokens).toBeGreaterThan(0);
    expect(answer.timeToFirstTokenMs).not.toBeNull();
    expect(deltas.filter((d) => d.type === 'tool_input').map((d) => (d as { partial_json: string }).partial_json).join('')).toBe('{"command":"ls -la"}');

    const call = bedrock.calls.at(-1)!;
    expect(call.modelId).toBe('us.anthropic.claude-sonnet-4-5-20250929-v1:0');
    expect(call.body.anthropic_version).toBe('bedrock-2023-05-31');
    expect(call.body.anthropic_beta).toEqual(['interleaved-thinking-2025-05-14']);
    expect(call.body).not.toHaveProperty('model');
    expect(call.headers).not.toHaveProperty('x-api-key');
    expect(bedrock.refused).toBe(0);
    // The model behind saw the Bedrock id.
    expect(bedrock.messages.requests.at(-1)!.body.model).toBe('us.anthropic.claude-sonnet-4-5-20250929-v1:0');
  });

  it('reports throttling as a retryable rate limit, before and during the stream', async () => {
    bedrock.messages.push({ kind: 'error', status: 429 });
    const before = await model.complete(request()).catch((e: unknown) => e);
    expect(before).toBeInstanceOf(ModelError);
    expect(before).toMatchObject({ errorType: 'model_rate_limited_error', retryable: true, status: 429 });
    expect((before as Error).message).not.toContain('bedrock-test-secret');

    bedrock.messages.push({ kind: 'error', status: 429, midStream: true });
    const during = await model.complete(request()).catch((e: unknown) => e);
    expect(during).toMatchObject({ errorType: 'model_rate_limited_error', retryable: true });
    expect((during as Error).message).toMatch(/throttlingException/);

    bedrock.messages.push({ kind: 'error', status: 529, midStream: true });
    const unavailable = await model.complete(request()).catch((e: unknown) => e);
    expect(unavailable).toMatchObject({ errorType: 'model_overloaded_error', retryable: true });
    expect((unavailable as Error).message).toMatch(/serviceUnavailableException/);
  });

  it('refuses a model the table has no Bedrock id for, without calling Bedrock', async () => {
    const calls = bedrock.calls.length;
    const err = await model.complete(request({ model: 'claude-fake-echo' })).catch((e: unknown) => e);
    expect(err).toMatchObject({ errorType: 'model_request_failed_error', retryable: false });
    expect((err as Error).message).toMatch(/claude-fake-echo.*bedrock/);
    expect(bedrock.calls.length).toBe(calls);
  });

  it('is refused by Bedrock when signed with the wrong secret, or for the wrong region', async () => {
    const wrongKey = new BedrockModel({ region: 'us-west-2', endpoint: bedrock.url, credentials: { ...credentials, secretAccessKey: 'other' } });
    expect(await wrongKey.complete(request()).catch((e: unknown) => e)).toMatchObject({ retryable: false, status: 403 });
    const wrongRegion = new BedrockModel({ region: 'us-east-1', endpoint: bedrock.url, credentials });
    const err = await wrongRegion.complete(request()).catch((e: unknown) => e);
    expect(err).toMatchObject({ retryable: false, status: 403 });
    expect((err as Error).message).toMatch(/region us-east-1/);
    expect(bedrock.refused).toBe(2);
  });
});

describe('createAwsModel, by the configured provider', () => {
  const ask = { model: 'claude-haiku-4-5', messages: [{ role: 'user' as const, content: [{ type: 'text', text: 'hi' }] }], tools: [], maxTokens: 100 };

  it('bedrock: reads no key (no SSM call at all) and calls Bedrock signed with the role', async () => {
    const bedrock = await startFakeBedrockRuntime({ region: 'eu-west-1', credentials });
    try {
      const ssm = { get: () => Promise.reject(new Error('SSM must not be read with bedrock')) };
      // The SDK's variable for the service's endpoint, read when the model is built.
      process.env.AWS_ENDPOINT_URL_BEDROCK_RUNTIME = bedrock.url;
      const model = await createAwsModel(
        { model: { provider: 'bedrock', bedrockRegion: 'eu-west-1', models: ['claude-haiku-4-5'], apiKeyParameter: undefined } },
        { ssm, credentials },
      );
      const answer = await model.complete(ask);
      expect(answer.content).toEqual([expect.objectContaining({ type: 'text', text: 'You said: hi' })]);
      expect(bedrock.calls.map((c) => c.modelId)).toEqual(['eu.anthropic.claude-haiku-4-5-20251001-v1:0']);
      expect(bedrock.refused).toBe(0);
    } finally {
      delete process.env.AWS_ENDPOINT_URL_BEDROCK_RUNTIME;
      await bedrock.close();
    }
  });

  it('gateway: the Messages API at the gateway URL, with the key from SSM', async () => {
    const gateway = await startFakeMessagesApi();
    try {
      const ssm = { get: (name: string) => Promise.resolve(name === '/corral/gateway-key' ? 'gateway-key-value' : undefined) };
      const model = await createAwsModel({ model: { provider: 'gateway', baseUrl: gateway.url, apiKeyParameter: '/corral/gateway-key' } }, { ssm });
      await model.complete(ask);
      expect(gateway.requests).toHaveLength(1);
      const h = gateway.requests[0].headers;
      expect(h['x-api-key'] ?? h.authorization?.replace(/^Bearer /, '')).toBe('gateway-key-value');
      expect(gateway.requests[0].body.model).toBe('claude-haiku-4-5');
    } finally {
      await gateway.close();
    }
  });
});
