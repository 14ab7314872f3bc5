import { Logger } from '@aws-lambda-powertools/logger';
import { Tracer } from '@aws-lambda-powertools/tracer';
import type { Context as LambdaContext } from 'aws-lambda';
import { Hono } from 'hono';
import { defaultIsContentTypeBinary, getConnInfo, handle, streamHandle } from 'hono/aws-lambda';
import { coreLogger, createAwsServices } from '../adapters/aws/services.js';
import { startAwsTelemetry } from '../adapters/aws/telemetry.js';
import { flushSpans } from '../core/telemetry/trace.js';
import { createApp } from './app.js';
import { OidcVerifier } from '../core/auth/oidc.js';
import { readOidcIssuers } from '../core/config.js';
import { endStreamAfter } from './stream-end.js';

export { endStreamAfter };

/**
 * Lambda entries of the API, behind API Gateway (REST, Lambda proxy integration). One bundle, two
 * handlers, two functions:
 *
 * - `handler`: every route, buffered (API Gateway's default transfer mode).
 * - `streamHandler`: `GET /v1/sessions/{id}/events/stream` only, with Lambda response streaming
 *   (`awslambda.streamifyResponse` through Hono's `streamHandle`) and the integration's
 *   `responseTransferMode: STREAM`. A streaming function cannot answer a buffered integration
 *   (API Gateway would get the stream's framing instead of a proxy result), hence two functions.
 *
 * Both run the same Hono app the local runtime serves. There is no in-process notifier on
 * Lambda: the stream reads the log on its poll interval, and, for `event_deltas` while a model
 * request is open, the preview chunks the harness function writes to the state table.
 */
const logger = new Logger();
const tracer = new Tracer();

let app: Promise<Hono> | undefined;

function getApp(): Promise<Hono> {
  // Trace export (off without OTEL_EXPORTER_OTLP_ENDPOINT) starts before the app serves anything.
  app ??= startAwsTelemetry(process.env, 'corral-api', { onError: (message) => logger.warn('trace export failed', { message }) })
    .then(() =>
      createAwsServices({
        instrument: (client) => tracer.captureAWSv3Client(client),
        onAppend: (sessionId, stored) => logger.debug('appended', { sessionId, position: stored.position }),
      }),
    )
    .then(
    ({ services }) => {
      const issuers = readOidcIssuers();
      return createApp(services, {
        logger: coreLogger(logger),
        clientAddress: (c) => getConnInfo(c).remote.address,
        oidc: issuers.length ? new OidcVerifier(issuers) : undefined,
      }) as unknown as Hono;
    },
    (err) => {
      app = undefined; // the next request tries again
      throw err;
    },
  );
  return app;
}

/** How long before the function's timeout a stream is ended. */
const STREAM_END_MARGIN_MS = 10_000;

/** Delegates to the real app once it is built; `streamHandle` needs an app at module load. */
const streamingApp = new Hono<{ Bindings: { context: LambdaContext } }>();
streamingApp.all('*', async (c) => {
  const res = await (await getApp()).fetch(c.req.raw, c.env);
  const remaining = c.env?.context?.getRemainingTimeInMillis?.();
  return remaining === undefined ? res : endStreamAfter(res, remaining - STREAM_END_MARGIN_MS);
});

/**
 * Whether a buffered response leaves base64 (`isBase64Encoded`, which API Gateway turns back into
 * bytes: the REST API treats every media type as binary, infra/lib/constructs/api.ts). A file's
 * bytes (`Content-Disposition: attachment`, the download route) always do, whatever its type: a
 * `text/plain` or JSON file need not be UTF-8, and Hono's default would send it as text, replacing
 * every invalid byte. Everything else follows Hono's default: JSON, text and HTML as text (no 4/3
 * growth against Lambda's 6 MB payload limit), other types base64.
 */
export function leavesAsBytes(res: Response): boolean {
  if (/^\s*attachment\b/i.test(res.headers.get('content-disposition') ?? '')) return true;
  const type = res.headers.get('content-type');
  return !!type && defaultIsContentTypeBinary(type);
}

const buffered = async (event: Parameters<ReturnType<typeof handle>>[0], context: LambdaContext) => {
  logger.addContext(context);
  const real = await getApp();
  // Hono asks about the content type alone; the answer comes from the response itself, seen here
  // (one invocation at a time per execution environment, and this closure per invocation).
  let binary = false;
  const app = {
    fetch: async (req: Request, env?: unknown) => {
      const res = await real.fetch(req, env as never);
      binary = leavesAsBytes(res);
      return res;
    },
  } as unknown as Hono;
  try {
    return await handle(app, { isContentTypeBinary: () => binary })(event, context);
  } finally {
    // A frozen function sends nothing: this invocation's spans go before it returns. (The
    // streaming function stays up while it streams; its exporter sends on its own timer.)
    await flushSpans();
  }
};

export const handler = buffered;

/** Only the Lambda Node.js runtime provides `awslambda.streamifyResponse` (other libraries may define a partial `awslambda`). */
const lambdaRuntime = (globalThis as { awslambda?: { streamifyResponse?: unknown } }).awslambda;
export const streamHandler = typeof lambdaRuntime?.streamifyResponse === 'function' ? streamHandle(streamingApp) : undefined;
