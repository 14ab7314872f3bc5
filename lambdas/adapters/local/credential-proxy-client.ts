import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { Logger } from '../../core/logger.js';
import { silentLogger } from '../../core/logger.js';
import type { ProxyRequest, ProxyResponse, ProxyTransport } from '../../core/vault/protocol.js';

const SERVER_SCRIPT = path.join(path.dirname(fileURLToPath(import.meta.url)), 'credential-proxy-server.ts');
/** sockaddr_un.sun_path is 108 bytes including the NUL; leave room for `git/git.sock`. */
const MAX_SOCKET_DIR_BYTES = 80;

export interface LocalCredentialProxyOptions {
  dataDir: string;
  /** dynalite's endpoint: the proxy reads sessions and vaults from the state table itself. */
  dynamoEndpoint: string;
  stateTable: string;
  logger?: Logger;
  /** How long start waits for the process to answer. @default 20000 */
  startTimeoutMs?: number;
  /** Per call. @default 180000 (an MCP tool call may take minutes) */
  callTimeoutMs?: number;
  /**
   * The model provider's key and base URL, handed to the proxy process on its stdin (never argv
   * or environment), so that it alone calls the model with the key (`modelFetch`). Kept in this
   * object's memory only to hand it again to a proxy restarted after a crash.
   */
  model?: { apiKey: string; baseUrl?: string };
}

/**
 * The runtime's side of the local credential proxy: spawns `credential-proxy-server.ts` as a separate
 * process on first use (so runtimes that never touch a credential never start it), hands it a
 * fresh random token on stdin, and calls it with HTTP over its control socket. The child's log
 * lines are passed to the runtime's logger. If the child dies, the next call starts a new one.
 */
export class LocalCredentialProxy implements ProxyTransport {
  readonly socketDir: string;
  readonly gitSocketDir: string;
  private child: ChildProcess | null = null;
  private starting: Promise<void> | null = null;
  private token = '';
  private closed = false;
  private readonly log: Logger;

  constructor(private readonly opts: LocalCredentialProxyOptions) {
    this.log = opts.logger ?? silentLogger;
    let dir = path.join(path.resolve(opts.dataDir), 'proxy');
    if (Buffer.byteLength(dir) > MAX_SOCKET_DIR_BYTES) {
      dir = path.join(os.tmpdir(), `corral-proxy-${createHash('sha256').update(dir).digest('hex').slice(0, 16)}`);
    }
    this.socketDir = dir;
    this.gitSocketDir = path.join(dir, 'git');
  }

  get controlSocket(): string {
    return path.join(this.socketDir, 'control.sock');
  }

  /** The proxy's process id while it runs (tests). */
  get pid(): number | undefined {
    return this.child?.pid;
  }

  /** Start the process now (otherwise the first call does). */
  start(): Promise<void> {
    if (this.closed) return Promise.reject(new Error('the credential proxy is closed'));
    if (this.child && this.child.exitCode === null && !this.starting) return Promise.resolve();
    this.starting ??= this.spawn().finally(() => {
      this.starting = null;
    });
    return this.starting;
  }

