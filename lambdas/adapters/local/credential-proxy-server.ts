/**
 * The credential proxy as a separate local process: spawned by the local runtime
 * (`credential-proxy-client.ts`), so that the runtime's process (API and harness) never holds a secret, not
 * even locally. It alone opens the encrypted secret store in the data dir.
 *
 * It listens on two Unix sockets in `--socket-dir`:
 * - `control.sock` (mode 0600): the runtime's calls, `POST /call` with a JSON `ProxyRequest` and
 *   `Authorization: Bearer <token>`, where the token is the first line of stdin, fresh at every
 *   start (never in argv or the environment). `GET /health` with the same token. And the
 *   harness's model calls, `POST /model/v1/messages` with the same token: this process alone
 *   holds the model key (the second line of stdin, `ModelKeyLine`) and forwards the call to the
 *   provider with it, streaming the answer back (`core/vault/model-forward.ts`).
 * - `git/git.sock`: git smart HTTP from sandboxes (their forwarders), authorized per request by
 *   a git capability; the `git/` directory is bind-mounted into sandboxes, `control.sock` never.
 *
 * stdin closing means the runtime went away: the proxy exits. Logs are JSON lines on stderr.
 *
 * Usage: credential-proxy-server.ts --data-dir DIR --socket-dir DIR --dynamo-endpoint URL|unix:PATH --state-table NAME
 */
import { randomBytes, timingSafeEqual, createHash } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { localDynamoClient } from './dynamo-client.js';
import { getRequestListener } from '@hono/node-server';
import { DynamoStateTable } from '../aws/dynamodb-state-table.js';
import { FileSecretStore } from './file-secret-store.js';
import { jsonLogger } from '../../core/logger.js';
import { CredentialProxy } from '../../core/vault/proxy.js';
import { forwardModelCall, type ModelForwardTarget } from '../../core/vault/model-forward.js';
import type { ProxyRequest } from '../../core/vault/protocol.js';

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

const MAX_CALL_BYTES = 1024 * 1024;
/** Where model calls are forwarded under the control socket. */
const MODEL_PREFIX = '/model';

/**
 * The second line of stdin: the model provider's key and base URL (JSON), or `{}` when the
 * runtime forwards no model calls (bedrock, or no key). Never in argv or the environment.
 */
export interface ModelKeyLine {
  apiKey?: string;
  baseUrl?: string;
}

/** The first two lines of stdin (the token, the model line); '' for a line that never came. */
function readFirstLines(onEnd: () => void): Promise<[string, string]> {
  return new Promise((resolve) => {
    let buffered = '';
    let done = false;
    const lines: string[] = [];
    process.stdin.setEncoding('utf8');
    process.stdin.on('data', (chunk: string) => {
      if (done) return;
      buffered += chunk;
      let nl: number;
      while (lines.length < 2 && (nl = buffered.indexOf('\n')) !== -1) {
        lines.push(buffered.slice(0, nl).trim());
        buffered = buffered.slice(nl + 1);
      }
      if (lines.length === 2 || buffered.length > 65536) {
        done = true;
        resolve([lines[0] ?? '', lines[1] ?? '']);
        buffered = '';
      }
    });
    const end = () => {
      if (!done) {
        done = true;
        resolve([lines[0] ?? '', lines[1] ?? '']);
      }
      onEnd();
    };
    process.stdin.on('end', end);
    process.stdin.on('error', end);
  });
}

function listen(server: http.Server, socketPath: string, mode: number): Promise<void> {
  return new Promise((resolve, reject) => {
    fs.rmSync(socketPath, { force: true });
    server.once('error', reject);
    server.listen(socketPath, () => {
      fs.chmodSync(socketPath, mode);
      resolve();
    });
  });
}

