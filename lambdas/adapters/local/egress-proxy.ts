/**
 * The local egress proxy: the only way out of a local sandbox. A bubblewrapped sandbox has no
 * network (`--unshare-net`); each one gets a Unix socket of its own here, bind-mounted read-only
 * into it, and the agent's loopback forwarder (`sandbox/agent/egress-forwarder.ts`) passes the
 * tools' proxy connections (`HTTP_PROXY`/`HTTPS_PROXY`) to it. The socket says which sandbox a
 * connection comes from, and so which policy applies.
 *
 * It speaks HTTP proxying: `CONNECT host:port` (HTTPS and anything else tunnelled; the proxy never
 * sees inside the tunnel) and absolute-URI requests (`GET http://host/path`, plain HTTP). For each
 * one:
 * 1. the sandbox's policy decides on the host as the client named it (`decideEgress` in the core);
 * 2. the name is resolved, and every address that is private, loopback or link-local is dropped
 *    (`isPrivateAddress`); the connection goes to one of the remaining addresses, by address, so
 *    the address checked is the address connected to (no second lookup to rebind);
 * 3. a denial is an HTTP 403 whose reason phrase and body name the host and the policy (the
 *    model reads it in the tool's output), and a `warn` log line for the operator with the
 *    session, sandbox, host and port (never a path, a query or a header: they may carry secrets).
 *
 * Bounded: at most `maxConnectionsPerSandbox` client connections per sandbox (more get a 503),
 * connections idle longer than `idleTimeoutMs` are closed, an upstream that does not answer in
 * `connectTimeoutMs` is a 504.
 */
import crypto from 'node:crypto';
import dns from 'node:dns';
import fsp from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type { Duplex } from 'node:stream';
import { addressList, decideEgress, isPrivateAddress, normalizeHost, type EgressPolicy } from '../../core/sandbox/egress.js';

/** Structural logger (Powertools' `Logger` and `console` both fit). */
export interface EgressLogger {
  info?(message: string, extra?: Record<string, unknown>): void;
  warn(message: string, extra?: Record<string, unknown>): void;
}

export interface LocalEgressProxyOptions {
  /** Directory for the sandboxes' sockets (short: a Unix socket path has 107 bytes). @default a new one under the OS temp dir */
  readonly dir?: string;
  readonly logger?: EgressLogger;
  /** Client connections one sandbox may hold open at once. @default 64 */
  readonly maxConnectionsPerSandbox?: number;
  /** A connection (or tunnel) with no traffic this long is closed. @default 300000 (5 min) */
  readonly idleTimeoutMs?: number;
  /** How long connecting to an upstream may take. @default 15000 */
  readonly connectTimeoutMs?: number;
  /**
   * Addresses and CIDR blocks that are reachable although private. For tests, which can reach
   * only servers on loopback; the local runtime never sets it and no configuration reaches it.
   * @default none
   */
  readonly allowPrivateAddresses?: readonly string[];
  /**
   * How a host name becomes addresses. For tests, which stand registry names in for loopback
   * servers. @default the system resolver (`dns.lookup`, all addresses)
   */
  readonly resolve?: (host: string) => Promise<string[]>;
}

/** Who a sandbox's connections are logged as. */
export interface EgressOwner {
  sessionId: string;
  sandbox: string;
}

/** One sandbox's way out: its socket, and closing it (which ends its open connections). */
export interface EgressChannel {
  /** The socket's directory (bind-mounted read-only into the sandbox) and the socket in it. */
  readonly socketDir: string;
  readonly socketPath: string;
  /** Whose the connections are, for the log (a handoff changes it). */
  owner: EgressOwner;
  close(): Promise<void>;
}

const SOCKET_NAME = 'egress.sock';

const systemResolve = async (host: string): Promise<string[]> => (await dns.promises.lookup(host, { all: true, verbatim: true })).map((a) => a.address);

/** A reason phrase may not hold CR, LF or non-ASCII; it is kept short. */
const reasonPhrase = (text: string) => text.replace(/[^\x20-\x7e]/g, ' ').slice(0, 300);

class Refusal extends Error {
  constructor(
    readonly status: number,
    message: string,
    /** The operator's log line's reason (no path, query or header). */
    readonly logReason: string,
  ) {
    super(message);
  }
}

export class LocalEgressProxy {
  private readonly logger: EgressLogger;
  private readonly maxConnections: number;
  private readonly idleTimeoutMs: number;
  private readonly connectTimeoutMs: number;
  private readonly privateAllowed: (ip: string) => boolean;
  private readonly resolve: (host: string) => Promise<string[]>;
  private readonly givenDir: string | undefined;
  private dir: Promise<string> | undefined;
  private readonly channels = new Set<EgressChannel>();

