/**
 * A minimal S3 client: the eight object calls the blob store makes (s3-blob-store.ts), and nothing
 * else. `@aws-sdk/client-s3` put about 170 KiB (minified) into every bundle that stores blobs, for
 * hundreds of operations Corral never sends; this is a few KiB on top of what the other clients
 * already bring: requests go through signed-http.ts (the SDK's SigV4 signer with S3's settings, its
 * Node HTTP handler, retries of what can be sent again).
 *
 * Wire shapes (S3 REST, path-style on a custom endpoint, virtual-hosted on AWS's):
 * - a body in memory is signed with its SHA-256; a stream is sent as it is read with
 *   `UNSIGNED-PAYLOAD` (TLS carries its integrity, and the bucket policy refuses plain HTTP);
 * - an error is S3's XML `<Error><Code>`, thrown as an `S3ServiceError` named by that code and
 *   carrying `$metadata.httpStatusCode` as the SDK's errors do; a HEAD answer has no body, so its
 *   error is named by its status (`NotFound`, `Forbidden`, ...).
 */
import type { IncomingHttpHeaders } from 'node:http';
import type { Readable } from 'node:stream';
import { AwsServiceError, headerOf as header, readBody, SignedHttp, type Credentials, type SignedAnswer } from './signed-http.js';

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
  credentials?: Credentials;
  /** Attempts for a request that can be sent again (signed-http.ts). @default 3 */
  maxAttempts?: number;
  /** Milliseconds without a byte on the socket before a request fails. @default 0 (no limit, as the SDK's) */
  requestTimeoutMs?: number;
}

/** An error answer from S3 (`name` is S3's error code). */
export { AwsServiceError as S3ServiceError };

export interface ObjectHead {
  contentLength?: number;
  contentType?: string;
  etag?: string;
}

/** A path segment as S3 canonicalizes it (RFC 3986 unreserved characters kept, every other byte %XX). */
const encodeSegment = (s: string) => encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);


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

function headOf(h: IncomingHttpHeaders): ObjectHead {
  const length = header(h, 'content-length');
  const type = header(h, 'content-type');
  const etag = header(h, 'etag');
  return { ...(length !== undefined ? { contentLength: Number(length) } : {}), ...(type ? { contentType: type } : {}), ...(etag ? { etag } : {}) };
}

const readText = async (body: Readable) => (await readBody(body)).toString('utf8');

export class S3Client {
  private readonly http: SignedHttp;

  constructor(opts: S3ClientOptions = {}) {
    this.http = new SignedHttp({ service: 's3', ...opts });
  }

  /** Closes the kept-alive connections. */
  destroy(): void {
    this.http.destroy();
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
    if (/<Error>/.test(text)) throw new AwsServiceError(xmlText(text, 'Code') ?? 'InternalError', xmlText(text, 'Message') ?? 'CompleteMultipartUpload failed', a.status, xmlText(text, 'RequestId'));
  }

  async abortMultipartUpload(p: { bucket: string; key: string; uploadId: string }): Promise<void> {
    (await this.send({ method: 'DELETE', bucket: p.bucket, key: p.key, query: { uploadId: p.uploadId } })).body.resume();
  }

  private send(call: Call): Promise<SignedAnswer> {
    return this.http.send(
      {
        method: call.method,
        // Virtual-hosted on AWS's endpoint, path-style under a custom one.
        awsHost: (region) => `${call.bucket}.s3.${region}.amazonaws.com`,
        endpointPrefix: `/${encodeSegment(call.bucket)}`,
        path: `/${call.key.split('/').map(encodeSegment).join('/')}`,
        query: call.query,
        headers: call.headers,
        body: call.body,
      },
      (a) => this.errorOf(call.method, a),
    );
  }

  private async errorOf(method: string, a: SignedAnswer): Promise<AwsServiceError> {
    const text = method === 'HEAD' ? '' : await readText(a.body).catch(() => '');
    if (method === 'HEAD') a.body.resume();
    const code = xmlText(text, 'Code') ?? STATUS_NAMES[a.status] ?? (a.status >= 500 ? 'InternalError' : `Http${a.status}`);
    const requestId = xmlText(text, 'RequestId') ?? header(a.headers, 'x-amz-request-id');
    return new AwsServiceError(code, xmlText(text, 'Message') ?? `S3 answered ${a.status} to ${method}`, a.status, requestId);
  }
}
