/**
 * HTTP client for the sandbox agent (`sandbox/agent.ts`), over a Unix socket or TCP.
 *
 * Connections are kept alive and reused (one bounded pool per process, per endpoint), so a tool
 * call costs one request on an open connection, not a connection set-up. The agent announces how
 * long it keeps an idle connection (`Keep-Alive: timeout=N`); Node's agent drops a pooled one a
 * second before that. A pooled connection can still turn out dead when it is used (an agent that
 * restarted, a Lambda thawed after the agent closed it): a request that fails with a reset on a
 * reused connection before any answer is sent once more on a new connection. That is safe for
 * every request: the agent only closes a connection with no request in flight, and a tool call
 * carries its idempotency key.
 *
 * A tool that fails is a normal `ToolOutput` with `isError: true`; a sandbox that cannot be
 * reached, answers garbage, rejects the capability or times out raises `SandboxUnavailableError`.
 * Error messages name the endpoint but never contain the capability.
 */
import http from 'node:http';
import type { Readable } from 'node:stream';
import {
  SandboxSetupError,
  SandboxUnavailableError,
  StepDeadlineError,
  type ExecuteOptions,
  type SandboxEndpoint,
  type ToolOutput,
} from './types.js';
import { currentTraceparent, startSpan, withSpan, type Span } from '../telemetry/trace.js';

/** Mirrors the agent's limits (`sandbox/agent.ts`). */
const DEFAULT_TOOL_TIMEOUT_MS = 120_000;
const MAX_TOOL_TIMEOUT_MS = 600_000;
/** Extra time the whole call may take beyond the tool's own timeout (transfer, queueing). */
const CALL_MARGIN_MS = 15_000;
/** Responses are bounded by the agent (100k characters of output); anything far larger is wrong. */
const MAX_RESPONSE_BYTES = 16 * 1024 * 1024;
const DEFAULT_HEALTH_TIMEOUT_MS = 2_000;
/** The agent's request body limit. */
const MAX_REQUEST_BYTES = 8 * 1024 * 1024;

export interface WaitHealthyOptions {
  /** Give up after this long. @default 15000 */
  timeoutMs?: number;
  /** Pause between attempts. @default 100 */
  intervalMs?: number;
  signal?: AbortSignal;
}

/** A human-readable name for an endpoint (never includes the capability). */
export function describeEndpoint(endpoint: SandboxEndpoint): string {
  return endpoint.kind === 'unix' ? `unix:${endpoint.socketPath}` : `http://${endpoint.host}:${endpoint.port}`;
}

export interface RawResponse {
  status: number;
  body: string;
  bytes: Buffer;
}

class RequestTimeout extends Error {}

/** Connections a process keeps open to one agent at once (requests beyond wait for one). */
const MAX_SOCKETS_PER_AGENT = 16;
/** Idle connections kept per agent. */
const MAX_FREE_SOCKETS_PER_AGENT = 4;
/** Connections a process keeps open to all agents together. */
const MAX_SOCKETS = 256;

/** The pool of kept-alive connections to sandbox agents (pooled by socket path or host:port). */
const keepAliveAgent = new http.Agent({
  keepAlive: true,
  maxSockets: MAX_SOCKETS_PER_AGENT,
  maxFreeSockets: MAX_FREE_SOCKETS_PER_AGENT,
  maxTotalSockets: MAX_SOCKETS,
  // The most recently used connection first: the one least likely to have been closed.
  scheduling: 'lifo',
});

type RawRequestOptions = { method: string; path: string; headers?: Record<string, string>; body?: string | Buffer; timeoutMs: number; signal?: AbortSignal };

/** A request on a kept-alive connection; sent again on a new one if a reused one was dead. */
export async function rawRequest(endpoint: SandboxEndpoint, opts: RawRequestOptions): Promise<RawResponse> {
  try {
    return await requestOnce(endpoint, opts, keepAliveAgent);
  } catch (err) {
    if (!(err instanceof StaleConnection)) throw err;
    return requestOnce(endpoint, opts, false);
  }
}

/** A reused connection that failed before any answer: the request never reached the agent. */
class StaleConnection extends Error {}

