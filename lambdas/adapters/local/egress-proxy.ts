/**
 * The local egress proxy: the only way out of a local sandbox. A bubblewrapped sandbox has no
 * network (`--unshare-net`); each one gets a Unix socket of its own here, bind-mounted read-only
 * into it, and the agent's loopback forwarder (`sandbox/agent/egress-forwarder.ts`) passes the
 * tools' proxy connections (`HTTP_PROXY`/`HTTPS_PROXY`) to it. The socket says which sandbox a
 * connection comes from, and so which policy applies.
 *
 * What happens to each request (`CONNECT host:port`, absolute-URI HTTP) is the core's egress
 * relay (lambdas/core/sandbox/egress-relay.ts: policy, resolution and the private-address
 * refusal, denial answers and logs, credential substitution), which the proxy service on AWS
 * (lambdas/proxy-service/) shares. This module is the transport: the sockets, and the bound of
 * `maxConnectionsPerSandbox` client connections per sandbox (more get a 503).
 */
import crypto from 'node:crypto';
import fsp from 'node:fs/promises';
import http from 'node:http';
import type net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type { Duplex } from 'node:stream';
import type { EgressPolicy } from '../../core/sandbox/egress.js';
import { EgressRelay, type EgressContext, type EgressCredential, type EgressLogger, type EgressOwner, type EgressSecretSource } from '../../core/sandbox/egress-relay.js';
import { systemTrust, trustBundle, type EgressCa } from './egress-ca.js';

export type { EgressCredential, EgressLogger, EgressOwner, EgressSecretSource } from '../../core/sandbox/egress-relay.js';

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
  /**
   * The deployment's egress CA: with it, TLS to hosts where a sandbox's credential applies is
   * terminated here, and every sandbox gets the trust bundle (`EgressChannel.caBundlePath`).
   * @default none: no credential is applied
   */
  readonly ca?: EgressCa;
  /** Where credentials' secrets are read, at substitution time. @default none */
  readonly secrets?: EgressSecretSource;
  /**
   * CA certificates (PEM) trusted for upstream TLS besides the system's. For tests, whose HTTPS
   * servers on loopback have their own CA; the local runtime never sets it. @default none
   */
  readonly upstreamCa?: readonly string[];
}

/** One sandbox's way out: its socket, and closing it (which ends its open connections). */
export interface EgressChannel {
  /** The socket's directory (bind-mounted read-only into the sandbox) and the socket in it. */
  readonly socketDir: string;
  readonly socketPath: string;
  /** The trust bundle (system CAs + the egress CA), alone in its directory (bind-mounted read-only), when the proxy has a CA. */
  readonly caBundlePath?: string;
  /** Whose the connections are, for the log (a handoff changes it). */
  owner: EgressOwner;
  close(): Promise<void>;
}

const SOCKET_NAME = 'egress.sock';
export const CA_BUNDLE_NAME = 'ca-bundle.pem';

export class LocalEgressProxy {
  private readonly logger: EgressLogger;
  private readonly maxConnections: number;
  private readonly idleTimeoutMs: number;
  private readonly givenDir: string | undefined;
  private dir: Promise<string> | undefined;
  private readonly channels = new Set<EgressChannel>();
  private readonly ca: EgressCa | undefined;
  private readonly relay: EgressRelay;

  constructor(opts: LocalEgressProxyOptions = {}) {
    this.logger = opts.logger ?? { warn: (m, e) => console.warn(m, e ?? '') };
    this.maxConnections = opts.maxConnectionsPerSandbox ?? 64;
    this.idleTimeoutMs = opts.idleTimeoutMs ?? 300_000;
    this.givenDir = opts.dir;
    this.ca = opts.ca;
    this.relay = new EgressRelay({
      logger: this.logger,
      idleTimeoutMs: this.idleTimeoutMs,
      connectTimeoutMs: opts.connectTimeoutMs,
      allowPrivateAddresses: opts.allowPrivateAddresses,
      resolve: opts.resolve,
      ca: opts.ca,
      secrets: opts.secrets,
      upstreamTrust: [...systemTrust(), ...(opts.upstreamCa ?? [])],
    });
  }

  private baseDir(): Promise<string> {
    this.dir ??= this.givenDir
      ? fsp.mkdir(this.givenDir, { recursive: true, mode: 0o700 }).then(() => this.givenDir!)
      : fsp.mkdtemp(path.join(os.tmpdir(), 'corral-egress-'));
    return this.dir;
  }

  /** A socket for one sandbox, applying `policy` to every connection that comes through it. */
  async open(owner: EgressOwner, policy: EgressPolicy, credentials: readonly EgressCredential[] = []): Promise<EgressChannel> {
    const socketDir = path.join(await this.baseDir(), crypto.randomBytes(8).toString('hex'));
    await fsp.mkdir(socketDir, { mode: 0o700 });
    const socketPath = path.join(socketDir, SOCKET_NAME);
    let caBundlePath: string | undefined;
    if (this.ca) {
      // Its own directory, readable by every user: the tools may run as another uid than the agent.
      const caDir = `${socketDir}-ca`;
      await fsp.mkdir(caDir, { mode: 0o755 });
      await fsp.chmod(caDir, 0o755);
      caBundlePath = path.join(caDir, CA_BUNDLE_NAME);
      await fsp.writeFile(caBundlePath, trustBundle(this.ca), { mode: 0o644 });
    }
    const sockets = new Set<Duplex>();
    const server = http.createServer();
    const channel: EgressChannel = {
      socketDir,
      socketPath,
      ...(caBundlePath ? { caBundlePath } : {}),
      owner: { ...owner },
      close: async () => {
        if (!this.channels.delete(channel)) return;
        await new Promise<void>((resolve) => {
          server.close(() => resolve());
          for (const s of sockets) s.destroy();
        });
        await fsp.rm(socketDir, { recursive: true, force: true });
        if (caBundlePath) await fsp.rm(path.dirname(caBundlePath), { recursive: true, force: true });
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
    // Without a CA or a secret source nothing can be substituted: the placeholders go out as they are (the relay's rule).
    const context: EgressContext = { get owner() { return channel.owner; }, policy, credentials };
    server.on('connect', (req: http.IncomingMessage, client: Duplex, head: Buffer) => {
      void this.relay.tunnel(context, req, client, head);
    });
    server.on('request', (req, res) => {
      void this.relay.forward(context, req, res);
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
}
