import { afterEach, describe, expect, it } from 'vitest';
import { parseWakeMessage } from '../../lambdas/adapters/aws/sqs-queue.js';
import { startAwsTelemetry } from '../../lambdas/adapters/aws/telemetry.js';
import { MemoryQueue } from '../../lambdas/adapters/local/memory-queue.js';
import { tracedWakeQueue } from '../../lambdas/core/harness/queue.js';
import { CredentialProxyClient } from '../../lambdas/core/vault/protocol.js';
import { parseOtlpHeaders, readTelemetryConfig } from '../../lambdas/core/telemetry/config.js';
import { otlpJson } from '../../lambdas/core/telemetry/otlp.js';
import {
  currentTraceparent,
  flushSpans,
  installSpanExporter,
  parseTraceparent,
  tracingEnabled,
  withSpan,
  type FinishedSpan,
} from '../../lambdas/core/telemetry/trace.js';

/** Collects finished spans in memory (the real exporter is tested against a loopback server below). */
function collect() {
  const spans: FinishedSpan[] = [];
  const uninstall = installSpanExporter({ export: (s) => spans.push(s), flush: async () => undefined });
  return { spans, uninstall };
}

let uninstall: (() => void) | undefined;
afterEach(() => {
  uninstall?.();
  uninstall = undefined;
});

