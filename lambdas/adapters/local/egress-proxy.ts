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
 * Credentials (`environment_variable` vault credentials): a sandbox's variable holds a placeholder
 * (`EgressCredential.placeholder`), never the secret. When a CONNECT goes to a host one of the
 * sandbox's credentials allows, and the tunnel starts with a TLS handshake, the proxy terminates
 * TLS with a certificate for that host signed by the deployment's egress CA (`egress-ca.ts`, which
 * the sandbox trusts), opens its own TLS connection to the same admitted address (verified
 * against the system's CAs), and relays the HTTP/1.1 requests inside, replacing the placeholder
 * by the secret (asked of `secrets` at that moment) in the request target and header values
 * (`header`) and in a body of known length up to 1 MiB (`body`). Plain-HTTP requests to such a
 * host get the same substitution. To any other host the placeholder goes out as it is. No secret
 * is logged or put in an answer.
 *
 * Bounded: at most `maxConnectionsPerSandbox` client connections per sandbox (more get a 503),
 * connections idle longer than `idleTimeoutMs` are closed, an upstream that does not answer in
 * `connectTimeoutMs` is a 504.
 */
import crypto from 'node:crypto';
import dns from 'node:dns';
import fsp from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Duplex } from 'node:stream';
import tls from 'node:tls';
import { addressList, decideEgress, hostMatches, isPrivateAddress, normalizeHost, type EgressPolicy, type HostPattern } from '../../core/sandbox/egress.js';
import { systemTrust, trustBundle, type EgressCa } from './egress-ca.js';

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

/**
 * An `environment_variable` credential as one sandbox's proxy applies it. No secret: the
 * sandbox holds `placeholder` in the variable, and the proxy puts the secret in its place.
 */
export interface EgressCredential {
  readonly credentialId: string;
  readonly vaultId: string;
  /** Unguessable, per sandbox and credential: what the sandbox's variable holds. */
  readonly placeholder: string;
  /** The hosts the secret is substituted on (the credential's `networking`); null: any host. */
  readonly allowedHosts: readonly HostPattern[] | null;
  /** `injection_location`: the request target and header values; a body. */
  readonly header: boolean;
  readonly body: boolean;
}

/** Reads a credential's secret for one substitution (locally: the credential proxy, which checks the grant again). */
export interface EgressSecretSource {
  secret(owner: EgressOwner, credential: EgressCredential, host: string): Promise<string>;
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
  /** The trust bundle (system CAs + the egress CA), alone in its directory (bind-mounted read-only), when the proxy has a CA. */
  readonly caBundlePath?: string;
  /** Whose the connections are, for the log (a handoff changes it). */
  owner: EgressOwner;
  close(): Promise<void>;
}

