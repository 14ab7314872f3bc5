import { createHash } from 'node:crypto';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { UnauthorizedError } from '@modelcontextprotocol/sdk/client/auth.js';
import { StreamableHTTPClientTransport, StreamableHTTPError } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { ErrorCode, McpError as ProtocolError } from '@modelcontextprotocol/sdk/types.js';
import type { McpCallResult, McpContent, McpToolInfo } from '../mcp/gateway.js';

/**
 * The credential proxy's MCP client: the MCP SDK's `Client` over Streamable HTTP, with the bearer
 * token of the session's credential (if any) on every request. Clients are kept per (session,
 * server, credential) for a while, so a turn with several calls initializes once.
 *
 * Failures are classified, never passed through verbatim: a refused credential (401/403) is
 * `authentication`, anything that kept the call from happening (refused connection, timeout,
 * 5xx, a broken stream) is `connection`. Connection failures that cannot have reached the server
 * are retried with backoff; a tool call that may have run is not repeated.
 */

export type McpFailureKind = 'authentication' | 'connection';

export class McpCallFailure extends Error {
  constructor(
    readonly kind: McpFailureKind,
    message: string,
    /** The HTTP status that refused the credentials (401 or 403), for `authentication`. */
    readonly status?: number,
  ) {
    super(message);
    this.name = 'McpCallFailure';
  }
}

export interface McpConnectorOptions {
  /** Attempts for calls that cannot have reached the server (refused, DNS). @default 3 */
  attempts?: number;
  /** First backoff delay; doubles per attempt. @default 200 */
  backoffMs?: number;
  /** Initialization and `tools/list`. @default 30000 */
  listTimeoutMs?: number;
  /** `tools/call`. @default 120000 */
  callTimeoutMs?: number;
  /** How long an unused client is kept. @default 300000 */
  idleMs?: number;
  /** The fetch the transport uses (tests). */
  fetch?: typeof fetch;
  /** Waits between retries (tests). */
  sleep?: (ms: number) => Promise<void>;
}

interface Entry {
  client: Client;
  lastUsed: number;
}

const NEVER_REACHED = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'UND_ERR_CONNECT_TIMEOUT']);

function causeCode(err: unknown): string | undefined {
  let e = err as { code?: unknown; cause?: unknown } | undefined;
  for (let i = 0; e && i < 5; i++) {
    if (typeof e.code === 'string') return e.code;
    e = e.cause as typeof e;
  }
  return undefined;
}

/** What went wrong, in words that never repeat a server's answer (which could echo anything). */
export function classifyMcpError(
  err: unknown,
  server: string,
): { kind: McpFailureKind | 'tool'; message: string; neverReached: boolean; status?: number } {
  if (err instanceof McpCallFailure) return { kind: err.kind, message: err.message, neverReached: false, status: err.status };
  if (err instanceof UnauthorizedError) {
    return { kind: 'authentication', message: `MCP server ${server} refused the credentials (401)`, neverReached: false, status: 401 };
  }
  if (err instanceof StreamableHTTPError) {
    const code = err.code ?? 0;
    if (code === 401 || code === 403) {
      return { kind: 'authentication', message: `MCP server ${server} refused the credentials (${code})`, neverReached: false, status: code };
    }
    if (code === -1) return { kind: 'connection', message: `MCP server ${server} answered with an unexpected content type`, neverReached: false };
    return { kind: 'connection', message: `MCP server ${server} answered HTTP ${code}`, neverReached: false };
  }
  if (err instanceof ProtocolError) {
    if (err.code === ErrorCode.RequestTimeout) return { kind: 'connection', message: `MCP server ${server} did not answer in time`, neverReached: false };
    if (err.code === ErrorCode.ConnectionClosed) return { kind: 'connection', message: `MCP server ${server} closed the connection`, neverReached: false };
    return { kind: 'tool', message: `MCP server ${server} returned error ${err.code}`, neverReached: false };
  }
  const code = causeCode(err);
  if (code && NEVER_REACHED.has(code)) return { kind: 'connection', message: `MCP server ${server} is unreachable (${code})`, neverReached: true };
  const name = (err as Error)?.name;
  if (name === 'AbortError' || name === 'TimeoutError') return { kind: 'connection', message: `MCP server ${server} did not answer in time`, neverReached: false };
  return { kind: 'connection', message: `MCP server ${server} could not be reached${code ? ` (${code})` : ''}`, neverReached: false };
}

export class McpConnector {
  private readonly clients = new Map<string, Entry>();
  private readonly pending = new Map<string, Promise<Client>>();
  private readonly opts: Required<Omit<McpConnectorOptions, 'fetch'>> & { fetch?: typeof fetch };

  constructor(opts: McpConnectorOptions = {}) {
    this.opts = {
      attempts: opts.attempts ?? 3,
      backoffMs: opts.backoffMs ?? 200,
      listTimeoutMs: opts.listTimeoutMs ?? 30_000,
      callTimeoutMs: opts.callTimeoutMs ?? 120_000,
      idleMs: opts.idleMs ?? 300_000,
      fetch: opts.fetch,
      sleep: opts.sleep ?? ((ms) => new Promise((r) => setTimeout(r, ms))),
    };
  }

  /** Open clients (tests, metrics). */
  get size(): number {
    return this.clients.size;
  }

