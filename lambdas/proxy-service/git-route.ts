import type http from 'node:http';
import { Readable, Transform } from 'node:stream';
import type { Logger } from '../core/logger.js';
import type { StateTable } from '../core/store.js';
import { tableGitChannels } from '../core/vault/git-channels.js';
import { GIT_CAPABILITY_HEADER } from '../core/vault/protocol.js';
import { CredentialProxy } from '../core/vault/proxy.js';
import type { SecretStore } from '../core/vault/secret-store.js';
import type { ProxyServiceRoute } from './routes.js';
import { GIT_SIGNING_KEY_REF } from '../core/vault/types.js';

/**
 * The git channel of the proxy service (port 3128, origin-form `/git/r/<n>/<name>.git/…`): git
 * smart HTTP from a Fargate sandbox's git forwarder, with the channel's capability in
 * `x-corral-git-capability`, answered by the core's `CredentialProxy.handleGit` (the capability
 * checked against the channels `git_open` registered in the state table, the repository token
 * read from Secrets Manager by this service's own role and added on the way out).
 *
 * Bodies stream both ways: a clone or a push is never held in memory whole, so a repository of
 * any size goes through (the reason this lives in a long-running service and not behind a
 * buffered Lambda function URL, whose bodies stop at 6 MB). Bounded: a request body larger than
 * `maxRequestBytes` is refused (413 when its length is declared; a chunked upload is cut, and
 * its exchange with the repository aborted, when it grows past the bound), and one exchange
 * lasts at most the core's `gitRequestTimeoutMs`.
 */

/** The path prefix of the git channel on the sandbox-facing port. */
export const GIT_ROUTE_PREFIX = '/git';

export interface GitRouteOptions {
  /** The largest request body (a push's pack) accepted. @default 2 GiB */
  readonly maxRequestBytes?: number;
}

const DEFAULT_MAX_REQUEST_BYTES = 2 * 1024 ** 3;
/** How long an oversized upload is drained after its 413 before the connection is cut. */
const DRAIN_MS = 10_000;
const PASSED_HEADERS = [GIT_CAPABILITY_HEADER, 'content-type', 'accept', 'content-encoding', 'git-protocol', 'accept-language'];

/** Whether a request target is the git channel's (`/git/...`). */
export function isGitRoute(target: string | undefined): boolean {
  return typeof target === 'string' && target.startsWith(`${GIT_ROUTE_PREFIX}/`);
}

function plain(res: http.ServerResponse, status: number, text: string): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8' });
  res.end(`${text}\n`);
}

/**
 * 413 for an upload that declares a length over the bound. The rest of it is read and dropped for
 * a few seconds (a client still sending when the connection closes under it gets a reset, and
 * loses the answer), then the connection is closed whatever is left.
 */
function refuseTooLarge(req: http.IncomingMessage, res: http.ServerResponse, max: number): void {
  req.unpipe();
  req.resume();
  setTimeout(() => req.socket.destroy(), DRAIN_MS).unref();
  res.setHeader('connection', 'close');
  plain(res, 413, `the request body is larger than ${max} bytes`);
}

/**
 * Serve one git request (its target starts with `/git/`). Never throws; the reply never names a
 * credential (the core's answers don't, and this adds only fixed text).
 */
