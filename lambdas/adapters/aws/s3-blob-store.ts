/**
 * The blob store on AWS: one S3 object per key in the stack's blob bucket
 * (infra/lib/constructs/blob-bucket.ts). Keys are built by the core (`files/<tenant>/<file_id>`,
 * `workspaces/<tenant>/<session_id>/...`); each function's role may touch only its prefixes, so a
 * key outside them fails with S3's AccessDenied rather than here.
 *
 * Bytes stream in and out. A body of known size goes up in one PutObject (up to S3's 5 GiB limit
 * for one); a stream of unknown size (a tar of a workspace, a file the sandbox streams out) goes
 * up as a multipart upload, at most two parts in memory at a time whatever the size. A failed
 * multipart upload is aborted (the bucket's lifecycle rule also aborts any left behind by a killed
 * function). S3 replaces an object atomically: a reader sees the old bytes or
 * the new ones, never part of either.
 */
import { Readable } from 'node:stream';
import type { BlobHead, BlobPutOptions, BlobStore } from '../../core/storage/blob-store.js';
import type { S3Client } from './s3-client.js';

/** The same key alphabet as the local store's: the core builds keys, this refuses anything else. */
const KEY = /^[A-Za-z0-9_.=-]+(\/[A-Za-z0-9_.=-]+)*$/;

/**
 * S3's content type for an object stored without one. The adapter sends it itself for a body
 * without a type, and reads it back as no type, as the local store reports an untyped blob.
 */
const S3_DEFAULT_TYPE = 'binary/octet-stream';

const typeOf = (contentType: string | undefined) => ({ contentType: contentType ?? S3_DEFAULT_TYPE });

/** The largest body S3 takes in one PutObject. */
const MAX_SINGLE_PUT = 5 * 1024 ** 3;

/** Smallest part S3 accepts (except the last). */
export const MIN_PART_SIZE = 5 * 1024 ** 2;

export interface S3BlobStoreOptions {
  /** The minimal S3 client of ./s3-client.ts. */
  s3: S3Client;
  bucket: string;
  /**
   * Bytes per part of a multipart upload, at least 5 MiB. S3 allows 10,000 parts, so the default
   * (8 MiB) takes streams up to about 78 GiB; a part is the memory one upload holds.
   * @default 8 MiB
   */
  partSize?: number;
}

function checkKey(key: string): string {
  if (!KEY.test(key) || key.split('/').some((s) => s === '.' || s === '..')) throw new Error(`invalid blob key ${JSON.stringify(key)}`);
  return key;
}

/** A 404 from S3: GetObject's NoSuchKey, HeadObject's bodiless NotFound. */
function isNotFound(err: unknown): boolean {
  const e = err as { name?: string; $metadata?: { httpStatusCode?: number } };
  return e?.name === 'NoSuchKey' || e?.name === 'NotFound' || e?.$metadata?.httpStatusCode === 404;
}

function headOf(size: number | undefined, contentType: string | undefined): BlobHead {
  return { size: size ?? 0, ...(contentType && contentType !== S3_DEFAULT_TYPE ? { contentType } : {}) };
}

export class S3BlobStore implements BlobStore {
  private readonly s3: S3Client;
  private readonly bucket: string;
  private readonly partSize: number;

  constructor(opts: S3BlobStoreOptions) {
    this.s3 = opts.s3;
    this.bucket = opts.bucket;
    this.partSize = opts.partSize ?? 8 * 1024 ** 2;
    if (this.partSize < MIN_PART_SIZE) throw new Error(`partSize must be at least ${MIN_PART_SIZE} bytes (S3's smallest part)`);
  }

