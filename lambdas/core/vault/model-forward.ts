/**
 * Model calls through the credential proxy: the harness sends its Messages API requests without
 * a key; the proxy, the only holder of the model key, adds it and forwards the call to the
 * provider (the Claude API or a gateway's base URL), passing the streamed answer back as it
 * arrives. Only what the harness calls is forwarded (`POST /v1/messages`), only headers of the
 * Messages protocol go either way, and no error names the key or the upstream's answer body
 * beyond the status and body the provider itself returned.
 *
 * Web-standard `Request`/`Response` only, so that the local credential proxy process (over its
 * control socket) and the proxy service on AWS (its harness-facing port) share it.
 */

/** Where model calls go and with which key. */
export interface ModelForwardTarget {
  /** The provider's key, sent as `x-api-key`. */
  apiKey: string;
  /** The provider's base URL (a gateway's may carry a path). @default 'https://api.anthropic.com' */
  baseUrl?: string;
}

export interface ModelForwardOptions {
  /** How the upstream is called (tests); default the global `fetch`. */
  fetch?: typeof fetch;
  /** Largest request body accepted. @default 32 MiB (the Messages API's own limit) */
  maxRequestBytes?: number;
  /** Longest a call may take, headers to last byte. @default 10 minutes (the harness's own client timeout) */
  timeoutMs?: number;
}

export const DEFAULT_MODEL_BASE_URL = 'https://api.anthropic.com';
export const MAX_MODEL_REQUEST_BYTES = 32 * 1024 * 1024;
const DEFAULT_TIMEOUT_MS = 10 * 60_000;

/** The one path forwarded (the harness streams Messages and calls nothing else). */
const FORWARDED_PATH = '/v1/messages';

/** Request headers passed on: the protocol's own, never credentials, cookies or hop-by-hop ones. */
const REQUEST_HEADER = /^(content-type|accept|anthropic-version|anthropic-beta|user-agent|x-stainless-[a-z0-9-]+)$/i;
/** Response headers passed back (the body is decoded by fetch, so no content-encoding or length). */
const RESPONSE_HEADER = /^(content-type|request-id|x-request-id|retry-after|retry-after-ms|x-should-retry|anthropic-[a-z0-9-]+)$/i;

function errorResponse(status: number, type: string, message: string): Response {
  return new Response(JSON.stringify({ type: 'error', error: { type, message } }), { status, headers: { 'content-type': 'application/json' } });
}

/**
 * Forward one model call. `path` is the request's path relative to the forwarding prefix (e.g.
 * `/v1/messages?beta=true`). The upstream call is aborted when `request.signal` is (the harness
 * interrupted, or its connection closed), and the answer's body is the upstream's stream itself.
 */
export async function forwardModelCall(request: Request, path: string, target: ModelForwardTarget, opts: ModelForwardOptions = {}): Promise<Response> {
  const query = path.indexOf('?');
  const pathname = query === -1 ? path : path.slice(0, query);
  if (pathname !== FORWARDED_PATH) return errorResponse(404, 'not_found_error', 'only POST /v1/messages is forwarded');
  if (request.method !== 'POST') return errorResponse(405, 'invalid_request_error', 'only POST /v1/messages is forwarded');
  const max = opts.maxRequestBytes ?? MAX_MODEL_REQUEST_BYTES;
  const declared = Number(request.headers.get('content-length') ?? '0');
  if (declared > max) return errorResponse(413, 'request_too_large', `the model request is larger than ${max} bytes`);
  const body = await readBounded(request, max);
  if (body === null) return errorResponse(413, 'request_too_large', `the model request is larger than ${max} bytes`);

  const headers = new Headers();
  request.headers.forEach((value, name) => {
    if (REQUEST_HEADER.test(name)) headers.set(name, value);
  });
  headers.set('x-api-key', target.apiKey);
  const base = (target.baseUrl ?? DEFAULT_MODEL_BASE_URL).replace(/\/+$/, '');
  const timeout = AbortSignal.timeout(opts.timeoutMs ?? DEFAULT_TIMEOUT_MS);
  const signal = AbortSignal.any([request.signal, timeout]);
  let upstream: Response;
  try {
    upstream = await (opts.fetch ?? fetch)(`${base}${path}`, { method: 'POST', headers, body, signal });
  } catch {
    if (request.signal.aborted) return errorResponse(499, 'api_error', 'the caller went away');
    // Neither the URL's credentials nor the cause's text (which may quote the request) go back.
    return errorResponse(timeout.aborted ? 504 : 502, 'api_error', timeout.aborted ? 'the model provider did not answer in time' : 'the model provider could not be reached');
  }
  const out = new Headers();
  upstream.headers.forEach((value, name) => {
    if (RESPONSE_HEADER.test(name)) out.set(name, value);
  });
  return new Response(upstream.body, { status: upstream.status, statusText: upstream.statusText, headers: out });
}

async function readBounded(request: Request, max: number): Promise<Uint8Array | null> {
  if (!request.body) return new Uint8Array();
  const reader = request.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > max) {
      await reader.cancel().catch(() => {});
      return null;
    }
    chunks.push(value);
  }
  const all = new Uint8Array(size);
  let at = 0;
  for (const c of chunks) {
    all.set(c, at);
    at += c.byteLength;
  }
  return all;
}