export async function serveGit(
  proxy: Pick<CredentialProxy, 'handleGit'>,
  req: http.IncomingMessage,
  res: http.ServerResponse,
  opts: GitRouteOptions = {},
): Promise<void> {
  const max = opts.maxRequestBytes ?? DEFAULT_MAX_REQUEST_BYTES;
  const target = (req.url ?? '').slice(GIT_ROUTE_PREFIX.length);
  const method = req.method ?? 'GET';
  if (!target.startsWith('/r/')) {
    req.resume();
    return plain(res, 404, 'not a git smart-HTTP path of this channel');
  }
  const declared = Number(req.headers['content-length'] ?? 0);
  if (Number.isFinite(declared) && declared > max) return refuseTooLarge(req, res, max);
  // The client going away (or the upload outgrowing the bound) ends the upstream exchange too.
  const abort = new AbortController();
  let tooLarge = false;
  res.on('close', () => {
    if (!res.writableFinished) abort.abort(new Error('the git client went away'));
  });

  // Only what the core reads: the capability and git's own headers (no hop-by-hop, no cookies).
  const headers = new Headers();
  for (const name of PASSED_HEADERS) {
    const value = req.headers[name];
    if (typeof value === 'string') headers.set(name, value);
  }
  let body: ReadableStream<Uint8Array> | undefined;
  if (method !== 'GET' && method !== 'HEAD') {
    let seen = 0;
    const counted = new Transform({
      transform(chunk: Buffer, _enc, done) {
        seen += chunk.length;
        if (seen > max) {
          tooLarge = true;
          abort.abort(new Error('request body too large'));
          return done(new Error('request body too large'));
        }
        done(null, chunk);
      },
    });
    req.on('error', (err) => counted.destroy(err));
    body = Readable.toWeb(req.pipe(counted)) as ReadableStream<Uint8Array>;
  }

  let answer: Response;
  try {
    answer = await proxy.handleGit(
      new Request(`http://corral-proxy-service.invalid${target}`, {
        method,
        headers,
        body,
        signal: abort.signal,
        ...(body ? { duplex: 'half' } : {}),
      } as RequestInit),
    );
  } catch {
    // handleGit answers every failure itself; this is the Request being refused (a bad header).
    req.resume();
    return plain(res, 400, 'not a valid git request');
  }
  if (tooLarge) {
    // A chunked upload that outgrew the bound: cut (the client is still sending, so an answer
    // would race the reset and be lost; its push fails either way, and nothing was accepted).
    await answer.body?.cancel().catch(() => {});
    req.socket.destroy();
    return;
  }
  const out: Record<string, string> = {};
  answer.headers.forEach((v, k) => (out[k] = v));
  res.writeHead(answer.status, out);
  if (!answer.body) {
    res.end();
    return;
  }
  const stream = Readable.fromWeb(answer.body as import('node:stream/web').ReadableStream<Uint8Array>);
  stream.on('error', () => res.destroy());
  stream.pipe(res);
}

/**
 * The core proxy as the service's git channel needs it: channels read from the state table (the
 * credential proxy Lambda's `git_open` wrote them), capabilities checked with the signing key the
 * Lambda created (read, never created here: a git request always follows a `git_open`), tokens
 * read from the vault by this service's own role. It answers no JSON call (`handle`) here.
 */
export function createGitProxy(deps: {
  table: StateTable;
  secrets: SecretStore;
  logger?: Logger;
  /** The longest one git exchange may take. @default 15 minutes */
  requestTimeoutMs?: number;
}): CredentialProxy {
  let key: Promise<Buffer> | undefined;
  const readKey = async () => {
    const stored = await deps.secrets.get(GIT_SIGNING_KEY_REF);
    if (!stored?.key) throw new Error('the git signing key does not exist yet (no channel was ever opened)');
    return Buffer.from(stored.key, 'base64');
  };
  return new CredentialProxy({
    table: deps.table,
    secrets: deps.secrets,
    gitChannels: tableGitChannels(deps.table),
    signingKey: () => (key ??= readKey().catch((err: unknown) => {
      key = undefined;
      throw err;
    })),
    ...(deps.logger ? { logger: deps.logger } : {}),
    ...(deps.requestTimeoutMs ? { gitRequestTimeoutMs: deps.requestTimeoutMs } : {}),
  });
}

/**
 * The git channel as a route of the service's sandbox port (`/git/`, ./routes.ts). It
 * authenticates each request itself (the channel's capability); the service adds nothing.
 */
export function gitChannelRoute(deps: Parameters<typeof createGitProxy>[0] & GitRouteOptions): ProxyServiceRoute {
  const proxy = createGitProxy(deps);
  return {
    prefix: `${GIT_ROUTE_PREFIX}/`,
    name: 'git',
    handle: (req, res) => serveGit(proxy, req, res, deps),
  };
}
