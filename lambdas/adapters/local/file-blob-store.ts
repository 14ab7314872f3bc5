/**
 * The blob store of `npm start`: one file per key under a directory of the data dir.
 * Keys are built by the core (`lambdas/core/storage/blob-keys.ts`); this adapter still refuses any
 * key that could leave its directory. A write goes to a temporary file and is renamed into place,
 * so a crash mid-write leaves the old bytes or none, never half of the new ones. The content type
 * sits beside the bytes in `<key>#type` (`#` is not a key character, so no key can name it).
 */
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { dirname, join, resolve, sep } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { BlobHead, BlobPutOptions, BlobStore } from '../../core/storage/blob-store.js';

const KEY = /^[A-Za-z0-9_.=-]+(\/[A-Za-z0-9_.=-]+)*$/;

export class FileBlobStore implements BlobStore {
  private readonly root: string;

  constructor(root: string) {
    this.root = resolve(root);
  }

  private path(key: string): string {
    const p = resolve(this.root, key);
    if (!KEY.test(key) || key.split('/').some((s) => s === '.' || s === '..') || !p.startsWith(this.root + sep)) {
      throw new Error(`invalid blob key ${JSON.stringify(key)}`);
    }
    return p;
  }

  async put(key: string, body: Uint8Array | Readable, opts: BlobPutOptions = {}): Promise<BlobHead> {
    const p = this.path(key);
    await mkdir(dirname(p), { recursive: true, mode: 0o700 });
    const tmp = `${p}#${randomBytes(6).toString('hex')}.partial`;
    try {
      if (body instanceof Uint8Array) await writeFile(tmp, body, { mode: 0o600 });
      else await pipeline(body, createWriteStream(tmp, { mode: 0o600 }));
      const { size } = await stat(tmp);
      if (opts.contentType !== undefined) await writeFile(`${p}#type`, opts.contentType, { mode: 0o600 });
      else await rm(`${p}#type`, { force: true });
      await rename(tmp, p);
      return { size, ...(opts.contentType !== undefined ? { contentType: opts.contentType } : {}) };
    } catch (err) {
      await rm(tmp, { force: true });
      throw err;
    }
  }

  async head(key: string): Promise<BlobHead | null> {
    const p = this.path(key);
    let size: number;
    try {
      size = (await stat(p)).size;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw err;
    }
    const contentType = await readFile(`${p}#type`, 'utf8').catch(() => undefined);
    return { size, ...(contentType !== undefined ? { contentType } : {}) };
  }

  async get(key: string): Promise<{ body: Readable; head: BlobHead } | null> {
    const head = await this.head(key);
    if (!head) return null;
    return { body: createReadStream(this.path(key)), head };
  }

  async delete(key: string): Promise<void> {
    const p = this.path(key);
    await rm(p, { force: true });
    await rm(`${p}#type`, { force: true });
  }
}

/** Where `npm start` keeps blobs: `<data dir>/blobs`. */
export function localBlobDir(dataDir: string): string {
  return join(dataDir, 'blobs');
}
