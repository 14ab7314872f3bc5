/**
 * A minimal S3 client: the eight object calls the blob store makes (s3-blob-store.ts), and nothing
 * else. `@aws-sdk/client-s3` put about 170 KiB (minified) into every bundle that stores blobs, for
 * hundreds of operations Corral never sends; this is a few KiB on top of what the other clients
 * already bring: requests are signed by the SDK's own SigV4 signer (`@smithy/signature-v4`, S3's
 * settings: no double encoding of the path) and sent over the SDK's Node HTTP handler
 * (`@smithy/node-http-handler`, keep-alive agent), as every other AWS client of a function does.
 *
 * Wire shapes (S3 REST, path-style on a custom endpoint, virtual-hosted on AWS's):
 * - a body in memory is signed with its SHA-256; a stream is sent as it is read with
 *   `UNSIGNED-PAYLOAD` (TLS carries its integrity, and the bucket policy refuses plain HTTP);
 * - an error is S3's XML `<Error><Code>`, thrown as an `S3ServiceError` named by that code and
 *   carrying `$metadata.httpStatusCode` as the SDK's errors do; a HEAD answer has no body, so its
 *   error is named by its status (`NotFound`, `Forbidden`, ...).
 * - a request whose body can be sent again (none, or bytes in memory) is retried on a network
 *   error, a 5xx or a throttle, up to `maxAttempts` in all, with jittered backoff; a stream is
 *   sent once.
 */
import { createHash, createHmac, type Hash, type Hmac } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import { Readable } from 'node:stream';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import { SignatureV4 } from '@smithy/signature-v4';
import type { AwsCredentialIdentity, AwsCredentialIdentityProvider, Checksum, HttpRequest, SourceData } from '@smithy/types';

export interface S3ClientOptions {
  /** The bucket's region. @default `AWS_REGION` */
  region?: string | (() => Promise<string>);
  /**
   * Where to send requests, as `AWS_ENDPOINT_URL_S3` / `AWS_ENDPOINT_URL` do for the SDK (the deploy
   * rehearsal's gateway, tests): path-style requests under it. Absent: `https://<bucket>.s3.<region>.amazonaws.com`.
   * @default `AWS_ENDPOINT_URL_S3 ?? AWS_ENDPOINT_URL`
   */
  endpoint?: string;
  /**
   * The credentials, or their provider. The functions pass their DynamoDB client's
   * (`client.config.credentials`): the SDK's default chain, resolved and refreshed once for both.
   */
  credentials: AwsCredentialIdentity | AwsCredentialIdentityProvider;
  /** Attempts for a request that can be sent again (see above). @default 3 */
  maxAttempts?: number;
  /** Milliseconds without a byte on the socket before a request fails. @default 0 (no limit, as the SDK's) */
  requestTimeoutMs?: number;
}

/** An error answer from S3 (or from the network under it, with `$metadata` absent). */
export class S3ServiceError extends Error {
  readonly $metadata: { httpStatusCode: number; requestId?: string };
  constructor(name: string, message: string, status: number, requestId?: string) {
    super(message);
    this.name = name;
    this.$metadata = { httpStatusCode: status, ...(requestId ? { requestId } : {}) };
  }
}

export interface ObjectHead {
  contentLength?: number;
  contentType?: string;
  etag?: string;
}

const bytes = (d: SourceData): Buffer =>
  typeof d === 'string' ? Buffer.from(d, 'utf8') : ArrayBuffer.isView(d) ? Buffer.from(d.buffer, d.byteOffset, d.byteLength) : Buffer.from(d);

/** SHA-256 (and its HMAC) from node:crypto, in the shape the signer takes. */
class Sha256 implements Checksum {
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

/** A path segment as S3 canonicalizes it (RFC 3986 unreserved characters kept, every other byte %XX). */
const encodeSegment = (s: string) => encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);

const RETRY_STATUS = new Set([429, 500, 502, 503, 504]);
const RETRY_CODES = new Set(['SlowDown', 'RequestTimeout', 'InternalError', 'ServiceUnavailable', 'Throttling', 'ThrottlingException']);

/** The text of an XML element (S3's answers carry no nested element of the same name). */
const xmlText = (xml: string, tag: string) => {
  const m = xml.match(new RegExp(`<${tag}>([\\s\\S]*?)</${tag}>`));
  return m ? m[1].replace(/&quot;/g, '"').replace(/&apos;/g, "'").replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&amp;/g, '&') : undefined;
};
const xmlEscape = (t: string) => t.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

const STATUS_NAMES: Record<number, string> = { 301: 'PermanentRedirect', 400: 'BadRequest', 403: 'Forbidden', 404: 'NotFound', 412: 'PreconditionFailed' };