  async put(key: string, body: Uint8Array | Readable, opts: BlobPutOptions = {}): Promise<BlobHead> {
    checkKey(key);
    const type = typeOf(opts.contentType);
    if (body instanceof Uint8Array) {
      await this.s3.putObject({ bucket: this.bucket, key, body, contentLength: body.byteLength, ...type });
      return headOf(body.byteLength, opts.contentType);
    }
    if (opts.size !== undefined && opts.size <= MAX_SINGLE_PUT) {
      // A stream of known length goes up as it is read, in one PutObject.
      await this.s3.putObject({ bucket: this.bucket, key, body, contentLength: opts.size, ...type });
      return headOf(opts.size, opts.contentType);
    }
    return this.putStream(key, body, opts.contentType);
  }

  /**
   * A stream of unknown size: the first part is buffered; a stream that ends within it is one
   * PutObject (no multipart upload for a small file), a longer one a multipart upload.
   */
  private async putStream(key: string, body: Readable, contentType: string | undefined): Promise<BlobHead> {
    const type = typeOf(contentType);
    const parts = readParts(body, this.partSize);
    let uploadId: string | undefined;
    try {
      const first = await parts.next();
      const firstPart = first.done ? new Uint8Array(0) : first.value;
      const second = first.done ? first : await parts.next();
      if (second.done) {
        await this.s3.putObject({ bucket: this.bucket, key, body: firstPart, contentLength: firstPart.byteLength, ...type });
        return headOf(firstPart.byteLength, contentType);
      }
      uploadId = (await this.s3.createMultipartUpload({ bucket: this.bucket, key, ...type })).uploadId;
      const etags: Array<{ etag: string; partNumber: number }> = [];
      let size = 0;
      const upload = async (part: Uint8Array) => {
        const partNumber = etags.length + 1;
        if (partNumber > 10_000) throw new Error(`blob ${key} is larger than 10,000 parts of ${this.partSize} bytes`);
        const { etag } = await this.s3.uploadPart({ bucket: this.bucket, key, uploadId: uploadId!, partNumber, body: part });
        etags.push({ etag, partNumber });
        size += part.byteLength;
      };
      await upload(firstPart);
      await upload(second.value);
      for (let next = await parts.next(); !next.done; next = await parts.next()) await upload(next.value);
      await this.s3.completeMultipartUpload({ bucket: this.bucket, key, uploadId, parts: etags });
      return headOf(size, contentType);
    } catch (err) {
      if (!body.destroyed) body.destroy();
      if (uploadId) {
        // Best effort: the lifecycle rule aborts what this cannot (a killed function, a lost connection).
        await this.s3.abortMultipartUpload({ bucket: this.bucket, key, uploadId }).catch(() => undefined);
      }
      throw err;
    }
  }

  async head(key: string): Promise<BlobHead | null> {
    try {
      const out = await this.s3.headObject({ bucket: this.bucket, key: checkKey(key) });
      return headOf(out.contentLength, out.contentType);
    } catch (err) {
      if (isNotFound(err)) return null;
      throw err;
    }
  }

  async get(key: string): Promise<{ body: Readable; head: BlobHead } | null> {
    try {
      const out = await this.s3.getObject({ bucket: this.bucket, key: checkKey(key) });
      return { body: out.body, head: headOf(out.contentLength, out.contentType) };
    } catch (err) {
      if (isNotFound(err)) return null;
      throw err;
    }
  }

  async delete(key: string): Promise<void> {
    // S3 answers 204 for a key that is not there: nothing to special-case.
    await this.s3.deleteObject({ bucket: this.bucket, key: checkKey(key) });
  }
}

/** The stream in pieces of exactly `size` bytes (the last may be shorter; none is empty). */
async function* readParts(body: Readable, size: number): AsyncGenerator<Uint8Array> {
  let buf = Buffer.allocUnsafe(size);
  let filled = 0;
  for await (const chunk of body) {
    let c: Buffer = typeof chunk === 'string' ? Buffer.from(chunk) : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    while (c.length) {
      const n = Math.min(c.length, size - filled);
      c.copy(buf, filled, 0, n);
      filled += n;
      c = c.subarray(n);
      if (filled === size) {
        yield buf;
        buf = Buffer.allocUnsafe(size);
        filled = 0;
      }
    }
  }
  if (filled) yield buf.subarray(0, filled);
}
