import Anthropic, { toFile } from '@anthropic-ai/sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MAX_FILE_BYTES } from '../../lambdas/core/resources/files.js';
import { startTestRuntime, type TestRuntime } from '../helpers/runtime.js';

/**
 * The Files API through the official SDK (`client.beta.files`) against a local runtime: upload,
 * metadata, download, list, delete; what the edge refuses; and that a tenant sees only its own.
 */
const BETAS: Anthropic.Beta.AnthropicBeta[] = ['files-api-2025-04-14'];

let t: TestRuntime;
let other: Anthropic;

beforeAll(async () => {
  t = await startTestRuntime();
  await t.runtime.services.tenants.addKey('tenant-files-b', 'files-key-of-tenant-b-0123456789');
  other = new Anthropic({ baseURL: t.runtime.url, apiKey: 'files-key-of-tenant-b-0123456789', maxRetries: 0 });
});
afterAll(async () => {
  await t?.close();
});

/** Every byte value, so that any text decoding on the way would show. */
const BINARY = Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 7) % 256));

async function raw(path: string, init: RequestInit & { key?: string } = {}) {
  return fetch(`${t.runtime.url}${path}`, { ...init, headers: { 'x-api-key': init.key ?? t.runtime.apiKey, ...(init.headers as Record<string, string>) } });
}