describe('OTEL_* configuration', () => {
  it('is off without an endpoint, or when disabled', () => {
    expect(readTelemetryConfig({}, 'corral')).toBeNull();
    expect(readTelemetryConfig({ OTEL_SERVICE_NAME: 'x', OTEL_EXPORTER_OTLP_HEADERS: 'a=b' }, 'corral')).toBeNull();
    expect(readTelemetryConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:4318', OTEL_SDK_DISABLED: 'true' }, 'corral')).toBeNull();
    expect(readTelemetryConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:4318', OTEL_TRACES_EXPORTER: 'none' }, 'corral')).toBeNull();
  });

  it('appends /v1/traces to the base endpoint and uses the traces endpoint as it is', () => {
    expect(readTelemetryConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:4318/' }, 'corral-api')).toEqual({
      url: 'http://127.0.0.1:4318/v1/traces',
      headers: {},
      serviceName: 'corral-api',
    });
    const both = readTelemetryConfig(
      {
        OTEL_EXPORTER_OTLP_ENDPOINT: 'http://ignored:4318',
        OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'https://collector.example/otlp/traces',
        OTEL_EXPORTER_OTLP_HEADERS: 'x-key=base,x-team=a%20b',
        OTEL_EXPORTER_OTLP_TRACES_HEADERS: 'X-Key=traces',
        OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
        OTEL_EXPORTER_OTLP_TIMEOUT: '2500',
        OTEL_SERVICE_NAME: 'corral-prod',
      },
      'corral',
    );
    expect(both).toEqual({
      url: 'https://collector.example/otlp/traces',
      headers: { 'x-key': 'traces', 'x-team': 'a b' },
      serviceName: 'corral-prod',
      timeoutMs: 2500,
    });
  });

  it('refuses what it would not honour, without quoting a header value', () => {
    const base = { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:4318' };
    expect(() => readTelemetryConfig({ ...base, OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc' }, 'c')).toThrow(/http\/json/);
    expect(() => readTelemetryConfig({ ...base, OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: 'http/protobuf' }, 'c')).toThrow(/OTEL_EXPORTER_OTLP_TRACES_PROTOCOL/);
    expect(() => readTelemetryConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: 'ftp://x' }, 'c')).toThrow(/http or https/);
    expect(() => readTelemetryConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://u:p@x' }, 'c')).toThrow(/credentials/);
    expect(() => readTelemetryConfig({ ...base, OTEL_EXPORTER_OTLP_TIMEOUT: 'soon' }, 'c')).toThrow(/TIMEOUT/);
    expect(() => readTelemetryConfig({ ...base, OTEL_TRACES_EXPORTER: 'zipkin' }, 'c')).toThrow(/otlp/);
    for (const bad of ['secret-value-no-equals', 'bad key=secret-value', 'k=%E0%A4%A-secret-value', 'k=secret-value%0d%0aX: y']) {
      expect(() => parseOtlpHeaders(bad)).toThrow(/OTEL_EXPORTER_OTLP_HEADERS/);
      try {
        parseOtlpHeaders(bad);
      } catch (err) {
        expect((err as Error).message).not.toContain('secret-value');
      }
    }
  });
});

describe('trace context', () => {
  it('parses W3C traceparent and rejects malformed or all-zero ids', () => {
    expect(parseTraceparent('00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01')).toEqual({
      traceId: '0af7651916cd43dd8448eb211c80319c',
      spanId: 'b7ad6b7169203331',
    });
    for (const bad of [undefined, '', 'garbage', '00-00000000000000000000000000000000-b7ad6b7169203331-01', '00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01', '00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01']) {
      expect(parseTraceparent(bad)).toBeUndefined();
    }
  });

  it('costs nothing when off: no span, no traceparent', async () => {
    expect(tracingEnabled()).toBe(false);
    const out = await withSpan('x', {}, async (span) => {
      expect(span.context).toBeUndefined();
      return currentTraceparent();
    });
    expect(out).toBeUndefined();
    await flushSpans();
  });

  it('nests spans through async calls, continues a given parent, and marks a throw failed by the error name only', async () => {
    const c = collect();
    uninstall = c.uninstall;
    const parent = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
    await withSpan('outer', { parent }, async () => {
      await withSpan('inner', {}, async () => {
        expect(currentTraceparent()).toMatch(/^00-0af7651916cd43dd8448eb211c80319c-[0-9a-f]{16}-01$/);
      });
      await expect(withSpan('failing', {}, async () => Promise.reject(new TypeError('input was secret-value')))).rejects.toThrow();
      // Work handed over from elsewhere names its parent: null starts a trace of its own here.
      await withSpan('detached', { parent: null }, async () => undefined);
    });
    const [inner, failing, detached, outer] = c.spans;
    expect([inner.name, failing.name, detached.name, outer.name]).toEqual(['inner', 'failing', 'detached', 'outer']);
    expect(detached.parentSpanId).toBeUndefined();
    expect(detached.traceId).not.toBe(outer.traceId);
    expect(outer.parentSpanId).toBe('b7ad6b7169203331');
    expect(inner.parentSpanId).toBe(outer.spanId);
    expect(new Set([inner, failing, outer].map((s) => s.traceId))).toEqual(new Set(['0af7651916cd43dd8448eb211c80319c']));
    expect(failing.status).toEqual({ code: 'error', message: 'TypeError' });
  });

  it('a wake carries its span context through the SQS message and the local queue', async () => {
    const c = collect();
    uninstall = c.uninstall;
    const delivered: Array<{ sessionId: string; traceparent?: string }> = [];
    const local = new MemoryQueue();
    local.start(async (sessionId, m) => void delivered.push({ sessionId, ...m }));
    await withSpan('api.request', {}, () => tracedWakeQueue(local).wake('sesn_1'));
    await local.idle();
    await local.stop();
    const wake = c.spans.find((s) => s.name === 'wake')!;
    expect(wake.kind).toBe('producer');
    expect(wake.parentSpanId).toBe(c.spans.find((s) => s.name === 'api.request')!.spanId);
    expect(delivered).toEqual([{ sessionId: 'sesn_1', traceparent: `00-${wake.traceId}-${wake.spanId}-01` }]);

    const tp = delivered[0]!.traceparent!;
    expect(parseWakeMessage(JSON.stringify({ sessionId: 'sesn_1', traceparent: tp }))).toEqual({ sessionId: 'sesn_1', traceparent: tp });
    // A malformed context is dropped; the wake is kept.
    expect(parseWakeMessage(JSON.stringify({ sessionId: 'sesn_1', traceparent: 'nope' }))).toEqual({ sessionId: 'sesn_1' });
  });
});

describe('the OTLP/HTTP JSON encoding', () => {
  const span = (i: number): FinishedSpan => ({
    traceId: '0af7651916cd43dd8448eb211c80319c',
    spanId: i.toString(16).padStart(16, '0'),
    name: `s${i}`,
    kind: 'client',
    startMs: 1_700_000_000_000.5,
    endMs: 1_700_000_000_001.25,
    attributes: { a: 'x', n: 3, f: 1.5, b: true },
    status: { code: 'unset' },
  });

  it('encodes spans as OTLP JSON (hex ids, nanosecond strings, typed values)', () => {
    const body = otlpJson([span(1)], 'svc') as { resourceSpans: Array<{ resource: unknown; scopeSpans: Array<{ spans: unknown[] }> }> };
    expect(body.resourceSpans[0]!.resource).toEqual({ attributes: [{ key: 'service.name', value: { stringValue: 'svc' } }] });
    expect(body.resourceSpans[0]!.scopeSpans[0]!.spans[0]).toEqual({
      traceId: '0af7651916cd43dd8448eb211c80319c',
      spanId: '0000000000000001',
      name: 's1',
      kind: 3,
      startTimeUnixNano: '1700000000000500000',
      endTimeUnixNano: '1700000000001250000',
      attributes: [
        { key: 'a', value: { stringValue: 'x' } },
        { key: 'n', value: { intValue: '3' } },
        { key: 'f', value: { doubleValue: 1.5 } },
        { key: 'b', value: { boolValue: true } },
      ],
      status: { code: 0 },
    });
  });
});

describe('trace export in a Lambda function', () => {
  it('reads the exporter headers from the SSM parameter once, only when an endpoint is set', async () => {
    const asked: Array<{ name: string; withDecryption: boolean }> = [];
    const ssm = {
      get: async (name: string, o: { withDecryption: boolean }) => {
        asked.push({ name, ...o });
        return name === '/corral/otlp-headers' ? 'x-honeycomb-team=team%20key,x-dataset=corral' : undefined;
      },
    };
    expect(await startAwsTelemetry({ CORRAL_OTLP_HEADERS_PARAMETER: '/corral/otlp-headers' }, 'corral-api', { ssm })).toBeNull();
    expect(asked).toEqual([]);

    const env = { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:9', CORRAL_OTLP_HEADERS_PARAMETER: '/corral/otlp-headers', POWERTOOLS_SERVICE_NAME: 'corral-harness' };
    const sent: Array<{ url: string; headers: Record<string, string>; service: string }> = [];
    const telemetry = await startAwsTelemetry(env, 'corral-api', { ssm, fetch: async (url, init) => {
      const body = JSON.parse(String(init?.body)) as { resourceSpans: Array<{ resource: { attributes: Array<{ value: { stringValue: string } }> } }> };
      sent.push({ url: String(url), headers: init?.headers as Record<string, string>, service: body.resourceSpans[0]!.resource.attributes[0]!.value.stringValue });
      return new Response('{}');
    } });
    expect(asked).toEqual([{ name: '/corral/otlp-headers', withDecryption: true }]);
    await withSpan('api.request', {}, async () => undefined);
    await telemetry!.stop();
    expect(sent).toEqual([
      { url: 'http://127.0.0.1:9/v1/traces', headers: { 'x-honeycomb-team': 'team key', 'x-dataset': 'corral', 'content-type': 'application/json' }, service: 'corral-harness' },
    ]);
    await expect(startAwsTelemetry({ ...env, CORRAL_OTLP_HEADERS_PARAMETER: '/corral/missing' }, 'corral-api', { ssm })).rejects.toThrow(/has no value/);
  });
});

describe('the credential proxy call', () => {
  it('is a span naming the operation, never its arguments', async () => {
    const c = collect();
    uninstall = c.uninstall;
    const client = new CredentialProxyClient({ call: async () => ({ ok: true, result: undefined }) });
    await withSpan('tool_call', {}, () => client.storeSecret('vault/ref-1', { token: 'secret-value-9f' } as never));
    const call = c.spans.find((s) => s.name === 'credential_proxy.call')!;
    expect(call).toMatchObject({ kind: 'client', attributes: { 'corral.proxy.op': 'store_secret' }, parentSpanId: c.spans.find((s) => s.name === 'tool_call')!.spanId });
    expect(JSON.stringify(c.spans)).not.toMatch(/secret-value-9f|ref-1/);
  });
});