interface Call {
  method: 'GET' | 'HEAD' | 'PUT' | 'POST' | 'DELETE';
  bucket: string;
  key: string;
  query?: Record<string, string>;
  headers?: Record<string, string>;
  body?: Uint8Array | Readable;
}

interface Answer {
  status: number;
  headers: IncomingHttpHeaders;
  body: Readable;
}

const header = (h: IncomingHttpHeaders, name: string) => {
  const v = h[name];
  return Array.isArray(v) ? v[0] : v;
};

function headOf(h: IncomingHttpHeaders): ObjectHead {
  const length = header(h, 'content-length');
  const type = header(h, 'content-type');
  const etag = header(h, 'etag');
  return { ...(length !== undefined ? { contentLength: Number(length) } : {}), ...(type ? { contentType: type } : {}), ...(etag ? { etag } : {}) };
}

async function readText(body: Readable): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of body) chunks.push(Buffer.isBuffer(c) ? c : Buffer.from(c as Uint8Array));
  return Buffer.concat(chunks).toString('utf8');
}

export class S3Client {
  private readonly handler: NodeHttpHandler;
  private readonly signer: SignatureV4;
  private readonly endpoint: URL | undefined;
  private readonly region: () => Promise<string>;
  private readonly maxAttempts: number;

  constructor(opts: S3ClientOptions) {
    const endpoint = opts.endpoint ?? process.env.AWS_ENDPOINT_URL_S3 ?? process.env.AWS_ENDPOINT_URL;
    this.endpoint = endpoint ? new URL(endpoint) : undefined;
    const region = opts.region ?? process.env.AWS_REGION;
    if (!region) throw new Error('S3Client: no region (set AWS_REGION or pass region)');
    this.region = typeof region === 'string' ? () => Promise.resolve(region) : region;
    this.maxAttempts = Math.max(1, opts.maxAttempts ?? 3);
    this.handler = new NodeHttpHandler({ requestTimeout: opts.requestTimeoutMs ?? 0 });
    this.signer = new SignatureV4({ service: 's3', region: this.region, credentials: opts.credentials, sha256: Sha256, uriEscapePath: false, applyChecksum: true });
  }

  /** Closes the kept-alive connections. */
  destroy(): void {
    this.handler.destroy();
  }

  async putObject(p: { bucket: string; key: string; body: Uint8Array | Readable; contentLength: number; contentType?: string }): Promise<{ etag?: string }> {
    const a = await this.send({
      method: 'PUT',
      bucket: p.bucket,
      key: p.key,
      headers: { 'content-length': String(p.contentLength), ...(p.contentType ? { 'content-type': p.contentType } : {}) },
      body: p.body,
    });
    a.body.resume();
    return { etag: header(a.headers, 'etag') };
  }

  /** The object's bytes as they arrive, and its head. */
  async getObject(p: { bucket: string; key: string }): Promise<ObjectHead & { body: Readable }> {
    const a = await this.send({ method: 'GET', bucket: p.bucket, key: p.key });
    return { ...headOf(a.headers), body: a.body };
  }

  async headObject(p: { bucket: string; key: string }): Promise<ObjectHead> {
    const a = await this.send({ method: 'HEAD', bucket: p.bucket, key: p.key });
    a.body.resume();
    return headOf(a.headers);
  }

  async deleteObject(p: { bucket: string; key: string }): Promise<void> {
    (await this.send({ method: 'DELETE', bucket: p.bucket, key: p.key })).body.resume();
  }

  async createMultipartUpload(p: { bucket: string; key: string; contentType?: string }): Promise<{ uploadId: string }> {
    const a = await this.send({ method: 'POST', bucket: p.bucket, key: p.key, query: { uploads: '' }, headers: p.contentType ? { 'content-type': p.contentType } : {} });
    const uploadId = xmlText(await readText(a.body), 'UploadId');
    if (!uploadId) throw new Error('S3 CreateMultipartUpload answered without an UploadId');
    return { uploadId };
  }

  async uploadPart(p: { bucket: string; key: string; uploadId: string; partNumber: number; body: Uint8Array }): Promise<{ etag: string }> {
    const a = await this.send({
      method: 'PUT',
      bucket: p.bucket,
      key: p.key,
      query: { partNumber: String(p.partNumber), uploadId: p.uploadId },
      headers: { 'content-length': String(p.body.byteLength) },
      body: p.body,
    });
    a.body.resume();
    const etag = header(a.headers, 'etag');
    if (!etag) throw new Error(`S3 UploadPart ${p.partNumber} answered without an ETag`);
    return { etag };
  }

