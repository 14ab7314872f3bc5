/**
 * S3 for the deploy rehearsal: the template's buckets, their objects kept as files in a directory.
 * It answers the object operations Corral's blob store sends (PutObject, GetObject, HeadObject,
 * DeleteObject and the multipart upload's Create/UploadPart/Complete/Abort) in S3's REST-XML wire
 * shapes, after the gateway has checked them against the caller's role (`aws-requests.ts` maps
 * each to its IAM action on `arn:aws:s3:::<bucket>/<key>`).
 *
 * Kept from S3 because the adapter depends on it: `aws-chunked` bodies (what the SDK sends for a
 * stream of known length) are decoded; a part other than the last must be at least 5 MiB; a read
 * of a missing key is `404 NoSuchKey` only for a caller that may `s3:ListBucket` the bucket and
 * `403 AccessDenied` otherwise, as S3 answers, so a role without ListBucket is caught here rather
 * than in production. Not emulated: versions, ranges, listing, copies, ACLs.
 */
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { AwsCall, Backend } from './aws-gateway.js';
import { xmlError } from './aws-gateway.js';
import { s3Request } from './aws-requests.js';

type Reply = Awaited<ReturnType<Backend['handle']>>;

export interface S3EmulatorOptions {
  /** Where the objects go (one directory per bucket). */
  dir: string;
  /** The template's buckets by physical name. */
  buckets: string[];
  /** May the caller of `call` list the bucket (`s3:ListBucket` on `arn:aws:s3:::<bucket>`)? Decides 404 against 403 for a missing key. */
  mayList(call: AwsCall, bucket: string): boolean | Promise<boolean>;
}

interface ObjectMeta {
  contentType: string;
  etag: string;
  size: number;
  lastModified: string;
}

const MIN_PART = 5 * 1024 * 1024;
const xml = (body: string): Reply => ({ status: 200, headers: { 'content-type': 'application/xml' }, body: `<?xml version="1.0" encoding="UTF-8"?>\n${body}` });
const md5 = (b: Buffer | string) => createHash('md5').update(b).digest('hex');
const esc = (t: string) => t.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/** The payload of an `aws-chunked` body: `<hex size>[;chunk-signature=...]\r\n<bytes>\r\n`..., then `0` and trailers. */
export function decodeAwsChunked(body: Buffer): Buffer {
  const out: Buffer[] = [];
  let at = 0;
  for (;;) {
    const eol = body.indexOf('\r\n', at);
    if (eol < 0) throw new Error('aws-chunked body: a chunk header without its line end');
    const size = parseInt(body.subarray(at, eol).toString('latin1').split(';')[0], 16);
    if (!Number.isFinite(size)) throw new Error('aws-chunked body: a chunk size that is not hex');
    if (size === 0) return Buffer.concat(out);
    out.push(body.subarray(eol + 2, eol + 2 + size));
    at = eol + 2 + size + 2;
  }
}

export class S3Emulator implements Backend {
  private readonly buckets: Set<string>;

  constructor(private readonly opts: S3EmulatorOptions) {
    this.buckets = new Set(opts.buckets);
    for (const b of opts.buckets) mkdirSync(join(opts.dir, b, 'objects'), { recursive: true });
  }

  private objectPath(bucket: string, key: string): string {
    // One flat file per key: encoded, a key cannot name a path outside the bucket's directory, and
    // cannot hold `#` (encoded as %23), which the metadata and temporary files' names use.
    return join(this.opts.dir, bucket, 'objects', encodeURIComponent(key));
  }

  private uploadDir(bucket: string, uploadId: string): string {
    if (!/^[a-f0-9]{32}$/.test(uploadId)) return join(this.opts.dir, bucket, 'uploads', 'none');
    return join(this.opts.dir, bucket, 'uploads', uploadId);
  }

