/**
 * The AWS endpoint of the deploy rehearsal: every AWS SDK call made by a rehearsed function
 * (`AWS_ENDPOINT_URL` points here) arrives at this one HTTP server. It tells the caller by the
 * access key id in the request's SigV4 `Authorization` header (each function's environments get
 * their own), asks the authorizer whether the caller's role from the template allows every
 * action the request needs, and answers `AccessDeniedException` the way the service would when
 * it does not. Allowed calls go to the backend of their service: DynamoDB (dynalite or DynamoDB
 * Local) and SQS (a real-protocol emulator) over HTTP, ECS, Secrets Manager, SSM and Lambda to
 * the rehearsal's own emulations.
 */
import { createServer, request as httpRequest, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { s3Request } from './aws-requests.js';
import { sigV4Mismatch } from './sigv4.js';

/** Who is calling: the rehearsal hands each function (and the event source mapping) its own key. */
export interface Caller {
  accessKeyId: string;
  /** The function (or service) that holds the key, for messages. */
  name: string;
  /** The role it runs as (logical id in the template), whose policies decide. */
  roleLogicalId: string;
  roleArn: string;
}

export interface AwsCall {
  caller: Caller;
  /** Signing name from the credential scope: `dynamodb`, `sqs`, `ecs`, `secretsmanager`, `ssm`, `lambda`, ... */
  service: string;
  /** The operation (`PutItem`, `SendMessage`, `Invoke`, ...), from `x-amz-target` or the path. */
  operation: string;
  method: string;
  path: string;
  headers: IncomingMessage['headers'];
  body: Buffer;
  /** The body as JSON, where it is JSON. */
  json?: Record<string, unknown>;
}

export type Authorization = { allowed: true } | { allowed: false; action: string; resource: string; message: string };

export interface Backend {
  handle(call: AwsCall): Promise<{ status: number; headers?: Record<string, string>; body: Buffer | string }>;
}

/** One denied call, as the rehearsal reports it. */
export interface Denial {
  function: string;
  service: string;
  operation: string;
  action: string;
  resource: string;
  message: string;
}

/** Forwards the raw request to an HTTP backend (dynalite, DynamoDB Local, the SQS emulator). */
export function httpForwarder(endpoint: string, rewrite?: (call: AwsCall) => AwsCall): Backend {
  const url = new URL(endpoint);
  return {
    handle(original) {
      const call = rewrite ? rewrite(original) : original;
      return new Promise((resolve, reject) => {
        const headers = { ...call.headers, host: url.host, 'content-length': String(call.body.length) };
        const req = httpRequest(
          { host: url.hostname, port: url.port, method: call.method, path: call.path, headers },
          (res) => {
            const chunks: Buffer[] = [];
            res.on('data', (c: Buffer) => chunks.push(c));
            res.on('end', () => {
              const out: Record<string, string> = {};
              for (const [k, v] of Object.entries(res.headers)) if (v !== undefined && k !== 'content-length' && k !== 'transfer-encoding' && k !== 'connection') out[k] = Array.isArray(v) ? v.join(', ') : v;
              resolve({ status: res.statusCode ?? 500, headers: out, body: Buffer.concat(chunks) });
            });
            res.on('error', reject);
          },
        );
        req.on('error', reject);
        req.end(call.body);
      });
    },
  };
}

/** An AWS JSON-protocol error body with the service's conventions. */
export function jsonError(status: number, type: string, message: string, service: string): { status: number; headers: Record<string, string>; body: string } {
  const typed = service === 'dynamodb' ? `com.amazonaws.dynamodb.v20120810#${type}` : type;
  if (service === 'lambda') {
    return { status, headers: { 'content-type': 'application/json', 'x-amzn-errortype': `${type}:` }, body: JSON.stringify({ Type: 'User', message, Message: message }) };
  }
  return {
    status,
    headers: { 'content-type': 'application/x-amz-json-1.0', 'x-amzn-errortype': `${type}:`, 'x-amzn-query-error': `${type};Sender` },
    body: JSON.stringify({ __type: typed, message, Message: message }),
  };
}

/** An S3 (REST-XML) error: S3's status and code in its XML body; a HEAD answer has no body. */
export function xmlError(status: number, code: string, message: string, method = 'GET'): { status: number; headers: Record<string, string>; body: string } {
  const escape = (t: string) => t.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
  const body = `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${code}</Code><Message>${escape(message)}</Message><RequestId>rehearsal</RequestId></Error>`;
  return { status, headers: { 'content-type': 'application/xml', 'x-amz-request-id': 'rehearsal' }, body: method === 'HEAD' ? '' : body };
}

/** The service's error shape: XML for S3, AWS JSON for the others. */
function serviceError(status: number, type: string, message: string, service: string, method: string) {
  if (service === 's3') return xmlError(status === 400 && type === 'AccessDeniedException' ? 403 : status, type === 'AccessDeniedException' ? 'AccessDenied' : type, message, method);
  return jsonError(status, type, message, service);
}

const CREDENTIAL = /Credential=([^/,\s]+)\/\d{8}\/([^/]+)\/([^/]+)\/aws4_request/;

export interface AwsGatewayOptions {
  callers: Map<string, Caller>;
  backends: Record<string, Backend>;
  authorize(call: AwsCall): Authorization[] | Promise<Authorization[]>;
  /**
   * The secret of a caller's key, when its signatures are to be checked (`sigv4.ts`): a request
   * whose signature does not hold is refused with S3's `SignatureDoesNotMatch` (or the JSON
   * services' `InvalidSignatureException`), as AWS refuses it. Absent (the full rehearsal), only
   * the key id is read.
   */
  secretOf?(accessKeyId: string): string | undefined;
  /** Called for every call (for reports and tests). */
  onCall?(call: AwsCall, outcome: 'allowed' | 'denied' | 'unauthenticated' | 'unsupported'): void;
}

export class AwsGateway {
  private server?: Server;
  readonly denials: Denial[] = [];
  readonly calls = new Map<string, number>();
  /**
   * Secrets Manager and SSM calls by what they name (`SecretId`, `Name`), per caller: who read
   * which secret or parameter (the model key's parameter, the vaults' secrets, the egress CA).
   * Recorded before authorization, so a denied call is here too (and in `denials`).
   */
  readonly named: Array<{ caller: string; action: string; name: string }> = [];

  constructor(private readonly opts: AwsGatewayOptions) {}

  get url(): string {
    const a = this.server?.address() as AddressInfo | null;
    if (!a) throw new Error('the AWS gateway is not listening');
    return `http://127.0.0.1:${a.port}`;
  }

  async start(): Promise<string> {
    this.server = createServer((req, res) => {
      this.serve(req, res).catch((err) => {
        if (!res.headersSent) {
          const e = jsonError(500, 'InternalFailure', `rehearsal gateway: ${(err as Error)?.message ?? err}`, 'unknown');
          res.writeHead(e.status, e.headers).end(e.body);
        } else res.destroy();
      });
    });
    this.server.keepAliveTimeout = 30_000;
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', () => resolve()));
    return this.url;
  }

  private async serve(req: IncomingMessage, res: ServerResponse) {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = Buffer.concat(chunks);
    const auth = req.headers.authorization ?? '';
    const m = auth.match(CREDENTIAL);
    const send = (r: { status: number; headers?: Record<string, string>; body: Buffer | string }) => {
      res.writeHead(r.status, r.headers ?? {});
      res.end(r.body);
    };
    if (!m) {
      send(jsonError(403, 'MissingAuthenticationTokenException', 'Missing Authentication Token', 'unknown'));
      return;
    }
    const [, accessKeyId, , service] = m;
    const caller = this.opts.callers.get(accessKeyId);
    const target = String(req.headers['x-amz-target'] ?? '');
    const path = req.url ?? '/';
    const operation = target ? target.split('.').pop()! : operationFromPath(service, req.method ?? 'GET', path);
    let json: Record<string, unknown> | undefined;
    if (body.length && /json/.test(String(req.headers['content-type'] ?? '')) ) {
      try {
        json = JSON.parse(body.toString('utf8'));
      } catch {
        json = undefined;
      }
    }
    if (!caller) {
      this.opts.onCall?.({ caller: { accessKeyId, name: '?', roleLogicalId: '?', roleArn: '?' }, service, operation, method: req.method ?? 'GET', path, headers: req.headers, body, json }, 'unauthenticated');
      send(serviceError(403, service === 's3' ? 'InvalidAccessKeyId' : 'UnrecognizedClientException', 'The security token included in the request is invalid.', service, req.method ?? 'GET'));
      return;
    }
    const secret = this.opts.secretOf?.(accessKeyId);
    if (secret !== undefined) {
      const why = await sigV4Mismatch({ method: req.method ?? 'GET', url: path, headers: req.headers }, body, secret);
      if (why) {
        this.opts.onCall?.({ caller, service, operation, method: req.method ?? 'GET', path, headers: req.headers, body, json }, 'unauthenticated');
        const code = service === 's3' ? 'SignatureDoesNotMatch' : 'InvalidSignatureException';
        send(serviceError(403, code, `The request signature we calculated does not match the signature you provided (${why}).`, service, req.method ?? 'GET'));
        return;
      }
    }
    const call: AwsCall = { caller, service, operation, method: req.method ?? 'GET', path, headers: req.headers, body, json };
    const key = `${caller.name} ${service}:${operation}`;
    this.calls.set(key, (this.calls.get(key) ?? 0) + 1);
    const named = json?.SecretId ?? json?.Name;
    if ((service === 'secretsmanager' || service === 'ssm') && typeof named === 'string') this.named.push({ caller: caller.name, action: `${service}:${operation}`, name: named });
    const backend = this.opts.backends[service];
    if (!backend) {
      this.opts.onCall?.(call, 'unsupported');
      send(serviceError(400, 'UnknownOperationException', `the rehearsal has no ${service} service (called ${operation} from ${caller.name})`, service, call.method));
      return;
    }
    let decisions: Authorization[];
    try {
      decisions = await this.opts.authorize(call);
    } catch (err) {
      this.opts.onCall?.(call, 'unsupported');
      send(serviceError(400, 'UnknownOperationException', `the rehearsal cannot authorize ${service}:${operation}: ${(err as Error).message}`, service, call.method));
      return;
    }
    const denied = decisions.find((d): d is Extract<Authorization, { allowed: false }> => !d.allowed);
    if (denied) {
      this.denials.push({ function: caller.name, service, operation, action: denied.action, resource: denied.resource, message: denied.message });
      this.opts.onCall?.(call, 'denied');
      send(serviceError(service === 'lambda' ? 403 : 400, 'AccessDeniedException', denied.message, service, call.method));
      return;
    }
    this.opts.onCall?.(call, 'allowed');
    send(await backend.handle(call));
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve) => {
      if (!this.server) return resolve();
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }
}

/** REST-style services: the operation from the method and path. */
function operationFromPath(service: string, method: string, path: string): string {
  if (service === 'lambda' && method === 'POST' && /^\/2015-03-31\/functions\/[^/]+\/invocations/.test(path)) return 'Invoke';
  if (service === 's3') {
    try {
      return s3Request(method, path).operation;
    } catch {
      // Named by method and path below; the authorizer answers it as unsupported.
    }
  }
  return `${method} ${path.split('?')[0]}`;
}
