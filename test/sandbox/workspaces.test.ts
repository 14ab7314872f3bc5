/**
 * Workspaces that outlive idleness, in the core: the idle reaper snapshots a sandbox's workspace
 * into the blob store before stopping it, the next sandbox of the name is restored from it before
 * its first tool call, one stop makes one snapshot however often the reaper runs, only the latest
 * is kept, a session's deletion removes them, a snapshot that cannot be taken is told to the
 * model, and a fork starts from its source's workspace. Real local sandboxes, dynalite, the
 * file blob store.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DynamoStateTable } from '../../lambdas/adapters/aws/dynamodb-state-table.js';
import { ensureTables } from '../../lambdas/adapters/aws/tables.js';
import { startDynalite, type EmbeddedDynamo } from '../../lambdas/adapters/local/dynalite.js';
import { FileBlobStore } from '../../lambdas/adapters/local/file-blob-store.js';
import { ProcessSandboxProvider } from '../../lambdas/adapters/local/process-sandbox.js';
import { SandboxManager } from '../../lambdas/core/sandbox/manager.js';
import { reapIdleSandboxes } from '../../lambdas/core/sandbox/reaper.js';
import { HeadRecords } from '../../lambdas/core/storage/items.js';
import { planFor, processAlive, tempDir } from './helpers.js';

const recipe = planFor();
const TENANT = 'tenant_ws';
let db: EmbeddedDynamo;
let table: DynamoStateTable;
let root: string;
let blobDir: string;
let provider: ProcessSandboxProvider;
let manager: SandboxManager;
let n = 0;

beforeAll(async () => {
  db = await startDynalite();
  await ensureTables(db.client, { events: 'events', state: 'state' });
  table = new DynamoStateTable(db.client, 'state');
  root = tempDir('corral-workspaces-');
  blobDir = path.join(root, 'blobs');
  provider = new ProcessSandboxProvider({ dataDir: path.join(root, 'data'), isolation: 'none', logger: { warn: () => {} } });
  manager = new SandboxManager(provider, table, Buffer.alloc(32, 7), undefined, { blobs: new FileBlobStore(blobDir), limits: { maxBytes: 8 * 1024 * 1024, maxEntries: 1000 } });
});
afterAll(async () => {
  await provider.close();
  await db.close();
  fs.rmSync(root, { recursive: true, force: true });
});

/** A session of TENANT (the reaper finds the tenant through its head). */
async function newSession(): Promise<string> {
  const id = `sesn_ws_${++n}`;
  await new HeadRecords<{ id: string }>('session').put(table, TENANT, { id }, { rev: 0 } as never);
  return id;
}

const bash = (sid: string, command: string, name = 'default') => manager.execute(sid, name, recipe, 'bash', { command });
/** Run the reaper as if every sandbox had been idle for an hour. */
const reap = (extra: { maxBytes?: number } = {}) =>
  reapIdleSandboxes({
    table,
    provider,
    idleMs: 1000,
    now: new Date(Date.now() + 3_600_000),
    workspaces: extra.maxBytes ? new SandboxManager(provider, table, Buffer.alloc(32, 7), undefined, { blobs: new FileBlobStore(blobDir), limits: { maxBytes: extra.maxBytes } }).workspaces : manager.workspaces,
  });

/** The snapshot files of a session in the blob store. */
function snapshotsOf(sid: string): string[] {
  const dir = path.join(blobDir, 'workspaces', TENANT, sid);
  return fs.existsSync(dir) ? fs.readdirSync(dir).filter((f) => !f.includes('#')).sort() : [];
}

