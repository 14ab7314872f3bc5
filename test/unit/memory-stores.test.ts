import { beforeEach, describe, expect, it } from 'vitest';
import { InvalidRequestError, NotFoundError } from '../../lambdas/core/errors.js';
import { memoryMountPath, memoryPathProblem, storeSlug } from '../../lambdas/core/memory/paths.js';
import { MemoryPathConflictError, MemoryPreconditionFailedError, MemoryStoreService, sha256 } from '../../lambdas/core/memory/store.js';
import { MemoryStateTable } from './memory-store.js';

/** Memory stores on the in-memory state table: paths, versions, redaction, isolation. */
describe('memory stores', () => {
  let table: MemoryStateTable;
  let m: MemoryStoreService;
  beforeEach(() => {
    table = new MemoryStateTable();
    m = new MemoryStoreService(table);
  });

  it('checks paths as the SDK describes them', () => {
    for (const bad of ['notes.md', '/', '/a//b', '/a/../b', '/./a', '/a\u0000b', '/a\u200bb', '/a\u2028', `/${'x/'.repeat(20)}y`, `/${'é'.repeat(600)}`, '/e\u0301']) {
      expect(memoryPathProblem(bad), bad).not.toBeNull();
    }
    expect(memoryPathProblem('/projects/foo/notes.md')).toBeNull();
    expect(storeSlug('User Preferences!')).toBe('user-preferences');
    expect(storeSlug('...')).toBe('store');
    expect(memoryMountPath('Notes', new Set(['/mnt/memory/notes']))).toBe('/mnt/memory/notes-2');
  });

  it('keeps every change as a version; a redacted version is gone from the table and every read', async () => {
    const store = await m.create('t1', { name: 'prefs' });
    const created = await m.createMemory('t1', store.id, { path: '/user/name.md', content: 'secret-v1' });
    expect(created.content).toBeNull(); // basic view on create
    expect(created.content_sha256).toBe(sha256('secret-v1'));
    const first = created.memory_version_id;
    await expect(m.redactVersion('t1', store.id, first)).rejects.toThrow(/current content/); // the live memory's head
    const updated = await m.updateMemory('t1', store.id, created.id, { content: 'v2', precondition: { type: 'content_sha256', content_sha256: sha256('secret-v1') } });
    expect(updated.memory_version_id).not.toBe(first);
    // No change, no version.
    expect((await m.updateMemory('t1', store.id, created.id, { content: 'v2' })).memory_version_id).toBe(updated.memory_version_id);
    await expect(m.updateMemory('t1', store.id, created.id, { content: 'v3', precondition: { type: 'content_sha256', content_sha256: sha256('stale') } })).rejects.toBeInstanceOf(MemoryPreconditionFailedError);

    const redacted = await m.redactVersion('t1', store.id, first);
    expect(redacted).toMatchObject({ content: null, path: null, content_sha256: null, content_size_bytes: null, redacted_at: expect.any(String) });
    expect(await m.getVersion('t1', store.id, first)).toMatchObject({ content: null, path: null });
    const all = await m.listVersions('t1', store.id, { view: 'full' });
    expect(all.data.map((v) => v.operation)).toEqual(['modified', 'created']);
    expect(JSON.stringify(all)).not.toContain('secret-v1');
    expect((await m.getMemory('t1', store.id, created.id)).content).toBe('v2');
    // Gone from storage, not hidden: no item of the table holds the text.
    expect(JSON.stringify([...table.items.values()])).not.toContain('secret-v1');
  });

  it('keeps paths unique and not overlapping, and lists them by prefix and depth', async () => {
    const store = await m.create('t1', { name: 's' });
    for (const p of ['/a/one.md', '/a/two.md', '/a/deep/x.md', '/b.md', '/a-b.md']) await m.createMemory('t1', store.id, { path: p, content: p });
    await expect(m.createMemory('t1', store.id, { path: '/a/one.md', content: '' })).rejects.toBeInstanceOf(MemoryPathConflictError);
    await expect(m.createMemory('t1', store.id, { path: '/a', content: '' })).rejects.toBeInstanceOf(MemoryPathConflictError);
    await expect(m.createMemory('t1', store.id, { path: '/b.md/c', content: '' })).rejects.toBeInstanceOf(MemoryPathConflictError);
    await expect(m.createMemory('t1', store.id, { path: '/x/../y', content: '' })).rejects.toBeInstanceOf(InvalidRequestError);
    await expect(m.createMemory('t1', store.id, { path: '/big', content: 'x'.repeat(102_401) })).rejects.toBeInstanceOf(InvalidRequestError);

    const top = await m.listMemories('t1', store.id, { depth: 1 });
    expect(top.data.map((i) => [i.type, i.path])).toEqual([['memory', '/a-b.md'], ['memory_prefix', '/a/'], ['memory', '/b.md']]);
    const under = await m.listMemories('t1', store.id, { path_prefix: '/a/', view: 'full' });
    expect(under.data.map((i) => [i.path, (i as { content: string }).content])).toEqual([['/a/deep/x.md', '/a/deep/x.md'], ['/a/one.md', '/a/one.md'], ['/a/two.md', '/a/two.md']]);
    // Pages of one, in path order, none skipped or repeated.
    const paths: string[] = [];
    let page: string | undefined;
    do {
      const r = await m.listMemories('t1', store.id, { limit: 1, page });
      paths.push(...r.data.map((i) => i.path));
      page = r.next_page ?? undefined;
    } while (page);
    expect(paths).toEqual(['/a-b.md', '/a/deep/x.md', '/a/one.md', '/a/two.md', '/b.md']);

    // A rename frees the old path; a delete leaves a `deleted` version.
    const one = (await m.listMemories('t1', store.id, { path_prefix: '/a/' })).data.find((i) => i.path === '/a/one.md') as { id: string };
    await m.updateMemory('t1', store.id, one.id, { path: '/c/one.md' });
    await m.createMemory('t1', store.id, { path: '/a/one.md', content: 'again' });
    await m.deleteMemory('t1', store.id, one.id);
    expect((await m.listVersions('t1', store.id, { memory_id: one.id })).data.map((v) => v.operation)).toEqual(['deleted', 'modified', 'created']);
    await expect(m.getMemory('t1', store.id, one.id)).rejects.toBeInstanceOf(NotFoundError);
  });

  it('keeps tenants apart, and an archived store read-only', async () => {
    const store = await m.create('t1', { name: 's' });
    const mem = await m.createMemory('t1', store.id, { path: '/x', content: 'x' });
    await expect(m.get('t2', store.id)).rejects.toBeInstanceOf(NotFoundError);
    await expect(m.getMemory('t2', store.id, mem.id)).rejects.toBeInstanceOf(NotFoundError);
    await expect(m.redactVersion('t2', store.id, mem.memory_version_id)).rejects.toBeInstanceOf(NotFoundError);
    expect((await m.list('t2', {})).data).toEqual([]);
    await m.archive('t1', store.id);
    await expect(m.createMemory('t1', store.id, { path: '/y', content: '' })).rejects.toThrow(/archived/);
    expect((await m.list('t1', {})).data).toEqual([]);
    expect((await m.list('t1', { include_archived: true })).data.map((s) => s.id)).toEqual([store.id]);
    await m.delete('t1', store.id);
    expect([...table.items.values()].filter((i) => i.pk.includes(store.id))).toEqual([]);
  });
});
