import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAwsModel } from '../../lambdas/adapters/aws/model.js';
import { createModelForwarder, MODEL_ROUTE_PREFIX, type ModelForwarder } from '../../lambdas/adapters/aws/model-forwarder.js';
import { ModelError, type ModelClient, type ModelDelta } from '../../lambdas/core/harness/model.js';
import { modelRoute } from '../../lambdas/proxy-service/model-route.js';
import { startFakeMessagesApi, type FakeMessagesApi } from '../fixtures/fake-messages-api.js';
import { waitFor } from '../helpers/runtime.js';

const KEY = `sk-proxy-service-key-${Date.now()}`;
const PARAMETER = '/corral/anthropic-api-key';
const ask = { model: 'claude-sonnet-4-6', messages: [{ role: 'user' as const, content: [{ type: 'text', text: 'hi' }] }], tools: [], maxTokens: 100 };

/**
 * On AWS the harness holds no model key: it calls the proxy service's harness-facing route
 * (`CORRAL_MODEL_PROXY_URL`), which reads the key from SSM with its own role and forwards the
 * call, streamed, to the provider. Real HTTP on loopback: the forwarder as the service mounts it,
 * the fake Messages API as the provider.
 */
describe('model calls through the proxy service', () => {
  let fake: FakeMessagesApi;
  let server: http.Server;
  let forwarder: ModelForwarder;
  let harness: ModelClient;
  let clock = 0;
  const reads: string[] = [];
  let ssmFails = false;

  beforeAll(async () => {
    fake = await startFakeMessagesApi();
    forwarder = createModelForwarder({
      keyParameter: PARAMETER,
      ssm: {
        get: async (name) => {
          reads.push(name);
          if (ssmFails) throw new Error(`AccessDeniedException: not authorized to perform ssm:GetParameter on ${name}`);
          return name === PARAMETER ? KEY : undefined;
        },
      },
      baseUrl: fake.url,
      maxConcurrent: 1,
      keyTtlMs: 1000,
      now: () => clock,
    });
    server = http.createServer((req, res) => {
      if (req.url?.startsWith(MODEL_ROUTE_PREFIX)) return void forwarder.handle(req, res);
      res.writeHead(404).end();
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const proxyUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/model`;
    // The harness's model as its entry builds it: the SSM client it is given must never be called.
    harness = await createAwsModel(
      { model: { provider: 'anthropic', proxyUrl } },
      { ssm: { get: () => Promise.reject(new Error('the harness must not read the model key')) } },
    );
  });
  afterAll(async () => {
    server?.closeAllConnections();
    await new Promise((r) => server?.close(r));
    await fake?.close();
  });

  it('the harness sends no key; the service adds the one it read, and streams the answer through', async () => {
    let release: () => void = () => {};
    fake.push({ kind: 'text', text: 'one two three four', chunkDelayMs: 5, hold: { afterDeltas: 1, until: new Promise<void>((r) => (release = r)) } });
    const deltas: ModelDelta[] = [];
    const answer = harness.complete(ask, { onDelta: (d) => deltas.push(d) });
    // The provider holds the rest of its answer: the first fragment is already at the harness.
    await waitFor(async () => deltas.length > 0, 'a fragment before the provider finished');
    release();
    expect((await answer).content).toEqual([expect.objectContaining({ type: 'text', text: 'one two three four' })]);
    const seen = fake.requests.at(-1)!;
    expect(seen.headers['x-api-key']).toBe(KEY);
    expect(seen.path).toBe('/v1/messages');
    expect(reads).toEqual([PARAMETER]);
    await waitFor(async () => forwarder.inFlight() === 0, 'the call to be released');
  });

  it('reads the key again after its time to live, once for concurrent calls', async () => {
    clock += 5_000;
    await harness.complete(ask);
    expect(reads).toEqual([PARAMETER, PARAMETER]);
  });

  it('is bounded: a call beyond the limit is a retryable overload; an abort frees its place', async () => {
    fake.push({ kind: 'hang' });
    const ac = new AbortController();
    const first = harness.complete(ask, { signal: ac.signal }).catch((e: unknown) => e);
    await waitFor(async () => forwarder.inFlight() === 1, 'the first call in flight');
    const second = await harness.complete(ask).catch((e: unknown) => e);
    expect(second).toBeInstanceOf(ModelError);
    expect(second).toMatchObject({ retryable: true, status: 503 });
    ac.abort();
    await first;
    await waitFor(async () => forwarder.inFlight() === 0, 'the aborted call to be released');
    expect((await harness.complete(ask)).content.length).toBeGreaterThan(0);
  });

  it('a key it cannot read is a retryable failure that names neither the parameter nor the role', async () => {
    clock += 5_000;
    ssmFails = true;
    try {
      const err = await harness.complete(ask).catch((e: unknown) => e);
      expect(err).toMatchObject({ retryable: true, status: 502 });
      expect((err as Error).message).not.toContain(PARAMETER);
      expect((err as Error).message).not.toContain('AccessDenied');
    } finally {
      ssmFails = false;
    }
  });
});

describe('the proxy service\'s model route', () => {
  it('is mounted only when the stack names the key\'s parameter (not with bedrock, which has no key)', () => {
    expect(modelRoute({})).toBeNull();
    expect(modelRoute({ AWS_REGION: 'us-east-1', CORRAL_MODEL_API_KEY_PARAMETER: PARAMETER, ANTHROPIC_BASE_URL: 'https://llm.example.com' })).toMatchObject({ prefix: '/model/', name: 'model' });
  });
});