function abortError(signal: AbortSignal): unknown {
  return signal.reason ?? Object.assign(new Error('The operation was aborted'), { name: 'AbortError' });
}

function requestOnce(endpoint: SandboxEndpoint, opts: RawRequestOptions, agent: http.Agent | false): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    if (opts.signal?.aborted) {
      reject(abortError(opts.signal));
      return;
    }
    const headers: Record<string, string | number> = { ...opts.headers };
    if (opts.body !== undefined) {
      headers['content-type'] = typeof opts.body === 'string' ? 'application/json' : 'application/octet-stream';
      headers['content-length'] = Buffer.byteLength(opts.body);
    }
    const target: http.RequestOptions =
      endpoint.kind === 'unix' ? { socketPath: endpoint.socketPath } : { host: endpoint.host, port: endpoint.port };
    let settled = false;
    const settle = (fn: () => void) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      opts.signal?.removeEventListener('abort', onAbort);
      fn();
    };
    let answered = false;
    const req = http.request({ ...target, method: opts.method, path: opts.path, headers, agent }, (res) => {
      answered = true;
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size > MAX_RESPONSE_BYTES) {
          req.destroy(new Error(`response larger than ${MAX_RESPONSE_BYTES} bytes`));
          return;
        }
        chunks.push(chunk);
      });
      res.on('end', () =>
        settle(() => {
          const bytes = Buffer.concat(chunks);
          resolve({ status: res.statusCode ?? 0, body: bytes.toString('utf8'), bytes });
        }),
      );
      res.on('error', (err) => settle(() => reject(err)));
      res.on('aborted', () => settle(() => reject(new Error('connection closed before the response was complete'))));
    });
    const timer = setTimeout(() => req.destroy(new RequestTimeout(`no answer within ${opts.timeoutMs} ms`)), opts.timeoutMs);
    const onAbort = () => {
      settle(() => reject(abortError(opts.signal!)));
      req.destroy();
    };
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    req.on('error', (err) => {
      const code = (err as NodeJS.ErrnoException).code;
      const stale = req.reusedSocket && !answered && (code === 'ECONNRESET' || code === 'EPIPE') && !opts.signal?.aborted;
      settle(() => reject(stale ? new StaleConnection(err.message) : err));
    });
    req.end(opts.body);
  });
}

export function unavailable(endpoint: SandboxEndpoint, err: unknown): SandboxUnavailableError {
  if (err instanceof SandboxUnavailableError) return err;
  const where = describeEndpoint(endpoint);
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  let reason: string;
  if (err instanceof RequestTimeout) reason = `timed out: ${err.message}`;
  else if (code === 'ENOENT') reason = 'socket does not exist (sandbox not running)';
  else if (code === 'ECONNREFUSED') reason = 'connection refused (sandbox not running)';
  else if (code === 'ECONNRESET' || code === 'EPIPE') reason = 'connection reset (sandbox died?)';
  else reason = err instanceof Error ? err.message : String(err);
  return new SandboxUnavailableError(`sandbox at ${where} is unavailable: ${reason}`, err);
}

/** What `GET /health` said: ready (with the recipe's notes), still starting, or setup failed. */
/** How a sandbox's recipe put the environment's packages in (the agent's `PackagesReport`). */
export interface AgentPackagesReport {
  /** Milliseconds each manager's install took, by manager (those the agent installed). */
  installed: Record<string, number>;
  /** pip's and npm's packages were left for the package cache to restore. */
  cached: boolean;
}

export type SandboxHealth =
  | { state: 'ready'; notes: string[]; packages?: AgentPackagesReport }
  | { state: 'starting' }
  | { state: 'failed'; error: { type: string; message: string } }
  | { state: 'unreachable' };

/** The agent's packages report, keeping only well-formed entries (the sandbox is not trusted). */
function packagesReportOf(raw: { installed?: unknown; cached?: unknown } | undefined): AgentPackagesReport | undefined {
  if (typeof raw !== 'object' || raw === null) return undefined;
  const installed: Record<string, number> = {};
  if (typeof raw.installed === 'object' && raw.installed !== null) {
    for (const [pm, ms] of Object.entries(raw.installed)) {
      if (/^[a-z]{1,16}$/.test(pm) && typeof ms === 'number' && Number.isFinite(ms) && ms >= 0) installed[pm] = Math.round(ms);
    }
  }
  return { installed, cached: raw.cached === true };
}

