import http from 'node:http';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import type { Log } from './log.js';

/**
 * The egress forwarder: the sandbox's only way out. A local sandbox has no network; the egress
 * proxy of its host (lambdas/adapters/local/egress-proxy.ts) is reachable over a Unix socket
 * bind-mounted (read-only) into it. The forwarder listens on 127.0.0.1 inside the sandbox's own
 * network namespace and passes each connection's bytes to that socket unchanged: the tools speak
 * HTTP proxying (`CONNECT`, absolute URIs) to it through `HTTP_PROXY`/`HTTPS_PROXY`, and the
 * proxy applies the environment's networking policy. There is no capability: the socket itself
 * says which sandbox a connection comes from.
 */
export interface EgressForwarder {
  port: number;
  server: net.Server | http.Server;
  /** The proxy variables the tools get (`proxyEnvironment`). */
  env: Record<string, string>;
}

/**
 * What every tool process gets so that the usual clients (curl, git, pip, npm, apt, Python's
 * requests) go through the proxy; hosts inside the sandbox itself are reached directly.
 */
export function proxyEnvironment(port: number): Record<string, string> {
  const url = `http://127.0.0.1:${port}`;
  const local = 'localhost,127.0.0.1,::1';
  return { HTTP_PROXY: url, HTTPS_PROXY: url, http_proxy: url, https_proxy: url, NO_PROXY: local, no_proxy: local };
}

export function startEgressForwarder(socketPath: string, log: Log = () => {}): Promise<EgressForwarder> {
  let warned = false;
  const server = net.createServer((client) => {
    const upstream = net.connect(socketPath);
    client.on('error', () => upstream.destroy());
    upstream.on('error', (err) => {
      if (!warned) {
        warned = true;
        log('warn', 'egress forwarder: the egress proxy could not be reached', { error: err.message });
      }
      client.destroy();
    });
    client.once('close', () => upstream.destroy());
    upstream.once('close', () => client.destroy());
    client.pipe(upstream);
    upstream.pipe(client);
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const port = (server.address() as net.AddressInfo).port;
      resolve({ port, server, env: proxyEnvironment(port) });
    });
  });
}

/**
 * The egress channel of a Fargate sandbox (`CORRAL_EGRESS_CHANNEL`, JSON): the proxy service's
 * sandbox port (`host:port`, behind its load balancer) and this sandbox's capability. The task's
 * security group lets it reach nothing else.
 */
export interface EgressChannelConfig {
  address: string;
  capability: string;
}

export const EGRESS_CHANNEL_ENV = 'CORRAL_EGRESS_CHANNEL';

export function parseEgressChannel(text: string): EgressChannelConfig {
  const c = JSON.parse(text) as EgressChannelConfig;
  if (typeof c !== 'object' || c === null || typeof c.address !== 'string' || !/^[A-Za-z0-9.-]+:\d{1,5}$/.test(c.address) || typeof c.capability !== 'string' || !/^[A-Za-z0-9_-]{16,128}$/.test(c.capability)) {
    throw new Error('the egress channel is not {address: "host:port", capability}');
  }
  return c;
}

/**
 * The egress forwarder of a Fargate sandbox: as the local one, but the proxy is the proxy service
 * over TCP, which needs to know whose a connection is. The forwarder speaks HTTP proxying to the
 * tools and passes each `CONNECT` and absolute-URI request on with the sandbox's capability in
 * `Proxy-Authorization` (whatever the tool sent there is dropped), so the capability is never in
 * a tool's environment. The proxy's answer to a CONNECT (200 and the tunnel, or a 403 naming the
 * policy) goes back to the tool byte for byte.
 */
export function startTcpEgressForwarder(cfg: EgressChannelConfig, log: Log = () => {}): Promise<EgressForwarder> {
  const at = cfg.address.lastIndexOf(':');
  const host = cfg.address.slice(0, at);
  const port = Number(cfg.address.slice(at + 1));
  const auth = `Bearer ${cfg.capability}`;
  let warned = false;
  const unreachable = (err: Error) => {
    if (warned) return;
    warned = true;
    log('warn', 'egress forwarder: the proxy service could not be reached', { error: err.message });
  };
  const server = http.createServer((req, res) => {
    if (!/^http:\/\//i.test(req.url ?? '')) {
      req.resume();
      res.writeHead(400, { 'content-type': 'text/plain' }).end('this is a proxy: send absolute http:// URLs, and CONNECT for https\n');
      return;
    }
    const headers: http.OutgoingHttpHeaders = { ...req.headers, 'proxy-authorization': auth };
    const upstream = http.request({ host, port, method: req.method, path: req.url, headers, setHost: false, agent: false }, (up) => {
      res.writeHead(up.statusCode ?? 502, up.statusMessage, up.headers);
      up.pipe(res);
    });
    upstream.on('error', (err) => {
      unreachable(err);
      if (!res.headersSent) res.writeHead(502, { 'content-type': 'text/plain' });
      res.end('the egress proxy could not be reached\n');
    });
    req.pipe(upstream);
  });
  server.on('connect', (req: http.IncomingMessage, client: Duplex, head: Buffer) => {
    const upstream = net.connect({ host, port });
    client.on('error', () => upstream.destroy());
    upstream.on('error', (err) => {
      unreachable(err);
      if (client.writable) client.end('HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\nconnection: close\r\n\r\n');
    });
    client.once('close', () => upstream.destroy());
    upstream.once('close', () => client.destroy());
    const target = (req.url ?? '').replace(/[\r\n]/g, '');
    upstream.write(`CONNECT ${target} HTTP/1.1\r\nhost: ${target}\r\nproxy-authorization: ${auth}\r\n\r\n`);
    if (head.length) upstream.write(head);
    upstream.pipe(client);
    client.pipe(upstream);
  });
  server.on('clientError', (_err, socket) => socket.destroy());
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const p = (server.address() as net.AddressInfo).port;
      resolve({ port: p, server, env: proxyEnvironment(p) });
    });
  });
}
