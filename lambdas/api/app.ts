import { Hono, type Context } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { AuthenticationError, InvalidRequestError } from '../core/errors.js';
import type { CorralServices } from '../core/services.js';
import {
  AuthFailureLimiter,
  classify,
  clientKey,
  RateLimitedError,
  type AuthFailureLimits,
} from '../core/resources/rate-limits.js';
import { agentRoutes } from './agents.js';
import { consoleRoutes } from './console.js';
import { environmentRoutes } from './environments.js';
import { fileRoutes, MAX_UPLOAD_BODY_BYTES } from './files.js';
import { importRoutes } from './imports.js';
import { errorBody, toErrorResponse, type Env } from './http.js';
import { openApiRoutes } from './openapi.js';
import { sessionRoutes } from './sessions.js';
import { vaultRoutes } from './vaults.js';
import type { LogNotifier, StreamOptions } from './stream.js';
import { strictQuery } from './query-params.js';

export interface AppOptions {
  notifier?: LogNotifier;
  /** The event stream's poll and heartbeat intervals (the stream tier reads the log less often: its notifier tells it of appends). */
  stream?: StreamOptions;
  /** Largest request body accepted, in bytes. Default 4 MiB (large events are stored in chunks). */
  maxBodyBytes?: number;
  /** Answers `GET /health`; default: always ready. */
  ready?: () => boolean;
  logger?: { error(msg: string, fields?: Record<string, unknown>): void };
  /**
   * The client's address, for limiting failed authentication: locally the socket's peer, on
   * Lambda API Gateway's `sourceIp` (never a client-supplied header). Default: none (one bucket).
   */
  clientAddress?: (c: Context) => string | undefined;
  /** Failed authentications per minute, per client address and in all. */
  authFailureLimits?: AuthFailureLimits;
}

/**
 * The HTTP API, compatible with the Claude Managed Agents API: the same Hono app runs locally on
 * `@hono/node-server` and on AWS behind API Gateway in Lambda.
 */
export function createApp(s: CorralServices, opts: AppOptions = {}) {
  const app = new Hono<Env>();
  const maxBodyBytes = opts.maxBodyBytes ?? 4 * 1024 * 1024;

  app.onError((err, c) => {
    const { status, body } = toErrorResponse(err);
    if (err instanceof RateLimitedError) c.header('retry-after', String(err.retryAfterSeconds));
    if (status >= 500) opts.logger?.error('request failed', { path: c.req.path, error: (err as Error)?.stack ?? String(err) });
    return c.json(body, status as 400);
  });
  app.notFound((c) => c.json(errorBody('not_found_error', `no route for ${c.req.method} ${c.req.path}`), 404));

  app.get('/health', (c) => (opts.ready?.() ?? true ? c.json({ status: 'ok' }) : c.json({ status: 'starting' }, 503)));
  app.route('/', openApiRoutes()); // GET /openapi.json, no API key
  app.route('/', consoleRoutes()); // GET /console, /console/sessions/{id}: static pages, no API key

  const limitBody = (maxSize: number) =>
    bodyLimit({
      maxSize,
      // The unread body is abandoned, so this connection cannot carry another request.
      onError: (c) => c.json(errorBody('request_too_large', `request body exceeds ${maxSize} bytes`), 413, { Connection: 'close' }),
    });
  const jsonLimit = limitBody(maxBodyBytes);
  // A file upload carries the file (at most `MAX_FILE_BYTES`) and its multipart framing.
  const uploadLimit = limitBody(Math.max(maxBodyBytes, MAX_UPLOAD_BODY_BYTES));
  app.use('/v1/*', (c, next) => (c.req.method === 'POST' && /^\/v1\/files\/?$/.test(c.req.path) ? uploadLimit(c, next) : jsonLimit(c, next)));
  const authFailures = new AuthFailureLimiter(s.table, opts.authFailureLimits);
  app.use('/v1/*', async (c, next) => {
    const bearer = c.req.header('authorization')?.match(/^Bearer\s+(.+)$/i)?.[1];
    const key = c.req.header('x-api-key') ?? bearer;
    const client = clientKey(safely(() => opts.clientAddress?.(c)));
    // Only a key this instance has not seen verify is held back; see `AuthFailureLimiter`.
    if (!s.tenants.verifiedRecently(key)) {
      const wait = await authFailures.blockedFor(client);
      if (wait) {
        c.header('retry-after', String(wait));
        return c.json(errorBody('rate_limit_error', `too many failed authentications; retry after ${wait} s`), 429);
      }
    }
    try {
      c.set('tenant', await s.tenants.authenticate(key));
    } catch (err) {
      if (err instanceof AuthenticationError) {
        await authFailures.recordFailure(client);
        return c.json(errorBody(err.type, err.message), 401);
      }
      throw err;
    }
    await s.rateLimiter.check(c.get('tenant'), classify(c.req.method, c.req.path));
    await next();
  });
  app.use('/v1/*', strictQuery());
  // The SDK's `workspace_id` param travels as this header; Corral has no workspaces to select.
  app.use('/v1/*', async (c, next) => {
    if (c.req.header('anthropic-workspace-id') !== undefined) {
      throw new InvalidRequestError('workspace_id (anthropic-workspace-id): workspaces are not supported by Corral; leave workspace_id out');
    }
    await next();
  });
  app.route('/v1/agents', agentRoutes(s));
  app.route('/v1/environments', environmentRoutes(s));
  app.route('/v1/sessions', sessionRoutes(s, opts.notifier, opts.stream));
  app.route('/v1/vaults', vaultRoutes(s));
  app.route('/v1/files', fileRoutes(s));
  app.route('/v1/corral/imports', importRoutes(s)); // Corral extension: `corral import`
  return app;
}

function safely<T>(f: () => T): T | undefined {
  try {
    return f();
  } catch {
    return undefined;
  }
}
