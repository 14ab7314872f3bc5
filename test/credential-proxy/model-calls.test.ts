import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LocalCredentialProxy } from '../../lambdas/adapters/local/credential-proxy-client.js';
import { AnthropicModel, ModelError, type ModelDelta } from '../../lambdas/core/harness/model.js';
import { collectUntil, isIdle, startTestRuntime, waitFor, type TestRuntime } from '../helpers/runtime.js';

const KEY = `sk-model-key-${Date.now()}-never-in-the-runtime`;

interface Seen {
  path: string;
  headers: http.IncomingHttpHeaders;
  closedEarly: boolean;
}

/** A Messages API stand-in on loopback behind a gateway path; its answers stream in two halves. */
function startUpstream() {
  const seen: Seen[] = [];
  let release: () => void = () => {};
  let plan: 'stream' | 'overloaded' | 'hang' = 'stream';
  const sse = (type: string, data: object) => `event: ${type}\ndata: ${JSON.stringify({ type, ...data })}\n\n`;
  const server = http.createServer((req, res) => {
    const entry: Seen = { path: req.url ?? '', headers: req.headers, closedEarly: false };
    seen.push(entry);
    res.on('close', () => {
      if (!res.writableFinished) entry.closedEarly = true;
    });
    req.resume();
    req.on('end', () => {
      if (plan === 'overloaded') {
        res.writeHead(529, { 'content-type': 'application/json', 'set-cookie': 'upstream=1' });
        return res.end(JSON.stringify({ type: 'error', error: { type: 'overloaded_error', message: 'busy' } }));
      }
      res.writeHead(200, { 'content-type': 'text/event-stream', 'request-id': 'req_upstream' });
      if (plan === 'hang') return res.flushHeaders();
      res.write(sse('message_start', { message: { id: 'msg_1', type: 'message', role: 'assistant', model: 'claude-sonnet-4-6', content: [], stop_reason: null, usage: { input_tokens: 3, output_tokens: 0 } } }));
      res.write(sse('content_block_start', { index: 0, content_block: { type: 'text', text: '' } }));
      res.write(sse('content_block_delta', { index: 0, delta: { type: 'text_delta', text: 'first half' } }));
      // The second half waits for the test: the first must already have reached the harness.
      new Promise<void>((r) => (release = r)).then(() => {
        res.write(sse('content_block_delta', { index: 0, delta: { type: 'text_delta', text: ', second half' } }));
        res.write(sse('content_block_stop', { index: 0 }));
        res.write(sse('message_delta', { delta: { stop_reason: 'end_turn' }, usage: { output_tokens: 4 } }));
        res.end(sse('message_stop', {}));
      });
    });
  });
  return new Promise<{ url: string; seen: Seen[]; release: () => void; setPlan: (p: typeof plan) => void; close: () => Promise<void> }>((resolve) => {
    server.listen(0, '127.0.0.1', () => {
      resolve({
        url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
        seen,
        release: () => release(),
        setPlan: (p) => (plan = p),
        close: () => {
          server.closeAllConnections();
          return new Promise((r) => server.close(() => r()));
        },
      });
    });
  });
}

function rawCall(socketPath: string, urlPath: string, auth?: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.request({ socketPath, path: urlPath, method: 'POST', headers: { 'content-type': 'application/json', ...(auth ? { authorization: auth } : {}) } }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', reject);
    req.end('{}');
  });
}

const request = { model: 'claude-sonnet-4-6', messages: [{ role: 'user' as const, content: [{ type: 'text', text: 'hi' }] }], tools: [], maxTokens: 64 };

/**
 * Locally the credential proxy process alone holds the model key: the harness's model client
 * talks to it over the control socket with no key, and the proxy forwards the call to the
 * provider's base URL with the key, streaming the answer through and cancelling on abort.
 */