  constructor(opts: LocalEgressProxyOptions = {}) {
    this.logger = opts.logger ?? { warn: (m, e) => console.warn(m, e ?? '') };
    this.maxConnections = opts.maxConnectionsPerSandbox ?? 64;
    this.idleTimeoutMs = opts.idleTimeoutMs ?? 300_000;
    this.connectTimeoutMs = opts.connectTimeoutMs ?? 15_000;
    this.privateAllowed = addressList(opts.allowPrivateAddresses ?? []);
    this.resolve = opts.resolve ?? systemResolve;
    this.givenDir = opts.dir;
  }

  private baseDir(): Promise<string> {
    this.dir ??= this.givenDir
      ? fsp.mkdir(this.givenDir, { recursive: true, mode: 0o700 }).then(() => this.givenDir!)
      : fsp.mkdtemp(path.join(os.tmpdir(), 'corral-egress-'));
    return this.dir;
  }

  /** A socket for one sandbox, applying `policy` to every connection that comes through it. */
  async open(owner: EgressOwner, policy: EgressPolicy): Promise<EgressChannel> {
    const socketDir = path.join(await this.baseDir(), crypto.randomBytes(8).toString('hex'));
    await fsp.mkdir(socketDir, { mode: 0o700 });
    const socketPath = path.join(socketDir, SOCKET_NAME);
    const sockets = new Set<Duplex>();
    const server = http.createServer();
    const channel: EgressChannel = {
      socketDir,
      socketPath,
      owner: { ...owner },
      close: async () => {
        if (!this.channels.delete(channel)) return;
        await new Promise<void>((resolve) => {
          server.close(() => resolve());
          for (const s of sockets) s.destroy();
        });
        await fsp.rm(socketDir, { recursive: true, force: true });
      },
    };
    server.on('connection', (socket: net.Socket) => {
      if (sockets.size >= this.maxConnections) {
        this.logger.warn('egress refused: too many connections', { ...channel.owner, limit: this.maxConnections });
        const body = `Corral egress proxy: this sandbox already has ${this.maxConnections} connections open through the proxy; close some first.\n`;
        socket.end(`HTTP/1.1 503 Too many connections\r\ncontent-type: text/plain\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`);
        return;
      }
      sockets.add(socket);
      socket.once('close', () => sockets.delete(socket));
    });
    server.setTimeout(this.idleTimeoutMs, (socket) => socket.destroy());
    server.keepAliveTimeout = Math.min(this.idleTimeoutMs, 5_000);
    server.on('connect', (req: http.IncomingMessage, client: Duplex, head: Buffer) => {
      void this.tunnel(channel, policy, req, client, head);
    });
    server.on('request', (req, res) => {
      void this.forward(channel, policy, req, res);
    });
    server.on('clientError', (_err, socket) => {
      if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\n\r\n');
      else socket.destroy();
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(socketPath, () => {
        server.off('error', reject);
        resolve();
      });
    });
    this.channels.add(channel);
    return channel;
  }

  /** Closes every sandbox's socket. */
  async close(): Promise<void> {
    await Promise.all([...this.channels].map((c) => c.close()));
    if (this.dir && !this.givenDir) await fsp.rm(await this.dir, { recursive: true, force: true }).catch(() => {});
  }

  /**
   * The policy's decision, then an address that is not private: the one to connect to. Throws a
   * `Refusal` (logged) otherwise.
   */
  private async admit(channel: EgressChannel, policy: EgressPolicy, rawHost: string, port: number): Promise<string> {
    const host = normalizeHost(rawHost);
    const decision = decideEgress(policy, rawHost, port);
    if (!decision.allowed || host === null) {
      const message = decision.allowed ? `${rawHost.slice(0, 255)} is not a valid host` : decision.message;
      throw new Refusal(403, message, 'policy');
    }
    let addresses: string[];
    if (net.isIP(host)) addresses = [host];
    else {
      try {
        addresses = await this.resolve(host);
      } catch (err) {
        throw new Refusal(502, `${host} could not be resolved (${(err as NodeJS.ErrnoException).code ?? 'lookup failed'})`, 'dns');
      }
    }
    const usable = addresses.filter((a) => !isPrivateAddress(a) || this.privateAllowed(a));
    if (!usable.length) {
      throw new Refusal(
        403,
        `${host}:${port} resolves only to private, loopback or link-local addresses (${addresses.slice(0, 4).join(', ') || 'none'}), which no sandbox may reach`,
        'private_address',
      );
    }
    this.logger.info?.('egress allowed', { ...channel.owner, host, port, by: decision.allowed ? decision.by : undefined });
    return usable[0]!;
  }

  private refuse(channel: EgressChannel, err: unknown, host: string, port: number): Refusal {
    const refusal = err instanceof Refusal ? err : new Refusal(502, `${host}:${port} could not be reached: ${(err as Error)?.message ?? err}`, 'upstream');
    this.logger.warn('egress denied', { ...channel.owner, host: host.slice(0, 255), port, status: refusal.status, reason: refusal.logReason });
    return refusal;
  }