/** The longest a call of this tool may take, including the tool's own timeout. */
export function callTimeoutMs(tool: string, input: unknown): number {
  return defaultTimeout(tool, input);
}

function defaultTimeout(tool: string, input: unknown): number {
  let toolTimeout = DEFAULT_TOOL_TIMEOUT_MS;
  if (tool === 'bash' && typeof input === 'object' && input !== null) {
    const t = (input as { timeout_ms?: unknown }).timeout_ms;
    if (typeof t === 'number' && Number.isFinite(t) && t > 0) toolTimeout = Math.min(t, MAX_TOOL_TIMEOUT_MS);
  }
  return toolTimeout + CALL_MARGIN_MS;
}

export class SandboxClient {
  constructor(readonly endpoint: SandboxEndpoint) {}

  /** True when the agent answers `GET /health` with `{ok: true}`; never throws. */
  async health(opts: { timeoutMs?: number; signal?: AbortSignal } = {}): Promise<boolean> {
    return (await this.status(opts)).state === 'ready';
  }

  /** The agent's `GET /health`, read: ready, starting (applying its recipe), failed; never throws. */
  async status(opts: { timeoutMs?: number; signal?: AbortSignal } = {}): Promise<SandboxHealth> {
    try {
      const res = await rawRequest(this.endpoint, {
        method: 'GET',
        path: '/health',
        timeoutMs: opts.timeoutMs ?? DEFAULT_HEALTH_TIMEOUT_MS,
        signal: opts.signal,
      });
      const body = JSON.parse(res.body) as { ok?: unknown; state?: unknown; notes?: unknown; packages?: { installed?: unknown; cached?: unknown }; error?: { type?: unknown; message?: unknown } };
      if (res.status === 200 && body.ok === true) {
        const notes = Array.isArray(body.notes) ? body.notes.filter((n): n is string => typeof n === 'string') : [];
        const packages = packagesReportOf(body.packages);
        return packages ? { state: 'ready', notes, packages } : { state: 'ready', notes };
      }
      if (body.state === 'starting') return { state: 'starting' };
      if (body.state === 'failed') {
        return {
          state: 'failed',
          error: { type: String(body.error?.type ?? 'unknown'), message: String(body.error?.message ?? 'sandbox setup failed') },
        };
      }
      return { state: 'unreachable' };
    } catch {
      return { state: 'unreachable' };
    }
  }

  /**
   * Replace the sandbox's capability with `next` (`POST /capability`, authorized by the current
   * one): afterwards only `next` opens it. Throws `SandboxUnavailableError` when the sandbox does
   * not answer or refuses.
   */
  async rotateCapability(next: string, opts: { timeoutMs?: number; signal?: AbortSignal } = {}): Promise<SandboxEndpoint> {
    const where = describeEndpoint(this.endpoint);
    let res: RawResponse;
    try {
      res = await rawRequest(this.endpoint, {
        method: 'POST',
        path: '/capability',
        headers: { authorization: `Bearer ${this.endpoint.capability}` },
        body: JSON.stringify({ capability: next }),
        timeoutMs: opts.timeoutMs ?? 10_000,
        signal: opts.signal,
      });
    } catch (err) {
      if (opts.signal?.aborted) throw err;
      throw unavailable(this.endpoint, err);
    }
    if (res.status === 401 || res.status === 403) throw new SandboxUnavailableError(`sandbox at ${where} is unavailable: capability rejected`);
    if (res.status !== 200) throw new SandboxUnavailableError(`sandbox at ${where} refused a new capability (HTTP ${res.status})`);
    return { ...this.endpoint, capability: next };
  }

  /**
   * Runs a tool in the sandbox. Resolves with the tool's output (possibly `isError`); rejects with
   * `SandboxUnavailableError` when the sandbox cannot answer, or with the signal's reason on abort.
   */
  async execute(tool: string, input: unknown, opts: ExecuteOptions = {}): Promise<ToolOutput> {
    return (await this.executeWithMarker(tool, input, opts)).output;
  }