const SOCKET_NAME = 'egress.sock';
export const CA_BUNDLE_NAME = 'ca-bundle.pem';
/** The largest request body in which a placeholder is replaced (a larger one goes as it is). */
const MAX_SUBSTITUTED_BODY = 1024 * 1024;

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
  private readonly ca: EgressCa | undefined;
  private readonly secrets: EgressSecretSource | undefined;
  private readonly upstreamTrust: string[];

  constructor(opts: LocalEgressProxyOptions = {}) {
    this.logger = opts.logger ?? { warn: (m, e) => console.warn(m, e ?? '') };
    this.maxConnections = opts.maxConnectionsPerSandbox ?? 64;
    this.idleTimeoutMs = opts.idleTimeoutMs ?? 300_000;
    this.connectTimeoutMs = opts.connectTimeoutMs ?? 15_000;
    this.privateAllowed = addressList(opts.allowPrivateAddresses ?? []);
    this.resolve = opts.resolve ?? systemResolve;
    this.givenDir = opts.dir;
    this.ca = opts.ca;
    this.secrets = opts.secrets;
    this.upstreamTrust = [...systemTrust(), ...(opts.upstreamCa ?? [])];
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
    // Without a CA or a secret source nothing can be substituted: the placeholders go out as they are.
    const applied = this.ca && this.secrets ? credentials : [];
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
    server.on('connect', (req: http.IncomingMessage, client: Duplex, head: Buffer) => {
      void this.tunnel(channel, policy, applied, req, client, head);
    });
    server.on('request', (req, res) => {
      void this.forward(channel, policy, applied, req, res);
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
  private async tunnel(channel: EgressChannel, policy: EgressPolicy, credentials: readonly EgressCredential[], req: http.IncomingMessage, client: Duplex, head: Buffer): Promise<void> {
    client.on('error', () => {});
    const authority = /^(\[[^\]]+\]|[^:]+):(\d{1,5})$/.exec(req.url ?? '');
    const host = authority?.[1] ?? (req.url ?? '').slice(0, 255);
    const port = authority ? Number(authority[2]) : 0;
    const applicable = applicableTo(credentials, host);
    let upstream: net.Socket;
    try {
      if (!authority) throw new Refusal(400, `CONNECT needs host:port, not ${JSON.stringify(host)}`, 'bad_request');
      const address = await this.admit(channel, policy, host, port);
      if (applicable.length) {
        await this.intercept(channel, { host: normalizeHost(host)!, port, address }, applicable, client, head);
        return;
      }
      upstream = await this.connect(address, port);
    } catch (err) {
      const refusal = this.refuse(channel, err, host, port);
      writeRefusal(client, refusal);
      return;
    }
    client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
    this.splice(client, upstream, head);
  }

  /** Both ways until either side ends or idles. */
  private splice(client: Duplex, upstream: net.Socket, head: Buffer): void {
    upstream.on('error', () => client.destroy());
    client.on('error', () => upstream.destroy());
    upstream.setTimeout(this.idleTimeoutMs, () => upstream.destroy());
    if (client instanceof net.Socket) client.setTimeout(this.idleTimeoutMs, () => client.destroy());
    client.once('close', () => upstream.destroy());
    upstream.once('close', () => client.destroy());
    if (head.length) upstream.write(head);
    upstream.pipe(client);
    client.pipe(upstream);
  }

  /**
   * A tunnel to a host where credentials apply. A TLS handshake is answered with the egress CA's
   * certificate for the host, and the HTTP requests inside are relayed with substitution; a tunnel
   * that does not start with TLS is spliced through unchanged.
   */
  private async intercept(channel: EgressChannel, target: Target, credentials: readonly EgressCredential[], client: Duplex, head: Buffer): Promise<void> {
    client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
    const first = head.length ? head : await firstChunk(client);
    if (!first) return void client.destroy();
    if (first[0] !== 0x16) {
      let upstream: net.Socket;
      try {
        upstream = await this.connect(target.address, target.port);
      } catch {
        return void client.destroy();
      }
      this.splice(client, upstream, first);
      return;
    }
    const secure = new tls.TLSSocket(prepend(first, client), { isServer: true, secureContext: this.ca!.contextFor(target.host), ALPNProtocols: ['http/1.1'] });
    secure.on('error', () => client.destroy());
    if (client instanceof net.Socket) client.setTimeout(this.idleTimeoutMs, () => client.destroy());
    const inner = http.createServer((req, res) => void this.relay(channel, { ...target, secure: true }, credentials, req, req.url ?? '/', res));
    inner.on('clientError', (_err, socket) => socket.destroy());
    inner.emit('connection', secure);
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
  private async forward(channel: EgressChannel, policy: EgressPolicy, credentials: readonly EgressCredential[], req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
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
    const target: Target & { secure: boolean } = { host: normalizeHost(host) ?? host, port, address, secure: false, hostHeader: url!.host };
    await this.relay(channel, target, applicableTo(credentials, host), req, `${url!.pathname}${url!.search}`, res);
  }

  /**
   * One request to an admitted address (plain HTTP, or HTTPS inside an intercepted tunnel), with
   * the placeholders of `credentials` (those that apply to the host) replaced by their secrets.
   */
  private async relay(channel: EgressChannel, target: Target & { secure: boolean; hostHeader?: string }, credentials: readonly EgressCredential[], req: http.IncomingMessage, requestPath: string, res: http.ServerResponse): Promise<void> {
    const headers: Record<string, string | string[]> = {};
    for (const [name, value] of Object.entries(req.headers)) {
      // Hop-by-hop headers are the proxy's own; the rest goes on as the client sent it.
      if (!HOP_BY_HOP.has(name) && value !== undefined) headers[name] = value;
    }
    if (target.hostHeader) headers.host = target.hostHeader;
    // One upstream connection per request; the client's own connection (or tunnel) stays open.
    headers.connection = 'close';
    let body: Buffer | null = null;
    try {
      const inHead = credentials.filter((c) => c.header && (requestPath.includes(c.placeholder) || Object.values(headers).some((v) => String(v).includes(c.placeholder))));
      const length = Number(req.headers['content-length']);
      const bodyOnes = credentials.filter((c) => c.body);
      if (bodyOnes.length && !req.headers['transfer-encoding'] && Number.isInteger(length) && length > 0 && length <= MAX_SUBSTITUTED_BODY) {
        body = await readBody(req, length);
      }
      const inBody = body ? bodyOnes.filter((c) => body!.includes(c.placeholder)) : [];
      for (const c of new Set([...inHead, ...inBody])) {
        let secret: string;
        try {
          secret = await this.secrets!.secret(channel.owner, c, target.host);
        } catch (err) {
          // The source's message is its own words (never a secret); it says why the grant failed.
          throw new Refusal(502, `the secret of credential ${c.credentialId} could not be applied: ${(err as Error)?.message ?? 'error'}`, 'credential');
        }
        if (inHead.includes(c)) {
          requestPath = requestPath.split(c.placeholder).join(secret);
          for (const [name, value] of Object.entries(headers)) {
            headers[name] = Array.isArray(value) ? value.map((v) => v.split(c.placeholder).join(secret)) : value.split(c.placeholder).join(secret);
          }
        }
        if (inBody.includes(c)) body = Buffer.from(body!.toString('latin1').split(c.placeholder).join(secret), 'latin1');
        this.logger.info?.('egress credential applied', { ...channel.owner, host: target.host, port: target.port, credentialId: c.credentialId });
      }
      if (body) headers['content-length'] = String(body.length);
    } catch (err) {
      if (!body) req.resume();
      sendRefusal(res, this.refuse(channel, err, target.host, target.port));
      return;
    }
    const options: https.RequestOptions = { host: target.address, port: target.port, method: req.method, path: requestPath, headers, setHost: false, agent: false };
    let upstream: http.ClientRequest;
    try {
      upstream = target.secure
        ? https.request({
            ...options,
            ...(net.isIP(target.host) ? {} : { servername: target.host }),
            ca: this.upstreamTrust,
            checkServerIdentity: (_name, cert) => tls.checkServerIdentity(target.host, cert),
          })
        : http.request(options);
    } catch (err) {
      // e.g. a secret that is not a valid header value; the error names no value.
      req.resume();
      sendRefusal(res, this.refuse(channel, new Refusal(400, `the request could not be sent (${(err as NodeJS.ErrnoException).code ?? 'invalid'})`, 'bad_request'), target.host, target.port));
      return;
    }
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
      // Only the error's code: a TLS or parser message could quote the request.
      const code = (err as NodeJS.ErrnoException).code ?? err.name;
      sendRefusal(res, this.refuse(channel, new Refusal(502, `${target.host}:${target.port} could not be reached (${code})`, 'upstream'), target.host, target.port));
    });
    if (body) upstream.end(body);
    else req.pipe(upstream);
  }
}