describe('client.beta.files', () => {
  it('uploads, describes, downloads the same bytes, lists and deletes a file', async () => {
    const uploaded = await t.client.beta.files.upload({ file: await toFile(BINARY, 'dir/sub/data.bin', { type: 'application/octet-stream' }), betas: BETAS });
    expect(uploaded).toMatchObject({
      type: 'file',
      filename: 'data.bin', // the final path component only
      mime_type: 'application/octet-stream',
      size_bytes: BINARY.length,
      downloadable: true,
      expires_at: null,
      scope: null,
    });
    expect(uploaded.id).toMatch(/^file_/);
    expect(await t.client.beta.files.retrieveMetadata(uploaded.id, { betas: BETAS })).toEqual(uploaded);

    const response = await t.client.beta.files.download(uploaded.id, { betas: BETAS });
    expect(response.headers.get('content-type')).toBe('application/octet-stream');
    expect(Buffer.from(await response.arrayBuffer()).equals(BINARY)).toBe(true);

    const listed: string[] = [];
    for await (const f of t.client.beta.files.list({ betas: BETAS })) listed.push(f.id);
    expect(listed).toContain(uploaded.id);

    expect(await t.client.beta.files.delete(uploaded.id, { betas: BETAS })).toEqual({ id: uploaded.id, type: 'file_deleted' });
    await expect(t.client.beta.files.retrieveMetadata(uploaded.id)).rejects.toBeInstanceOf(Anthropic.NotFoundError);
    await expect(t.client.beta.files.download(uploaded.id)).rejects.toBeInstanceOf(Anthropic.NotFoundError);
    await expect(t.client.beta.files.delete(uploaded.id)).rejects.toBeInstanceOf(Anthropic.NotFoundError);
  });

  it('pages through the list as the SDK expects, and answers `ids` as one page', async () => {
    const made = [];
    for (let i = 0; i < 3; i++) made.push(await t.client.beta.files.upload({ file: await toFile(Buffer.from(`file ${i}`), `page-${i}.txt`, { type: 'text/plain' }) }));
    const first = await t.client.beta.files.list({ limit: 1 });
    expect(first.data).toHaveLength(1);
    expect(first.next_page).toEqual(expect.any(String));
    const all: string[] = [];
    for await (const f of t.client.beta.files.list({ limit: 1 })) all.push(f.id);
    expect(all).toEqual(expect.arrayContaining(made.map((f) => f.id)));
    expect(new Set(all).size).toBe(all.length); // no file twice
    const some = await t.client.beta.files.list({ ids: [made[0].id, made[2].id, 'file_doesnotexist'] });
    expect(some.data.map((f) => f.id).sort()).toEqual([made[0].id, made[2].id].sort());
    expect(some.next_page).toBeNull();
    await expect(t.client.beta.files.list({ ids: [made[0].id], limit: 5 })).rejects.toBeInstanceOf(Anthropic.BadRequestError);
  });

  it('sets expires_at from expires_in_seconds, within the documented bounds', async () => {
    const f = await t.client.beta.files.upload({ file: await toFile(Buffer.from('x'), 'x.txt', { type: 'text/plain' }), expires_in_seconds: 3600 });
    expect(Date.parse(f.expires_at!) - Date.parse(f.created_at)).toBe(3600_000);
    await expect(t.client.beta.files.upload({ file: await toFile(Buffer.from('x'), 'x.txt'), expires_in_seconds: 60 })).rejects.toThrow(/expires_in_seconds/);
  });

  it('refuses what the edge does not take: bad names, bad types, too large, unknown fields, workspaces', async () => {
    const bad = async (p: Promise<unknown>, status: number, message: RegExp) => {
      const err = await p.then(() => null, (e: unknown) => e);
      expect(err, String(message)).toBeInstanceOf(Anthropic.APIError);
      expect((err as InstanceType<typeof Anthropic.APIError>).status).toBe(status);
      expect(String((err as Error).message)).toMatch(message);
    };
    await bad(t.client.beta.files.upload({ file: await toFile(Buffer.from('x'), 'evil\u0001name.txt') }), 400, /control characters/);
    await bad(t.client.beta.files.upload({ file: await toFile(Buffer.from('x'), `${'n'.repeat(300)}.txt`) }), 400, /255 bytes/);
    await bad(t.client.beta.files.upload({ file: await toFile(Buffer.from('x'), 'a/..') }), 400, /not a file name/);
    await bad(t.client.beta.files.upload({ file: await toFile(Buffer.from('x'), 'x.txt', { type: 'not a type' }) }), 400, /MIME type/);
    await bad(t.client.beta.files.upload({ file: await toFile(Buffer.alloc(MAX_FILE_BYTES + 1), 'big.bin') }), 413, /4194304 bytes/);
    await bad(t.client.beta.files.upload({ file: await toFile(Buffer.from('x'), 'x.txt'), workspace_id: 'wrkspc_1' }), 400, /anthropic-workspace-id/);
    await bad(t.client.beta.files.list({ scope_id: '../etc' }), 400, /scope_id/);
    await bad(t.client.beta.files.list({ order: 'asc' } as never), 400, /order: query parameter not supported by Corral/);

    const form = new FormData();
    form.append('file', new Blob(['x']), 'x.txt');
    form.append('purpose', 'assistants');
    const res = await raw('/v1/files', { method: 'POST', body: form });
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: { message: string } }).error.message).toBe('"purpose": unknown form field');
    const json = await raw('/v1/files', { method: 'POST', body: '{}', headers: { 'content-type': 'application/json' } });
    expect(json.status).toBe(400);
    // The largest file is taken (the JSON routes' body limit does not apply to an upload).
    const max = await t.client.beta.files.upload({ file: await toFile(Buffer.alloc(MAX_FILE_BYTES, 1), 'max.bin') });
    expect(max.size_bytes).toBe(MAX_FILE_BYTES);
  });

  it("keeps each tenant's files to itself", async () => {
    const mine = await t.client.beta.files.upload({ file: await toFile(Buffer.from('secret of a'), 'a.txt', { type: 'text/plain' }) });
    await expect(other.beta.files.retrieveMetadata(mine.id)).rejects.toBeInstanceOf(Anthropic.NotFoundError);
    await expect(other.beta.files.download(mine.id)).rejects.toBeInstanceOf(Anthropic.NotFoundError);
    await expect(other.beta.files.delete(mine.id)).rejects.toBeInstanceOf(Anthropic.NotFoundError);
    const theirs: string[] = [];
    for await (const f of other.beta.files.list()) theirs.push(f.id);
    expect(theirs).not.toContain(mine.id);
    expect((await other.beta.files.list({ ids: [mine.id] })).data).toEqual([]);
    // and the owner still has it
    expect((await t.client.beta.files.retrieveMetadata(mine.id)).id).toBe(mine.id);
  });
});