  /**
   * `execute`, with the agent's change marker of `/mnt/session/outputs` as it answered
   * (`outputsMarker`: a string that moves whenever something there changed; null when the agent
   * could not take one, or is older and sends none). The manager catalogues the outputs only when
   * it moved (`session-files.ts`).
   */
  async executeWithMarker(tool: string, input: unknown, opts: ExecuteOptions = {}): Promise<{ output: ToolOutput; outputsMarker: string | null }> {
    // The request's span; its context goes to the agent as `traceparent`, and the agent's own run
    // of the tool (timed by the agent) is exported from here as its child: the sandbox has no
    // route to a collector of its own.
    return withSpan('sandbox.execute', { kind: 'client', attributes: { 'corral.tool.name': tool } }, (span) => this.executeTraced(tool, input, opts, span));
  }

  private async executeTraced(tool: string, input: unknown, opts: ExecuteOptions, span: Span): Promise<{ output: ToolOutput; outputsMarker: string | null }> {
    const timeoutMs = opts.timeoutMs ?? defaultTimeout(tool, input);
    const body: Record<string, unknown> = { tool, input: input ?? {} };
    if (opts.idempotencyKey !== undefined) body.idempotency_key = opts.idempotencyKey;
    // Let the tool time out (with its partial output) a little before the call as a whole does.
    if (opts.timeoutMs !== undefined) body.timeout_ms = Math.max(1, opts.timeoutMs - Math.min(5_000, opts.timeoutMs / 10));
    const payload = JSON.stringify(body);
    const bytes = Buffer.byteLength(payload);
    if (bytes > MAX_REQUEST_BYTES) {
      return { output: { output: `sandbox rejected the request: request body of ${bytes} bytes is larger than ${MAX_REQUEST_BYTES} bytes`, isError: true }, outputsMarker: null };
    }
    // The step's deadline bounds how long we wait, not how long the tool runs (see ExecuteOptions).
    const waitMs = opts.deadline === undefined ? Infinity : opts.deadline - Date.now();
    if (waitMs <= 0) throw new StepDeadlineError(`the ${tool} call`);
    const cutByDeadline = waitMs < timeoutMs;
    let res: RawResponse;
    try {
      res = await rawRequest(this.endpoint, {
        method: 'POST',
        path: '/execute',
        headers: { authorization: `Bearer ${this.endpoint.capability}`, ...traceHeader() },
        body: payload,
        timeoutMs: Math.min(timeoutMs, waitMs),
        signal: opts.signal,
      });
    } catch (err) {
      if (opts.signal?.aborted) throw err;
      if (cutByDeadline && err instanceof RequestTimeout) throw new StepDeadlineError(`the ${tool} call`);
      throw unavailable(this.endpoint, err);
    }
    const where = describeEndpoint(this.endpoint);
    if (res.status === 401 || res.status === 403) {
      throw new SandboxUnavailableError(`sandbox at ${where} is unavailable: capability rejected`);
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(res.body);
    } catch {
      throw new SandboxUnavailableError(`sandbox at ${where} is unavailable: non-JSON response (HTTP ${res.status})`);
    }
    if (res.status === 400 || res.status === 413) {
      // The agent understood us and refused the request (unknown tool, bad input, too large):
      // something the model should see, not a dead sandbox.
      const message = (parsed as { error?: unknown } | null)?.error;
      return { output: { output: `sandbox rejected the request: ${typeof message === 'string' ? message : `HTTP ${res.status}`}`, isError: true }, outputsMarker: null };
    }
    if (res.status !== 200) {
      throw new SandboxUnavailableError(`sandbox at ${where} is unavailable: HTTP ${res.status}`);
    }
    const result = parsed as { output?: unknown; is_error?: unknown; outputs_marker?: unknown } | null;
    if (!result || typeof result.output !== 'string' || typeof result.is_error !== 'boolean') {
      throw new SandboxUnavailableError(`sandbox at ${where} is unavailable: malformed response`);
    }
    const marker = typeof result.outputs_marker === 'string' && result.outputs_marker.length <= 128 ? result.outputs_marker : null;
    span.setAttributes({ 'corral.tool.is_error': result.is_error, 'corral.tool.output_chars': result.output.length, 'http.request.body.size': bytes });
    agentRunSpan(span, tool, (parsed as { timing?: unknown }).timing);
    return { output: { output: result.output, isError: result.is_error }, outputsMarker: marker };
  }
}