  /** `CONNECT host:port`: a tunnel to an admitted address, or a 403/502 naming why not. */
  private async tunnel(channel: EgressChannel, policy: EgressPolicy, req: http.IncomingMessage, client: Duplex, head: Buffer): Promise<void> {
    client.on('error', () => {});
    const authority = /^(\[[^\]]+\]|[^:]+):(\d{1,5})$/.exec(req.url ?? '');
    const host = authority?.[1] ?? (req.url ?? '').slice(0, 255);
    const port = authority ? Number(authority[2]) : 0;
    let upstream: net.Socket;
    try {
      if (!authority) throw new Refusal(400, `CONNECT needs host:port, not ${JSON.stringify(host)}`, 'bad_request');
      const address = await this.admit(channel, policy, host, port);
      upstream = await this.connect(address, port);
    } catch (err) {
      const refusal = this.refuse(channel, err, host, port);
      writeRefusal(client, refusal);
      return;
    }
    upstream.on('error', () => client.destroy());
    client.on('error', () => upstream.destroy());
    upstream.setTimeout(this.idleTimeoutMs, () => upstream.destroy());
    if (client instanceof net.Socket) client.setTimeout(this.idleTimeoutMs, () => client.destroy());
    client.once('close', () => upstream.destroy());
    upstream.once('close', () => client.destroy());
    client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
    if (head.length) upstream.write(head);
    upstream.pipe(client);
    client.pipe(upstream);
  }

  private connect(address: string, port: number): Promise<net.Socket> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host: address, port });
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new Refusal(504, `connecting to ${address}:${port} timed out`, 'timeout'));
      }, this.connectTimeoutMs);
      socket.once('connect', () => {
        clearTimeout(timer);
        resolve(socket);
      });
      socket.once('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
    });
  }

  /** An absolute-URI request (plain HTTP): forwarded to an admitted address. */
  private async forward(channel: EgressChannel, policy: EgressPolicy, req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    let url: URL | null = null;
    try {
      url = new URL(req.url ?? '');
    } catch {
      // not absolute
    }
    const host = url?.hostname ?? '';
    const port = url ? (url.port ? Number(url.port) : 80) : 0;
    let address: string;
    try {
      if (!url || url.protocol !== 'http:') {
        throw new Refusal(400, 'this is a proxy: send absolute http:// URLs, and CONNECT for https', 'bad_request');
      }
      address = await this.admit(channel, policy, host, port);
    } catch (err) {
      req.resume();
      sendRefusal(res, this.refuse(channel, err, host, port));
      return;
    }
    const headers: http.OutgoingHttpHeaders = {};
    for (const [name, value] of Object.entries(req.headers)) {
      // Hop-by-hop headers are the proxy's own; the rest goes on as the client sent it.
      if (!HOP_BY_HOP.has(name) && value !== undefined) headers[name] = value;
    }
    headers.host = url!.host;
    headers.connection = 'close';
    const upstream = http.request({ host: address, port, method: req.method, path: `${url!.pathname}${url!.search}`, headers, setHost: false, agent: false });
    upstream.setTimeout(this.idleTimeoutMs, () => upstream.destroy(new Error('idle timeout')));
    upstream.on('response', (up) => {
      const out: http.OutgoingHttpHeaders = {};
      for (const [name, value] of Object.entries(up.headers)) if (!HOP_BY_HOP.has(name) && value !== undefined) out[name] = value;
      res.writeHead(up.statusCode ?? 502, up.statusMessage, out);
      up.pipe(res);
    });
    upstream.on('error', (err) => {
      if (res.headersSent) {
        res.destroy();
        return;
      }
      sendRefusal(res, this.refuse(channel, err, host, port));
    });
    req.pipe(upstream);
  }
}

const HOP_BY_HOP = new Set(['connection', 'proxy-connection', 'keep-alive', 'proxy-authorization', 'proxy-authenticate', 'te', 'trailer', 'transfer-encoding', 'upgrade']);

const bodyOf = (r: Refusal) => `Corral egress proxy: ${r.message}\n`;

function sendRefusal(res: http.ServerResponse, r: Refusal): void {
  const body = bodyOf(r);
  res.writeHead(r.status, reasonPhrase(`Corral egress: ${r.message}`), { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(body), 'x-corral-egress': 'denied' });
  res.end(body);
}

/** A CONNECT's answer is written on the raw socket (the tunnel never started). */
function writeRefusal(client: Duplex, r: Refusal): void {
  const body = bodyOf(r);
  client.end(
    `HTTP/1.1 ${r.status} ${reasonPhrase(`Corral egress: ${r.message}`)}\r\ncontent-type: text/plain; charset=utf-8\r\n` +
      `content-length: ${Buffer.byteLength(body)}\r\nx-corral-egress: denied\r\nconnection: close\r\n\r\n${body}`,
  );
}
