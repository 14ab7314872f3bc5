import { describe, expect, it } from 'vitest';
import { mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { text } from 'node:stream/consumers';
import { FileBlobStore } from '../../lambdas/adapters/local/file-blob-store.js';

describe('FileBlobStore (the blob store of npm start)', () => {
  const root = mkdtempSync(join(tmpdir(), 'blobs-'));
  const store = new FileBlobStore(root);

  it('stores bytes and streams, reads them back with size and type, deletes them', async () => {
    expect(await store.put('files/t1/file_1', new TextEncoder().encode('hello'), { contentType: 'text/plain' })).toEqual({ size: 5, contentType: 'text/plain' });
    expect(await store.head('files/t1/file_1')).toEqual({ size: 5, contentType: 'text/plain' });
    const got = await store.get('files/t1/file_1');
    expect(await text(got!.body)).toBe('hello');
    await store.put('files/t1/file_1', Readable.from([Buffer.from('a'), Buffer.from('bc')]));
    expect(await store.head('files/t1/file_1')).toEqual({ size: 3 });
    await store.delete('files/t1/file_1');
    expect(await store.get('files/t1/file_1')).toBeNull();
    await store.delete('files/t1/file_1');
    expect(readdirSync(join(root, 'files/t1'))).toEqual([]);
  });

  it('refuses keys that could leave its directory or name its sidecars', async () => {
    for (const key of ['../x', 'a/../../x', '/etc/passwd', 'a//b', 'a/./b', 'x#type', '', 'a/b/']) {
      await expect(store.put(key, new Uint8Array(1)), key).rejects.toThrow(/invalid blob key/);
      await expect(store.get(key), key).rejects.toThrow(/invalid blob key/);
    }
  });

  it('keeps the old bytes when a stream fails mid-write', async () => {
    await store.put('w/k', new TextEncoder().encode('old'));
    const failing = new Readable({ read() { this.push(Buffer.from('new')); this.destroy(new Error('cut')); } });
    await expect(store.put('w/k', failing)).rejects.toThrow('cut');
    expect(await text((await store.get('w/k'))!.body)).toBe('old');
    expect(readdirSync(join(root, 'w'))).toEqual(['k']);
  });
});