  async listTools(sessionId: string, server: { name: string; url: string }, token: string | undefined): Promise<McpToolInfo[]> {
    return this.withClient(sessionId, server, token, true, async (client) => {
      const tools: McpToolInfo[] = [];
      let cursor: string | undefined;
      for (let page = 0; page < 50; page++) {
        const out = await client.listTools(cursor ? { cursor } : undefined, { timeout: this.opts.listTimeoutMs });
        for (const t of out.tools) {
          tools.push({
            name: t.name,
            ...(t.description ? { description: t.description } : {}),
            input_schema: (t.inputSchema ?? { type: 'object' }) as Record<string, unknown>,
          });
        }
        cursor = out.nextCursor;
        if (!cursor) break;
      }
      return tools;
    });
  }

  async callTool(
    sessionId: string,
    server: { name: string; url: string },
    token: string | undefined,
    tool: string,
    input: unknown,
  ): Promise<McpCallResult> {
    try {
      return await this.withClient(sessionId, server, token, false, async (client) => {
        const out = await client.callTool(
          { name: tool, arguments: (input && typeof input === 'object' ? input : {}) as Record<string, unknown> },
          undefined,
          { timeout: this.opts.callTimeoutMs },
        );
        const content = (Array.isArray(out.content) ? out.content : [{ type: 'text', text: JSON.stringify(out.toolResult ?? out) }]) as McpContent;
        return { content, isError: out.isError === true };
      });
    } catch (err) {
      const c = classifyMcpError(err, server.name);
      // A JSON-RPC error for the call itself (unknown tool, bad arguments) is the tool's answer.
      if (c.kind === 'tool') return { content: [{ type: 'text', text: `${c.message}: ${(err as Error).message}`.slice(0, 2000) }], isError: true };
      throw new McpCallFailure(c.kind, c.message, c.status);
    }
  }

  /**
   * Run `fn` with a connected client, reconnecting once when a cached client turns out to be
   * stale, and retrying (with backoff) failures that cannot have reached the server; `idempotent`
   * requests (listing) are retried on any connection failure.
   */
  private async withClient<T>(
    sessionId: string,
    server: { name: string; url: string },
    token: string | undefined,
    idempotent: boolean,
    fn: (client: Client) => Promise<T>,
  ): Promise<T> {
    const key = `${sessionId}\0${server.url}\0${token ? createHash('sha256').update(token).digest('hex').slice(0, 16) : '-'}`;
    this.sweep();
    let lastError: unknown;
    for (let attempt = 0; attempt < this.opts.attempts; attempt++) {
      if (attempt > 0) await this.opts.sleep(this.opts.backoffMs * 2 ** (attempt - 1));
      const cached = this.clients.has(key);
      let client: Client;
      try {
        client = await this.connect(key, server, token);
      } catch (err) {
        lastError = err;
        const c = classifyMcpError(err, server.name);
        if (c.kind === 'authentication') throw new McpCallFailure('authentication', c.message, c.status);
        continue; // initialization never runs a tool: always safe to retry
      }
      try {
        const out = await fn(client);
        const entry = this.clients.get(key);
        if (entry) entry.lastUsed = Date.now();
        return out;
      } catch (err) {
        lastError = err;
        const c = classifyMcpError(err, server.name);
        if (c.kind === 'tool') throw err;
        await this.drop(key);
        if (c.kind === 'authentication') throw new McpCallFailure('authentication', c.message, c.status);
        // A cached client the server forgot (its session expired): one fresh try is always fine.
        const staleSession = cached && err instanceof StreamableHTTPError && (err.code === 404 || err.code === 400);
        if (staleSession || idempotent || c.neverReached) continue;
        throw new McpCallFailure('connection', c.message);
      }
    }
    const c = classifyMcpError(lastError, server.name);
    throw new McpCallFailure(c.kind === 'tool' ? 'connection' : c.kind, c.message, c.status);
  }

  private connect(key: string, server: { name: string; url: string }, token: string | undefined): Promise<Client> {
    const hit = this.clients.get(key);
    if (hit) return Promise.resolve(hit.client);
    const pending = this.pending.get(key);
    if (pending) return pending;
    const p = (async () => {
      const transport = new StreamableHTTPClientTransport(new URL(server.url), {
        requestInit: token ? { headers: { Authorization: `Bearer ${token}` } } : undefined,
        ...(this.opts.fetch ? { fetch: this.opts.fetch } : {}),
        // The proxy retries itself; the transport must not reconnect a GET stream in the background.
        reconnectionOptions: { maxRetries: 0, initialReconnectionDelay: 1000, maxReconnectionDelay: 1000, reconnectionDelayGrowFactor: 1 },
      });
      const client = new Client({ name: 'corral-credential-proxy', version: '0.1.0' });
      client.onerror = () => {}; // failures surface on the request that hits them
      await client.connect(transport, { timeout: this.opts.listTimeoutMs });
      this.clients.set(key, { client, lastUsed: Date.now() });
      return client;
    })();
    this.pending.set(key, p);
    return p.finally(() => this.pending.delete(key));
  }

  private async drop(key: string): Promise<void> {
    const entry = this.clients.get(key);
    this.clients.delete(key);
    await entry?.client.close().catch(() => {});
  }

  /** Close clients unused for longer than `idleMs`. */
  sweep(now = Date.now()): void {
    for (const [key, entry] of this.clients) {
      if (now - entry.lastUsed > this.opts.idleMs) void this.drop(key);
    }
  }

  async close(): Promise<void> {
    await Promise.all([...this.clients.keys()].map((k) => this.drop(k)));
  }
}
