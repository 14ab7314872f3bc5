import { randomBytes } from 'node:crypto';
import { ConflictError, CorralError, NotFoundError } from '../errors.js';
import { ConditionFailedError, type Item, type StateTable } from '../store.js';
import { SandboxClient, callTimeoutMs } from './client.js';
import { KeySealer, type CapabilitySealer } from './sealing.js';
import {
  SandboxSetupError,
  SandboxUnavailableError,
  StepDeadlineError,
  type ExecuteOptions,
  type SandboxEndpoint,
  type SandboxOwner,
  type SandboxProvider,
  type SandboxRecipe,
  type ToolOutput,
} from './types.js';

export const DEFAULT_SANDBOX = 'default';
/** Sandbox names the model may use: 1-64 letters, digits, `-` or `_`. */
export const SANDBOX_NAME = /^[A-Za-z0-9_-]{1,64}$/;

/**
 * `ready`: running and reachable (as far as anyone knows). `dead`: it stopped answering during a
 * call. `released`: stopped on purpose (the idle reaper). The next call to a sandbox that is not
 * ready provisions a fresh one from the same recipe.
 */
export type SandboxState = 'ready' | 'dead' | 'released';

export interface SandboxRecord {
  sessionId: string;
  name: string;
  state: SandboxState;
  endpoint: SandboxEndpoint;
  ref: string;
  createdAt: string;
  lastUsedAt: string;
  /** While a tool call runs: the latest time it can still be running (the reaper leaves it alone). */
  busyUntil?: string;
  /** Why it is not ready any more. */
  endedReason?: string;
  /** Set on a sandbox this session received from another one. */
  receivedFrom?: { sessionId: string; name: string; at: string };
}

export interface ExecutionReport extends ToolOutput {
  sandbox: string;
  /** Milliseconds spent provisioning a sandbox for this call (0 when one was ready). */
  provisionMs: number;
  /** The sandbox could not be set up from its recipe (a repository failed to clone, say). */
  setupError?: { type: string; message: string };
}

/**
 * Ready sandboxes are also written to the state table's index, so the idle reaper can find them
 * across sessions by last use: `gsi1pk` = `sandboxes#active#<shard>` (a few partitions, so one
 * busy deployment does not write a single index partition hot), `gsi1sk` =
 * `<lastUsedAt>#<session>#<name>`. Sandboxes that are not ready leave the index (sparse).
 */
export const ACTIVE_SANDBOX_SHARDS = 8;
export const activeSandboxPartition = (shard: number) => `sandboxes#active#${shard}`;

function shardOf(sessionId: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < sessionId.length; i++) h = Math.imul(h ^ sessionId.charCodeAt(i), 0x01000193) >>> 0;
  return h % ACTIVE_SANDBOX_SHARDS;
}

export const sandboxKey = (sessionId: string, name: string) => ({ pk: `session#${sessionId}`, sk: `sandbox#${name}` });

/** The state-table item of a record. `ref`, `state` and `lastUsedAt` are top level for conditions. */
export function sandboxItem(record: SandboxRecord): Item {
  const item: Item = {
    ...sandboxKey(record.sessionId, record.name),
    record,
    ref: record.ref,
    state: record.state,
    lastUsedAt: record.lastUsedAt,
  };
  if (record.state === 'ready') {
    item.gsi1pk = activeSandboxPartition(shardOf(record.sessionId));
    item.gsi1sk = `${record.lastUsedAt}#${record.sessionId}#${record.name}`;
  }
  return item;
}

/**
 * Write a record; with `expect`, only if the stored one still has that `ref` (and `state`, and
 * `lastUsedAt`): a record that was replaced, reaped or handed off meanwhile is left alone.
 * Returns false when the condition failed.
 */
export async function putSandboxRecord(
  table: StateTable,
  record: SandboxRecord,
  expect?: { ref: string; state?: SandboxState; lastUsedAt?: string },
): Promise<boolean> {
  try {
    const ifEquals = expect ? Object.fromEntries(Object.entries(expect).filter(([, v]) => v !== undefined)) : undefined;
    await table.put(sandboxItem(record), ifEquals ? { ifEquals } : {});
    return true;
  } catch (err) {
    if (err instanceof ConditionFailedError) return false;
    throw err;
  }
}

export { SEALED_PREFIX, sealCapability, openCapability } from './sealing.js';

const corralNote = (name: string, text: string) => `[corral] sandbox "${name}": ${text}`;

