/**
 * How long a workspace snapshot and its restore take: `npm run bench:workspaces` (options:
 * `--files N` (5000), `--mb N` (50), `--runs N` (3), `--isolation auto|bwrap|none` (auto)).
 *
 * A local sandbox (the same agent a Fargate task runs) gets a workspace of N files of text
 * (random hexadecimal, so gzip halves it, as it does source trees and logs), then, `--runs`
 * times: the idle reaper snapshots it into the file blob store and stops it, and the next tool
 * call provisions a new sandbox and restores it. It reports the snapshot (reaper run), the
 * restore alone (the agent's `POST /workspace/restore`, timed around the call), and the extra
 * time the first tool call after an idle stop pays (provisioning with a restore minus one
 * without). The figures go in docs/WORKSPACES.md; they are this machine's, not a promise.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { DynamoStateTable } from '../lambdas/adapters/aws/dynamodb-state-table.js';
import { ensureTables } from '../lambdas/adapters/aws/tables.js';
import { startDynalite } from '../lambdas/adapters/local/dynalite.js';
import { FileBlobStore } from '../lambdas/adapters/local/file-blob-store.js';
import { ProcessSandboxProvider } from '../lambdas/adapters/local/process-sandbox.js';
import { SandboxManager } from '../lambdas/core/sandbox/manager.js';
import { fitRecipe, planRecipe } from '../lambdas/core/sandbox/recipe.js';
import { reapIdleSandboxes } from '../lambdas/core/sandbox/reaper.js';
import { HeadRecords } from '../lambdas/core/storage/items.js';

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
const { values } = parseArgs({
  options: { files: { type: 'string', default: '5000' }, mb: { type: 'string', default: '50' }, runs: { type: 'string', default: '3' }, isolation: { type: 'string', default: 'auto' } },
});
const files = Number(values.files);
const mb = Number(values.mb);
const runs = Number(values.runs);
const isolation = values.isolation as 'auto' | 'bwrap' | 'none';

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const root = fs.mkdtempSync(path.join(os.tmpdir(), 'corral-bench-ws-'));
const db = await startDynalite();
try {
  await ensureTables(db.client, { events: 'events', state: 'state' });
  const table = new DynamoStateTable(db.client, 'state');
  const provider = new ProcessSandboxProvider({ dataDir: path.join(root, 'data'), isolation, logger: { warn: () => {} } });
  const blobs = new FileBlobStore(path.join(root, 'blobs'));
  const manager = new SandboxManager(provider, table, undefined, undefined, { blobs });
  const sid = 'sesn_bench_workspaces';
  await new HeadRecords<{ id: string }>('session').put(table, 'bench', { id: sid }, { rev: 0 } as never);
  const plan = planRecipe({ session: { environment_id: 'env_bench', resources: [] }, environment: { config: { type: 'cloud' } }, credentials: [] });
  const bash = (command: string) => manager.execute(sid, 'default', plan, 'bash', { command, timeout_ms: 600_000 });

  // The workspace: `files` files in directories of 100, `mb` MiB of hexadecimal text in all.
  const perFile = Math.floor((mb * 1024 * 1024) / files / 2);
  const made = await bash(
    `python3 -c "import os\nfor i in range(${files}):\n  d='src/d%03d' % (i // 100)\n  os.makedirs(d, exist_ok=True)\n  open('%s/f%05d.txt' % (d, i), 'w').write(os.urandom(${perFile}).hex())" && du -sb . | cut -f1 && find . -type f | wc -l`,
  );
  if (made.isError) throw new Error(made.output);
  console.log(`workspace: ${made.output.trim().split('\n').join(' bytes, ')} files (isolation ${await provider.isolationMode()})`);

  const snapshotMs: number[] = [];
  const restoreMs: number[] = [];
  const withRestoreMs: number[] = [];
  let bytes = 0;
  for (let i = 0; i < runs; i++) {
    await bash(`echo run ${i} > run.txt`);
    const t0 = performance.now();
    const reaped = await reapIdleSandboxes({ table, provider, idleMs: 1, now: new Date(Date.now() + 60_000), workspaces: manager.workspaces });
    snapshotMs.push(performance.now() - t0);
    if (!reaped.snapshots[0]?.key) throw new Error(`no snapshot: ${JSON.stringify(reaped)}`);
    bytes = reaped.snapshots[0].bytes ?? 0;
    // The restore alone, into a sandbox of another name (timed around the agent's call).
    const other = await provider.provision({ sessionId: sid, name: `restore${i}`, recipe: fitRecipe(plan, provider.recipeSupport).recipe });
    const t1 = performance.now();
    await manager.workspaces!.restore(other.endpoint, reaped.snapshots[0].key);
    restoreMs.push(performance.now() - t1);
    await provider.release(sid, `restore${i}`, other.ref);
    const first = await bash('cat run.txt && find . -type f | wc -l');
    if (!first.output.endsWith(`run ${i}\n${files + 1}\n`)) throw new Error(`not restored: ${first.output.slice(-300)}`);
    withRestoreMs.push(first.provisionMs);
  }
  // The same provisioning without a restore (a sandbox name with no snapshot).
  const bareMs: number[] = [];
  for (let i = 0; i < runs; i++) {
    const r = await manager.execute(sid, `bare${i}`, plan, 'bash', { command: 'true' });
    bareMs.push(r.provisionMs);
  }
  const result = {
    files,
    mib: mb,
    isolation: await provider.isolationMode(),
    snapshotStoredBytes: bytes,
    snapshotMsMedian: Math.round(median(snapshotMs)),
    restoreCallMsMedian: Math.round(median(restoreMs)),
    provisionWithRestoreMsMedian: Math.round(median(withRestoreMs)),
    provisionWithoutRestoreMsMedian: Math.round(median(bareMs)),
    runs,
    cpus: os.cpus().length,
    node: process.version,
  };
  console.log(JSON.stringify(result, null, 2));
  await manager.releaseAll(sid);
  await provider.close();
} finally {
  await db.close();
  fs.rmSync(root, { recursive: true, force: true });
}
