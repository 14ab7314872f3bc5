/**
 * The idle reaper: stops sandboxes that no tool call has used for `idleMs`, across all sessions,
 * and marks them `released` so the next call to that name provisions a fresh one (and tells the
 * model so). Locally a timer in the runtime runs it; on AWS a scheduled Lambda
 * (`lambdas/sandbox-reaper/handler.ts`).
 *
 * It finds candidates through the state table's index, where the manager keeps every ready
 * sandbox ordered by last use (`storage/items.ts`, `sandboxItem`), so one run reads only the idle ones.
 * A sandbox in the middle of a call (`busyUntil` in the future) is never reaped, and marking it
 * released is conditional on its record being unchanged since it was read, so a call that starts
 * meanwhile wins.
 *
 * With `workspaces`, the sandbox's workspace is snapshotted before it is stopped, and the
 * released record points at the snapshot, so the next sandbox of that name is restored from it
 * (workspaces.ts, docs/WORKSPACES.md). A snapshot that cannot be taken for good (over the limits,
 * the sandbox already gone) does not keep the sandbox running: the record says why, and the next
 * tool call tells the model. One that fails for a passing reason (the store) is tried again on
 * the next run, until the sandbox has been idle twice as long; then it is stopped anyway.
 */
import { CORRAL_ENV, readSandboxIdleMs } from '../config.js';
import type { Logger } from '../logger.js';
import type { StateTable } from '../store.js';
import { ACTIVE_SANDBOX_SHARDS, SandboxRecords } from '../storage/items.js';
import { systemPrincipal } from '../storage/principal.js';
import { WorkspaceTransferError } from './client.js';
import { putSandboxRecord, type SandboxRecord } from './manager.js';
import { SandboxUnavailableError, type SandboxProvider } from './types.js';
import type { WarmPool, WarmPoolReapResult } from './warm-pool.js';
import { snapshotIdOf, workspaceSnapshotKey, type WorkspaceSnapshotRef, type WorkspaceSnapshots } from './workspaces.js';

export { DEFAULT_SANDBOX_IDLE_MS } from '../config.js';
export const SANDBOX_IDLE_ENV = CORRAL_ENV.sandboxIdleMs;

/** The reaper reads the ready sandboxes of every session, of every tenant. */
const REAPER = systemPrincipal('sandbox-reaper');
const records = new SandboxRecords<SandboxRecord>();

export interface ReapOptions {
  table: StateTable;
  provider: SandboxProvider;
  /** A sandbox unused for longer than this is stopped. */
  idleMs: number;
  /** The current time (tests). */
  now?: Date;
  logger?: Logger;
  /** Items read per index query. @default 100 */
  pageSize?: number;
  /** Snapshot each workspace before its sandbox stops. @default - none: workspaces are not kept */
  workspaces?: WorkspaceSnapshots;
  /** Why the sandboxes stop, as the model is told. @default `unused for more than <idleMs>` */
  reason?: string;
  /**
   * Sandboxes reaped at once (snapshot, record, StopTask). One at a time, a run of 5 minutes
   * stops a few hundred sandboxes at best; in parallel, it keeps up with thousands of sessions
   * going idle. Bounded, so a run stays within the account's ECS API rate (StopTask) and does
   * not open hundreds of snapshot transfers at once. @default DEFAULT_REAP_CONCURRENCY
   */
  concurrency?: number;
  /** Warm pools whose sandboxes never claimed are stopped too (`WarmPool.reapExpired`). @default - none */
  warmPool?: WarmPool;
}

/** Sandboxes a reaper run handles at once unless told otherwise. */
export const DEFAULT_REAP_CONCURRENCY = 16;

/** A counting semaphore: `run` waits for one of `limit` slots, runs `work`, and frees the slot. */
export function limiter(limit: number): <T>(work: () => Promise<T>) => Promise<T> {
  let active = 0;
  const waiting: Array<() => void> = [];
  return async (work) => {
    if (active >= limit) await new Promise<void>((r) => waiting.push(r));
    else active++;
    try {
      return await work();
    } finally {
      const next = waiting.shift();
      if (next) next(); // the slot passes on
      else active--;
    }
  };
}

export interface ReapResult {
  reaped: Array<{ sessionId: string; name: string; ref: string }>;
  failed: Array<{ sessionId: string; name: string; error: string }>;
  /** Workspaces kept (`key`), or not (`error`), of the sandboxes reaped in this run. */
  snapshots: Array<{ sessionId: string; name: string; key?: string; bytes?: number; error?: string }>;
  /** Pooled sandboxes stopped in this run (only with `warmPool`). */
  pooled?: WarmPoolReapResult['stopped'];
}

