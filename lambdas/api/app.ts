import { Hono, type Context } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { routePath } from 'hono/route';
import { looksLikeJwt, type OidcVerifier } from '../core/auth/oidc.js';
import { roleAllows } from '../core/auth/roles.js';
import { AuthenticationError, InvalidRequestError, PermissionError } from '../core/errors.js';
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
import { threadRoutes } from './threads.js';
import { vaultRoutes } from './vaults.js';
import { deploymentRoutes, deploymentRunRoutes } from './deployments.js';
import { memoryStoreRoutes } from './memory-stores.js';
import { publishWebhooks, webhookDeliveryRoutes, webhookRoutes } from './webhooks.js';
import type { LogNotifier, StreamOptions } from './stream.js';
import { strictQuery } from './query-params.js';
import { requiredRole } from './route-roles.js';
import { withSpan } from '../core/telemetry/trace.js';

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
  /**
   * The OIDC issuers the console signs in with (their origins join its connect-src; see console.ts).
   * Default: the issuers of `oidc` that have a public client id.
   */
  consoleOidcIssuers?: () => readonly string[];
  /**
   * Verifies OIDC bearer tokens of the configured issuers (`CORRAL_OIDC_ISSUERS`,
   * docs/SIGN-IN.md). Default: none, API keys only.
   */
  oidc?: OidcVerifier;
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
  // The request's span (telemetry/trace.ts; nothing when tracing is off): a client's `traceparent`
  // is continued. Its attributes are the method, the route's pattern (ids stay out of it) and the
  // status; never the path's values, the query or a header.
  app.use('*', (c, next) =>
    withSpan('api.request', { kind: 'server', parent: c.req.header('traceparent') ?? null, attributes: { 'http.request.method': c.req.method } }, async (span) => {
      await next();
      if (!span.context) return; // tracing is off
      span.setAttributes({ 'http.route': routePath(c), 'http.response.status_code': c.res.status });
      if (c.res.status >= 500) span.fail(`HTTP ${c.res.status}`);
    }),
  );

  app.get('/health', (c) => (opts.ready?.() ?? true ? c.json({ status: 'ok' }) : c.json({ status: 'starting' }, 503)));
  app.route('/', openApiRoutes()); // GET /openapi.json, no API key
  const consoleOidcIssuers =
    opts.consoleOidcIssuers ?? (() => (opts.oidc?.issuers ?? []).filter((i) => i.clientId).map((i) => i.issuer));
  app.route('/', consoleRoutes({ oidcIssuers: consoleOidcIssuers })); // GET /console, /console/sessions/{id}: static pages, no API key
  // How a client may sign in (the console and `corral login` read it): no credential needed.
  app.get('/corral/auth', (c) =>
    c.json({
      api_key: true,
      oidc: (opts.oidc?.issuers ?? []).map((i) => ({ issuer: i.issuer, client_id: i.clientId, scopes: i.scopes })),
    }),
  );

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
    // A JWT in Authorization: Bearer is a signed-in person's token when issuers are configured;
    // anything else there (or in x-api-key) is an API key.
    if (opts.oidc && bearer && c.req.header('x-api-key') === undefined && looksLikeJwt(bearer)) {
      // Not held back by the failed-authentication limiter: a token cannot be guessed, and
      // verifying one reads no table (the issuer's keys are cached, their refetch bounded).
      let principal;
      try {
        principal = await opts.oidc.verify(bearer);
      } catch (err) {
        if (err instanceof AuthenticationError) return c.json(errorBody(err.type, err.message), 401);
        throw err;
      }
      const needed = requiredRole(c.req.method, c.req.path);
      if (needed !== 'public' && !roleAllows(principal.role, needed)) {
        throw new PermissionError(`your role (${principal.role}) may not ${c.req.method} ${c.req.path}: it needs ${needed}`);
      }
      c.set('tenant', principal.tenant);
      await s.rateLimiter.check(principal.tenant, classify(c.req.method, c.req.path));
      return next();
    }
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
      // An API key acts with every right of its tenant (route-roles.ts).
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
  app.use('/v1/*', publishWebhooks(s, opts.logger)); // each create, update, archive and delete as a webhook event
  app.route('/v1/agents', agentRoutes(s));
  app.route('/v1/environments', environmentRoutes(s));
  app.route('/v1/sessions', sessionRoutes(s, opts.notifier, opts.stream));
  app.route('/v1/sessions', threadRoutes(s, opts.notifier, opts.stream)); // `client.beta.sessions.threads`
  app.route('/v1/vaults', vaultRoutes(s));
  app.route('/v1/files', fileRoutes(s));
  app.route('/v1/deployments', deploymentRoutes(s));
  app.route('/v1/deployment_runs', deploymentRunRoutes(s));
  app.route('/v1/memory_stores', memoryStoreRoutes(s));
  app.route('/v1/corral/imports', importRoutes(s)); // Corral extension: `corral import`
  app.route('/v1/organizations/webhooks', webhookRoutes(s));
  app.route('/v1/corral/webhooks', webhookDeliveryRoutes(s)); // Corral extension: the delivery log
  return app;
}

function safely<T>(f: () => T): T | undefined {
  try {
    return f();
  } catch {
    return undefined;
  }
}