/** Where an admitted connection goes: the host as named (normalized), its port, the checked address. */
interface Target {
  host: string;
  port: number;
  address: string;
  hostHeader?: string;
}

/** The credentials whose secret may go to `host` (the credential's own `networking`). */
function applicableTo(credentials: readonly EgressCredential[], rawHost: string): EgressCredential[] {
  const host = normalizeHost(rawHost);
  if (!host || !credentials.length) return [];
  return credentials.filter((c) => c.allowedHosts === null || c.allowedHosts.some((p) => hostMatches(p, host, 0)));
}

function firstChunk(socket: Duplex): Promise<Buffer | null> {
  return new Promise((resolve) => {
    const done = (chunk: Buffer | null) => {
      socket.off('data', onData);
      socket.off('close', onClose);
      resolve(chunk);
    };
    const onData = (chunk: Buffer) => {
      socket.pause();
      done(chunk);
    };
    const onClose = () => done(null);
    socket.on('data', onData);
    socket.once('close', onClose);
  });
}

/** `socket` with `first` (already read from it) put back in front, as a stream TLS can wrap. */
function prepend(first: Buffer, socket: Duplex): Duplex {
  const stream = new Duplex({
    read() {
      socket.resume();
    },
    write(chunk, encoding, callback) {
      socket.write(chunk, encoding, callback);
    },
    final(callback) {
      socket.end();
      callback();
    },
    destroy(err, callback) {
      socket.destroy();
      callback(err);
    },
  });
  stream.push(first);
  socket.on('data', (chunk: Buffer) => {
    if (!stream.push(chunk)) socket.pause();
  });
  socket.once('end', () => stream.push(null));
  socket.once('close', () => stream.destroy());
  return stream;
}

function readBody(req: http.IncomingMessage, length: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > length) req.destroy(new Error('body longer than its content-length'));
      else chunks.push(c);
    });
    req.once('end', () => resolve(Buffer.concat(chunks)));
    req.once('error', () => reject(new Refusal(400, 'the request body could not be read', 'bad_request')));
  });
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