/**
 * The harness's hands: finds a session's named sandbox (recorded in the state table, so any
 * harness can reach it), provisions one lazily on the first call that needs it, and turns a
 * sandbox that died into a tool error, forgetting it so the next call gets a fresh one.
 *
 * Every write after provisioning is conditional on the record still describing the same sandbox
 * (`ref`), so a harness that comes back from a long call never resurrects, or stops, a sandbox
 * that was reaped, replaced or handed to another session meanwhile.
 */
export class SandboxManager {
  private readonly sealer?: CapabilitySealer;

  constructor(
    private readonly provider: SandboxProvider,
    private readonly table: StateTable,
    /** Seals capabilities at rest (a key, or a sealer: see sealing.ts). @default - stored as they are */
    capabilityKey?: Buffer | CapabilitySealer,
  ) {
    this.sealer = Buffer.isBuffer(capabilityKey) ? new KeySealer(capabilityKey) : capabilityKey;
  }

  async get(sessionId: string, name: string): Promise<SandboxRecord | undefined> {
    const k = sandboxKey(sessionId, name);
    const item = await this.table.get(k.pk, k.sk);
    return item ? this.opened(item.record as SandboxRecord) : undefined;
  }

  /** A stored record with its capability opened; one that cannot be opened is not reachable. */
  private async opened(record: SandboxRecord): Promise<SandboxRecord> {
    if (!this.sealer) return record;
    const capability = await this.sealer.open(record, record.endpoint.capability);
    if (capability !== null) return { ...record, endpoint: { ...record.endpoint, capability } };
    return record.state === 'ready' ? { ...record, state: 'dead', endedReason: 'its capability cannot be read by this process (the runtime restarted)' } : record;
  }

  /** The stored record of a ready sandbox whose capability this process cannot open, if that is what is stored. */
  private async unreadable(sessionId: string, name: string): Promise<SandboxRecord | undefined> {
    if (!this.sealer) return undefined;
    const k = sandboxKey(sessionId, name);
    const stored = (await this.table.get(k.pk, k.sk))?.record as SandboxRecord | undefined;
    if (!stored || stored.state !== 'ready') return undefined;
    return (await this.sealer.open(stored, stored.endpoint.capability)) === null ? stored : undefined;
  }

  /** `putSandboxRecord` with the capability sealed. */
  private async put(record: SandboxRecord, expect?: { ref: string; state?: SandboxState; lastUsedAt?: string }): Promise<boolean> {
    const stored = this.sealer
      ? { ...record, endpoint: { ...record.endpoint, capability: await this.sealer.seal(record, record.endpoint.capability) } }
      : record;
    return putSandboxRecord(this.table, stored, expect);
  }

  async list(sessionId: string): Promise<SandboxRecord[]> {
    const page = await this.table.query(`session#${sessionId}`, { prefix: 'sandbox#' });
    return page.items.map((i) => i.record as SandboxRecord);
  }

