import http from 'node:http';
import type net from 'node:net';
import type { Duplex } from 'node:stream';
import { capabilityFromProxyAuthorization, egressCapabilityHash, type EgressGrant, type EgressGrantStore } from '../core/sandbox/egress-grant.js';
import type { EgressContext, EgressLogger, EgressRelay } from '../core/sandbox/egress-relay.js';
import { findRoute, type ProxyServiceRoutes } from './routes.js';

/**
 * The proxy service's two listeners (lambdas/proxy-service/main.ts composes them on Fargate; the
 * tests start them on loopback).
 *
 * Sandbox port: a Fargate sandbox's agent forwards its tools' proxy connections here, adding the
 * sandbox's capability as `Proxy-Authorization: Bearer <capability>`. Every CONNECT and
 * absolute-URI request is authenticated against the grant store, then handed to the core's
 * egress relay with that grant's policy and credentials. No, an unknown, a revoked or an expired
 * capability is a 407 that says no more (the log line has the capability's hash prefix, never the
 * capability). Origin-form requests are `/healthz` or a plug-in route (`routes.sandbox`).
 *
 * Bounds: `maxConnections` client connections per task (more get a 503 and are closed), of which
 * `maxConnectionsPerGrant` per sandbox (counted from a connection's first authenticated request);
 * a connection idle for `idleTimeoutMs` is closed (the relay closes idle tunnels and upstreams).
 */
export interface ProxyServiceOptions {
  readonly grants: EgressGrantStore;
  readonly relay: EgressRelay;
  readonly routes?: Partial<ProxyServiceRoutes>;
  readonly logger?: EgressLogger & { error?(message: string, extra?: Record<string, unknown>): void };
  /** @default '0.0.0.0' */
  readonly host?: string;
  /** 0: any free port (tests). */
  readonly sandboxPort: number;
  /** Undefined: the harness port is not opened. 0: any free port. */
  readonly harnessPort?: number;
  /** @default 64 */
  readonly maxConnectionsPerGrant?: number;
  /** @default 4096 */
  readonly maxConnections?: number;
  /** @default 300000 */
  readonly idleTimeoutMs?: number;
  /** How long a looked-up grant is reused before it is read again (a revocation takes effect within it). @default 5000 */
  readonly grantCacheMs?: number;
}

export interface ProxyService {
  readonly sandboxPort: number;
  readonly harnessPort: number | undefined;
  /** Client connections open on the sandbox port. */
  openConnections(): number;
  close(): Promise<void>;
}

export const PROXY_SERVICE_DEFAULTS = { maxConnectionsPerGrant: 64, maxConnections: 4096, idleTimeoutMs: 300_000, grantCacheMs: 5_000 } as const;

