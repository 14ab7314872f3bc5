/**
 * The agent's HTTP API (see sandbox/agent.ts for the routes): authentication by capability,
 * bounded request bodies, strict validation of `/execute`, and JSON answers.
 */
import http from 'node:http';
import type { SandboxAgent } from './sandbox-agent.js';
import { TOOLS, type ExecuteRequest, type Tool } from './tools/index.js';
import { MAX_SESSION_FILE_BYTES } from './session-files.js';
import { MAX_MEMORY_FILE_BYTES, memoryTarget, parseAccess } from './memory-mounts.js';
import { ArchiveRefused, type ArchiveLimits } from './workspace-archive.js';

export const BODY_LIMIT_BYTES = 8 * 1024 * 1024;
/** How long an idle client connection stays open. */
export const KEEP_ALIVE_TIMEOUT_MS = 65_000;

/** A request the agent refuses, with its HTTP status. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

function sendJson(res: http.ServerResponse, status: number, body: unknown): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

/**
 * Reads a request body up to `limit` bytes. A larger body is drained (up to 8x the limit, so the
 * client can read the 413 instead of failing on a reset) and then refused.
 */
function readBody(req: http.IncomingMessage, limit: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let settled = false;
    const tooLarge = () => new HttpError(413, `request body larger than ${limit} bytes`);
    req.on('data', (chunk: Buffer) => {
      if (settled) return;
      size += chunk.length;
      if (size > 8 * limit) {
        settled = true;
        reject(tooLarge());
        req.destroy();
      } else if (size <= limit) {
        chunks.push(chunk);
      } else if (chunks.length > 0) {
        chunks.length = 0; // over the limit: keep counting, stop keeping
      }
    });
    req.on('end', () => {
      if (settled) return;
      settled = true;
      if (size > limit) reject(tooLarge());
      else resolve(Buffer.concat(chunks));
    });
    req.on('error', (err) => {
      if (settled) return;
      settled = true;
      reject(err);
    });
  });
}

/** Validates a parsed `/execute` body; throws HttpError(400) on anything malformed. */
export function parseExecuteRequest(body: unknown): ExecuteRequest {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new HttpError(400, 'body must be a JSON object');
  const b = body as Record<string, unknown>;
  if (typeof b.tool !== 'string') throw new HttpError(400, '"tool" must be a string');
  if (!(TOOLS as readonly string[]).includes(b.tool)) {
    throw new HttpError(400, `unknown tool "${b.tool.slice(0, 100)}"; expected one of ${TOOLS.join(', ')}`);
  }
  const input = b.input ?? {};
  if (typeof input !== 'object' || input === null || Array.isArray(input)) throw new HttpError(400, '"input" must be a JSON object');
  const key = b.idempotency_key;
  if (key !== undefined && key !== null && (typeof key !== 'string' || key === '' || key.length > 1024)) {
    throw new HttpError(400, '"idempotency_key" must be a non-empty string of at most 1024 characters');
  }
  const timeout = b.timeout_ms;
  if (timeout !== undefined && timeout !== null && (typeof timeout !== 'number' || !Number.isFinite(timeout) || timeout <= 0)) {
    throw new HttpError(400, '"timeout_ms" must be a positive number');
  }
  return {
    tool: b.tool as Tool,
    input: input as Record<string, unknown>,
    idempotency_key: typeof key === 'string' ? key : undefined,
    timeout_ms: typeof timeout === 'number' ? timeout : undefined,
  };
}

export function createAgentServer(agent: SandboxAgent): http.Server {
  const server = http.createServer((req, res) => {
    handle(agent, req, res).catch((err: unknown) => {
      if (err instanceof HttpError) {
        sendJson(res, err.status, { error: err.message });
      } else {
        sendJson(res, 500, { error: 'internal error' });
      }
    });
  });
  // Commands may legitimately run for up to MAX_TOOL_TIMEOUT_MS.
  server.requestTimeout = 0;
  server.timeout = 0;
  server.headersTimeout = 60_000;
  // Connections stay open between calls (the harness's client pools them; a turn's calls are
  // seconds apart, a model call between them), and an idle one is closed after this long. The
  // answer's `Keep-Alive: timeout=` tells the client, which drops it a second earlier.
  server.keepAliveTimeout = KEEP_ALIVE_TIMEOUT_MS;
  server.on('clientError', (_err, socket) => {
    if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\n\r\n');
    else socket.destroy();
  });
  return server;
}

