import { EventEmitter } from 'node:events';
import type { IncomingMessage, ServerResponse } from 'node:http';

/** How dynalite serves one request: its HTTP server's request listener. */
export type DynaliteServe = (req: IncomingMessage, res: ServerResponse) => void;

/** The parts of the SDK's HTTP request this handler reads (smithy's `HttpRequest`). */
interface SdkHttpRequest {
  method: string;
  path: string;
  query?: Record<string, string | string[] | null>;
  headers: Record<string, string>;
  body?: unknown;
}

/** What the SDK reads of a response (smithy's `HttpResponse`, checked by shape). */
interface SdkHttpResponse {
  statusCode: number;
  headers: Record<string, string>;
  body: Uint8Array;
}

/**
 * The AWS SDK's request handler for the embedded dynalite in the same process: it hands each
 * signed request to dynalite's request listener as it would arrive over HTTP (method, URL, headers,
 * body) and gives the SDK dynalite's answer (status, headers, body), with no socket, no HTTP
 * parser and no stream in between. Everything above the handler (the same DynamoDB client, its
 * serialisation, retries and error parsing, and the adapters in adapters/aws) is what runs on AWS;
 * only the wire is gone. Each request costs a few objects instead of a round trip through Node's
 * HTTP client and server, which was a quarter of the local runtime's CPU.
 */
export class InProcessDynaliteHandler {
  readonly metadata = { handlerProtocol: 'in-process' };

  /** @param serve dynalite's request listener; `refuse` says whether it takes requests any more. */
  constructor(
    private readonly serve: DynaliteServe,
    private readonly refuse: () => boolean = () => false,
  ) {}

  handle(request: SdkHttpRequest, options: { abortSignal?: AbortSignal } = {}): Promise<{ response: SdkHttpResponse }> {
    const signal = options.abortSignal;
    if (signal?.aborted) return Promise.reject(abortError());
    // As a closing server drops the connection: the SDK sees a network error, not an answer.
    if (this.refuse()) return Promise.reject(Object.assign(new Error('the embedded DynamoDB is closing'), { code: 'ECONNRESET' }));
    return new Promise((resolve, reject) => {
      const req = new EventEmitter() as EventEmitter & { method: string; url: string; headers: Record<string, string> };
      req.method = request.method;
      req.url = requestUrl(request);
      req.headers = {};
      // Node gives a server lower-case header names; dynalite reads them so.
      for (const [name, value] of Object.entries(request.headers)) req.headers[name.toLowerCase()] = value;

      const headers: Record<string, string> = {};
      let finished = false;
      const onAbort = () => {
        finished = true;
        reject(abortError());
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      const res = {
        statusCode: 200,
        setHeader(name: string, value: string | number) {
          headers[name.toLowerCase()] = String(value);
          return res;
        },
        getHeader(name: string) {
          return headers[name.toLowerCase()];
        },
        end(body?: string | Uint8Array) {
          if (finished) return res;
          finished = true;
          signal?.removeEventListener('abort', onAbort);
          resolve({ response: { statusCode: res.statusCode, headers, body: body === undefined ? new Uint8Array() : typeof body === 'string' ? Buffer.from(body) : body } });
          return res;
        },
        destroy() {
          if (finished) return res;
          finished = true;
          signal?.removeEventListener('abort', onAbort);
          reject(Object.assign(new Error('the embedded DynamoDB dropped the request'), { code: 'ECONNRESET' }));
          return res;
        },
      };
      try {
        this.serve(req as unknown as IncomingMessage, res as unknown as ServerResponse);
        const body = toBuffer(request.body);
        if (body.length) req.emit('data', body);
        req.emit('end');
      } catch (err) {
        // dynalite throws what it cannot answer (over HTTP: an uncaught error); here the call fails.
        if (!finished) {
          finished = true;
          signal?.removeEventListener('abort', onAbort);
          reject(err);
        }
      }
    });
  }

  updateHttpClientConfig(): void {}

  httpHandlerConfigs(): Record<string, never> {
    return {};
  }

  destroy(): void {}
}

function requestUrl(request: SdkHttpRequest): string {
  const query = request.query ?? {};
  const parts: string[] = [];
  for (const [key, value] of Object.entries(query)) {
    if (value === null) parts.push(encodeURIComponent(key));
    else for (const v of Array.isArray(value) ? value : [value]) parts.push(`${encodeURIComponent(key)}=${encodeURIComponent(v)}`);
  }
  return parts.length ? `${request.path}?${parts.join('&')}` : request.path;
}

function toBuffer(body: unknown): Buffer {
  if (body === undefined || body === null) return Buffer.alloc(0);
  if (typeof body === 'string') return Buffer.from(body);
  if (body instanceof Uint8Array) return Buffer.from(body.buffer, body.byteOffset, body.byteLength);
  throw new Error('the in-process DynamoDB handler takes a string or byte body');
}

function abortError(): Error {
  return Object.assign(new Error('Request aborted'), { name: 'AbortError' });
}
