/**
 * The egress relay: what an egress proxy does with one client connection, whatever carried it
 * there. The local proxy (lambdas/adapters/local/egress-proxy.ts: one Unix socket per sandbox)
 * and the proxy service on AWS (lambdas/proxy-service/: one TCP port, a capability per sandbox)
 * both find out whose a connection is, then hand its `CONNECT` or absolute-URI request here with
 * that sandbox's `EgressContext`.
 *
 * For each request:
 * 1. the sandbox's policy decides on the host as the client named it (`decideEgress`);
 * 2. the name is resolved, and every address that is private, loopback or link-local is dropped
 *    (`isPrivateAddress`); the connection goes to one of the remaining addresses, by address, so
 *    the address checked is the address connected to (no second lookup to rebind);
 * 3. a denial is an HTTP 403 whose reason phrase and body name the host and the policy (the
 *    model reads it in the tool's output), and a `warn` log line for the operator with the
 *    session, sandbox, host and port (never a path, a query or a header: they may carry secrets).
 *
 * Credentials (`environment_variable` vault credentials): a sandbox's variable holds a placeholder
 * (`EgressCredential.placeholder`), never the secret. When a CONNECT goes to a host one of the
 * sandbox's credentials allows, and the tunnel starts with a TLS handshake, the relay terminates
 * TLS with a certificate for that host signed by the deployment's egress CA (`ca`, which the
 * sandbox trusts), opens its own TLS connection to the same admitted address (verified against
 * `upstreamTrust`), and relays the HTTP/1.1 requests inside, replacing the placeholder by the
 * secret (asked of `secrets` at that moment) in the request target and header values (`header`)
 * and in a body of known length up to 1 MiB (`body`). Plain-HTTP requests to such a host get the
 * same substitution. To any other host the placeholder goes out as it is. No secret is logged or
 * put in an answer.
 *
 * Bounded: tunnels and upstream requests idle longer than `idleTimeoutMs` are closed, an upstream
 * that does not answer in `connectTimeoutMs` is a 504. How many connections a sandbox may hold is
 * the transport's to count (it owns the client sockets).
 */
import dns from 'node:dns';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import { Duplex } from 'node:stream';
import tls from 'node:tls';
import { addressList, decideEgress, hostMatches, isPrivateAddress, normalizeHost, type EgressPolicy, type HostPattern } from './egress.js';

/** Structural logger (Powertools' `Logger` and `console` both fit). */
export interface EgressLogger {
  info?(message: string, extra?: Record<string, unknown>): void;
  warn(message: string, extra?: Record<string, unknown>): void;
}

export interface EgressRelayOptions {
  readonly logger?: EgressLogger;
  /** A connection (or tunnel) with no traffic this long is closed. @default 300000 (5 min) */
  readonly idleTimeoutMs?: number;
  /** How long connecting to an upstream may take. @default 15000 */
  readonly connectTimeoutMs?: number;
  /**
   * Addresses and CIDR blocks that are reachable although private. For tests and the deploy
   * rehearsal, which can reach only servers on loopback; no deployed configuration sets it.
   * @default none
   */
  readonly allowPrivateAddresses?: readonly string[];
  /**
   * How a host name becomes addresses. For tests, which stand registry names in for loopback
   * servers. @default the system resolver (`dns.lookup`, all addresses)
   */
  readonly resolve?: (host: string) => Promise<string[]>;
  /** The deployment's egress CA: with it (and `secrets`), credentials are applied. @default none */
  readonly ca?: EgressTlsAuthority;
  /** Where credentials' secrets are read, at substitution time. @default none */
  readonly secrets?: EgressSecretSource;
  /** CA certificates (PEM) upstream TLS is verified against. @default Node's root certificates */
  readonly upstreamTrust?: readonly string[];
}

/** What the relay needs of the egress CA: a server context for a host (lambdas/adapters/local/egress-ca.ts). */
export interface EgressTlsAuthority {
  contextFor(host: string): tls.SecureContext;
}

/** Whose a connection is, and what it may do: what the transport found out before handing it over. */
export interface EgressContext {
  /** For the log (read at each use: a handoff may change it). */
  readonly owner: EgressOwner;
  readonly policy: EgressPolicy;
  /** The credentials applied to this sandbox's requests (empty: none; ignored without `ca` and `secrets`). */
  readonly credentials: readonly EgressCredential[];
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

/** The largest request body in which a placeholder is replaced (a larger one goes as it is). */
const MAX_SUBSTITUTED_BODY = 1024 * 1024;

const systemResolve = async (host: string): Promise<string[]> => (await dns.promises.lookup(host, { all: true, verbatim: true })).map((a) => a.address);

/** A reason phrase may not hold CR, LF or non-ASCII; it is kept short. */
const reasonPhrase = (text: string) => text.replace(/[^\x20-\x7e]/g, ' ').slice(0, 300);

export class Refusal extends Error {
  constructor(
    readonly status: number,
    message: string,
    /** The operator's log line's reason (no path, query or header). */
    readonly logReason: string,
  ) {
    super(message);
  }
}

export class EgressRelay {
  private readonly logger: EgressLogger;
  readonly idleTimeoutMs: number;
  private readonly connectTimeoutMs: number;
  private readonly privateAllowed: (ip: string) => boolean;
  private readonly resolve: (host: string) => Promise<string[]>;
  private readonly ca: EgressTlsAuthority | undefined;
  private readonly secrets: EgressSecretSource | undefined;
  private readonly upstreamTrust: string[];