  /** The keys stored in a bucket (for tests). */
  keys(bucket: string): string[] {
    const dir = join(this.opts.dir, bucket, 'objects');
    return existsSync(dir) ? readdirSync(dir).filter((n) => !n.includes('#')).map(decodeURIComponent).sort() : [];
  }

  /** Multipart uploads neither completed nor aborted (for tests). */
  openUploads(bucket: string): number {
    const dir = join(this.opts.dir, bucket, 'uploads');
    return existsSync(dir) ? readdirSync(dir).length : 0;
  }

  private store(bucket: string, key: string, bytes: Buffer, meta: Omit<ObjectMeta, 'size' | 'lastModified'>): void {
    const p = this.objectPath(bucket, key);
    const tmp = `${p}#tmp-${randomBytes(4).toString('hex')}`;
    writeFileSync(tmp, bytes);
    writeFileSync(`${tmp}#meta`, JSON.stringify({ ...meta, size: bytes.length, lastModified: new Date().toUTCString() } satisfies ObjectMeta));
    // Each file is replaced whole (rename). The pair is not one atomic step: a read racing a write
    // of the same key may see the new metadata with the old bytes, which S3 never shows; Corral
    // does not read a key while it writes it.
    renameSync(`${tmp}#meta`, `${p}#meta`);
    renameSync(tmp, p);
  }

  private meta(bucket: string, key: string): ObjectMeta | undefined {
    try {
      return JSON.parse(readFileSync(`${this.objectPath(bucket, key)}#meta`, 'utf8')) as ObjectMeta;
    } catch {
      return undefined;
    }
  }

