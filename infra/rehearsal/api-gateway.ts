/**
 * API Gateway (REST) as the template declares it: the resource tree and its methods, Lambda
 * proxy integrations, buffered or streamed (`ResponseTransferMode: STREAM`), the stage's
 * throttling, and the service limits that matter to Corral:
 *
 * - routing picks the most specific resource (a literal path part before `{var}` before
 *   `{proxy+}`); the method must exist on that resource (or `ANY`), with no fallback to a parent
 *   with a greedy path; otherwise 403 `Missing Authentication Token`, as API Gateway answers;
 * - a request body over 10 MB is 413; a buffered integration that takes longer than its timeout
 *   (29 s) is 504; a Lambda response over 6 MB (Lambda's synchronous payload limit), an error,
 *   a timeout or a malformed proxy result is 502 `Internal server error`;
 * - a streamed integration sends the function's bytes as they come, until its timeout;
 * - binary media types (`binaryMediaTypes`, wildcards such as `image/*` and `*\/*` allowed): a
 *   request body whose `Content-Type` matches one reaches the function base64 with
 *   `isBase64Encoded: true`; any other is decoded as UTF-8 text, every invalid byte replaced, as
 *   API Gateway does. A buffered response marked `isBase64Encoded` is turned back into bytes only
 *   when the request's first `Accept` value matches one (an absent `Accept` only by `*\/*`);
 *   otherwise the client gets the base64 text itself. The 6 MB limit applies to the event after
 *   base64, so a binary upload of 4.5 MB already exceeds it.
 */
import { randomUUID } from 'node:crypto';
import { createServer, request as httpRequest, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { InvokeResult, StreamSink } from './lambda-runtime.js';

const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'transfer-encoding', 'upgrade', 'proxy-connection', 'te', 'trailer', 'host']);

export const MAX_REQUEST_BYTES = 10 * 1024 * 1024;
export const MAX_LAMBDA_PAYLOAD_BYTES = 6 * 1024 * 1024;

export interface Integration {
  /** Function name (or `VPC link <id>`), for messages and reports. */
  functionName: string;
  streaming: boolean;
  timeoutMs: number;
  invoke(event: unknown): Promise<InvokeResult>;
  invokeStream(event: unknown, sink: StreamSink, signal: AbortSignal): Promise<InvokeResult>;
  /** An HTTP proxy integration (`HTTP_PROXY`) instead of a Lambda function. */
  http?: HttpProxyIntegration;
}

/**
 * `HTTP_PROXY`: the method request goes on to `uri` (its `{name}` parts filled by the request
 * parameter mappings) with its headers and query string, plus the mapped headers, and the
 * response comes back as it is (streamed with `ResponseTransferMode: STREAM`).
 */
export interface HttpProxyIntegration {
  uri: string;
  httpMethod: string;
  /** `integration.request.{path,header,querystring}.<name>` ← `method.request.…`, `context.…`, or `'literal'`. */
  requestParameters: Record<string, string>;
  /** A connection to the URI's host and port (through the VPC link, for `VPC_LINK`). */
  connect(host: string, port: number): Promise<Socket>;
}

export interface RestResource {
  id: string;
  /** Full path, e.g. `/v1/sessions/{id}/events`, `/` for the root. */
  path: string;
  /** By HTTP method (`GET`, ..., `ANY`). */
  methods: Map<string, Integration>;
}

export interface ApiGatewayOptions {
  restApiId: string;
  stage: string;
  resources: RestResource[];
  /** The stage's default method throttling (requests per second, burst). */
  throttle?: { rate: number; burst: number };
  /** The REST API's `binaryMediaTypes`. @default none: every body is text */
  binaryMediaTypes?: string[];
  account: string;
}

/** Whether a media type (`Content-Type`, or one `Accept` value) matches an entry of `binaryMediaTypes`. */
export function isBinaryMediaType(binaryMediaTypes: readonly string[], mediaType: string | undefined): boolean {
  const type = mediaType?.split(';')[0].trim().toLowerCase();
  if (!type) return false;
  const [main, sub] = type.split('/');
  return binaryMediaTypes.some((entry) => {
    const [eMain, eSub] = entry.trim().toLowerCase().split('/');
    return (eMain === '*' || eMain === main) && (eSub === '*' || eSub === sub);
  });
}