/** The `traceparent` header for a request made in a span (none when tracing is off). */
function traceHeader(): Record<string, string> {
  const tp = currentTraceparent();
  return tp ? { traceparent: tp } : {};
}

/**
 * The agent's run of the tool (`timing` of its answer: its clock's start and end, epoch ms), as a
 * child of the request's span, kept inside it (the two clocks may differ a little). Nothing when
 * the agent sent no timing (an older agent) or tracing is off.
 */
function agentRunSpan(parent: Span, tool: string, timing: unknown) {
  if (!parent.context || !timing || typeof timing !== 'object') return;
  const { started_at_ms: start, ended_at_ms: end } = timing as Record<string, unknown>;
  if (typeof start !== 'number' || typeof end !== 'number' || !(end >= start)) return;
  const now = performance.timeOrigin + performance.now();
  const endMs = Math.min(end, now);
  const run = startSpan('sandbox.run_tool', { parent: parent.context, startMs: Math.min(start, endMs), attributes: { 'corral.tool.name': tool } });
  run.end(endMs);
}

/** An output the agent listed under `/mnt/session/outputs` (path relative to it). */
export interface OutputListing {
  path: string;
  size: number;
  mtimeMs: number;
}

/**
 * One authenticated call to the agent's file API (`/files`, `/outputs`, `/memory`). Failures to
 * reach it are `SandboxUnavailableError` (a rejected capability too); any other status than 200 is
 * an `Error` with that `status`, naming the agent's message.
 */
export async function callAgent(endpoint: SandboxEndpoint, method: string, path: string, body?: Buffer, timeoutMs = 30_000): Promise<RawResponse> {
  let res: RawResponse;
  try {
    res = await rawRequest(endpoint, { method, path, headers: { authorization: `Bearer ${endpoint.capability}` }, ...(body ? { body } : {}), timeoutMs });
  } catch (err) {
    throw unavailable(endpoint, err);
  }
  if (res.status === 401 || res.status === 403) throw new SandboxUnavailableError(`sandbox at ${describeEndpoint(endpoint)} is unavailable: capability rejected`);
  if (res.status !== 200) {
    let message = `HTTP ${res.status}`;
    try {
      message = String((JSON.parse(res.body) as { error?: unknown }).error ?? message);
    } catch {
      // not JSON
    }
    throw Object.assign(new Error(message), { status: res.status });
  }
  return res;
}

/**
 * The session's files in a sandbox (`PUT`/`DELETE /files`, `GET /outputs`): file resources handed
 * in, outputs read out. Failures to reach the agent are `SandboxUnavailableError`; a refusal is an
 * `Error` naming the status and the agent's message.
 */
export class SandboxFilesClient {
  constructor(readonly endpoint: SandboxEndpoint) {}

  private call(method: string, path: string, body?: Buffer, timeoutMs?: number): Promise<RawResponse> {
    return callAgent(this.endpoint, method, path, body, timeoutMs);
  }

