/**
 * OpenTelemetry export end to end (docs/TELEMETRY.md): an OTLP/HTTP receiver on loopback (a plain
 * HTTP server decoding OTLP JSON), the local runtime with it as its traces endpoint, and one turn
 * with a bash tool call through the official SDK. The turn's spans form one trace, nesting from
 * the API request that sent the message through the wake, the harness step, the model requests
 * and the tool call down to the sandbox's execute (and the agent's run of the tool); no span
 * carries the prompt, the tool's input or output, or a key.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { collectUntil, createAgentAndEnvironment, isIdle, startTestRuntime, type TestRuntime } from '../helpers/runtime.js';

interface OtlpSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  kind: number;
  startTimeUnixNano: string;
  endTimeUnixNano: string;
  attributes: Array<{ key: string; value: Record<string, unknown> }>;
  status: { code: number };
}

/** The receiver: every span of every `POST /v1/traces`, and the headers the exports came with. */
async function startReceiver() {
  const spans: OtlpSpan[] = [];
  const headers: Array<Record<string, string | string[] | undefined>> = [];
  const services = new Set<string>();
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (req.method !== 'POST' || req.url !== '/v1/traces' || req.headers['content-type'] !== 'application/json') {
        res.writeHead(404).end();
        return;
      }
      headers.push(req.headers);
      const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as {
        resourceSpans: Array<{ resource: { attributes: OtlpSpan['attributes'] }; scopeSpans: Array<{ spans: OtlpSpan[] }> }>;
      };
      for (const rs of body.resourceSpans) {
        services.add(String(rs.resource.attributes.find((a) => a.key === 'service.name')?.value.stringValue));
        for (const ss of rs.scopeSpans) spans.push(...ss.spans);
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    spans,
    headers,
    services,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

const attr = (s: OtlpSpan, key: string) => {
  const v = s.attributes.find((a) => a.key === key)?.value;
  return v && (v.stringValue ?? v.intValue ?? v.boolValue ?? v.doubleValue);
};

const PROMPT = 'Please list the launch codes PROMPT-7f3a9c';
const COMMAND = 'echo TOOL-OUTPUT-51d2e8';
const COLLECTOR_KEY = 'collector-key-e4b7';

describe('OpenTelemetry trace export (local runtime, OTLP/HTTP JSON on loopback)', () => {
  let receiver: Awaited<ReturnType<typeof startReceiver>>;
  let t: TestRuntime | undefined;

  beforeAll(async () => {
    receiver = await startReceiver();
  });
  afterAll(async () => {
    await t?.close();
    await receiver?.close();
  });

  it('one turn is one trace whose spans nest from the API request down to the sandbox', async () => {
    t = await startTestRuntime({
      runtime: {
        telemetry: { url: `${receiver.url}/v1/traces`, headers: { 'x-collector-key': COLLECTOR_KEY }, serviceName: 'corral-test' },
      },
    });
    const { agent, environment } = await createAgentAndEnvironment(t.client);
    const session = await t.client.beta.sessions.create({ agent: agent.id, environment_id: environment.id });
    t.fake.push({ kind: 'tool_use', calls: [{ name: 'bash', input: { command: COMMAND } }] }, { kind: 'text', text: 'done' });
    const stream = await t.client.beta.sessions.events.stream(session.id);
    await t.client.beta.sessions.events.send(session.id, { events: [{ type: 'user.message', content: [{ type: 'text', text: PROMPT }] }] });
    const seen = await collectUntil(stream, isIdle);
    const result = seen.find((e) => e.type === 'agent.tool_result') as { content: Array<{ text: string }> } | undefined;
    expect(result?.content[0]?.text).toContain('TOOL-OUTPUT-51d2e8');
    const apiKey = t.runtime.apiKey;
    // Closing the runtime flushes what the exporter still holds.
    await t.close();
    t = undefined;

    const spans = receiver.spans;
    const byId = new Map(spans.map((s) => [s.spanId, s]));
    const send = spans.find((s) => s.name === 'api.request' && attr(s, 'http.request.method') === 'POST' && attr(s, 'http.route') === '/v1/sessions/:id/events');
    expect(send, 'the API request that sent the message').toBeDefined();
    expect(attr(send!, 'http.response.status_code')).toBe('200');
    const turn = spans.filter((s) => s.traceId === send!.traceId);

    // Everything the turn did is in the send's trace.
    for (const name of ['wake', 'harness.step', 'model_request', 'tool_call', 'sandbox.provision', 'sandbox.execute', 'sandbox.run_tool']) {
      const named = spans.filter((s) => s.name === name);
      expect(named.length, name).toBeGreaterThan(0);
      expect(named.every((s) => s.traceId === send!.traceId), `every ${name} span is in the turn's trace`).toBe(true);
    }
    expect(turn.filter((s) => s.name === 'model_request')).toHaveLength(2);

    // The chain, child to root: sandbox.run_tool -> sandbox.execute -> tool_call -> harness.step -> wake -> api.request.
    const chain: string[] = [];
    for (let s: OtlpSpan | undefined = turn.find((x) => x.name === 'sandbox.run_tool'); s; s = s.parentSpanId ? byId.get(s.parentSpanId) : undefined) {
      chain.push(s.name);
      if (!s.parentSpanId) expect(s.spanId).toBe(send!.spanId);
    }
    expect(chain).toEqual(['sandbox.run_tool', 'sandbox.execute', 'tool_call', 'harness.step', 'wake', 'api.request']);
    const step = turn.find((s) => s.name === 'harness.step')!;
    for (const m of turn.filter((s) => s.name === 'model_request')) {
      expect(m.parentSpanId).toBe(step.spanId);
      expect(attr(m, 'gen_ai.request.model')).toBe('claude-sonnet-4-6');
      expect(Number(attr(m, 'gen_ai.usage.output_tokens'))).toBeGreaterThan(0);
    }
    const execute = turn.find((s) => s.name === 'sandbox.execute')!;
    const run = turn.find((s) => s.name === 'sandbox.run_tool')!;
    expect(BigInt(run.startTimeUnixNano)).toBeLessThanOrEqual(BigInt(run.endTimeUnixNano));
    expect(BigInt(run.endTimeUnixNano)).toBeLessThanOrEqual(BigInt(execute.endTimeUnixNano));
    const toolCall = turn.find((s) => s.name === 'tool_call')!;
    expect(attr(toolCall, 'corral.tool.name')).toBe('bash');
    // The first tool call of the session provisioned its sandbox, inside the tool call.
    expect(turn.find((s) => s.name === 'sandbox.provision')?.parentSpanId).toBe(toolCall.spanId);

    // Exports went with the configured headers and service name.
    expect(receiver.headers.every((h) => h['x-collector-key'] === COLLECTOR_KEY)).toBe(true);
    expect([...receiver.services]).toEqual(['corral-test']);

    // Nothing said or run in the turn, and no key, is in any span.
    const text = JSON.stringify(spans);
    for (const secret of ['PROMPT-7f3a9c', 'launch codes', 'TOOL-OUTPUT-51d2e8', COMMAND, apiKey, 'test-model-key', COLLECTOR_KEY]) {
      expect(text, `a span carries ${secret}`).not.toContain(secret);
    }
  });
});