  constructor(opts: EgressRelayOptions = {}) {
    this.logger = opts.logger ?? { warn: (m, e) => console.warn(m, e ?? '') };
    this.idleTimeoutMs = opts.idleTimeoutMs ?? 300_000;
    this.connectTimeoutMs = opts.connectTimeoutMs ?? 15_000;
    this.privateAllowed = addressList(opts.allowPrivateAddresses ?? []);
    this.resolve = opts.resolve ?? systemResolve;
    this.ca = opts.ca;
    this.secrets = opts.secrets;
    this.upstreamTrust = [...(opts.upstreamTrust ?? tls.rootCertificates)];
  }

  /** Whether credentials can be applied at all (a CA and a secret source). */
  get substitutes(): boolean {
    return !!this.ca && !!this.secrets;
  }

  /**
   * The policy's decision, then an address that is not private: the one to connect to. Throws a
   * `Refusal` (logged) otherwise.
   */
  private async admit(ctx: EgressContext, rawHost: string, port: number): Promise<string> {
    const host = normalizeHost(rawHost);
    const decision = decideEgress(ctx.policy, rawHost, port);
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
    this.logger.info?.('egress allowed', { ...ctx.owner, host, port, by: decision.allowed ? decision.by : undefined });
    return usable[0]!;
  }

  private refuse(ctx: EgressContext, err: unknown, host: string, port: number): Refusal {
    const refusal = err instanceof Refusal ? err : new Refusal(502, `${host}:${port} could not be reached: ${(err as Error)?.message ?? err}`, 'upstream');
    this.logger.warn('egress denied', { ...ctx.owner, host: host.slice(0, 255), port, status: refusal.status, reason: refusal.logReason });
    return refusal;
  }

  /** `CONNECT host:port`: a tunnel to an admitted address, or a 403/502 naming why not. */
  async tunnel(ctx: EgressContext, req: http.IncomingMessage, client: Duplex, head: Buffer): Promise<void> {
    client.on('error', () => {});
    const authority = /^(\[[^\]]+\]|[^:]+):(\d{1,5})$/.exec(req.url ?? '');
    const host = authority?.[1] ?? (req.url ?? '').slice(0, 255);
    const port = authority ? Number(authority[2]) : 0;
    const applicable = this.substitutes ? applicableTo(ctx.credentials, host) : [];
    let upstream: net.Socket;
    try {
      if (!authority) throw new Refusal(400, `CONNECT needs host:port, not ${JSON.stringify(host)}`, 'bad_request');
      const address = await this.admit(ctx, host, port);
      if (applicable.length) {
        await this.intercept(ctx, { host: normalizeHost(host)!, port, address }, applicable, client, head);
        return;
      }
      upstream = await this.connect(address, port);
    } catch (err) {
      const refusal = this.refuse(ctx, err, host, port);
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
  private async intercept(ctx: EgressContext, target: Target, credentials: readonly EgressCredential[], client: Duplex, head: Buffer): Promise<void> {
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
    const inner = http.createServer((req, res) => void this.relay(ctx, { ...target, secure: true }, credentials, req, req.url ?? '/', res));
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
  async forward(ctx: EgressContext, req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
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
      address = await this.admit(ctx, host, port);
    } catch (err) {
      req.resume();
      sendRefusal(res, this.refuse(ctx, err, host, port));
      return;
    }
    const target: Target & { secure: boolean } = { host: normalizeHost(host) ?? host, port, address, secure: false, hostHeader: url!.host };
    await this.relay(ctx, target, this.substitutes ? applicableTo(ctx.credentials, host) : [], req, `${url!.pathname}${url!.search}`, res);
  }

  /**
   * One request to an admitted address (plain HTTP, or HTTPS inside an intercepted tunnel), with
   * the placeholders of `credentials` (those that apply to the host) replaced by their secrets.
   */
  private async relay(ctx: EgressContext, target: Target & { secure: boolean; hostHeader?: string }, credentials: readonly EgressCredential[], req: http.IncomingMessage, requestPath: string, res: http.ServerResponse): Promise<void> {
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
          secret = await this.secrets!.secret(ctx.owner, c, target.host);
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
        this.logger.info?.('egress credential applied', { ...ctx.owner, host: target.host, port: target.port, credentialId: c.credentialId });
      }
      if (body) headers['content-length'] = String(body.length);
    } catch (err) {
      if (!body) req.resume();
      sendRefusal(res, this.refuse(ctx, err, target.host, target.port));
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
      sendRefusal(res, this.refuse(ctx, new Refusal(400, `the request could not be sent (${(err as NodeJS.ErrnoException).code ?? 'invalid'})`, 'bad_request'), target.host, target.port));
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
      sendRefusal(res, this.refuse(ctx, new Refusal(502, `${target.host}:${target.port} could not be reached (${code})`, 'upstream'), target.host, target.port));
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

export function sendRefusal(res: http.ServerResponse, r: Refusal): void {
  const body = bodyOf(r);
  res.writeHead(r.status, reasonPhrase(`Corral egress: ${r.message}`), { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(body), 'x-corral-egress': 'denied' });
  res.end(body);
}

/** A CONNECT's answer is written on the raw socket (the tunnel never started). */
export function writeRefusal(client: Duplex, r: Refusal): void {
  const body = bodyOf(r);
  client.end(
    `HTTP/1.1 ${r.status} ${reasonPhrase(`Corral egress: ${r.message}`)}\r\ncontent-type: text/plain; charset=utf-8\r\n` +
      `content-length: ${Buffer.byteLength(body)}\r\nx-corral-egress: denied\r\nconnection: close\r\n\r\n${body}`,
  );
}
