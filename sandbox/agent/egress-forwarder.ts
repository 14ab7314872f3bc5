import net from 'node:net';
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
  server: net.Server;
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