  /** Put a file resource's bytes at its mount path, read-only for the tools. */
  async mount(mountPath: string, bytes: Uint8Array): Promise<void> {
    await this.call('PUT', `/files?path=${encodeURIComponent(mountPath)}`, Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
  }

  async unmount(mountPath: string): Promise<void> {
    await this.call('DELETE', `/files?path=${encodeURIComponent(mountPath)}`);
  }

  async listOutputs(): Promise<{ files: OutputListing[]; truncated: boolean }> {
    const res = await this.call('GET', '/outputs');
    const body = JSON.parse(res.body) as { files?: Array<{ path?: unknown; size?: unknown; mtime_ms?: unknown }>; truncated?: unknown };
    const files = (body.files ?? [])
      .filter((f) => typeof f.path === 'string' && Number.isSafeInteger(f.size) && Number.isFinite(f.mtime_ms))
      .map((f) => ({ path: f.path as string, size: f.size as number, mtimeMs: f.mtime_ms as number }));
    return { files, truncated: body.truncated === true };
  }

  async readOutput(path: string): Promise<Buffer> {
    return (await this.call('GET', `/outputs/content?path=${encodeURIComponent(path)}`)).bytes;
  }
}

/** Bounds of a workspace snapshot (see docs/WORKSPACES.md). */
export interface WorkspaceLimits {
  /** Most bytes of file content (before compression). */
  maxBytes: number;
  /** Most entries: files, directories and links. */
  maxEntries: number;
}

/** What a restore put in the workspace, as the agent reports it. */
export interface RestoreSummary {
  files: number;
  dirs: number;
  links: number;
  bytes: number;
  /** Entries not restored (links out of the workspace), with up to 20 examples. */
  skipped: number;
  skippedExamples: string[];
}

/**
 * A snapshot or restore the agent would not do: `refused` (over the limits, a tarball it does not
 * accept: doing it again gives the same answer) or not (the sandbox or the transfer failed).
 */
export class WorkspaceTransferError extends Error {
  constructor(
    message: string,
    readonly refused: boolean,
    /** The agent is already taking or restoring a snapshot of this workspace (HTTP 409). */
    readonly inProgress = false,
  ) {
    super(message);
    this.name = 'WorkspaceTransferError';
  }
}

/** What a snapshot or restore is of: the workspace, or the packages directory (the package cache's). */
export type ArchiveScope = 'workspace' | 'packages';

function limitsQuery(limits: WorkspaceLimits): string {
  return `max_bytes=${Math.floor(limits.maxBytes)}&max_entries=${Math.floor(limits.maxEntries)}`;
}

/** Reads a JSON answer's `error` (bounded), for a refused snapshot or restore. */
function errorOf(res: http.IncomingMessage): Promise<string> {
  return new Promise((resolve) => {
    let text = '';
    res.setEncoding('utf8');
    res.on('data', (c: string) => {
      if (text.length < 65536) text += c;
    });
    res.on('end', () => {
      try {
        const e = (JSON.parse(text) as { error?: unknown }).error;
        resolve(typeof e === 'string' ? e : `HTTP ${res.statusCode}`);
      } catch {
        resolve(`HTTP ${res.statusCode}`);
      }
    });
    res.on('error', () => resolve(`HTTP ${res.statusCode}`));
  });
}

/**
 * `GET /workspace/snapshot`: the sandbox's workspace as a gzipped tar stream. Resolves once the
 * agent has started sending it; the stream errors if the agent cuts it (an incomplete snapshot is
 * never mistaken for a whole one). Not on the kept-alive pool: a snapshot holds its connection.
 */
export function fetchWorkspaceSnapshot(
  endpoint: SandboxEndpoint,
  limits: WorkspaceLimits,
  opts: { signal?: AbortSignal; timeoutMs?: number; scope?: ArchiveScope } = {},
): Promise<Readable> {
  return new Promise((resolve, reject) => {
    const target: http.RequestOptions = endpoint.kind === 'unix' ? { socketPath: endpoint.socketPath } : { host: endpoint.host, port: endpoint.port };
    const req = http.request({ ...target, method: 'GET', path: `/${opts.scope ?? 'workspace'}/snapshot?${limitsQuery(limits)}`, headers: { authorization: `Bearer ${endpoint.capability}` }, agent: false, signal: opts.signal }, (res) => {
      clearTimeout(timer);
      if (res.statusCode === 200) {
        // A connection closed before the last chunk is an error on the stream, not a short end.
        res.on('aborted', () => res.destroy(new Error('the sandbox cut the snapshot short')));
        resolve(res);
        return;
      }
      const refused = res.statusCode === 413 || res.statusCode === 400;
      void errorOf(res).then((message) => reject(res.statusCode === 401 || res.statusCode === 403 ? unavailable(endpoint, new Error('capability rejected')) : new WorkspaceTransferError(message, refused, res.statusCode === 409)));
    });
    const timer = setTimeout(() => req.destroy(new RequestTimeout(`no answer within ${opts.timeoutMs ?? 60_000} ms`)), opts.timeoutMs ?? 60_000);
    req.on('error', (err) => {
      clearTimeout(timer);
      reject(opts.signal?.aborted ? err : unavailable(endpoint, err));
    });
    req.end();
  });
}

/** `POST /workspace/restore`: streams `body` (a gzipped tar) into the sandbox's workspace. */
export function restoreWorkspace(endpoint: SandboxEndpoint, body: Readable, limits: WorkspaceLimits, opts: { signal?: AbortSignal; scope?: ArchiveScope } = {}): Promise<RestoreSummary> {
  return new Promise((resolve, reject) => {
    const target: http.RequestOptions = endpoint.kind === 'unix' ? { socketPath: endpoint.socketPath } : { host: endpoint.host, port: endpoint.port };
    const req = http.request(
      { ...target, method: 'POST', path: `/${opts.scope ?? 'workspace'}/restore?${limitsQuery(limits)}`, headers: { authorization: `Bearer ${endpoint.capability}`, 'content-type': 'application/gzip' }, agent: false, signal: opts.signal },
      (res) => {
        if (res.statusCode !== 200) {
          body.unpipe(req);
          body.destroy();
          const refused = res.statusCode === 422 || res.statusCode === 400;
          void errorOf(res).then((message) => reject(res.statusCode === 401 || res.statusCode === 403 ? unavailable(endpoint, new Error('capability rejected')) : new WorkspaceTransferError(message, refused)));
          return;
        }
        let text = '';
        res.setEncoding('utf8');
        res.on('error', (err) => reject(unavailable(endpoint, err)));
        res.on('data', (c: string) => {
          if (text.length < 1 << 20) text += c;
        });
        res.on('end', () => {
          try {
            const r = JSON.parse(text) as { files: number; dirs: number; links: number; bytes: number; skipped: number; skipped_examples: string[] };
            resolve({ files: r.files, dirs: r.dirs, links: r.links, bytes: r.bytes, skipped: r.skipped, skippedExamples: r.skipped_examples ?? [] });
          } catch {
            reject(new WorkspaceTransferError('the sandbox answered the restore with something that is not JSON', false));
          }
        });
      },
    );
    req.on('error', (err) => reject(opts.signal?.aborted ? err : unavailable(endpoint, err)));
    body.on('error', (err) => req.destroy(err));
    body.pipe(req);
  });
}

/**
 * Polls `GET /health` until the agent is ready, and returns what it said (the recipe's notes).
 * Throws `SandboxSetupError` as soon as the agent reports that its recipe failed, and
 * `SandboxUnavailableError` when it is not ready after `timeoutMs`.
 */
export async function waitHealthy(endpoint: SandboxEndpoint, opts: WaitHealthyOptions = {}): Promise<{ notes: string[] }> {
  const timeoutMs = opts.timeoutMs ?? 15_000;
  const intervalMs = opts.intervalMs ?? 100;
  const deadline = Date.now() + timeoutMs;
  const client = new SandboxClient(endpoint);
  let last: SandboxHealth['state'] = 'unreachable';
  for (;;) {
    if (opts.signal?.aborted) throw abortError(opts.signal);
    const remaining = deadline - Date.now();
    const health = await client.status({ timeoutMs: Math.max(50, Math.min(DEFAULT_HEALTH_TIMEOUT_MS, remaining)), signal: opts.signal });
    if (health.state === 'ready') return { notes: health.notes };
    if (health.state === 'failed') throw new SandboxSetupError(health.error.type, health.error.message);
    last = health.state;
    if (Date.now() + intervalMs > deadline) {
      const why = last === 'starting' ? ' (it was still applying its recipe)' : '';
      throw new SandboxUnavailableError(`sandbox at ${describeEndpoint(endpoint)} did not become healthy within ${timeoutMs} ms${why}`);
    }
    await new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(t);
        opts.signal?.removeEventListener('abort', done);
        resolve();
      };
      const t = setTimeout(done, intervalMs);
      opts.signal?.addEventListener('abort', done, { once: true });
    });
  }
}
