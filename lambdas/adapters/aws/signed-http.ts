/**
 * One signed AWS request at a time, for the adapters that call a service through a few plain
 * requests instead of its SDK client (s3-client.ts, ssm-parameter.ts, lambda-invoke.ts): a full SDK
 * client costs 70-170 KiB of bundle and its import time for one or two operations. Requests are
 * signed by the SDK's own SigV4 signer (`@smithy/signature-v4`) and sent over its Node HTTP handler
 * (`@smithy/node-http-handler`, keep-alive agent), as the SDK clients of the same function do.
 *
 * The endpoint is the SDK's: `AWS_ENDPOINT_URL_<SERVICE>`, then `AWS_ENDPOINT_URL` (the deploy
 * rehearsal, tests), else `https://<service>.<region>.amazonaws.com`. A request whose body can be
 * sent again (none, or bytes in memory) is retried on a network error, a 5xx or a throttle, up to
 * `maxAttempts` in all, with jittered exponential backoff; a stream is sent once.
 */
import { createHash, createHmac, type Hash, type Hmac } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import { Readable } from 'node:stream';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import { SignatureV4 } from '@smithy/signature-v4';
import type { AwsCredentialIdentity, AwsCredentialIdentityProvider, Checksum, HttpRequest, SourceData } from '@smithy/types';

export type Credentials = AwsCredentialIdentity | AwsCredentialIdentityProvider;

export interface SignedHttpOptions {
  /** Signing name (`s3`, `ssm`, `lambda`) and endpoint prefix. */
  service: string;
  /** The region. @default `AWS_REGION` */
  region?: string | (() => Promise<string>);
  /** Where to send requests. @default `AWS_ENDPOINT_URL_<SERVICE> ?? AWS_ENDPOINT_URL` */
  endpoint?: string;
  /**
   * The credentials, or their provider. The functions pass an SDK client's
   * (`client.config.credentials`: the default chain, resolved and refreshed once for all clients);
   * absent, the function's own from `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` / `AWS_SESSION_TOKEN`,
   * which is where Lambda puts them.
   */
  credentials?: Credentials;
  /** Attempts for a request that can be sent again. @default 3 */
  maxAttempts?: number;
  /** Milliseconds without a byte on the socket before a request fails. @default 0 (no limit, as the SDK's) */
  requestTimeoutMs?: number;
}

/** An error answer from an AWS service, shaped as the SDK's (`name` is the error code). */
export class AwsServiceError extends Error {
  readonly $metadata: { httpStatusCode: number; requestId?: string };
  constructor(name: string, message: string, status: number, requestId?: string) {
    super(message);
    this.name = name;
    this.$metadata = { httpStatusCode: status, ...(requestId ? { requestId } : {}) };
  }
}

export interface SignedRequest {
  method: 'GET' | 'HEAD' | 'PUT' | 'POST' | 'DELETE';
  /** Already percent-encoded as it is to be signed and sent (S3 paths are not encoded again). */
  path: string;
  /** Host name on AWS's endpoint (default `<service>.<region>.amazonaws.com`). */
  awsHost?: (region: string) => string;
  /** Path prefix under a custom endpoint (S3's bucket, path-style). */
  endpointPrefix?: string;
  query?: Record<string, string>;
  headers?: Record<string, string>;
  body?: Uint8Array | Readable;
}

export interface SignedAnswer {
  status: number;
  headers: IncomingHttpHeaders;
  body: Readable;
}

const bytes = (d: SourceData): Buffer =>
  typeof d === 'string' ? Buffer.from(d, 'utf8') : ArrayBuffer.isView(d) ? Buffer.from(d.buffer, d.byteOffset, d.byteLength) : Buffer.from(d);

/** SHA-256 (and its HMAC) from node:crypto, in the shape the signer takes. */
export class Sha256 implements Checksum {
  private h: Hash | Hmac;
  private readonly secret: Buffer | undefined;
  constructor(secret?: SourceData) {
    this.secret = secret === undefined ? undefined : bytes(secret);
    this.h = this.secret ? createHmac('sha256', this.secret) : createHash('sha256');
  }
  update(data: SourceData): void {
    this.h.update(bytes(data));
  }
  digest(): Promise<Uint8Array> {
    return Promise.resolve(this.h.digest());
  }
  reset(): void {
    this.h = this.secret ? createHmac('sha256', this.secret) : createHash('sha256');
  }
}

/** The function's own credentials, from the environment Lambda gives it. */
export const fromEnv: AwsCredentialIdentityProvider = async () => {
  const accessKeyId = process.env.AWS_ACCESS_KEY_ID;
  const secretAccessKey = process.env.AWS_SECRET_ACCESS_KEY;
  if (!accessKeyId || !secretAccessKey) throw new Error('no AWS credentials: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not set');
  const sessionToken = process.env.AWS_SESSION_TOKEN;
  return { accessKeyId, secretAccessKey, ...(sessionToken ? { sessionToken } : {}) };
};

const RETRY_STATUS = new Set([429, 500, 502, 503, 504]);
const RETRY_CODES = new Set(['SlowDown', 'RequestTimeout', 'InternalError', 'ServiceUnavailable', 'Throttling', 'ThrottlingException', 'TooManyRequestsException']);
const RETRY_NETWORK = new Set(['ECONNRESET', 'ECONNREFUSED', 'EPIPE', 'ETIMEDOUT', 'EAI_AGAIN']);

