/**
 * Checks a request's SigV4 signature the way AWS does: the canonical request is rebuilt from what
 * arrived (method, path as sent, query, the headers named in `SignedHeaders`, the payload hash) and
 * signed again with the caller's secret by the SDK's own signer (`@smithy/signature-v4`) at the
 * request's `x-amz-date`; the two signatures must be equal. A body whose hash was signed
 * (`x-amz-content-sha256: <hex>`) must hash to it. The rehearsal's gateway runs this for callers
 * whose secret it is given (the S3 client's tests), so a request AWS would refuse with
 * `SignatureDoesNotMatch` is refused here too.
 */
import { createHash, createHmac } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import { SignatureV4 } from '@smithy/signature-v4';
import type { HttpRequest, SourceData } from '@smithy/types';

const AUTH = /^AWS4-HMAC-SHA256 Credential=([^/]+)\/(\d{8})\/([^/]+)\/([^/]+)\/aws4_request, ?SignedHeaders=([^,]+), ?Signature=([0-9a-f]{64})$/;

const bytes = (d: SourceData): Buffer =>
  typeof d === 'string' ? Buffer.from(d, 'utf8') : ArrayBuffer.isView(d) ? Buffer.from(d.buffer, d.byteOffset, d.byteLength) : Buffer.from(d);

class Sha256 {
  private readonly h;
  constructor(secret?: SourceData) {
    this.h = secret === undefined ? createHash('sha256') : createHmac('sha256', bytes(secret));
  }
  update(d: SourceData) {
    this.h.update(bytes(d));
  }
  digest() {
    return Promise.resolve(new Uint8Array(this.h.digest()));
  }
}

/** Why the signature does not hold, or undefined when it does. */
export async function sigV4Mismatch(req: { method: string; url: string; headers: IncomingHttpHeaders }, body: Buffer, secretAccessKey: string): Promise<string | undefined> {
  const m = String(req.headers.authorization ?? '').match(AUTH);
  if (!m) return 'no AWS4-HMAC-SHA256 Authorization header';
  const [, accessKeyId, day, region, service, signedHeaders, signature] = m;
  const amzDate = String(req.headers['x-amz-date'] ?? '');
  const date = amzDate.match(/^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/);
  if (!date || amzDate.slice(0, 8) !== day) return 'x-amz-date missing or not the credential scope day';
  const payloadHash = req.headers['x-amz-content-sha256'];
  if (typeof payloadHash === 'string' && /^[0-9a-f]{64}$/.test(payloadHash) && createHash('sha256').update(body).digest('hex') !== payloadHash) {
    return 'the body does not hash to x-amz-content-sha256';
  }
  const url = new URL(req.url, 'http://signed');
  const query: Record<string, string | string[]> = {};
  for (const [k, v] of url.searchParams) {
    const prev = query[k];
    query[k] = prev === undefined ? v : Array.isArray(prev) ? [...prev, v] : [prev, v];
  }
  const headers: Record<string, string> = {};
  for (const name of signedHeaders.split(';')) {
    const v = req.headers[name];
    if (v === undefined) return `signed header ${name} is missing`;
    headers[name] = Array.isArray(v) ? v.join(',') : v;
  }
  const [, y, mo, d, h, mi, s] = date;
  const signer = new SignatureV4({ service, region, credentials: { accessKeyId, secretAccessKey }, sha256: Sha256, uriEscapePath: service !== 's3', applyChecksum: false });
  const request: HttpRequest = { method: req.method, protocol: 'http:', hostname: 'signed', path: url.pathname, query, headers, body };
  const signed = await signer.sign(request, { signingDate: new Date(Date.UTC(+y, +mo - 1, +d, +h, +mi, +s)), unsignableHeaders: new Set(), signableHeaders: new Set(signedHeaders.split(';')) });
  const again = String(signed.headers.authorization ?? signed.headers.Authorization ?? '').match(/Signature=([0-9a-f]{64})/)?.[1];
  return again === signature ? undefined : 'the signature does not match the request';
}