/** `CORRAL_SANDBOX_IDLE_MS` (milliseconds), or 15 minutes: `readSandboxIdleMs` of the configuration contract. */
export const sandboxIdleMsFromEnv = readSandboxIdleMs;

function describeIdle(ms: number): string {
  return ms >= 60_000 && ms % 60_000 === 0 ? `${ms / 60_000} minute${ms === 60_000 ? '' : 's'}` : `${ms} ms`;
}

export async function reapIdleSandboxes(opts: ReapOptions): Promise<ReapResult> {
  const now = opts.now ?? new Date();
  const cutoff = new Date(now.getTime() - opts.idleMs).toISOString();
  const pageSize = opts.pageSize ?? 100;
  const concurrency = Math.max(1, Math.floor(opts.concurrency ?? DEFAULT_REAP_CONCURRENCY));
  const result: ReapResult = { reaped: [], failed: [], snapshots: [] };
  // Ready sandboxes are spread over the index's shards by session: the shards are read side by
  // side, and every idle sandbox found is reaped through one limiter, so at most `concurrency`
  // are reaped at once wherever they are. Each reaping is independent (its own record,
  // conditional writes); one that throws is counted as failed and does not stop the others.
  const slot = limiter(concurrency);
  const reap = (record: SandboxRecord) =>
    slot(() => reapOne(record, now, cutoff, opts, result)).catch((err: unknown) => {
      const error = (err as Error)?.message ?? String(err);
      result.failed.push({ sessionId: record.sessionId, name: record.name, error });
      opts.logger?.warn('could not reap an idle sandbox; the next run tries again', { sessionId: record.sessionId, sandbox: record.name, error });
    });
  const scan = async (shard: number) => {
    let after: string | undefined;
    for (;;) {
      const page = await records.activePage(opts.table, REAPER, shard, { after, limit: pageSize });
      const idle: SandboxRecord[] = [];
      let done = false;
      for (const { record, order } of page.items) {
        // Sorted by last use: everything from here on was used after the cutoff.
        if (order >= cutoff) {
          done = true;
          break;
        }
        idle.push(record);
      }
      await Promise.all(idle.map(reap));
      if (done || page.last === null) return;
      after = page.last;
    }
  };
  const shards = Array.from({ length: ACTIVE_SANDBOX_SHARDS }, (_, i) => i);
  const reader = limiter(Math.min(concurrency, 8));
  await Promise.all(shards.map((shard) => reader(() => scan(shard))));
  if (opts.warmPool) {
    result.pooled = (await opts.warmPool.reapExpired(now).catch((err: unknown) => {
      opts.logger?.warn('warm pool reaping failed; the next run tries again', { error: (err as Error)?.message ?? String(err) });
      return { stopped: [] };
    })).stopped;
  }
  return result;
}

type Saved =
  | { kind: 'saved'; snapshot: WorkspaceSnapshotRef }
  | { kind: 'failed'; error: string }
  | { kind: 'retry'; error: string }
  | { kind: 'busy' }
  | { kind: 'none' };

/** The workspace of an idle sandbox, snapshotted (see the header for what a failure does). */
async function saveWorkspace(record: SandboxRecord, now: Date, opts: ReapOptions): Promise<Saved> {
  const ws = opts.workspaces;
  if (!ws) return { kind: 'none' };
  const tenant = await ws.tenantOf(REAPER, record.sessionId);
  if (!tenant) return { kind: 'none' }; // the session is gone: nothing to keep it for
  const endpoint = await ws.openEndpoint(record, record.endpoint);
  if (!endpoint) return { kind: 'failed', error: 'its capability cannot be read by this process' };
  const id = snapshotIdOf(record.name, record.ref, record.lastUsedAt);
  const key = workspaceSnapshotKey(tenant, record.sessionId, id);
  try {
    const { bytes } = await ws.take(endpoint, key);
    return { kind: 'saved', snapshot: { id, key, bytes, takenAt: now.toISOString(), ofRef: record.ref } };
  } catch (err) {
    // Another run of the reaper is taking this very snapshot: it records it and stops the sandbox.
    if (err instanceof WorkspaceTransferError && err.inProgress) return { kind: 'busy' };
    const error = (err as Error)?.message ?? String(err);
    const final =
      (err instanceof WorkspaceTransferError && err.refused) ||
      err instanceof SandboxUnavailableError ||
      now.getTime() - Date.parse(record.lastUsedAt) > 2 * opts.idleMs;
    return final ? { kind: 'failed', error: err instanceof SandboxUnavailableError ? 'the sandbox could not be reached' : error } : { kind: 'retry', error };
  }
}