function retryable(err: unknown): boolean {
  if (err instanceof AwsServiceError) return RETRY_STATUS.has(err.$metadata.httpStatusCode) || RETRY_CODES.has(err.name);
  return RETRY_NETWORK.has((err as { code?: string })?.code ?? '') || (err as Error)?.name === 'TimeoutError';
}

export const headerOf = (h: IncomingHttpHeaders, name: string) => {
  const v = h[name];
  return Array.isArray(v) ? v[0] : v;
};

export async function readBody(body: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of body) chunks.push(Buffer.isBuffer(c) ? c : Buffer.from(c as Uint8Array));
  return Buffer.concat(chunks);
}

export class SignedHttp {
  private readonly handler: NodeHttpHandler;
  private readonly signer: SignatureV4;
  private readonly endpoint: URL | undefined;
  private readonly region: () => Promise<string>;
  private readonly maxAttempts: number;

  constructor(private readonly opts: SignedHttpOptions) {
    const endpoint = opts.endpoint ?? process.env[`AWS_ENDPOINT_URL_${opts.service.toUpperCase()}`] ?? process.env.AWS_ENDPOINT_URL;
    this.endpoint = endpoint ? new URL(endpoint) : undefined;
    const region = opts.region ?? process.env.AWS_REGION;
    if (!region) throw new Error(`${opts.service}: no region (set AWS_REGION or pass region)`);
    this.region = typeof region === 'string' ? () => Promise.resolve(region) : region;
    this.maxAttempts = Math.max(1, opts.maxAttempts ?? 3);
    this.handler = new NodeHttpHandler({ requestTimeout: opts.requestTimeoutMs ?? 0 });
    this.signer = new SignatureV4({
      service: opts.service,
      region: this.region,
      credentials: opts.credentials ?? fromEnv,
      sha256: Sha256,
      // S3 signs the path as sent; every other service signs it encoded once more.
      uriEscapePath: opts.service !== 's3',
      applyChecksum: opts.service === 's3',
    });
  }

  /** Closes the kept-alive connections. */
  destroy(): void {
    this.handler.destroy();
  }

  /**
   * Sends the request, retried as the module says; an answer of 300 or more becomes the error
   * `errorOf` builds from it.
   */
  async send(req: SignedRequest, errorOf: (a: SignedAnswer) => Promise<Error>): Promise<SignedAnswer> {
    const replayable = !(req.body instanceof Readable);
    for (let attempt = 1; ; attempt++) {
      try {
        const a = await this.attempt(req);
        if (a.status < 300) return a;
        throw await errorOf(a);
      } catch (err) {
        if (!replayable || attempt >= this.maxAttempts || !retryable(err)) throw err;
        await new Promise((r) => setTimeout(r, Math.random() * Math.min(20_000, 100 * 2 ** attempt)));
      }
    }
  }

  private async attempt(req: SignedRequest): Promise<SignedAnswer> {
    const region = await this.region();
    const base = this.endpoint;
    const hostname = base ? base.hostname : (req.awsHost?.(region) ?? `${this.opts.service}.${region}.amazonaws.com`);
    const port = base?.port ? Number(base.port) : undefined;
    const prefix = base ? `${base.pathname.replace(/\/$/, '')}${req.endpointPrefix ?? ''}` : '';
    const request: HttpRequest = {
      method: req.method,
      protocol: base ? base.protocol : 'https:',
      hostname,
      ...(port ? { port } : {}),
      path: `${prefix}${req.path}`,
      query: req.query ?? {},
      headers: { host: port ? `${hostname}:${port}` : hostname, ...req.headers },
      body: req.body,
    };
    const stream = req.body instanceof Readable ? req.body : undefined;
    if (stream) request.headers['x-amz-content-sha256'] = 'UNSIGNED-PAYLOAD';
    const signed = (await this.signer.sign(request)) as HttpRequest;
    // A stream that fails mid-request aborts the request (piped, it would leave it waiting).
    const abort = new AbortController();
    const onError = (err: Error) => abort.abort(err);
    stream?.once('error', onError);
    try {
      const { response } = await this.handler.handle(signed as never, { abortSignal: abort.signal });
      return { status: response.statusCode, headers: response.headers as IncomingHttpHeaders, body: response.body as Readable };
    } catch (err) {
      throw abort.signal.aborted && abort.signal.reason instanceof Error ? abort.signal.reason : err;
    } finally {
      stream?.off('error', onError);
    }
  }
}

/** The error of an AWS JSON protocol answer (`{"__type": ..., "message": ...}`, or the `x-amzn-errortype` header). */
export async function jsonError(a: SignedAnswer): Promise<AwsServiceError> {
  const text = (await readBody(a.body).catch(() => Buffer.alloc(0))).toString('utf8');
  let parsed: { __type?: string; code?: string; message?: string; Message?: string } = {};
  try {
    parsed = JSON.parse(text) as typeof parsed;
  } catch {
    parsed = {};
  }
  const type = (headerOf(a.headers, 'x-amzn-errortype') ?? parsed.__type ?? parsed.code ?? `Http${a.status}`).split(':')[0].split('#').pop()!;
  return new AwsServiceError(type, parsed.message ?? parsed.Message ?? `answered ${a.status}`, a.status, headerOf(a.headers, 'x-amzn-requestid'));
}