/** Tools whose answer carries the outputs' change marker (the core's `WRITING_TOOLS`). */
const MARKED_TOOLS: ReadonlySet<string> = new Set(['bash', 'write', 'edit']);

/** The session's files: `PUT`/`DELETE /files?path=`, `GET /outputs`, `GET /outputs/content?path=` (see session-files.ts). */
async function handleFiles(agent: SandboxAgent, url: string, query: URLSearchParams, req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
  const method = req.method ?? 'GET';
  const allowed = url === '/files' ? ['PUT', 'DELETE'] : ['GET'];
  if (!allowed.includes(method)) {
    req.resume();
    throw new HttpError(405, 'method not allowed');
  }
  if (!agent.authorized(req.headers.authorization)) {
    req.resume();
    throw new HttpError(401, 'missing or invalid capability');
  }
  const files = agent.sessionFiles;
  if (url === '/files') {
    const target = query.get('path') ?? '';
    if (method === 'PUT') await files.mount(target, await readBody(req, MAX_SESSION_FILE_BYTES));
    else {
      req.resume();
      await files.unmount(target);
    }
    sendJson(res, 200, { ok: true });
    return;
  }
  req.resume();
  if (url === '/outputs') {
    sendJson(res, 200, await files.listOutputs());
    return;
  }
  const bytes = await files.readOutput(query.get('path') ?? '');
  res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': bytes.length });
  res.end(bytes);
}

/** The session's memory stores: `PUT`/`DELETE`/`GET /memory/file?path=&access=`, `GET /memory/list?path=` (see memory-mounts.ts). */
async function handleMemory(agent: SandboxAgent, url: string, query: URLSearchParams, req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
  const method = req.method ?? 'GET';
  const allowed = url === '/memory/file' ? ['PUT', 'DELETE', 'GET'] : url === '/memory/root' ? ['POST'] : ['GET'];
  if (!allowed.includes(method)) {
    req.resume();
    throw new HttpError(405, 'method not allowed');
  }
  if (!agent.authorized(req.headers.authorization)) {
    req.resume();
    throw new HttpError(401, 'missing or invalid capability');
  }
  const target = query.get('path') ?? '';
  if (method === 'PUT') {
    await agent.memory.put(target, parseAccess(query.get('access')), await readBody(req, MAX_MEMORY_FILE_BYTES));
    sendJson(res, 200, { ok: true });
    return;
  }
  req.resume();
  if (method === 'POST') {
    const { slug } = memoryTarget(target, false);
    await agent.memory.ensureRoot(slug, parseAccess(query.get('access')));
    sendJson(res, 200, { ok: true });
  } else if (method === 'DELETE') {
    await agent.memory.remove(target, parseAccess(query.get('access')));
    sendJson(res, 200, { ok: true });
  } else if (url === '/memory/list') {
    sendJson(res, 200, await agent.memory.list(target));
  } else {
    const bytes = await agent.memory.read(target);
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': bytes.length });
    res.end(bytes);
  }
}

async function handle(agent: SandboxAgent, req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
  const [url, search = ''] = (req.url ?? '/').split('?', 2);
  if (url === '/memory/file' || url === '/memory/list' || url === '/memory/root') {
    await handleMemory(agent, url, new URLSearchParams(search), req, res);
    return;
  }
  if (url === '/files' || url === '/outputs' || url === '/outputs/content') {
    await handleFiles(agent, url, new URLSearchParams(search), req, res);
    return;
  }
  if (url === '/health') {
    if (req.method !== 'GET' && req.method !== 'HEAD') throw new HttpError(405, 'method not allowed');
    req.resume();
    const setup = agent.setupState();
    if (setup.state === 'ready') {
      sendJson(res, 200, { ok: true, ...(setup.notes.length ? { notes: setup.notes } : {}), ...(setup.packages ? { packages: setup.packages } : {}) });
    }
    else sendJson(res, 503, { ok: false, ...setup });
    return;
  }
  if (url === '/workspace/snapshot' || url === '/workspace/restore' || url === '/packages/snapshot' || url === '/packages/restore') {
    await handleWorkspace(agent, url, req, res);
    return;
  }
  if (url !== '/execute' && url !== '/capability') {
    req.resume();
    throw new HttpError(404, 'not found');
  }
  if (req.method !== 'POST') {
    req.resume();
    throw new HttpError(405, 'method not allowed');
  }
  if (!agent.authorized(req.headers.authorization)) {
    req.resume();
    throw new HttpError(401, 'missing or invalid capability');
  }
  const raw = await readBody(req, url === '/capability' ? 4096 : BODY_LIMIT_BYTES);
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw.toString('utf8'));
  } catch {
    throw new HttpError(400, 'body is not valid JSON');
  }
  if (url === '/capability') {
    const next = (parsed as { capability?: unknown } | null)?.capability;
    if (typeof next !== 'string') throw new HttpError(400, '"capability" must be a string');
    agent.setCapability(next);
    sendJson(res, 200, { ok: true });
    return;
  }
  const setup = agent.setupState();
  if (setup.state !== 'ready') {
    throw new HttpError(503, setup.state === 'starting' ? 'sandbox is still starting' : `sandbox setup failed: ${setup.error.message}`);
  }
  const request = parseExecuteRequest(parsed);
  const startedAt = Date.now();
  const result = await agent.execute(request);
  // The run's timing (this clock's, epoch ms): the caller exports it as the agent's span of the
  // trace its `traceparent` header names (the sandbox itself has no route to a collector).
  const timing = { started_at_ms: startedAt, ended_at_ms: Date.now() };
  // After a tool that can write (the core catalogues after those only), the outputs' change
  // marker: taken now, not kept with an idempotent result, so it is what is there at this answer.
  const marker = MARKED_TOOLS.has(request.tool) ? { outputs_marker: agent.sessionFiles.outputsMarker() } : {};
  sendJson(res, 200, { output: result.output, is_error: result.is_error, ...marker, timing });
}