async function reapOne(record: SandboxRecord, now: Date, cutoff: string, opts: ReapOptions, result: ReapResult) {
  if (record.state !== 'ready' || record.lastUsedAt >= cutoff) return;
  if (record.busyUntil && Date.parse(record.busyUntil) > now.getTime()) return;
  const where = { sessionId: record.sessionId, sandbox: record.name };
  const saved = await saveWorkspace(record, now, opts);
  if (saved.kind === 'busy') return;
  if (saved.kind === 'retry') {
    result.failed.push({ sessionId: record.sessionId, name: record.name, error: `workspace snapshot: ${saved.error}` });
    opts.logger?.warn('could not snapshot an idle sandbox\'s workspace; it keeps running and the next run tries again', { ...where, error: saved.error });
    return;
  }
  const { busyUntil: _busy, snapshotError: _error, ...rest } = record;
  const released: SandboxRecord = { ...rest, state: 'released', endedReason: opts.reason ?? `unused for more than ${describeIdle(opts.idleMs)}` };
  if (saved.kind === 'saved') released.snapshot = saved.snapshot;
  if (saved.kind === 'failed') released.snapshotError = saved.error;
  const marked = await putSandboxRecord(opts.table, released, { ref: record.ref, state: 'ready', lastUsedAt: record.lastUsedAt });
  if (!marked) {
    // Used, replaced or handed off since it was read: its snapshot is not recorded, unless
    // another run of the reaper recorded the very same one.
    if (saved.kind === 'saved') await discardUnrecorded(record, saved.snapshot, opts);
    return;
  }
  if (saved.kind === 'saved') {
    result.snapshots.push({ sessionId: record.sessionId, name: record.name, key: saved.snapshot.key, bytes: saved.snapshot.bytes });
    opts.logger?.info('workspace snapshot kept', { ...where, snapshot: saved.snapshot.id, bytes: saved.snapshot.bytes });
    // Only the latest is kept.
    if (record.snapshot && record.snapshot.key !== saved.snapshot.key) {
      await opts.workspaces!.delete(record.snapshot.key).catch((err: unknown) => opts.logger?.warn('could not delete an older workspace snapshot', { ...where, error: (err as Error)?.message }));
    }
  } else if (saved.kind === 'failed') {
    result.snapshots.push({ sessionId: record.sessionId, name: record.name, error: saved.error });
    opts.logger?.warn('workspace snapshot failed; the sandbox stops without it and the next tool call is told', { ...where, error: saved.error });
  }
  try {
    await opts.provider.release(record.sessionId, record.name, record.ref);
    result.reaped.push({ sessionId: record.sessionId, name: record.name, ref: record.ref });
    opts.logger?.info('idle sandbox released', { ...where, lastUsedAt: record.lastUsedAt });
  } catch (err) {
    // Put it back as it was (with the snapshot just kept, if any, which the next run's replaces),
    // so the next run tries again instead of leaving it running unrecorded.
    const back: SandboxRecord = saved.kind === 'saved' ? { ...record, snapshot: saved.snapshot } : record;
    await putSandboxRecord(opts.table, back, { ref: record.ref, state: 'released' }).catch(() => undefined);
    const error = (err as Error)?.message ?? String(err);
    result.failed.push({ sessionId: record.sessionId, name: record.name, error });
    opts.logger?.warn('could not release an idle sandbox; will retry', { ...where, error });
  }
}

/** Deletes a snapshot this run took but could not record, unless the record points at it. */
async function discardUnrecorded(record: SandboxRecord, snapshot: WorkspaceSnapshotRef, opts: ReapOptions): Promise<void> {
  const now = await records.get(opts.table, record.sessionId, record.name);
  if (now?.snapshot?.key === snapshot.key) return;
  await opts.workspaces!.delete(snapshot.key).catch(() => undefined);
}

export interface SandboxReaperHandle {
  /** Run once now (tests, or an operator). */
  runOnce(): Promise<ReapResult>;
  stop(): Promise<void>;
}

/**
 * Run the reaper on a timer (the local runtime). Runs never overlap; the timer does not keep the
 * process alive.
 */
export function startSandboxReaper(opts: Omit<ReapOptions, 'now'> & { intervalMs?: number }): SandboxReaperHandle {
  const intervalMs = opts.intervalMs ?? Math.max(250, Math.min(60_000, Math.floor(opts.idleMs / 4)));
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<ReapResult> | undefined;
  const runOnce = () => {
    running ??= reapIdleSandboxes(opts).finally(() => {
      running = undefined;
    });
    return running;
  };
  const schedule = () => {
    if (stopped) return;
    timer = setTimeout(() => {
      runOnce()
        .catch((err: unknown) => opts.logger?.warn('sandbox reaper run failed', { error: (err as Error)?.message ?? String(err) }))
        .finally(schedule);
    }, intervalMs);
    timer.unref();
  };
  schedule();
  return {
    runOnce,
    async stop() {
      stopped = true;
      clearTimeout(timer);
      await running?.catch(() => undefined);
    },
  };
}