describe('a sandbox stopped for idleness', () => {
  it('comes back with its workspace in a new sandbox, restored before the first tool call', async () => {
    const sid = await newSession();
    await bash(sid, 'mkdir -p src && echo "state" > src/notes.txt && ln -s src/notes.txt link');
    const first = (await manager.get(sid, 'default'))!;

    const result = await reap();
    expect(result.reaped).toEqual([{ sessionId: sid, name: 'default', ref: first.ref }]);
    expect(processAlive(Number(first.ref))).toBe(false);
    const released = (await manager.get(sid, 'default'))!;
    expect(released).toMatchObject({ state: 'released', snapshot: { ofRef: first.ref } });
    expect(snapshotsOf(sid)).toEqual([path.basename(released.snapshot!.key)]);
    expect(released.snapshot!.key).toBe(`workspaces/${TENANT}/${sid}/${released.snapshot!.id}`);

    const next = await bash(sid, 'cat src/notes.txt link');
    expect(next.isError).toBe(false);
    expect(next.output).toMatch(/^\[corral\] sandbox "default": it had been stopped \(unused for more than 1000 ms\); this call runs in a new sandbox whose workspace was restored from the snapshot taken when it stopped \(.*\): 1 files, 6 B\. Processes from before it are gone\nstate\nstate\n$/);
    const second = (await manager.get(sid, 'default'))!;
    expect(second.ref).not.toBe(first.ref);
    expect(second.snapshot).toEqual(released.snapshot);
  });

  it('makes one snapshot however often the reaper runs, at once or one after the other', async () => {
    const sid = await newSession();
    await bash(sid, 'echo once > once.txt');
    const runs = await Promise.all([reap(), reap(), reap()]);
    await reap();
    expect(runs.flatMap((r) => r.reaped).filter((r) => r.sessionId === sid)).toHaveLength(1);
    const record = (await manager.get(sid, 'default'))!;
    expect(snapshotsOf(sid)).toEqual([path.basename(record.snapshot!.key)]);
    expect((await bash(sid, 'cat once.txt')).output).toMatch(/\nonce\n$/);
  });

  it('keeps only the latest snapshot, and the session\'s deletion removes it', async () => {
    const sid = await newSession();
    await bash(sid, 'echo 1 > v.txt');
    await reap();
    const firstKey = (await manager.get(sid, 'default'))!.snapshot!.key;
    await bash(sid, 'echo 2 >> v.txt');
    await reap();
    const latest = (await manager.get(sid, 'default'))!.snapshot!;
    expect(latest.key).not.toBe(firstKey);
    expect(snapshotsOf(sid)).toEqual([path.basename(latest.key)]);
    expect((await bash(sid, 'cat v.txt')).output).toMatch(/\n1\n2\n$/);

    await manager.releaseAll(sid);
    expect(snapshotsOf(sid)).toEqual([]);
  });

  it('stops anyway when its workspace is over the limit, and the next tool call says the files are gone', async () => {
    const sid = await newSession();
    await bash(sid, 'head -c 200000 /dev/zero > big.bin');
    const result = await reap({ maxBytes: 100_000 });
    expect(result.reaped.map((r) => r.sessionId)).toContain(sid);
    expect(result.snapshots.find((s) => s.sessionId === sid)).toMatchObject({ error: expect.stringMatching(/more than 100000 bytes/) });
    expect(snapshotsOf(sid)).toEqual([]);
    const next = await bash(sid, 'ls');
    expect(next.output).toMatch(/its workspace could NOT be saved when it stopped \(the workspace holds more than 100000 bytes of files, the most a snapshot may hold\), so this call runs in a fresh sandbox without files from before it\n$/);
  });

  it('is not restored over by a snapshot of an earlier sandbox when it died instead', async () => {
    const sid = await newSession();
    await bash(sid, 'echo old > old.txt');
    await reap();
    await bash(sid, 'echo newer > newer.txt');
    const live = (await manager.get(sid, 'default'))!;
    process.kill(Number(live.ref), 'SIGKILL');
    await new Promise((r) => setTimeout(r, 300));
    expect((await bash(sid, 'true')).isError).toBe(true); // it died during this call
    const fresh = await bash(sid, 'ls');
    expect(fresh.output).toBe('');
    // The older snapshot is still the name's (deleted with the next one, or the session).
    expect(snapshotsOf(sid)).toHaveLength(1);
  });
});

describe('a fork', () => {
  it('starts its sandbox from a copy of its source\'s workspace, taken now from a running one', async () => {
    const source = await newSession();
    await bash(source, 'echo from-source > shared.txt');
    const fork = await newSession();
    expect(await manager.seedFork(TENANT, source, fork)).toEqual([{ name: 'default' }]);
    // The source goes on; the fork has its own copy.
    await bash(source, 'echo later >> shared.txt');
    const first = await bash(fork, 'cat shared.txt');
    expect(first.output).toMatch(/^\[corral\] sandbox "default": this session was forked from session sesn_ws_\d+; this call runs in a new sandbox whose workspace was restored from a copy of that session's workspace: 1 files, 12 B\. Processes from before it are gone\nfrom-source\n$/);
    expect(snapshotsOf(fork)).toHaveLength(1);
    await manager.releaseAll(source);
    expect((await bash(fork, 'cat shared.txt')).output).toBe('from-source\n');
  });

  it('copies the latest snapshot of a stopped source', async () => {
    const source = await newSession();
    await bash(source, 'echo kept > kept.txt');
    await reap();
    const fork = await newSession();
    await manager.seedFork(TENANT, source, fork);
    expect((await bash(fork, 'cat kept.txt')).output).toMatch(/\nkept\n$/);
  });
});
