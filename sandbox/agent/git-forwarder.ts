import http from 'node:http';
import https from 'node:https';
import type { Log } from './log.js';

/**
 * The git forwarder: the sandbox's way to its session's repositories. The sandbox has no network; the credential
 * proxy's git side is reachable over a Unix socket bind-mounted (read-only) into it, or, on
 * Fargate, over HTTP to the proxy service in the VPC (the sandbox's security group lets it reach
 * nothing else). The forwarder listens on 127.0.0.1 inside the sandbox's own network
 * namespace and passes git smart-HTTP requests for the channel's repositories on, adding the
 * channel's capability. The repositories' `origin` points at the forwarder, so no credential is
 * ever in the sandbox: not in `.git/config`, the environment or any file. The capability is not
 * a credential for the repository: it opens only this session's repositories, through the proxy.
 */
/** The git channel the agent is given (`CORRAL_GIT_CHANNEL`, or a stdin line). */
export interface GitChannelConfig {
  capability: string;
  /** The proxy's git socket, as seen from inside the sandbox. */
  socket?: string;
  /** Or its base URL (Fargate: the proxy service's git channel, `http://<service>:3128/git`). */
  url?: string;
  repositories: Array<{ url: string; path: string }>;
}

export const GIT_CHANNEL_ENV = 'CORRAL_GIT_CHANNEL';
const GIT_CAPABILITY_HEADER = 'x-corral-git-capability';
const GIT_FORWARDED_HEADERS = ['content-type', 'accept', 'content-encoding', 'git-protocol', 'content-length', 'accept-language'];

export function parseGitChannel(text: string): GitChannelConfig {
  const c = JSON.parse(text) as GitChannelConfig;
  if (
    typeof c !== 'object' || c === null || typeof c.capability !== 'string' || (typeof c.socket !== 'string' && typeof c.url !== 'string') ||
    !Array.isArray(c.repositories) || !c.repositories.every((r) => typeof r?.url === 'string' && typeof r?.path === 'string' && r.path.startsWith('/r/'))
  ) {
    throw new Error('the git channel is not {capability, socket|url, repositories: [{url, path}]}');
  }
  return c;
}

export interface GitForwarder {
  port: number;
  server: http.Server;
  /** `http://127.0.0.1:<port>/r/<n>/<name>.git` for a repository URL of the channel. */
  remoteFor(url: string): string | undefined;
}

export function startGitForwarder(cfg: GitChannelConfig, log: Log = () => {}): Promise<GitForwarder> {
  const server = http.createServer((req, res) => {
    const target = req.url ?? '/';
    const pathname = target.split('?')[0];
    if (!cfg.repositories.some((r) => pathname.startsWith(`${r.path}/`))) {
      req.resume();
      res.writeHead(404, { 'content-type': 'text/plain' });
      res.end('not a repository of this sandbox\n');
      return;
    }
    const headers: Record<string, string> = { host: 'corral-git-proxy', [GIT_CAPABILITY_HEADER]: cfg.capability };
    for (const name of GIT_FORWARDED_HEADERS) {
      const v = req.headers[name];
      if (typeof v === 'string') headers[name] = v;
    }
    if (!headers['content-length'] && req.method === 'POST') headers['transfer-encoding'] = 'chunked';
    const onResponse = (up: http.IncomingMessage) => {
      const out: Record<string, string> = {};
      for (const name of ['content-type', 'cache-control', 'expires', 'pragma']) {
        const v = up.headers[name];
        if (typeof v === 'string') out[name] = v;
      }
      res.writeHead(up.statusCode ?? 502, out);
      up.pipe(res);
    };
    let upstream: http.ClientRequest;
    if (cfg.socket) {
      upstream = http.request({ socketPath: cfg.socket, path: target, method: req.method, headers }, onResponse);
    } else {
      // The channel's path under the URL's own (the proxy service serves it under `/git`).
      const base = new URL(cfg.url!);
      const u = new URL(`${base.pathname.replace(/\/+$/, '')}${target}`, base);
      upstream = (u.protocol === 'https:' ? https : http).request(u, { method: req.method, headers }, onResponse);
    }
    upstream.on('error', (err) => {
      log('warn', 'git forwarder: the credential proxy could not be reached', { error: err.message });
      if (!res.headersSent) res.writeHead(502, { 'content-type': 'text/plain' });
      res.end('the credential proxy could not be reached\n');
    });
    req.pipe(upstream);
  });
  server.requestTimeout = 0;
  server.timeout = 0;
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const port = (server.address() as { port: number }).port;
      resolve({
        port,
        server,
        remoteFor: (url) => {
          const r = cfg.repositories.find((x) => x.url === url);
          return r ? `http://127.0.0.1:${port}${r.path}` : undefined;
        },
      });
    });
  });
}