  async completeMultipartUpload(p: { bucket: string; key: string; uploadId: string; parts: Array<{ etag: string; partNumber: number }> }): Promise<void> {
    const xml = `<CompleteMultipartUpload xmlns="http://s3.amazonaws.com/doc/2006-03-01/">${p.parts
      .map((x) => `<Part><ETag>${xmlEscape(x.etag)}</ETag><PartNumber>${x.partNumber}</PartNumber></Part>`)
      .join('')}</CompleteMultipartUpload>`;
    const body = Buffer.from(xml, 'utf8');
    const a = await this.send({
      method: 'POST',
      bucket: p.bucket,
      key: p.key,
      query: { uploadId: p.uploadId },
      headers: { 'content-type': 'application/xml', 'content-length': String(body.byteLength) },
      body,
    });
    // S3 may answer 200 and put an error in the body (a failure after the headers went out).
    const text = await readText(a.body);
    if (/<Error>/.test(text)) throw new S3ServiceError(xmlText(text, 'Code') ?? 'InternalError', xmlText(text, 'Message') ?? 'CompleteMultipartUpload failed', a.status, xmlText(text, 'RequestId'));
  }

  async abortMultipartUpload(p: { bucket: string; key: string; uploadId: string }): Promise<void> {
    (await this.send({ method: 'DELETE', bucket: p.bucket, key: p.key, query: { uploadId: p.uploadId } })).body.resume();
  }

  private async send(call: Call): Promise<Answer> {
    const replayable = !(call.body instanceof Readable);
    for (let attempt = 1; ; attempt++) {
      try {
        const a = await this.attempt(call);
        if (a.status < 300) return a;
        throw await this.errorOf(call.method, a);
      } catch (err) {
        if (!replayable || attempt >= this.maxAttempts || !retryable(err)) throw err;
        await new Promise((r) => setTimeout(r, Math.random() * Math.min(20_000, 100 * 2 ** attempt)));
      }
    }
  }

  private async attempt(call: Call): Promise<Answer> {
    const region = await this.region();
    const path = `/${call.key.split('/').map(encodeSegment).join('/')}`;
    const base = this.endpoint;
    const hostname = base ? base.hostname : `${call.bucket}.s3.${region}.amazonaws.com`;
    const port = base?.port ? Number(base.port) : undefined;
    const prefix = base ? `${base.pathname.replace(/\/$/, '')}/${encodeSegment(call.bucket)}` : '';
    const request: HttpRequest = {
      method: call.method,
      protocol: base ? base.protocol : 'https:',
      hostname,
      ...(port ? { port } : {}),
      path: `${prefix}${path}`,
      query: call.query ?? {},
      headers: { host: port ? `${hostname}:${port}` : hostname, ...call.headers },
      body: call.body,
    };
    if (call.body instanceof Readable) request.headers['x-amz-content-sha256'] = 'UNSIGNED-PAYLOAD';
    const signed = (await this.signer.sign(request)) as HttpRequest;
    // A stream that fails mid-request aborts the request (piped, it would leave it waiting).
    const abort = new AbortController();
    const onError = (err: Error) => abort.abort(err);
    if (call.body instanceof Readable) call.body.once('error', onError);
    try {
      const { response } = await this.handler.handle(signed as never, { abortSignal: abort.signal });
      return { status: response.statusCode, headers: response.headers as IncomingHttpHeaders, body: response.body as Readable };
    } catch (err) {
      throw abort.signal.aborted && abort.signal.reason instanceof Error ? abort.signal.reason : err;
    } finally {
      if (call.body instanceof Readable) call.body.off('error', onError);
    }
  }

  private async errorOf(method: string, a: Answer): Promise<S3ServiceError> {
    const text = method === 'HEAD' ? '' : await readText(a.body).catch(() => '');
    if (method === 'HEAD') a.body.resume();
    const code = xmlText(text, 'Code') ?? STATUS_NAMES[a.status] ?? (a.status >= 500 ? 'InternalError' : `Http${a.status}`);
    const requestId = xmlText(text, 'RequestId') ?? header(a.headers, 'x-amz-request-id');
    return new S3ServiceError(code, xmlText(text, 'Message') ?? `S3 answered ${a.status} to ${method}`, a.status, requestId);
  }
}

function retryable(err: unknown): boolean {
  if (err instanceof S3ServiceError) return RETRY_STATUS.has(err.$metadata.httpStatusCode) || RETRY_CODES.has(err.name);
  const code = (err as { code?: string })?.code;
  return ['ECONNRESET', 'ECONNREFUSED', 'EPIPE', 'ETIMEDOUT', 'ENOTFOUND', 'EAI_AGAIN'].includes(code ?? '') || (err as Error)?.name === 'TimeoutError';
}
