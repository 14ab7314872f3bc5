/**
 * The OTLP/HTTP JSON exporter against a real HTTP server on loopback: batches, its bound, its
 * headers, and a failed send reported rather than thrown.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, expect, it } from 'vitest';
import { OtlpHttpJsonExporter } from '../../lambdas/core/telemetry/otlp.js';
import type { FinishedSpan } from '../../lambdas/core/telemetry/trace.js';

describe('the OTLP/HTTP JSON exporter', () => {
  const span = (i: number): FinishedSpan => ({
    traceId: '0af7651916cd43dd8448eb211c80319c',
    spanId: i.toString(16).padStart(16, '0'),
    name: `s${i}`,
    kind: 'client',
    startMs: 1_700_000_000_000,
    endMs: 1_700_000_000_001,
    attributes: {},
    status: { code: 'unset' },
  });

  it('batches, bounds its queue, sends the headers, and reports (never throws) a failed send', async () => {
    const bodies: Array<{ count: number; key: string | undefined }> = [];
    let status = 200;
    const server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (d: Buffer) => chunks.push(d));
      req.on('end', () => {
        const parsed = JSON.parse(Buffer.concat(chunks).toString()) as { resourceSpans: Array<{ scopeSpans: Array<{ spans: unknown[] }> }> };
        bodies.push({ count: parsed.resourceSpans[0]!.scopeSpans[0]!.spans.length, key: req.headers['x-key'] as string | undefined });
        res.writeHead(status).end();
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const errors: string[] = [];
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1/traces`;
      const e = new OtlpHttpJsonExporter({ url, headers: { 'x-key': 'k1' }, serviceName: 's' }, { maxBatch: 2, delayMs: 60_000, onError: (m) => errors.push(m) });
      for (let i = 1; i <= 7; i++) e.export(span(i));
      await e.flush();
      // Each full batch went as it filled, the last (partial) one at the flush.
      expect(bodies).toEqual([2, 2, 2, 1].map((count) => ({ count, key: 'k1' })));
      expect(errors).toEqual([]);
      // Bounded: past `maxQueue` spans waiting, more are dropped and counted.
      bodies.length = 0;
      const bounded = new OtlpHttpJsonExporter({ url, headers: {}, serviceName: 's' }, { maxQueue: 5, maxBatch: 100, delayMs: 60_000 });
      for (let i = 1; i <= 8; i++) bounded.export(span(i));
      await bounded.flush();
      expect(bodies).toEqual([{ count: 5, key: undefined }]);
      expect(bounded.dropped).toBe(3);
      status = 500;
      e.export(span(9));
      await e.flush();
      expect(errors).toEqual(['OTLP export of 1 spans failed: HTTP 500']);
    } finally {
      await new Promise<void>((r) => server.close(() => r()));
    }
  });
});