  async execute(
    sessionId: string,
    name: string,
    recipe: SandboxRecipe,
    tool: string,
    input: unknown,
    opts: ExecuteOptions = {},
  ): Promise<ExecutionReport> {
    if (!SANDBOX_NAME.test(name)) {
      return { sandbox: name, provisionMs: 0, isError: true, output: `invalid sandbox name ${JSON.stringify(name)}: use 1-64 letters, digits, - or _` };
    }
    let record: SandboxRecord;
    let provisionMs = 0;
    const notes: string[] = [];
    const budgetMs = opts.timeoutMs ?? callTimeoutMs(tool, input);
    // A ready sandbox whose capability this process cannot open belonged to a runtime that
    // restarted (local sandboxes die with it): like one that dies during a call, the model is
    // told and the next call starts a fresh one; the call is not silently run again elsewhere.
    const unreachable = await this.unreadable(sessionId, name);
    if (unreachable) {
      const reason = 'its runtime restarted, and the sandbox with it';
      const marked = await putSandboxRecord(this.table, { ...unreachable, state: 'dead', endedReason: reason }, { ref: unreachable.ref, state: 'ready' });
      if (marked) await this.provider.release(sessionId, name, unreachable.ref).catch(() => undefined);
      return {
        sandbox: name,
        provisionMs: 0,
        isError: true,
        output: `sandbox "${name}" became unavailable (${reason}). Its state is lost; the next tool call starts a fresh sandbox from the same recipe.`,
      };
    }
    // Provisioning stops at the step's deadline or the user's interrupt, whichever comes first.
    const cut = cutSignal(opts);
    try {
      for (let attempt = 0; ; attempt++) {
        const ensured = await this.ensure(sessionId, name, recipe, { signal: cut.signal });
        record = ensured.record;
        provisionMs += ensured.provisionMs;
        if (ensured.replaced?.state === 'released') {
          notes.push(
            corralNote(name, `it had been stopped (${ensured.replaced.endedReason ?? 'released'}); this call runs in a fresh sandbox, so files and processes from before it are gone`),
          );
        }
        notes.push(...ensured.notes.map((n) => corralNote(name, n)));
        // Mark it busy, so the idle reaper leaves it alone while the call runs.
        const now = new Date();
        const busy: SandboxRecord = { ...record, lastUsedAt: now.toISOString(), busyUntil: new Date(now.getTime() + budgetMs).toISOString() };
        if (await this.put(busy, { ref: record.ref, state: 'ready' })) {
          record = busy;
          break;
        }
        // Reaped, replaced or handed off between reading and marking: look again (once).
        if (attempt >= 1) break;
      }
    } catch (err) {
      // Cut by the deadline or an interrupt: not a sandbox failure; the caller decides.
      if (err instanceof StepDeadlineError || opts.signal?.aborted) throw err;
      return {
        sandbox: name,
        provisionMs: 0,
        isError: true,
        output: `could not start sandbox "${name}": ${withoutAddress((err as Error).message)}`,
        ...(err instanceof SandboxSetupError ? { setupError: { type: err.type, message: err.message } } : {}),
      };
    } finally {
      cut.dispose();
    }
    const withNotes = (output: string) => (notes.length ? `${notes.join('\n')}\n${output}` : output);
    try {
      const out = await new SandboxClient(record!.endpoint).execute(tool, input, opts);
      const { busyUntil: _busy, ...rest } = record!;
      await this.put({ ...rest, lastUsedAt: new Date().toISOString() }, { ref: record!.ref, state: 'ready' });
      return { ...out, output: withNotes(out.output), sandbox: name, provisionMs };
    } catch (err) {
      // The step's deadline: the call goes on in the sandbox (so it stays busy), and the next
      // call with the same idempotency key picks its result up.
      if (err instanceof StepDeadlineError) throw err;
      if (!(err instanceof SandboxUnavailableError)) {
        // Aborted (the user interrupted) or a bug: the sandbox is not busy on our account any more.
        const { busyUntil: _busy, ...rest } = record!;
        await this.put(rest, { ref: record!.ref, state: 'ready' }).catch(() => undefined);
        throw err;
      }
      const { busyUntil: _busy, ...rest } = record!;
      const marked = await this.put({ ...rest, state: 'dead', endedReason: err.message }, { ref: record!.ref, state: 'ready' });
      // Only the writer that marked it dead stops it: a sandbox handed off meanwhile is not ours.
      if (marked) await this.provider.release(sessionId, name, record!.ref).catch(() => undefined);
      return {
        sandbox: name,
        provisionMs,
        isError: true,
        output: withNotes(
          `sandbox "${name}" became unavailable during this call (${withoutAddress(err.message)}). ` +
            'Its state is lost; the next tool call starts a fresh sandbox from the same recipe.',
        ),
      };
    }
  }

  /**
   * The session's sandbox of this name, provisioned now if it has none that is ready. `notes` are
   * the new sandbox's (empty when one was ready); `replaced` is the record it replaces, if any.
   */
  async ensure(
    sessionId: string,
    name: string,
    recipe: SandboxRecipe,
    opts: { signal?: AbortSignal } = {},
  ): Promise<{ record: SandboxRecord; provisionMs: number; notes: string[]; replaced?: SandboxRecord }> {
    const existing = await this.get(sessionId, name);
    if (existing && existing.state === 'ready') return { record: existing, provisionMs: 0, notes: [] };
    const started = Date.now();
    if (opts.signal?.aborted) throw opts.signal.reason;
    const provisioned = await this.provider.provision({ sessionId, name, recipe, ...(opts.signal ? { signal: opts.signal } : {}) });
    const now = new Date().toISOString();
    const record: SandboxRecord = {
      sessionId,
      name,
      state: 'ready',
      endpoint: provisioned.endpoint,
      ref: provisioned.ref,
      createdAt: now,
      lastUsedAt: now,
    };
    await this.put(record);
    return { record, provisionMs: Date.now() - started, notes: provisioned.notes ?? [], replaced: existing };
  }

