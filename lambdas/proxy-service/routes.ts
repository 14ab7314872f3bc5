import type http from 'node:http';

/**
 * The plug-in point of the proxy service: a route answers origin-form requests under its `prefix`
 * on one of the two ports. The egress side (CONNECT, absolute URIs) is the service's own; every
 * other request goes to the first route whose prefix its path starts with, else 404.
 *
 * - Sandbox port (3128): routes a sandbox's agent calls, e.g. the git channel (`/git/…`). A route
 *   authenticates its own requests (the git channel's capability header); the service has not.
 * - Harness port (8081): routes the harness calls, e.g. model forwarding. Only the harness's
 *   security group reaches this port (infra/lib/constructs/proxy-service.ts).
 *
 * A route never echoes a secret, and logs no header, query or body.
 */
export interface ProxyServiceRoute {
  /** Path prefix, starting and ending with `/` (`/git/`), or an exact path. */
  readonly prefix: string;
  /** For the log. */
  readonly name: string;
  handle(req: http.IncomingMessage, res: http.ServerResponse): void | Promise<void>;
}

/** The routes of both ports. Filled by the modules that plug in (git channel, model forwarding). */
export interface ProxyServiceRoutes {
  readonly sandbox: readonly ProxyServiceRoute[];
  readonly harness: readonly ProxyServiceRoute[];
}

export function findRoute(routes: readonly ProxyServiceRoute[], path: string): ProxyServiceRoute | undefined {
  return routes.find((r) => (r.prefix.endsWith('/') ? path.startsWith(r.prefix) : path === r.prefix));
}