  private async spawn(): Promise<void> {
    fs.mkdirSync(this.socketDir, { recursive: true, mode: 0o700 });
    this.token = randomBytes(32).toString('base64url');
    const loader = createRequire(import.meta.url).resolve('tsx');
    const child = spawn(
      process.execPath,
      [
        '--import',
        pathToFileURL(loader).href,
        SERVER_SCRIPT,
        '--data-dir',
        path.resolve(this.opts.dataDir),
        '--socket-dir',
        this.socketDir,
        '--dynamo-endpoint',
        this.opts.dynamoEndpoint,
        '--state-table',
        this.opts.stateTable,
      ],
      {
        // A clean environment: nothing of the runtime's (model keys, AWS credentials) goes along.
        env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: os.homedir(), LANG: 'C.UTF-8', AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true' },
        stdio: ['pipe', 'ignore', 'pipe'],
      },
    );
    this.child = child;
    const killOnExit = () => child.kill('SIGKILL');
    process.once('exit', killOnExit);
    child.once('exit', (code, signal) => {
      process.off('exit', killOnExit);
      if (this.child === child) this.child = null;
      if (!this.closed) this.log.warn('credential proxy exited', { code, signal });
    });
    child.stdin!.on('error', () => {});
    child.stdin!.write(`${this.token}\n${JSON.stringify(this.opts.model ?? {})}\n`);
    let buffered = '';
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (chunk: string) => {
      buffered += chunk;
      let nl: number;
      while ((nl = buffered.indexOf('\n')) !== -1) {
        const line = buffered.slice(0, nl).trim();
        buffered = buffered.slice(nl + 1);
        if (!line) continue;
        let fields: Record<string, unknown>;
        try {
          fields = JSON.parse(line);
        } catch {
          fields = { msg: line };
        }
        const { level, msg, time: _t, ...rest } = fields as { level?: string; msg?: string; time?: string };
        const text = `credential proxy: ${msg ?? ''}`;
        if (level === 'error') this.log.error(text, rest);
        else if (level === 'warn') this.log.warn(text, rest);
        else this.log.info(text, rest);
      }
    });
    const deadline = Date.now() + (this.opts.startTimeoutMs ?? 20_000);
    for (;;) {
      if (child.exitCode !== null || child.signalCode !== null) throw new Error('the credential proxy exited while starting');
      try {
        const res = await this.request('GET', '/health', undefined, 2_000);
        if (res.status === 200) return;
      } catch {
        // not listening yet
      }
      if (Date.now() > deadline) {
        child.kill('SIGKILL');
        throw new Error('the credential proxy did not start in time');
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  private request(method: string, urlPath: string, body: string | undefined, timeoutMs: number): Promise<{ status: number; text: string }> {
    return new Promise((resolve, reject) => {
      const req = http.request(
        {
          socketPath: this.controlSocket,
          path: urlPath,
          method,
          headers: {
            authorization: `Bearer ${this.token}`,
            ...(body !== undefined ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } : {}),
          },
          timeout: timeoutMs,
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
          res.on('error', reject);
        },
      );
      req.on('timeout', () => req.destroy(new Error(`no answer from the credential proxy within ${timeoutMs} ms`)));
      req.on('error', reject);
      req.end(body);
    });
  }

  async call(request: ProxyRequest): Promise<ProxyResponse> {
    await this.start();
    const res = await this.request('POST', '/call', JSON.stringify(request), this.opts.callTimeoutMs ?? 180_000);
    try {
      return JSON.parse(res.text) as ProxyResponse;
    } catch {
      throw new Error(`the credential proxy answered HTTP ${res.status} without JSON`);
    }
  }

  /**
   * A `fetch` for the harness's model client: requests go to the proxy process's control socket
   * under `/model`, with this runtime's token and without any key (the proxy adds it). The answer
   * streams through as the proxy passes it on; aborting the signal closes the connection, which
   * aborts the proxy's call to the provider.
   */
  modelFetch(): (input: string | URL | Request, init?: RequestInit) => Promise<Response> {
    return async (input, init) => {
      const request = new Request(input, init);
      await this.start();
      const url = new URL(request.url);
      const body = request.method === 'GET' || request.method === 'HEAD' ? undefined : Buffer.from(await request.arrayBuffer());
      const headers: Record<string, string> = {};
      request.headers.forEach((value, name) => {
        if (name !== 'x-api-key' && name !== 'authorization') headers[name] = value;
      });
      headers.authorization = `Bearer ${this.token}`;
      if (body) headers['content-length'] = String(body.byteLength);
      return new Promise<Response>((resolve, reject) => {
        const signal = request.signal;
        if (signal.aborted) return reject(signal.reason);
        const req = http.request({ socketPath: this.controlSocket, path: `/model${url.pathname}${url.search}`, method: request.method, headers }, (res) => {
          const out = new Headers();
          for (const [name, value] of Object.entries(res.headers)) {
            if (typeof value === 'string') out.set(name, value);
            else if (Array.isArray(value)) for (const v of value) out.append(name, v);
          }
          const status = res.statusCode ?? 502;
          const noBody = status === 204 || status === 304;
          if (noBody) res.resume();
          resolve(new Response(noBody ? null : (Readable.toWeb(res) as ReadableStream<Uint8Array>), { status, statusText: res.statusMessage, headers: out }));
        });
        const onAbort = () => {
          req.destroy(signal.reason instanceof Error ? signal.reason : new Error('aborted'));
          reject(signal.reason);
        };
        signal.addEventListener('abort', onAbort, { once: true });
        req.on('close', () => signal.removeEventListener('abort', onAbort));
        req.on('error', reject);
        req.end(body);
      });
    };
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.starting?.catch(() => {});
    const child = this.child;
    if (!child || child.exitCode !== null) return;
    const exited = new Promise<void>((r) => child.once('exit', () => r()));
    child.stdin?.end();
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 3_000);
    await exited;
    clearTimeout(timer);
  }
}
