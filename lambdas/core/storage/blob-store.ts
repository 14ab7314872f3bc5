/**
 * Blob storage: the bytes of uploaded and session-written files and of workspace snapshots.
 * S3 on AWS (`lambdas/adapters/aws/s3-blob-store.ts`), a directory under the data directory with
 * `npm start` (`lambdas/adapters/local/file-blob-store.ts`). Metadata (names, sizes, scopes) lives
 * in the state table; this port holds only bytes, under keys the core builds (`lambdas/core/storage/blob-keys.ts`).
 * Keys are core-built, never taken from a request or from the sandbox as given.
 */
import type { Readable } from 'node:stream';

export interface BlobPutOptions {
  contentType?: string;
  /** The body's length in bytes when known (S3 needs it for a single PutObject of a stream). */
  size?: number;
}

export interface BlobHead {
  size: number;
  contentType?: string;
}

export interface BlobStore {
  /** Stores `body` under `key`, replacing what was there. Resolves with the stored size. */
  put(key: string, body: Uint8Array | Readable, opts?: BlobPutOptions): Promise<BlobHead>;
  /** The bytes under `key` as a stream, or null when there is none. */
  get(key: string): Promise<{ body: Readable; head: BlobHead } | null>;
  /** The size and type under `key`, or null. */
  head(key: string): Promise<BlobHead | null>;
  /** Deletes `key`; deleting a missing key is not an error. */
  delete(key: string): Promise<void>;
}
