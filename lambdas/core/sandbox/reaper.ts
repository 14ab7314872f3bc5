/**
 * The idle reaper: stops sandboxes that no tool call has used for `idleMs`, across all sessions,
 * and marks them `released` so the next call to that name provisions a fresh one (and tells the
 * model so). Locally a timer in the runtime runs it; on AWS a scheduled Lambda
 * (`lambdas/sandbox-reaper/handler.ts`).
 *
 * It finds candidates through the state table's index, where the manager keeps every ready
 * sandbox ordered by last use (`manager.ts`, `sandboxItem`), so one run reads only the idle ones.
 * A sandbox in the middle of a call (`busyUntil` in the future) is never reaped, and marking it
 * released is conditional on its record being unchanged since it was read, so a call that starts
 * meanwhile wins.
 */
import { CORRAL_ENV, readSandboxIdleMs } from '../config.js';
import type { Logger } from '../logger.js';
import type { StateTable } from '../store.js';
import { ACTIVE_SANDBOX_SHARDS, activeSandboxPartition, putSandboxRecord, type SandboxRecord } from './manager.js';
import type { SandboxProvider } from './types.js';

export { DEFAULT_SANDBOX_IDLE_MS } from '../config.js';
export const SANDBOX_IDLE_ENV = CORRAL_ENV.sandboxIdleMs;

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
}

export interface ReapResult {
  reaped: Array<{ sessionId: string; name: string; ref: string }>;
  failed: Array<{ sessionId: string; name: string; error: string }>;
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
  const result: ReapResult = { reaped: [], failed: [] };
  for (let shard = 0; shard < ACTIVE_SANDBOX_SHARDS; shard++) {
    let after: string | undefined;
    let done = false;
    while (!done) {
      const page = await opts.table.queryIndex(activeSandboxPartition(shard), { after, limit: pageSize });
      for (const item of page.items) {
        // Sorted by last use: everything from here on was used after the cutoff.
        if (String(item.gsi1sk) >= cutoff) {
          done = true;
          break;
        }
        await reapOne(item.record as SandboxRecord, now, cutoff, opts, result);
      }
      if (page.last === null) break;
      after = page.last;
    }
  }
  return result;
}

async function reapOne(record: SandboxRecord, now: Date, cutoff: string, opts: ReapOptions, result: ReapResult) {
  if (record.state !== 'ready' || record.lastUsedAt >= cutoff) return;
  if (record.busyUntil && Date.parse(record.busyUntil) > now.getTime()) return;
  const { busyUntil: _busy, ...rest } = record;
  const released: SandboxRecord = { ...rest, state: 'released', endedReason: `unused for more than ${describeIdle(opts.idleMs)}` };
  const marked = await putSandboxRecord(opts.table, released, { ref: record.ref, state: 'ready', lastUsedAt: record.lastUsedAt });
  if (!marked) return; // used, replaced or handed off since it was read
  try {
    await opts.provider.release(record.sessionId, record.name, record.ref);
    result.reaped.push({ sessionId: record.sessionId, name: record.name, ref: record.ref });
    opts.logger?.info('idle sandbox released', { sessionId: record.sessionId, sandbox: record.name, lastUsedAt: record.lastUsedAt });
  } catch (err) {
    // Put it back as it was, so the next run tries again instead of leaving it running unrecorded.
    await putSandboxRecord(opts.table, record, { ref: record.ref, state: 'released' }).catch(() => undefined);
    const error = (err as Error)?.message ?? String(err);
    result.failed.push({ sessionId: record.sessionId, name: record.name, error });
    opts.logger?.warn('could not release an idle sandbox; will retry', { sessionId: record.sessionId, sandbox: record.name, error });
  }
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