/** `max_bytes` and `max_entries` of a snapshot or restore request (set by the core). */
export function archiveLimitsOf(rawUrl: string): ArchiveLimits {
  const q = new URLSearchParams(rawUrl.includes('?') ? rawUrl.slice(rawUrl.indexOf('?') + 1) : '');
  const num = (name: string) => {
    const v = q.get(name);
    const n = Number(v);
    if (v === null || !/^[0-9]{1,16}$/.test(v) || !Number.isSafeInteger(n) || n <= 0) throw new HttpError(400, `"${name}" must be a positive integer`);
    return n;
  };
  return { maxBytes: num('max_bytes'), maxEntries: num('max_entries') };
}

/**
 * `GET /workspace/snapshot`: the workspace as a gzipped tar (413 when it is over the limits);
 * `POST /workspace/restore`: a gzipped tar in the body replaces the workspace's contents (422
 * when the tarball is refused). Both authorized by the capability, both only once the recipe is
 * in place (a restore lands on top of what the recipe made). `GET /packages/snapshot` and
 * `POST /packages/restore` do the same with the packages directory (the environment's package
 * cache, lambdas/core/sandbox/package-cache.ts); 404 in a sandbox without one.
 */
async function handleWorkspace(agent: SandboxAgent, url: string, req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
  const snapshot = url.endsWith('/snapshot');
  // `/packages/*`: the packages directory instead of the workspace (the environment's package cache).
  const dir = url.startsWith('/packages/') ? agent.packagesDir : agent.workspace;
  if (req.method !== (snapshot ? 'GET' : 'POST')) {
    req.resume();
    throw new HttpError(405, 'method not allowed');
  }
  if (!agent.authorized(req.headers.authorization)) {
    req.resume();
    throw new HttpError(401, 'missing or invalid capability');
  }
  const setup = agent.setupState();
  if (setup.state !== 'ready') {
    req.resume();
    throw new HttpError(503, setup.state === 'starting' ? 'sandbox is still starting' : `sandbox setup failed: ${setup.error.message}`);
  }
  if (dir === undefined) {
    req.resume();
    throw new HttpError(404, 'this sandbox has no packages directory');
  }
  const limits = archiveLimitsOf(req.url ?? '');
  try {
    if (snapshot) {
      req.resume();
      await agent.snapshot(
        limits,
        () => {
          res.writeHead(200, { 'content-type': 'application/gzip' });
          return res;
        },
        dir,
      );
      return;
    }
    const summary = await agent.restore(limits, req, dir);
    sendJson(res, 200, {
      files: summary.files,
      dirs: summary.dirs,
      links: summary.links,
      bytes: summary.bytes,
      skipped: summary.skipped,
      skipped_examples: summary.skippedExamples,
    });
  } catch (err) {
    if (err instanceof ArchiveRefused) throw new HttpError(snapshot ? 413 : 422, err.message);
    if (res.headersSent) {
      // Part of a snapshot went out: cut the connection, so the client cannot take it for whole.
      res.destroy();
      return;
    }
    throw err;
  }
}