describe('model calls through the local credential proxy', () => {
  let upstream: Awaited<ReturnType<typeof startUpstream>>;
  let proxy: LocalCredentialProxy;
  let model: AnthropicModel;
  let dataDir: string;
  beforeAll(async () => {
    upstream = await startUpstream();
    dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'corral-model-proxy-'));
    proxy = new LocalCredentialProxy({
      dataDir,
      // never used: no vault call is made here
      dynamoEndpoint: 'http://127.0.0.1:9',
      stateTable: 'unused',
      model: { apiKey: KEY, baseUrl: `${upstream.url}/gateway` },
    });
    model = new AnthropicModel({ apiKey: 'held-by-the-credential-proxy', baseURL: 'http://credential-proxy.invalid', fetch: proxy.modelFetch() });
  });
  afterAll(async () => {
    await proxy?.close();
    await upstream?.close();
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  it('adds the key only in the proxy process and streams the answer through unbuffered', async () => {
    upstream.setPlan('stream');
    const deltas: ModelDelta[] = [];
    const answer = model.complete(request, { onDelta: (d) => deltas.push(d) });
    // The first half reaches the harness while the provider still holds the second.
    await waitFor(async () => deltas.length > 0, 'the first streamed fragment');
    expect(deltas[0]).toEqual({ type: 'text', block: 0, text: 'first half' });
    upstream.release();
    const response = await answer;
    expect(response.content).toEqual([{ type: 'text', text: 'first half, second half' }]);
    expect(response.timeToFirstTokenMs).not.toBeNull();

    const call = upstream.seen.at(-1)!;
    expect(call.path).toBe('/gateway/v1/messages');
    expect(call.headers['x-api-key']).toBe(KEY);
    // Corral's own token for the proxy goes no further than the proxy.
    expect(call.headers.authorization).toBeUndefined();
    // The key is in neither the proxy's command line nor its environment (it came on stdin).
    const pid = proxy.pid!;
    expect(fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8')).not.toContain(KEY);
    expect(fs.readFileSync(`/proc/${pid}/environ`, 'utf8')).not.toContain(KEY);
  });

  it('passes the provider\'s errors through for the harness to classify and retry', async () => {
    upstream.setPlan('overloaded');
    const err = await model.complete(request).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ModelError);
    expect(err).toMatchObject({ errorType: 'model_overloaded_error', retryable: true, status: 529 });
  });

  it('cancels the provider\'s call when the harness aborts', async () => {
    upstream.setPlan('hang');
    const before = upstream.seen.length;
    const ac = new AbortController();
    const answer = model.complete(request, { signal: ac.signal }).catch((e: unknown) => e);
    await waitFor(async () => upstream.seen.length > before, 'the call to reach the provider');
    ac.abort();
    await answer;
    await waitFor(async () => upstream.seen.at(-1)!.closedEarly, 'the provider\'s connection to close');
  });

  it('forwards nothing without the runtime\'s token, and nothing but the Messages call', async () => {
    const before = upstream.seen.length;
    expect(await rawCall(proxy.controlSocket, '/model/v1/messages')).toBe(401);
    expect(await rawCall(proxy.controlSocket, '/model/v1/messages', 'Bearer not-the-token-at-all-not-the-token')).toBe(401);
    const token = (proxy as unknown as { token: string }).token;
    expect(await rawCall(proxy.controlSocket, '/model/v1/complete', `Bearer ${token}`)).toBe(404);
    expect(await rawCall(proxy.controlSocket, '/model/v1/messages/batches', `Bearer ${token}`)).toBe(404);
    expect(upstream.seen.length).toBe(before);
  });
});

describe('a session turn on the local runtime', () => {
  let t: TestRuntime;
  beforeAll(async () => {
    t = await startTestRuntime({ runtime: { anthropicApiKey: KEY } });
  });
  afterAll(() => t?.close());

  it('calls the model through the credential proxy process, which alone sends the key', async () => {
    // Started with the runtime, so that the first turn does not wait for it.
    const proxy = t.runtime.credentialProxy!;
    const first = await waitFor(async () => proxy.pid, 'the proxy to start with the runtime');
    // Killed (a process this test's runtime started, by its id), it is started again by the
    // next model call: which would not happen if the runtime called the model itself.
    process.kill(first, 'SIGKILL');
    await waitFor(async () => proxy.pid === undefined, 'the proxy to be gone');
    const agent = await t.client.beta.agents.create({ name: 'no tools', model: 'claude-sonnet-4-6' });
    const environment = await t.client.beta.environments.create({ name: 'e', config: { type: 'cloud' } });
    const session = await t.client.beta.sessions.create({ agent: agent.id, environment_id: environment.id });
    const stream = await t.client.beta.sessions.events.stream(session.id);
    await t.client.beta.sessions.events.send(session.id, { events: [{ type: 'user.message', content: [{ type: 'text', text: 'hello' }] }] });
    const seen = await collectUntil(stream, isIdle);
    expect(seen.find((e) => e.type === 'agent.message')).toMatchObject({ content: [{ type: 'text', text: 'You said: hello' }] });
    // No vault, no tool, no sandbox: only the model call could have started the proxy again.
    expect(proxy.pid).toBeGreaterThan(0);
    expect(proxy.pid).not.toBe(first);
    expect(t.fake.requests.at(-1)!.headers['x-api-key']).toBe(KEY);
    expect(t.fake.requests.at(-1)!.headers.authorization).toBeUndefined();
  });
});