export async function main(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      'data-dir': { type: 'string' },
      'socket-dir': { type: 'string' },
      'dynamo-endpoint': { type: 'string' },
      'state-table': { type: 'string' },
    },
    strict: true,
  });
  for (const name of ['data-dir', 'socket-dir', 'dynamo-endpoint', 'state-table'] as const) {
    if (!values[name]) throw new Error(`--${name} is required`);
  }
  const log = jsonLogger({ service: 'corral-credential-proxy' });
  let stopping = false;
  let stop: () => void = () => process.exit(0);
  const [token, modelLine] = await readFirstLines(() => {
    if (!stopping) stop();
  });
  // The runtime killed outright (SIGKILL) does not always close stdin for us (a process it started
  // may still hold the pipe): once this process is adopted by another parent, the runtime is gone.
  const parent = process.ppid;
  setInterval(() => {
    if (process.ppid !== parent && !stopping) stop();
  }, 1_000).unref();
  if (token.length < 32) throw new Error('no token on the first line of stdin');
  let modelKey: ModelKeyLine;
  try {
    modelKey = modelLine ? (JSON.parse(modelLine) as ModelKeyLine) : {};
  } catch {
    throw new Error('the second line of stdin is not JSON');
  }
  const modelTarget: ModelForwardTarget | null = modelKey.apiKey ? { apiKey: modelKey.apiKey, baseUrl: modelKey.baseUrl } : null;
  const forwardModel = getRequestListener((request) => {
    const url = new URL(request.url);
    if (!modelTarget) {
      return new Response(JSON.stringify({ type: 'error', error: { type: 'authentication_error', message: 'no model key was given to the credential proxy' } }), {
        status: 401,
        headers: { 'content-type': 'application/json' },
      });
    }
    return forwardModelCall(request, url.pathname.slice(MODEL_PREFIX.length) + url.search, modelTarget);
  });
  const tokenDigest = createHash('sha256').update(token).digest();
  const authorized = (header: string | undefined) => {
    const m = /^Bearer\s+(\S+)$/i.exec(header ?? '');
    return Boolean(m) && timingSafeEqual(createHash('sha256').update(m![1]).digest(), tokenDigest);
  };

  const socketDir = path.resolve(values['socket-dir']!);
  const gitDir = path.join(socketDir, 'git');
  fs.mkdirSync(gitDir, { recursive: true, mode: 0o700 });
  fs.chmodSync(socketDir, 0o700);

  // The runtime's dynalite: on a unix socket (`unix:<path>`) only this user can reach.
  const dynamo = localDynamoClient(values['dynamo-endpoint']!, { maxSockets: 50 });
  const signingKey = randomBytes(32);
  const proxy = new CredentialProxy({
    table: new DynamoStateTable(dynamo, values['state-table']!),
    secrets: new FileSecretStore(values['data-dir']!),
    signingKey: async () => signingKey,
    gitEndpoint: { kind: 'unix', socketPath: path.join(gitDir, 'git.sock') },
    // Its one caller is the runtime's egress proxy, substituting environment_variable secrets.
    egressSecrets: true,
    logger: log,
  });

  const control = http.createServer((req, res) => {
    const reply = (status: number, body: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    if (!authorized(req.headers.authorization)) {
      req.resume();
      return reply(401, { ok: false, error: { kind: 'forbidden', message: 'missing or invalid proxy token' } });
    }
    if (req.method === 'GET' && req.url === '/health') {
      req.resume();
      return reply(200, { ok: true });
    }
    if (req.url?.startsWith(`${MODEL_PREFIX}/`)) {
      // The token is Corral's, not the provider's: it goes no further.
      delete req.headers.authorization;
      return void forwardModel(req, res);
    }
    if (req.method !== 'POST' || req.url !== '/call') {
      req.resume();
      return reply(404, { ok: false, error: { kind: 'invalid', message: 'not found' } });
    }
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_CALL_BYTES) {
        reply(413, { ok: false, error: { kind: 'invalid', message: 'call too large' } });
        req.destroy();
      } else chunks.push(c);
    });
    req.on('end', () => {
      let call: ProxyRequest;
      try {
        call = JSON.parse(Buffer.concat(chunks).toString('utf8')) as ProxyRequest;
      } catch {
        return reply(400, { ok: false, error: { kind: 'invalid', message: 'body is not JSON' } });
      }
      proxy.handle(call).then(
        (answer) => reply(200, answer),
        () => reply(500, { ok: false, error: { kind: 'internal', message: 'the credential proxy failed' } }),
      );
    });
  });
  const git = http.createServer(getRequestListener((request) => proxy.handleGit(request)));

  stop = () => {
    if (stopping) return;
    stopping = true;
    // Closing waits for what is in flight; a runtime that is gone waits for nothing.
    setTimeout(() => process.exit(0), 2_000).unref();
    control.close();
    git.close();
    control.closeAllConnections?.();
    git.closeAllConnections?.();
    void proxy.close().finally(() => {
      dynamo.destroy();
      setTimeout(() => process.exit(0), 20).unref();
    });
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  // The runtime gone closes the pipe of our logs: every log line would fail again (EPIPE), each
  // failure logged, in a loop that never ends. Without the runtime there is nothing to serve.
  process.stderr.on('error', () => process.exit(0));
  process.on('uncaughtException', (err) => {
    if ((err as NodeJS.ErrnoException)?.code === 'EPIPE') process.exit(0);
    log.error('uncaught exception', { error: err?.name ?? 'Error' });
  });
  process.on('unhandledRejection', (err) => log.error('unhandled rejection', { error: (err as Error)?.name ?? 'Error' }));

  await listen(git, path.join(gitDir, 'git.sock'), 0o600);
  await listen(control, path.join(socketDir, 'control.sock'), 0o600);
  log.info('credential proxy listening', { socketDir });
}

function isEntryPoint(): boolean {
  const entry = process.argv[1];
  if (!entry) return false;
  try {
    return fs.realpathSync(entry) === fs.realpathSync(new URL(import.meta.url).pathname);
  } catch {
    return false;
  }
}

if (isEntryPoint()) {
  main(process.argv.slice(2)).catch((err: unknown) => {
    process.stderr.write(`${JSON.stringify({ level: 'error', msg: 'credential proxy failed to start', error: (err as Error)?.message ?? String(err) })}\n`);
    process.exit(2);
  });
}
