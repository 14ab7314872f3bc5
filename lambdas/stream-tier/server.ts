import { setMaxListeners } from 'node:events';
import { serve, type ServerType } from '@hono/node-server';
import { getConnInfo } from '@hono/node-server/conninfo';
import { Hono } from 'hono';
import type { SandboxProvider } from '../core/sandbox/types.js';
import type { CorralServices } from '../core/services.js';
import type { FanoutNotifier } from '../core/session/notifier.js';
import { createApp, type AppOptions } from '../api/app.js';
import { errorBody } from '../api/http.js';
import type { StreamOptions } from '../api/stream.js';
import { endStreamAfter } from '../api/stream-end.js';

/**
 * The stream tier's HTTP server: one Node process serving many `GET /v1/sessions/{id}/events/stream`
 * connections. It serves the same Hono app as the API (lambdas/api/app.ts), so authentication, rate
 * limits, the wire format, `Last-Event-ID` resume, `event_deltas` and heartbeats are the stream
 * route's own (lambdas/api/stream.ts); only the notifier differs: appends arrive from DynamoDB
 * Streams (a `FanoutNotifier` fed by adapters/aws/dynamodb-stream-consumer.ts) instead of from the
 * process that appends, and the log is read on notification, on `Last-Event-ID`, and every
 * `stream.pollMs` as a safety net.
 *
 * Every other path is a 404: API Gateway routes only the stream here, and the tier's role may not
 * write the log.
 */
/** Never called: the stream route reads sessions and their logs, and starts no sandbox. */
export const NO_SANDBOXES: SandboxProvider = new Proxy({} as SandboxProvider, {
  get(_t, prop) {
    if (prop === 'then') return undefined;
    return () => Promise.reject(new Error(`the stream tier starts no sandbox (${String(prop)})`));
  },
});

export interface StreamTierOptions {
  services: CorralServices;
  notifier: FanoutNotifier;
  port?: number;
  host?: string;
  /**
   * Longest a stream stays open before it ends cleanly and the client reconnects with
   * `Last-Event-ID` (API Gateway cuts a streamed response at its integration timeout). @default 890000
   */
  maxStreamMs?: number;
  /** Poll and heartbeat intervals of each stream. @default pollMs 30000 (the notifier wakes streams on appends) */
  stream?: StreamOptions;
  /**
   * A request header that carries the client's address (API Gateway maps `context.identity.sourceIp`
   * into it), for the limit on failed authentications. Only set it where nothing but API Gateway
   * reaches the tier. @default - the socket's peer
   */
  clientAddressHeader?: string;
  /** Whether the tier is ready (its consumer started); `/health` answers 503 until then and while draining. */
  ready?: () => boolean;
  logger?: { error(msg: string, fields?: Record<string, unknown>): void };
  /** Verifies OIDC bearer tokens, as the API does (`AppOptions.oidc`). */
  oidc?: AppOptions['oidc'];
}

export interface StreamTier {
  url: string;
  port: number;
  /** Streams open now (one subscription each). */
  openStreams(): number;
  /** Ends every open stream cleanly (their clients reconnect elsewhere) and stops accepting new ones. */
  close(): Promise<void>;
}

/** The stream tier's defaults: API Gateway's 15-minute cut less a margin; the log read every 30 s without a notification. */
export const STREAM_TIER_DEFAULTS = { maxStreamMs: 890_000, pollMs: 30_000 } as const;

const STREAM_PATH = /^\/v1\/sessions\/[^/]+\/events\/stream\/?$/;

export async function startStreamTier(opts: StreamTierOptions): Promise<StreamTier> {
  const draining = new AbortController();
  // Every open stream listens for the drain: as many listeners as streams, by design.
  setMaxListeners(0, draining.signal);
  const header = opts.clientAddressHeader?.toLowerCase();
  const app = createApp(opts.services, {
    notifier: opts.notifier,
    stream: { pollMs: STREAM_TIER_DEFAULTS.pollMs, ...opts.stream },
    logger: opts.logger,
    clientAddress: (c) => (header ? c.req.header(header) : undefined) ?? getConnInfo(c).remote.address,
    oidc: opts.oidc,
  });
  const maxStreamMs = opts.maxStreamMs ?? STREAM_TIER_DEFAULTS.maxStreamMs;
  const front = new Hono();
  front.get('/health', (c) => {
    const ok = !draining.signal.aborted && (opts.ready?.() ?? true);
    return c.json({ status: ok ? 'ok' : 'unavailable', streams: opts.notifier.size }, ok ? 200 : 503);
  });
  front.all('*', async (c) => {
    if (c.req.method !== 'GET' || !STREAM_PATH.test(c.req.path)) {
      return c.json(errorBody('not_found_error', `no route for ${c.req.method} ${c.req.path} on the stream tier`), 404);
    }
    if (draining.signal.aborted) return c.json(errorBody('overloaded_error', 'this stream server is stopping; reconnect'), 503);
    // The app's fetch gets the node server's bindings too (getConnInfo reads the socket from them).
    const res = await app.fetch(c.req.raw, c.env);
    return res.headers.get('content-type')?.startsWith('text/event-stream') ? endStreamAfter(res, maxStreamMs, draining.signal) : res;
  });
  let server: ServerType;
  const port = await new Promise<number>((resolve, reject) => {
    server = serve({ fetch: front.fetch, port: opts.port ?? 8080, hostname: opts.host ?? '127.0.0.1' }, (info) => resolve(info.port));
    server.once('error', reject);
  });
  const host = opts.host ?? '127.0.0.1';
  return {
    url: `http://${host.includes(':') ? `[${host}]` : host}:${port}`,
    port,
    openStreams: () => opts.notifier.size,
    async close() {
      draining.abort();
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      // The streams end at once (above); their connections then sit idle in keep-alive.
      setImmediate(() => (server as { closeIdleConnections?: () => void }).closeIdleConnections?.());
      await closed;
    },
  };
}