  /**
   * Move a running sandbox to another session (and name) without copying it: the capability is
   * replaced first (so whoever held the old one, the source included, can no longer call it),
   * the provider follows, the target's record is written and the source's removed. The caller
   * checks that both sessions are idle and records the handoff in both logs (`handoff.ts`).
   */
  async handOff(from: SandboxOwner, to: SandboxOwner): Promise<SandboxRecord> {
    const record = await this.get(from.sessionId, from.name);
    if (!record || record.state !== 'ready') {
      throw new NotFoundError(`session ${from.sessionId} has no running sandbox named "${from.name}"`);
    }
    const existing = await this.get(to.sessionId, to.name);
    if (existing?.state === 'ready') {
      throw new ConflictError(`session ${to.sessionId} already has a running sandbox named "${to.name}"; choose another name with "as"`);
    }
    if (record.busyUntil && Date.parse(record.busyUntil) > Date.now()) {
      throw new ConflictError(`sandbox "${from.name}" of session ${from.sessionId} is running a tool call; try again when it is done`);
    }
    let endpoint: SandboxEndpoint;
    try {
      endpoint = await new SandboxClient(record.endpoint).rotateCapability(randomBytes(32).toString('base64url'));
    } catch (err) {
      if (!(err instanceof SandboxUnavailableError)) throw err;
      // Not reachable from here: dead, or this process has no route to it. Either way nothing
      // changes; a dead one is found out (and replaced) by its session's next tool call.
      throw new CorralError('api_error', 503, `sandbox "${from.name}" of session ${from.sessionId} could not be reached to hand it off: ${err.message.replace(/^sandbox at \S+ (is unavailable: )?/, '')}`);
    }
    const now = new Date().toISOString();
    const moved: SandboxRecord = {
      sessionId: to.sessionId,
      name: to.name,
      state: 'ready',
      endpoint,
      ref: record.ref,
      createdAt: record.createdAt,
      lastUsedAt: now,
      receivedFrom: { sessionId: from.sessionId, name: from.name, at: now },
    };
    try {
      await this.provider.transfer?.(from, to, record.ref);
      await this.put(moved);
    } catch (err) {
      // Keep it where it was, reachable with the new capability.
      await this.put({ ...record, endpoint }).catch(() => undefined);
      throw err;
    }
    const k = sandboxKey(from.sessionId, from.name);
    await this.table.delete(k.pk, k.sk);
    return moved;
  }

  /** Stop and forget every sandbox of a session. */
  async releaseAll(sessionId: string): Promise<void> {
    for (const record of await this.list(sessionId)) {
      await this.provider.release(sessionId, record.name, record.ref).catch(() => undefined);
      const k = sandboxKey(sessionId, record.name);
      await this.table.delete(k.pk, k.sk);
    }
    await this.provider.releaseAll?.(sessionId);
  }
}

/**
 * A signal that aborts at `opts.deadline` (with `StepDeadlineError`) or with `opts.signal`;
 * `dispose` clears its timer.
 */
function cutSignal(opts: ExecuteOptions): { signal?: AbortSignal; dispose(): void } {
  if (opts.deadline === undefined) return { signal: opts.signal, dispose() {} };
  const controller = new AbortController();
  const cut = () => controller.abort(new StepDeadlineError('provisioning the sandbox'));
  const ms = opts.deadline - Date.now();
  // setTimeout fires at once for delays past 2^31-1 ms; a deadline that far away never cuts.
  const timer = ms <= 0 ? (cut(), undefined) : ms < 2 ** 31 - 1 ? setTimeout(cut, ms) : undefined;
  const onAbort = () => controller.abort(opts.signal!.reason);
  if (opts.signal?.aborted) onAbort();
  opts.signal?.addEventListener('abort', onAbort, { once: true });
  return {
    signal: controller.signal,
    dispose() {
      clearTimeout(timer);
      opts.signal?.removeEventListener('abort', onAbort);
    },
  };
}

/**
 * An error message as the model may see it: without the sandbox's address (a socket path or a
 * private IP), which is the operator's business, not the agent's.
 */
export function withoutAddress(message: string): string {
  const reason = message.match(/^sandbox at \S+ is unavailable: ([\s\S]*)$/);
  if (reason) return reason[1];
  return message.replace(/\bsandbox at \S+ /g, 'the sandbox ').replace(/\bunix:\S+|\bhttps?:\/\/\d{1,3}(\.\d{1,3}){3}(:\d+)?\S*/g, '<sandbox>');
}
