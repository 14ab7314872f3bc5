import type { AttributeValue, FinishedSpan, SpanExporter } from './trace.js';

/** Where and how spans are sent (config.ts `readTelemetryConfig` builds it from OTEL_* variables). */
export interface OtlpTraceConfig {
  /** The full traces URL, e.g. `http://127.0.0.1:4318/v1/traces`. */
  url: string;
  /** Sent with every export (an API key of the collector's, typically). Never logged. */
  headers: Record<string, string>;
  /** `service.name` of the resource. */
  serviceName: string;
  /** Give up on an export after this long. @default 10000 */
  timeoutMs?: number;
}

export interface OtlpExporterOptions {
  /** Spans held at most; more are dropped (and counted) until a send makes room. @default 2048 */
  maxQueue?: number;
  /** Spans per request. @default 512 */
  maxBatch?: number;
  /** A partial batch is sent this long after its first span. @default 1000 */
  delayMs?: number;
  /** A failed send (its spans are dropped: telemetry never holds up or fails a turn). */
  onError?: (message: string) => void;
  fetch?: typeof fetch;
}

const KIND = { internal: 1, server: 2, client: 3, producer: 4, consumer: 5 } as const;
const STATUS = { unset: 0, ok: 1, error: 2 } as const;

function value(v: AttributeValue) {
  if (typeof v === 'string') return { stringValue: v };
  if (typeof v === 'boolean') return { boolValue: v };
  return Number.isInteger(v) ? { intValue: String(v) } : { doubleValue: v };
}

const nanos = (ms: number) => (BigInt(Math.round(ms * 1000)) * 1000n).toString();

/** An `ExportTraceServiceRequest` in OTLP's JSON encoding (ids as hex, 64-bit numbers as strings). */
export function otlpJson(spans: FinishedSpan[], serviceName: string): unknown {
  return {
    resourceSpans: [
      {
        resource: { attributes: [{ key: 'service.name', value: { stringValue: serviceName } }] },
        scopeSpans: [
          {
            scope: { name: 'corral' },
            spans: spans.map((s) => ({
              traceId: s.traceId,
              spanId: s.spanId,
              ...(s.parentSpanId ? { parentSpanId: s.parentSpanId } : {}),
              name: s.name,
              kind: KIND[s.kind],
              startTimeUnixNano: nanos(s.startMs),
              endTimeUnixNano: nanos(s.endMs),
              attributes: Object.entries(s.attributes).map(([key, v]) => ({ key, value: value(v) })),
              status: { code: STATUS[s.status.code], ...(s.status.message ? { message: s.status.message } : {}) },
            })),
          },
        ],
      },
    ],
  };
}

/**
 * OTLP/HTTP with JSON bodies, by hand: a bounded queue, batches sent after a short delay or when
 * full, and `flush` for the end of a Lambda invocation (a frozen function sends nothing). It uses
 * the platform's `fetch` and nothing else, so it adds no package to a function's bundle and no
 * work to a cold start; the OpenTelemetry SDK (with its exporter and context manager) would add
 * several hundred kilobytes to bundles kept small on purpose, for features Corral does not use
 * (samplers, metrics, propagator plug-ins). A failed send is reported and its spans dropped.
 */
export class OtlpHttpJsonExporter implements SpanExporter {
  private queue: FinishedSpan[] = [];
  private timer: NodeJS.Timeout | null = null;
  private readonly sending = new Set<Promise<void>>();
  /** Spans dropped because the queue was full. */
  dropped = 0;

  constructor(
    private readonly config: OtlpTraceConfig,
    private readonly opts: OtlpExporterOptions = {},
  ) {}

  export(span: FinishedSpan): void {
    if (this.queue.length >= (this.opts.maxQueue ?? 2048)) {
      this.dropped++;
      return;
    }
    this.queue.push(span);
    if (this.queue.length >= (this.opts.maxBatch ?? 512)) this.sendBatch();
    else if (!this.timer) {
      this.timer = setTimeout(() => {
        this.timer = null;
        this.sendBatch();
      }, this.opts.delayMs ?? 1000);
      this.timer.unref();
    }
  }

  async flush(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    while (this.queue.length) this.sendBatch();
    await Promise.all([...this.sending]);
  }

  private sendBatch() {
    const batch = this.queue.splice(0, this.opts.maxBatch ?? 512);
    if (!batch.length) return;
    const p = this.post(batch).finally(() => this.sending.delete(p));
    this.sending.add(p);
  }

  private async post(spans: FinishedSpan[]): Promise<void> {
    const doFetch = this.opts.fetch ?? fetch;
    try {
      const res = await doFetch(this.config.url, {
        method: 'POST',
        headers: { ...this.config.headers, 'content-type': 'application/json' },
        body: JSON.stringify(otlpJson(spans, this.config.serviceName)),
        signal: AbortSignal.timeout(this.config.timeoutMs ?? 10_000),
      });
      await res.arrayBuffer().catch(() => undefined);
      if (!res.ok) this.opts.onError?.(`OTLP export of ${spans.length} spans failed: HTTP ${res.status}`);
    } catch (err) {
      this.opts.onError?.(`OTLP export of ${spans.length} spans failed: ${(err as Error)?.name ?? 'error'}`);
    }
  }
}
