import { AsyncLocalStorage } from 'node:async_hooks';
import { randomBytes } from 'node:crypto';

/**
 * Traces of a turn, as OpenTelemetry sees them: spans with W3C trace context, carried through
 * the process by `AsyncLocalStorage` and between processes as a `traceparent` (an HTTP header, a
 * field of the wake message). Off unless an exporter is installed (`installSpanExporter`, done by
 * telemetry/setup.ts when an OTLP endpoint is configured): then `withSpan` runs its function and
 * nothing else, so the code paths that name spans cost a branch when no one collects them.
 *
 * Attributes carry ids, names, sizes, counts, durations and statuses only: never a prompt, a
 * tool's input or output, a header or a key. Each caller chooses its attributes with that rule.
 */

export type AttributeValue = string | number | boolean;
export type Attributes = Record<string, AttributeValue | undefined | null>;
export type SpanKind = 'internal' | 'server' | 'client' | 'producer' | 'consumer';

/** A span's place in its trace (W3C trace context). */
export interface SpanContext {
  /** 32 lower-case hex digits. */
  traceId: string;
  /** 16 lower-case hex digits. */
  spanId: string;
}

/** A span as it is handed to the exporter. Times are epoch milliseconds, fractional. */
export interface FinishedSpan extends SpanContext {
  parentSpanId?: string;
  name: string;
  kind: SpanKind;
  startMs: number;
  endMs: number;
  attributes: Record<string, AttributeValue>;
  status: { code: 'unset' | 'ok' | 'error'; message?: string };
}

/** Where finished spans go (otlp.ts). `export` never throws and never waits. */
export interface SpanExporter {
  export(span: FinishedSpan): void;
  /** Send everything queued; resolves when sent or given up on (never rejects). */
  flush(): Promise<void>;
}

export interface Span {
  readonly context: SpanContext | undefined;
  setAttributes(attributes: Attributes): void;
  /** Marks the span failed. `message` must be as safe as an attribute (an error type, not a body). */
  fail(message?: string): void;
  end(endMs?: number): void;
}

/** What `withSpan` hands its function when tracing is off. */
const NOOP_SPAN: Span = { context: undefined, setAttributes() {}, fail() {}, end() {} };

let exporter: SpanExporter | null = null;
const active = new AsyncLocalStorage<SpanContext>();

/** Install the exporter every span of this process goes to; returns its removal. */
export function installSpanExporter(e: SpanExporter): () => void {
  exporter = e;
  return () => {
    if (exporter === e) exporter = null;
  };
}

export function tracingEnabled(): boolean {
  return exporter !== null;
}

/** Epoch milliseconds with sub-millisecond precision. */
export function nowMs(): number {
  return performance.timeOrigin + performance.now();
}

const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;

/** A `traceparent` header's context, or undefined when it is absent or malformed (then a new trace starts). */
export function parseTraceparent(value: string | null | undefined): SpanContext | undefined {
  const m = typeof value === 'string' ? TRACEPARENT.exec(value.trim()) : null;
  if (!m || /^0+$/.test(m[1]) || /^0+$/.test(m[2])) return undefined;
  return { traceId: m[1], spanId: m[2] };
}

export function formatTraceparent(ctx: SpanContext): string {
  return `00-${ctx.traceId}-${ctx.spanId}-01`;
}

/** The `traceparent` of the span this code runs in, when tracing is on and there is one. */
export function currentTraceparent(): string | undefined {
  if (!exporter) return undefined;
  const ctx = active.getStore();
  return ctx && formatTraceparent(ctx);
}

export interface SpanOptions {
  kind?: SpanKind;
  attributes?: Attributes;
  /**
   * The parent: a context or a `traceparent`; `null` (or a malformed `traceparent`) starts a new
   * trace. By default, the span this code runs in (a new trace when none). A span that begins
   * work handed over from elsewhere (a request, a queue message) names its parent, so that it
   * never nests under whatever span the delivering code happened to run in.
   */
  parent?: SpanContext | string | null;
  startMs?: number;
}

/** Start a span; the caller ends it. Prefer `withSpan`, which also makes it the current span. */
export function startSpan(name: string, opts: SpanOptions = {}): Span {
  const e = exporter;
  if (!e) return NOOP_SPAN;
  const parent = opts.parent === undefined ? active.getStore() : typeof opts.parent === 'string' ? parseTraceparent(opts.parent) : (opts.parent ?? undefined);
  const context: SpanContext = { traceId: parent?.traceId ?? randomBytes(16).toString('hex'), spanId: randomBytes(8).toString('hex') };
  const attributes: Record<string, AttributeValue> = {};
  let status: FinishedSpan['status'] = { code: 'unset' };
  let ended = false;
  const startMs = opts.startMs ?? nowMs();
  const span: Span = {
    context,
    setAttributes(a) {
      for (const [k, v] of Object.entries(a)) if (v !== undefined && v !== null) attributes[k] = v;
    },
    fail(message) {
      status = { code: 'error', ...(message ? { message: message.slice(0, 200) } : {}) };
    },
    end(endMs) {
      if (ended) return;
      ended = true;
      e.export({
        ...context,
        ...(parent ? { parentSpanId: parent.spanId } : {}),
        name,
        kind: opts.kind ?? 'internal',
        startMs,
        endMs: Math.max(startMs, endMs ?? nowMs()),
        attributes,
        status,
      });
    },
  };
  if (opts.attributes) span.setAttributes(opts.attributes);
  return span;
}

/**
 * Run `fn` in a new span (its children nest under it), ending the span when `fn` settles. A throw
 * marks it failed with the error's name (never its message, which may quote input).
 */
export async function withSpan<T>(name: string, opts: SpanOptions, fn: (span: Span) => Promise<T>): Promise<T> {
  if (!exporter) return fn(NOOP_SPAN);
  const span = startSpan(name, opts);
  try {
    return await active.run(span.context!, () => fn(span));
  } catch (err) {
    span.fail((err as Error)?.name ?? 'Error');
    throw err;
  } finally {
    span.end();
  }
}

/** Flush the installed exporter (the end of a Lambda invocation); a no-op when tracing is off. */
export async function flushSpans(): Promise<void> {
  await exporter?.flush();
}