/** One answer API Gateway gave that a client would see as a gateway failure (for the report). */
export interface GatewayFailure {
  method: string;
  path: string;
  status: number;
  reason: string;
}

interface Match {
  resource: RestResource;
  pathParameters: Record<string, string>;
}

/** The resource a path lands on, most specific first (literal, then `{var}`, then `{proxy+}`). */
export function route(resources: RestResource[], path: string): Match | undefined {
  const parts = path.split('/').filter(Boolean);
  const byPath = new Map(resources.map((r) => [r.path, r]));
  const children = new Map<string, RestResource[]>();
  for (const r of resources) {
    if (r.path === '/') continue;
    const parent = r.path.slice(0, r.path.lastIndexOf('/')) || '/';
    children.set(parent, [...(children.get(parent) ?? []), r]);
  }
  const last = (p: string) => p.slice(p.lastIndexOf('/') + 1);
  const walk = (at: RestResource, i: number, params: Record<string, string>): Match | undefined => {
    if (i === parts.length) return { resource: at, pathParameters: params };
    const kids = children.get(at.path) ?? [];
    const literal = kids.find((k) => last(k.path) === parts[i]);
    if (literal) {
      const m = walk(literal, i + 1, params);
      if (m) return m;
    }
    const variable = kids.find((k) => /^\{[^+}]+\}$/.test(last(k.path)));
    if (variable) {
      const m = walk(variable, i + 1, { ...params, [last(variable.path).slice(1, -1)]: decodeURIComponent(parts[i]) });
      if (m) return m;
    }
    const greedy = kids.find((k) => /^\{[^}]+\+\}$/.test(last(k.path)));
    if (greedy) return { resource: greedy, pathParameters: { ...params, [last(greedy.path).slice(1, -2)]: parts.slice(i).map(decodeURIComponent).join('/') } };
    return undefined;
  };
  const root = byPath.get('/');
  return root ? walk(root, 0, {}) : undefined;
}

export class RestApiGateway {
  private server?: Server;
  readonly failures: GatewayFailure[] = [];
  readonly requests = { total: 0, throttled: 0 };
  private tokens: number;
  private refilledAt = Date.now();

  constructor(private readonly opts: ApiGatewayOptions) {
    this.tokens = opts.throttle?.burst ?? Infinity;
  }

  /** The invoke URL, with the stage: what the stack's `ApiUrl` output is. */
  get url(): string {
    const a = this.server?.address() as AddressInfo | null;
    if (!a) throw new Error('API Gateway is not listening');
    return `http://127.0.0.1:${a.port}/${this.opts.stage}`;
  }

  async start(): Promise<string> {
    this.server = createServer((req, res) => {
      this.serve(req, res).catch((err) => {
        this.fail(req, res, 500, 'Internal server error', `rehearsal: ${(err as Error)?.message ?? err}`);
      });
    });
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', () => resolve()));
    return this.url;
  }

  private fail(req: IncomingMessage, res: ServerResponse, status: number, message: string, reason: string, headers: Record<string, string> = {}) {
    this.failures.push({ method: req.method ?? '?', path: req.url ?? '?', status, reason });
    if (res.headersSent) {
      res.destroy();
      return;
    }
    res.writeHead(status, { 'content-type': 'application/json', 'x-amzn-errortype': status === 403 ? 'MissingAuthenticationTokenException' : 'InternalServerErrorException', ...headers });
    res.end(JSON.stringify({ message }));
  }

  private take(): boolean {
    const t = this.opts.throttle;
    if (!t) return true;
    const now = Date.now();
    this.tokens = Math.min(t.burst, this.tokens + ((now - this.refilledAt) / 1000) * t.rate);
    this.refilledAt = now;
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }

  private async serve(req: IncomingMessage, res: ServerResponse) {
    this.requests.total++;
    const url = new URL(req.url ?? '/', 'http://localhost');
    const stagePrefix = `/${this.opts.stage}`;
    if (url.pathname !== stagePrefix && !url.pathname.startsWith(`${stagePrefix}/`)) {
      this.fail(req, res, 403, 'Forbidden', `no stage in ${url.pathname}`);
      return;
    }
    const path = url.pathname.slice(stagePrefix.length) || '/';
    const method = req.method ?? 'GET';
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const c of req) {
      size += (c as Buffer).length;
      if (size > MAX_REQUEST_BYTES) {
        this.fail(req, res, 413, 'Request Too Long', `request body over ${MAX_REQUEST_BYTES} bytes`);
        return;
      }
      chunks.push(c as Buffer);
    }
    if (!this.take()) {
      this.requests.throttled++;
      this.fail(req, res, 429, 'Too Many Requests', 'stage throttling');
      return;
    }
    const match = route(this.opts.resources, path);
    const integration = match?.resource.methods.get(method) ?? match?.resource.methods.get('ANY');
    if (!match || !integration) {
      this.fail(req, res, 403, 'Missing Authentication Token', `no method ${method} on ${match?.resource.path ?? path}`);
      return;
    }
    const body = Buffer.concat(chunks);
    const event = this.event(req, url, path, method, match, body);
    const eventBytes = Buffer.byteLength(JSON.stringify(event));
    if (eventBytes > MAX_LAMBDA_PAYLOAD_BYTES) {
      this.fail(req, res, 413, 'Request Too Long', `the Lambda event is ${eventBytes} bytes, over Lambda's ${MAX_LAMBDA_PAYLOAD_BYTES}-byte request payload limit`);
      return;
    }
    if (integration.http) await this.proxy(req, res, integration, integration.http, event as ReturnType<RestApiGateway['event']>);
    else if (integration.streaming) await this.stream(req, res, integration, event);
    else await this.buffered(req, res, integration, event);
  }

  private event(req: IncomingMessage, url: URL, path: string, method: string, match: Match, body: Buffer) {
    const headers: Record<string, string> = {};
    const multiValueHeaders: Record<string, string[]> = {};
    for (let i = 0; i < req.rawHeaders.length; i += 2) {
      const [k, v] = [req.rawHeaders[i], req.rawHeaders[i + 1]];
      headers[k] = v;
      (multiValueHeaders[k] ??= []).push(v);
    }
    const query: Record<string, string> = {};
    const multiQuery: Record<string, string[]> = {};
    for (const [k, v] of url.searchParams) {
      query[k] = v;
      (multiQuery[k] ??= []).push(v);
    }
    const hasQuery = Object.keys(query).length > 0;
    const binary = isBinaryMediaType(this.opts.binaryMediaTypes ?? [], req.headers['content-type']);
    return {
      resource: match.resource.path,
      path,
      httpMethod: method,
      headers,
      multiValueHeaders,
      queryStringParameters: hasQuery ? query : null,
      multiValueQueryStringParameters: hasQuery ? multiQuery : null,
      pathParameters: Object.keys(match.pathParameters).length ? match.pathParameters : null,
      stageVariables: null,
      requestContext: {
        resourceId: match.resource.id,
        resourcePath: match.resource.path,
        httpMethod: method,
        path: `/${this.opts.stage}${path}`,
        stage: this.opts.stage,
        requestId: randomUUID(),
        extendedRequestId: randomUUID(),
        accountId: this.opts.account,
        apiId: this.opts.restApiId,
        domainName: String(req.headers.host ?? 'localhost'),
        protocol: 'HTTP/1.1',
        requestTime: new Date().toUTCString(),
        requestTimeEpoch: Date.now(),
        identity: { sourceIp: req.socket.remoteAddress?.replace(/^::ffff:/, '') ?? '127.0.0.1', userAgent: String(req.headers['user-agent'] ?? '') },
      },
      body: body.length ? (binary ? body.toString('base64') : body.toString('utf8')) : null,
      isBase64Encoded: body.length > 0 && binary,
    };
  }

  private async buffered(req: IncomingMessage, res: ServerResponse, integration: Integration, event: unknown) {
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), integration.timeoutMs)));
    const result = await Promise.race([integration.invoke(event), timedOut]);
    clearTimeout(timer);
    if (result === 'timeout') {
      this.fail(req, res, 504, 'Endpoint request timed out', `${integration.functionName} took longer than the integration's ${integration.timeoutMs} ms`);
      return;
    }
    if (!result.ok) {
      this.fail(req, res, result.kind === 'throttled' ? 429 : 502, result.kind === 'throttled' ? 'Too Many Requests' : 'Internal server error', `${integration.functionName}: ${result.kind}: ${result.error.errorType}: ${result.error.errorMessage}`);
      return;
    }
    const payloadBytes = Buffer.byteLength(JSON.stringify(result.value));
    if (payloadBytes > MAX_LAMBDA_PAYLOAD_BYTES) {
      this.fail(req, res, 502, 'Internal server error', `${integration.functionName}: response payload of ${payloadBytes} bytes exceeds Lambda's ${MAX_LAMBDA_PAYLOAD_BYTES}-byte limit`);
      return;
    }
    const out = result.value as { statusCode?: unknown; headers?: Record<string, string>; multiValueHeaders?: Record<string, string[]>; body?: unknown; isBase64Encoded?: boolean } | null;
    if (!out || typeof out.statusCode !== 'number') {
      this.fail(req, res, 502, 'Internal server error', `${integration.functionName}: malformed Lambda proxy response`);
      return;
    }
    const headers: Record<string, string | string[]> = {};
    for (const [k, v] of Object.entries(out.headers ?? {})) headers[k] = String(v);
    for (const [k, v] of Object.entries(out.multiValueHeaders ?? {})) headers[k] = v.map(String);
    // Bytes only where the client's first Accept value is a binary media type; else the base64 text.
    const accept = req.headers.accept?.split(',')[0];
    const types = this.opts.binaryMediaTypes ?? [];
    const toBytes = out.isBase64Encoded === true && (accept === undefined ? types.includes('*/*') : isBinaryMediaType(types, accept));
    const body = typeof out.body === 'string' ? Buffer.from(out.body, toBytes ? 'base64' : 'utf8') : Buffer.alloc(0);
    delete headers['content-length'];
    delete headers['transfer-encoding'];
    res.writeHead(out.statusCode, { ...headers, 'content-length': String(body.length) });
    res.end(body);
  }

  private async stream(req: IncomingMessage, res: ServerResponse, integration: Integration, event: unknown) {
    const abort = new AbortController();
    res.on('close', () => abort.abort());
    let started = false;
    const sink: StreamSink = {
      meta: (meta) => {
        if (started || res.destroyed) return;
        started = true;
        const headers: Record<string, string | string[]> = { ...(meta.headers ?? {}) };
        if (meta.cookies?.length) headers['set-cookie'] = meta.cookies;
        delete headers['content-length'];
        res.writeHead(meta.statusCode ?? 200, headers);
        res.flushHeaders();
      },
      chunk: (data) => {
        if (!res.destroyed) res.write(data);
      },
      end: () => {
        if (started && !res.writableEnded) res.end();
      },
    };
    const timer = setTimeout(() => {
      if (!res.writableEnded) res.end();
    }, integration.timeoutMs);
    const result = await integration.invokeStream(event, sink, abort.signal);
    clearTimeout(timer);
    if (!started) {
      if (!result.ok) this.fail(req, res, 502, 'Internal server error', `${integration.functionName}: ${result.kind}: ${result.error.errorType}: ${result.error.errorMessage}`);
      else {
        res.writeHead(200).end();
      }
      return;
    }
    if (!res.writableEnded) res.end();
  }

  /** An `HTTP_PROXY` integration: the request mapped onto the integration's URI, the response passed back. */
  private async proxy(req: IncomingMessage, res: ServerResponse, integration: Integration, http: HttpProxyIntegration, event: ReturnType<RestApiGateway['event']>) {
    const pathParams: Record<string, string> = {};
    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries(req.headers)) if (v !== undefined && !HOP_BY_HOP.has(k)) headers[k] = Array.isArray(v) ? v.join(', ') : v;
    const query = new URLSearchParams(event.multiValueQueryStringParameters ? Object.entries(event.multiValueQueryStringParameters).flatMap(([k, vs]) => vs.map((v): [string, string] => [k, v])) : []);
    for (const [to, from] of Object.entries(http.requestParameters)) {
      const value = from.startsWith("'") ? from.slice(1, -1)
        : from.startsWith('method.request.path.') ? event.pathParameters?.[from.slice('method.request.path.'.length)]
        : from.startsWith('method.request.header.') ? req.headers[from.slice('method.request.header.'.length).toLowerCase()]?.toString()
        : from.startsWith('method.request.querystring.') ? event.queryStringParameters?.[from.slice('method.request.querystring.'.length)]
        : from === 'context.identity.sourceIp' ? event.requestContext.identity.sourceIp
        : from === 'context.requestId' ? event.requestContext.requestId
        : undefined;
      if (value === undefined) {
        if (from.startsWith('method.request.') || from.startsWith("'")) continue;
        this.fail(req, res, 500, 'Internal server error', `rehearsal: the mapping ${to} = ${from} is not emulated`);
        return;
      }
      const m = to.match(/^integration\.request\.(path|header|querystring)\.(.+)$/);
      if (!m) {
        this.fail(req, res, 500, 'Internal server error', `rehearsal: the mapping target ${to} is not emulated`);
        return;
      }
      if (m[1] === 'path') pathParams[m[2]] = value;
      else if (m[1] === 'header') {
        for (const k of Object.keys(headers)) if (k.toLowerCase() === m[2].toLowerCase()) delete headers[k];
        headers[m[2]] = value;
      } else query.set(m[2], value);
    }
    const target = new URL(http.uri.replace(/\{([^}]+)\}/g, (_, name: string) => encodeURIComponent(pathParams[name] ?? `{${name}}`)));
    const qs = query.toString();
    const upstreamPath = `${target.pathname}${qs ? `?${qs}` : ''}`;
    let socket: Socket;
    try {
      socket = await http.connect(target.hostname, Number(target.port || (target.protocol === 'https:' ? 443 : 80)));
    } catch (err) {
      this.fail(req, res, 500, 'Internal server error', `${integration.functionName}: cannot reach ${target.host}: ${(err as Error).message}`);
      return;
    }
    headers.host = target.host;
    await new Promise<void>((resolve) => {
      const upstream = httpRequest({ method: http.httpMethod, path: upstreamPath, headers, createConnection: () => socket }, (up) => {
        const out: Record<string, string | string[]> = {};
        for (const [k, v] of Object.entries(up.headers)) if (v !== undefined && !HOP_BY_HOP.has(k)) out[k] = v;
        if (!integration.streaming) delete out['content-length'];
        res.writeHead(up.statusCode ?? 502, out);
        res.flushHeaders();
        up.on('data', (c: Buffer) => res.write(c));
        up.once('end', () => {
          res.end();
          resolve();
        });
        up.once('error', () => {
          res.destroy();
          resolve();
        });
      });
      // The integration's timeout ends the response (API Gateway cuts a streamed one there).
      const timer = setTimeout(() => {
        upstream.destroy();
        if (!res.headersSent) this.fail(req, res, 504, 'Endpoint request timed out', `${integration.functionName} took longer than the integration's ${integration.timeoutMs} ms`);
        else res.end();
        resolve();
      }, integration.timeoutMs);
      upstream.once('close', () => clearTimeout(timer));
      res.once('close', () => upstream.destroy());
      upstream.once('error', (err) => {
        clearTimeout(timer);
        if (!res.headersSent) this.fail(req, res, 500, 'Internal server error', `${integration.functionName}: ${err.message}`);
        else res.destroy();
        resolve();
      });
      upstream.end(event.body && !event.isBase64Encoded ? event.body : event.body ? Buffer.from(event.body, 'base64') : undefined);
    });
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve) => {
      if (!this.server) return resolve();
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }
}
