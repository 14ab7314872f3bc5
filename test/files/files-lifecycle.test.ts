/**
 * What happens to files over time, on the local runtime through the official SDK: a session's
 * output files go with the session (metadata and bytes, and a deletion that failed halfway can be
 * retried), and the bytes of expired files are swept, a bounded number per run, without anyone
 * having to try to download them. Where local sandboxes have no `/mnt/session` (no bubblewrap),
 * file resources are refused with a 400 that says why.
 */
import Anthropic, { toFile } from '@anthropic-ai/sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LOCAL_TENANT } from '../../local-runtime/runtime.js';
import { blobKeys } from '../../lambdas/core/storage/blob-keys.js';
import type { BlobStore } from '../../lambdas/core/storage/blob-store.js';
import { createAgentAndEnvironment, startTestRuntime, type TestRuntime } from '../helpers/runtime.js';

let t: TestRuntime;
let blobs: BlobStore;
let agentId: string;
let envId: string;
const hasBytes = async (id: string) => (await blobs.head(blobKeys.file(LOCAL_TENANT, id))) !== null;

beforeAll(async () => {
  t = await startTestRuntime();
  blobs = t.runtime.services.blobs!;
  ({ agent: { id: agentId }, environment: { id: envId } } = await createAgentAndEnvironment(t.client));
});
afterAll(async () => {
  await t?.close();
});

describe('a session deleted', () => {
  it('takes its output files with it, metadata and bytes, and leaves the files it was given', async () => {
    const files = t.runtime.services.files;
    const input = await t.client.beta.files.upload({ file: await toFile(Buffer.from('given'), 'input.txt') });
    const session = await t.client.beta.sessions.create({ agent: agentId, environment_id: envId, resources: [{ type: 'file', file_id: input.id }] });
    const outs = [];
    for (const p of ['a.txt', 'deep/b.bin', 'c.csv']) {
      outs.push(await files.putOutput(LOCAL_TENANT, session.id, { path: p, size: 3, mtimeMs: 1 }, Buffer.from('out'), undefined));
    }
    expect((await t.client.beta.files.list({ scope_id: session.id })).data).toHaveLength(3);

    // The blob store fails once, halfway through: the deletion fails, and can be retried.
    const realDelete = blobs.delete.bind(blobs);
    let calls = 0;
    blobs.delete = async (key: string) => {
      if (++calls === 2) throw new Error('the store is unavailable');
      return realDelete(key);
    };
    try {
      await expect(t.client.beta.sessions.delete(session.id)).rejects.toBeInstanceOf(Anthropic.InternalServerError);
    } finally {
      blobs.delete = realDelete;
    }
    expect(await t.client.beta.sessions.delete(session.id)).toEqual({ id: session.id, type: 'session_deleted' });

    for (const f of outs) {
      await expect(t.client.beta.files.retrieveMetadata(f.id)).rejects.toBeInstanceOf(Anthropic.NotFoundError);
      expect(await hasBytes(f.id), f.filename).toBe(false);
    }
    expect((await t.client.beta.files.list({ scope_id: session.id })).data).toEqual([]);
    const listed: string[] = [];
    for await (const f of t.client.beta.files.list()) listed.push(f.id);
    expect(listed).toContain(input.id);
    expect(listed).not.toContain(outs[0]!.id);
    // The file the session was given is the tenant's, and stays.
    expect(await (await t.client.beta.files.download(input.id)).text()).toBe('given');
    // Nothing left: again is nothing.
    expect(await files.deleteSessionFiles(LOCAL_TENANT, session.id)).toBe(0);
  });
});

describe('expired files', () => {
  it('have their bytes swept, a bounded number per run, soonest first; the rest stays', async () => {
    const files = t.runtime.services.files;
    const now = Date.now();
    // Expiring in 1, 2 and 3 hours; one that never expires; one expiring that is deleted first.
    const expiring = [];
    for (const h of [3, 1, 2]) {
      expiring.push(await t.client.beta.files.upload({ file: await toFile(Buffer.from(`expires in ${h}h`), `e${h}.txt`), expires_in_seconds: h * 3600 }));
    }
    const kept = await t.client.beta.files.upload({ file: await toFile(Buffer.from('kept'), 'kept.txt') });
    const deleted = await t.client.beta.files.upload({ file: await toFile(Buffer.from('deleted'), 'deleted.txt'), expires_in_seconds: 3600 });
    await t.client.beta.files.delete(deleted.id);
    const [in3h, in1h, in2h] = expiring;

    expect(await files.sweepExpired(new Date(now))).toBe(0);
    for (const f of expiring) expect(await hasBytes(f!.id)).toBe(true);

    // Four hours on: all three are due, two a run.
    const later = new Date(now + 4 * 3600_000);
    expect(await files.sweepExpired(later, 2)).toBe(2);
    expect([await hasBytes(in1h!.id), await hasBytes(in2h!.id), await hasBytes(in3h!.id)]).toEqual([false, false, true]);
    expect(await files.sweepExpired(later, 2)).toBe(1);
    expect(await hasBytes(in3h!.id)).toBe(false);
    expect(await files.sweepExpired(later, 2)).toBe(0); // the deleted one left nothing to sweep

    // Their metadata stays (with its expires_at), their download is a 404; the others are untouched.
    expect((await t.client.beta.files.retrieveMetadata(in1h!.id)).expires_at).toBe(in1h!.expires_at);
    await expect(t.client.beta.files.download(in1h!.id)).rejects.toBeInstanceOf(Anthropic.NotFoundError);
    expect(await (await t.client.beta.files.download(kept.id)).text()).toBe('kept');
  });

  it('are swept when files are listed, without anyone downloading them', async () => {
    const files = t.runtime.services.files;
    // Uploaded two hours ago with an hour to live.
    const old = await files.upload(LOCAL_TENANT, { filename: 'old.txt', bytes: Buffer.from('old'), expiresInSeconds: 3600 }, new Date(Date.now() - 2 * 3600_000));
    expect(await hasBytes(old.id)).toBe(true);
    await t.client.beta.files.list();
    expect(await hasBytes(old.id)).toBe(false);
  });
});

describe('local sandboxes without bubblewrap', () => {
  it('refuse file resources with a 400 that says why, at creation and when added', async () => {
    const bare = await startTestRuntime({ runtime: { sandboxIsolation: 'none' } });
    try {
      const { agent, environment } = await createAgentAndEnvironment(bare.client);
      const f = await bare.client.beta.files.upload({ file: await toFile(Buffer.from('x'), 'x.txt') });
      const create = bare.client.beta.sessions.create({ agent: agent.id, environment_id: environment.id, resources: [{ type: 'file', file_id: f.id }] });
      await expect(create).rejects.toBeInstanceOf(Anthropic.BadRequestError);
      await expect(create).rejects.toThrow(/resources\[0\]: file resources are not available: .*without bubblewrap.*\/mnt\/session/);
      const session = await bare.client.beta.sessions.create({ agent: agent.id, environment_id: environment.id });
      await expect(bare.client.beta.sessions.resources.add(session.id, { type: 'file', file_id: f.id })).rejects.toThrow(/without bubblewrap/);
      // The Files API itself works there.
      expect(await (await bare.client.beta.files.download(f.id)).text()).toBe('x');
    } finally {
      await bare.close();
    }
  });
});