export async function startProxyService(opts: ProxyServiceOptions): Promise<ProxyService> {
  const logger = opts.logger ?? { warn: (m: string, e?: Record<string, unknown>) => console.warn(m, e ?? '') };
  const maxPerGrant = opts.maxConnectionsPerGrant ?? PROXY_SERVICE_DEFAULTS.maxConnectionsPerGrant;
  const maxConnections = opts.maxConnections ?? PROXY_SERVICE_DEFAULTS.maxConnections;
  const idleTimeoutMs = opts.idleTimeoutMs ?? PROXY_SERVICE_DEFAULTS.idleTimeoutMs;
  const cacheMs = opts.grantCacheMs ?? PROXY_SERVICE_DEFAULTS.grantCacheMs;
  const host = opts.host ?? '0.0.0.0';
  const sandboxRoutes = opts.routes?.sandbox ?? [];
  const harnessRoutes = opts.routes?.harness ?? [];

  const sockets = new Set<net.Socket>();
  /** The grant (capability hash) a connection counts against, from its first authenticated request. */
  const counted = new WeakMap<Duplex, string>();
  const perGrant = new Map<string, number>();
  const cache = new Map<string, { grant: EgressGrant | undefined; until: number }>();

  async function grantOf(capability: string): Promise<EgressGrant | undefined> {
    const now = Date.now();
    const hit = cache.get(capability);
    if (hit && hit.until > now) return hit.grant && hit.grant.expiresAt > now ? hit.grant : undefined;
    const grant = await opts.grants.get(capability, now);
    if (cache.size > 10_000) cache.clear();
    cache.set(capability, { grant, until: now + cacheMs });
    return grant;
  }

  /**
   * Whose this request is: the grant's context, or an answer already written (407, 503) and
   * undefined.
   */
  async function authenticate(req: http.IncomingMessage, socket: Duplex, refuse: (status: number, reason: string, body: string, extra?: string) => void): Promise<EgressContext | undefined> {
    const capability = capabilityFromProxyAuthorization(req.headers['proxy-authorization']);
    let grant: EgressGrant | undefined;
    try {
      grant = capability ? await grantOf(capability) : undefined;
    } catch (err) {
      logger.warn('proxy: the grant could not be read', { error: (err as Error)?.name });
      refuse(503, 'Service Unavailable', 'Corral egress proxy: try again\n');
      return undefined;
    }
    if (!capability || !grant) {
      logger.warn('egress refused: no valid capability', { capabilityHash: capability ? egressCapabilityHash(capability).slice(0, 12) : undefined });
      refuse(407, 'Proxy Authentication Required', 'Corral egress proxy: proxy authentication required\n', 'proxy-authenticate: Bearer\r\n');
      return undefined;
    }
    const hash = egressCapabilityHash(capability);
    const owner = { sessionId: grant.sessionId, sandbox: grant.sandbox };
    const already = counted.get(socket);
    if (already === undefined) {
      const n = perGrant.get(hash) ?? 0;
      if (n >= maxPerGrant) {
        logger.warn('egress refused: too many connections', { ...owner, limit: maxPerGrant });
        refuse(503, 'Too many connections', `Corral egress proxy: this sandbox already has ${maxPerGrant} connections open through the proxy; close some first.\n`);
        return undefined;
      }
      perGrant.set(hash, n + 1);
      counted.set(socket, hash);
      socket.once('close', () => {
        const left = (perGrant.get(hash) ?? 1) - 1;
        if (left > 0) perGrant.set(hash, left);
        else perGrant.delete(hash);
      });
    } else if (already !== hash) {
      // One connection, one sandbox: another capability on it is refused without details.
      refuse(407, 'Proxy Authentication Required', 'Corral egress proxy: proxy authentication required\n', 'proxy-authenticate: Bearer\r\n');
      return undefined;
    }
    return { owner, policy: grant.policy, credentials: grant.credentials };
  }

  const rawRefusal = (socket: Duplex) => (status: number, reason: string, body: string, extra = '') => {
    socket.end(`HTTP/1.1 ${status} ${reason}\r\n${extra}content-type: text/plain; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`);
  };

  const sandbox = http.createServer();
  sandbox.on('connection', (socket: net.Socket) => {
    if (sockets.size >= maxConnections) {
      logger.warn('proxy refused a connection: the task is at its limit', { limit: maxConnections });
      rawRefusal(socket)(503, 'Too many connections', 'Corral egress proxy: too many connections; try again\n');
      return;
    }
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  sandbox.setTimeout(idleTimeoutMs, (socket) => socket.destroy());
  sandbox.keepAliveTimeout = Math.min(idleTimeoutMs, 5_000);
  sandbox.on('connect', (req: http.IncomingMessage, client: Duplex, head: Buffer) => {
    client.on('error', () => {});
    void authenticate(req, client, rawRefusal(client)).then((ctx) => {
      if (ctx) return opts.relay.tunnel(ctx, req, client, head);
    });
  });
  sandbox.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
    const url = req.url ?? '/';
    if (url.startsWith('/')) {
      const path = url.split('?')[0];
      if (path === '/healthz') {
        req.resume();
        res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
        return;
      }
      serveRoute(findRoute(sandboxRoutes, path), req, res);
      return;
    }
    const refuse = (status: number, reason: string, body: string, extra = '') => {
      req.resume();
      const headers: Record<string, string> = { 'content-type': 'text/plain; charset=utf-8', connection: 'close' };
      if (extra) headers['proxy-authenticate'] = 'Bearer';
      res.writeHead(status, reason, headers).end(body);
    };
    void authenticate(req, req.socket, refuse).then((ctx) => {
      if (ctx) return opts.relay.forward(ctx, req, res);
    });
  });
  sandbox.on('clientError', (_err, socket) => {
    if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\n\r\n');
    else socket.destroy();
  });

  function serveRoute(route: ReturnType<typeof findRoute>, req: http.IncomingMessage, res: http.ServerResponse) {
    if (!route) {
      req.resume();
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
      return;
    }
    Promise.resolve()
      .then(() => route.handle(req, res))
      .catch((err: unknown) => {
        logger.error?.('proxy route failed', { route: route.name, error: (err as Error)?.name });
        if (!res.headersSent) res.writeHead(502, { 'content-type': 'text/plain' });
        res.end();
      });
  }

  let harness: http.Server | undefined;
  if (opts.harnessPort !== undefined) {
    harness = http.createServer((req, res) => {
      const path = (req.url ?? '/').split('?')[0];
      if (path === '/healthz') {
        req.resume();
        res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
        return;
      }
      serveRoute(findRoute(harnessRoutes, path), req, res);
    });
    harness.setTimeout(idleTimeoutMs, (socket) => socket.destroy());
  }

  const listen = (server: http.Server, port: number) =>
    new Promise<number>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        server.off('error', reject);
        const address = server.address();
        // The rehearsal serves a task's port from a Unix socket (its address is then a path).
        resolve(typeof address === 'object' && address ? address.port : port);
      });
    });
  const sandboxPort = await listen(sandbox, opts.sandboxPort);
  const harnessPort = harness ? await listen(harness, opts.harnessPort!) : undefined;

  return {
    sandboxPort,
    harnessPort,
    openConnections: () => sockets.size,
    close: async () => {
      const closed = [sandbox, harness].filter((s): s is http.Server => !!s).map((s) => new Promise<void>((r) => s.close(() => r())));
      for (const s of sockets) s.destroy();
      harness?.closeAllConnections();
      await Promise.all(closed);
    },
  };
}