  async handle(call: AwsCall): Promise<Reply> {
    const { operation, bucket, key, query } = s3Request(call.method, call.path);
    const err = (status: number, code: string, message: string) => xmlError(status, code, message, call.method);
    if (!this.buckets.has(bucket)) return err(404, 'NoSuchBucket', 'The specified bucket does not exist');
    const header = (name: string) => {
      const v = call.headers[name];
      return Array.isArray(v) ? v[0] : v;
    };
    const payload = () => {
      const chunked = /aws-chunked/.test(header('content-encoding') ?? '') || (header('x-amz-content-sha256') ?? '').startsWith('STREAMING-');
      const bytes = chunked ? decodeAwsChunked(call.body) : call.body;
      const declared = header('x-amz-decoded-content-length');
      if (chunked && declared !== undefined && Number(declared) !== bytes.length) throw new Error(`aws-chunked body of ${bytes.length} bytes, ${declared} declared`);
      return bytes;
    };
    const contentType = header('content-type') ?? 'binary/octet-stream';

    switch (operation) {
      case 'PutObject': {
        const bytes = payload();
        const etag = `"${md5(bytes)}"`;
        this.store(bucket, key, bytes, { contentType, etag });
        return { status: 200, headers: { etag }, body: '' };
      }
      case 'GetObject':
      case 'HeadObject': {
        const meta = this.meta(bucket, key);
        let bytes: Buffer | undefined;
        try {
          bytes = operation === 'GetObject' ? readFileSync(this.objectPath(bucket, key)) : undefined;
        } catch {
          bytes = undefined;
        }
        if (!meta || (operation === 'GetObject' && !bytes)) {
          if (!(await this.opts.mayList(call, bucket))) return err(403, 'AccessDenied', 'Access Denied');
          return err(404, 'NoSuchKey', 'The specified key does not exist.');
        }
        const headers = { 'content-type': meta.contentType, 'content-length': String(meta.size), etag: meta.etag, 'last-modified': meta.lastModified, 'accept-ranges': 'bytes' };
        return { status: 200, headers, body: bytes ?? '' };
      }
      case 'DeleteObject': {
        const p = this.objectPath(bucket, key);
        rmSync(p, { force: true });
        rmSync(`${p}#meta`, { force: true });
        return { status: 204, body: '' };
      }
      case 'CreateMultipartUpload': {
        const uploadId = randomBytes(16).toString('hex');
        const dir = this.uploadDir(bucket, uploadId);
        mkdirSync(dir, { recursive: true });
        writeFileSync(join(dir, 'upload.json'), JSON.stringify({ key, contentType }));
        return xml(`<InitiateMultipartUploadResult><Bucket>${esc(bucket)}</Bucket><Key>${esc(key)}</Key><UploadId>${uploadId}</UploadId></InitiateMultipartUploadResult>`);
      }
      case 'UploadPart': {
        const dir = this.uploadDir(bucket, query.get('uploadId') ?? '');
        const upload = this.upload(dir, key);
        if (!upload) return err(404, 'NoSuchUpload', 'The specified upload does not exist.');
        const n = Number(query.get('partNumber'));
        if (!Number.isInteger(n) || n < 1 || n > 10_000) return err(400, 'InvalidArgument', 'Part number must be an integer between 1 and 10000, inclusive');
        const bytes = payload();
        writeFileSync(join(dir, `part-${n}`), bytes);
        return { status: 200, headers: { etag: `"${md5(bytes)}"` }, body: '' };
      }
      case 'CompleteMultipartUpload': {
        const dir = this.uploadDir(bucket, query.get('uploadId') ?? '');
        const upload = this.upload(dir, key);
        if (!upload) return err(404, 'NoSuchUpload', 'The specified upload does not exist.');
        const parts = [...call.body.toString('utf8').matchAll(/<Part>([\s\S]*?)<\/Part>/g)].map((m) => ({
          n: Number(m[1].match(/<PartNumber>(\d+)<\/PartNumber>/)?.[1]),
          etag: (m[1].match(/<ETag>([\s\S]*?)<\/ETag>/)?.[1] ?? '').replace(/&quot;/g, '"'),
        }));
        if (!parts.length) return err(400, 'MalformedXML', 'The XML you provided was not well-formed or did not validate against our published schema');
        const chunks: Buffer[] = [];
        for (const [i, p] of parts.entries()) {
          if (i > 0 && p.n <= parts[i - 1].n) return err(400, 'InvalidPartOrder', 'The list of parts was not in ascending order.');
          const file = join(dir, `part-${p.n}`);
          const bytes = existsSync(file) ? readFileSync(file) : undefined;
          if (!bytes || `"${md5(bytes)}"` !== p.etag) return err(400, 'InvalidPart', 'One or more of the specified parts could not be found.');
          if (i < parts.length - 1 && bytes.length < MIN_PART) return err(400, 'EntityTooSmall', 'Your proposed upload is smaller than the minimum allowed object size.');
          chunks.push(bytes);
        }
        const etag = `"${md5(Buffer.from(parts.map((p) => p.etag.replace(/"/g, '')).join(''), 'hex'))}-${parts.length}"`;
        this.store(bucket, key, Buffer.concat(chunks), { contentType: upload.contentType, etag });
        rmSync(dir, { recursive: true, force: true });
        return xml(`<CompleteMultipartUploadResult><Bucket>${esc(bucket)}</Bucket><Key>${esc(key)}</Key><ETag>${esc(etag)}</ETag></CompleteMultipartUploadResult>`);
      }
      case 'AbortMultipartUpload': {
        const dir = this.uploadDir(bucket, query.get('uploadId') ?? '');
        if (!this.upload(dir, key)) return err(404, 'NoSuchUpload', 'The specified upload does not exist.');
        rmSync(dir, { recursive: true, force: true });
        return { status: 204, body: '' };
      }
      default:
        return err(501, 'NotImplemented', `${operation} is not emulated by the rehearsal`);
    }
  }

  private upload(dir: string, key: string): { key: string; contentType: string } | undefined {
    try {
      if (!statSync(dir).isDirectory()) return undefined;
      const u = JSON.parse(readFileSync(join(dir, 'upload.json'), 'utf8')) as { key: string; contentType: string };
      return u.key === key ? u : undefined;
    } catch {
      return undefined;
    }
  }
}
