import { randomBytes } from 'node:crypto';
import { withSpan } from '../telemetry/trace.js';
import { ConflictError, CorralError, NotFoundError } from '../errors.js';
import type { StateTable } from '../store.js';
import { SandboxRecords } from '../storage/items.js';
import { NewerRecordError } from '../storage/schema.js';
import { keys } from '../storage/keys.js';
import { SandboxClient, callTimeoutMs, type RestoreSummary } from './client.js';
import { KeySealer, type CapabilitySealer } from './sealing.js';
import {
  SandboxSetupError,
  SandboxUnavailableError,
  StepDeadlineError,
  type ExecuteOptions,
  type SandboxEndpoint,
  type SandboxOwner,
  type SandboxProvider,
  type ToolOutput,
} from './types.js';
import { fitRecipe, type RecipePlan } from './recipe.js';
import { WRITING_TOOLS, catalogueOutputs, mountFiles, type SessionFileStore } from './session-files.js';
import { collectMemoryWrites, mountMemory } from './memory-mounts.js';
import type { MemoryStoreService } from '../memory/store.js';
import {
  WorkspaceSnapshots,
  describeBytes,
  snapshotIdOf,
  workspaceSnapshotKey,
  type WorkspaceSnapshotOptions,
  type WorkspaceSnapshotRef,
} from './workspaces.js';
import { WarmPool, type WarmPoolSettings } from './warm-pool.js';
import { PackageCache, packageCacheKey, type PackageCacheOptions, type SandboxPackagesReport } from './package-cache.js';
import type { ProvisionedSandbox } from './types.js';

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
  /** The session's file resources this sandbox holds: mount path → file id, or `!<file id>` for one gone from the Files API (`session-files.ts`). */
  files?: Record<string, string>;
  /** The session's memory stores this sandbox holds: mount path → memory path → content SHA-256 (`memory-mounts.ts`). */
  memory?: Record<string, Record<string, string>>;
  /**
   * The agent's change marker of `/mnt/session/outputs` when its outputs were last catalogued
   * completely: a writing call answered with the same marker changed nothing there, and is not
   * catalogued again (no listing request, no state-table query).
   */
  outputsMarker?: string;
  /**
   * The latest snapshot of this name's workspace (workspaces.ts): taken when the idle reaper
   * stopped the sandbox, copied from the source of a fork, or carried over from the record this
   * one replaced (so that it is deleted in its turn).
   */
  snapshot?: WorkspaceSnapshotRef;
  /** Why the workspace could not be snapshotted when this sandbox was stopped. */
  snapshotError?: string;
  /** A record that only seeds a fork's first sandbox with its source's workspace (no sandbox ran). */
  forkedFrom?: { sessionId: string; name: string };
}

/** What became of the workspace of a new sandbox that replaced a stopped one. */
export type WorkspaceOutcome =
  | { kind: 'restored'; summary: RestoreSummary; snapshot: WorkspaceSnapshotRef }
  | { kind: 'not_restored'; error: string }
  | { kind: 'not_saved'; error: string };

export interface ExecutionReport extends ToolOutput {
  sandbox: string;
  /** Milliseconds spent provisioning a sandbox for this call (0 when one was ready). */
  provisionMs: number;
  /** The sandbox could not be set up from its recipe (a repository failed to clone, say). */
  setupError?: { type: string; message: string };
  /** How the sandbox started for this call got the environment's packages (none: no new sandbox, or no packages). */
  packages?: SandboxPackagesReport;
}

/**
 * Records live in the session's partition of the state table; ready ones are also in the index,
 * ordered by last use, so the idle reaper finds them across sessions (storage/items.ts,
 * `sandboxItem`). Sandboxes that are not ready leave the index (sparse).
 */
export { ACTIVE_SANDBOX_SHARDS } from '../storage/items.js';
export const sandboxKey = keys.sandbox;

const records = new SandboxRecords<SandboxRecord>();

/**
 * Write a record; with `expect`, only if the stored one still has that `ref` (and `state`, and
 * `lastUsedAt`): a record that was replaced, reaped or handed off meanwhile is left alone.
 * Returns false when the condition failed.
 */
export function putSandboxRecord(
  table: StateTable,
  record: SandboxRecord,
  expect?: { ref: string; state?: SandboxState; lastUsedAt?: string },
): Promise<boolean> {
  return records.put(table, record, expect);
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
  /** Workspace snapshots (the idle reaper takes them, `ensure` restores them); none without a blob store. */
  readonly workspaces?: WorkspaceSnapshots;
  /** Sandboxes started ahead per environment (`warm-pool.ts`); none unless configured. */
  readonly warmPool?: WarmPool;
  /** The environments' package caches (package-cache.ts); none without a blob store. */
  readonly packageCache?: PackageCache;
  private readonly logger?: { warn(message: string, extra?: Record<string, unknown>): void };
  /** The memory stores that `memory_store` resources mount (memory-mounts.ts). @default - none mounted */
  private readonly memoryStores?: MemoryStoreService;

  constructor(
    private readonly provider: SandboxProvider,
    private readonly table: StateTable,
    /** Seals capabilities at rest (a key, or a sealer: see sealing.ts). @default - stored as they are */
    capabilityKey?: Buffer | CapabilitySealer,
    /** The Files API: `file` resources go into sandboxes, outputs come out (`session-files.ts`). @default - neither */
    private readonly files?: SessionFileStore,
    /** Where workspaces are kept between sandboxes. @default - nowhere: a stopped sandbox's files are gone */
    workspaces?: WorkspaceSnapshotOptions,
    /** Warm pools, and where their background refills report failures. @default - none */
    extra: { warmPool?: WarmPoolSettings; logger?: { warn(message: string, extra?: Record<string, unknown>): void }; packageCache?: PackageCacheOptions; memoryStores?: MemoryStoreService } = {},
  ) {
    this.memoryStores = extra.memoryStores;
    this.packageCache = extra.packageCache ? new PackageCache(extra.packageCache) : undefined;
    this.sealer = Buffer.isBuffer(capabilityKey) ? new KeySealer(capabilityKey) : capabilityKey;
    this.logger = extra.logger;
    this.workspaces = workspaces ? new WorkspaceSnapshots(workspaces, table, this.sealer) : undefined;
    if (extra.warmPool && Object.values(extra.warmPool.sizes).some((n) => n > 0)) {
      this.warmPool = new WarmPool({ table, provider, settings: extra.warmPool, ...(this.sealer ? { sealer: this.sealer } : {}), ...(extra.logger ? { logger: extra.logger } : {}) });
    }
  }

  async get(sessionId: string, name: string): Promise<SandboxRecord | undefined> {
    const record = await records.get(this.table, sessionId, name);
    return record ? this.opened(record) : undefined;
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
    const stored = await records.get(this.table, sessionId, name);
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
    return records.list(this.table, sessionId);
  }

  async execute(
    sessionId: string,
    name: string,
    plan: RecipePlan,
    tool: string,
    input: unknown,
    opts: ExecuteOptions = {},
  ): Promise<ExecutionReport> {
    try {
      return await this.executeIn(sessionId, name, plan, tool, input, opts);
    } catch (err) {
      // A record a newer Corral wrote (after a rollback) is left alone, sandbox and workspace
      // snapshot with it: the call fails as a tool error, and the session goes on.
      if (!(err instanceof NewerRecordError)) throw err;
      return {
        sandbox: name,
        provisionMs: 0,
        isError: true,
        output: `sandbox "${name}" was set up by a newer version of Corral than the one now running; it is left as it is until that version runs again`,
      };
    }
  }

  private async executeIn(
    sessionId: string,
    name: string,
    plan: RecipePlan,
    tool: string,
    input: unknown,
    opts: ExecuteOptions,
  ): Promise<ExecutionReport> {
    if (!SANDBOX_NAME.test(name)) {
      return { sandbox: name, provisionMs: 0, isError: true, output: `invalid sandbox name ${JSON.stringify(name)}: use 1-64 letters, digits, - or _` };
    }
    let record: SandboxRecord;
    let provisionMs = 0;
    let packages: SandboxPackagesReport | undefined;
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
        const ensured = await this.ensure(sessionId, name, plan, { signal: cut.signal });
        record = ensured.record;
        provisionMs += ensured.provisionMs;
        if (ensured.packages) packages = ensured.packages;
        if (ensured.replaced?.state === 'released') notes.push(corralNote(name, replacedNote(ensured.replaced, ensured.workspace)));
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
      // The session's files, as its plan has them now (a resource added or removed since the last call).
      const refused = this.files && plan.tenant && plan.files.length ? await this.provider.sessionFilesRefusal?.() : undefined;
      // A session given files where sandboxes have no /mnt/session (the API refuses that; a data
      // directory from a runtime with bubblewrap, say): the model is told, the call runs.
      if (refused) notes.push(corralNote(name, `the session's file resources are not mounted: ${refused}`));
      else if (this.files && plan.tenant) {
        const mounted = await mountFiles(record!.endpoint, this.files, plan.tenant, plan.files, record!.files ?? {});
        notes.push(...mounted.notes.map((n) => corralNote(name, n)));
        if (mounted.changed) {
          const next = { ...record!, files: mounted.held };
          if (await this.put(next, { ref: record!.ref, state: 'ready' })) record = next;
        }
      }
      // The session's memory stores: what an earlier call wrote is recorded first, then the stores' changes go in (memory-mounts.ts).
      const memory = this.memoryStores && plan.tenant && plan.memory?.length ? { stores: this.memoryStores, tenant: plan.tenant, planned: plan.memory } : undefined;
      if (memory) {
        const out = await collectMemoryWrites(record!.endpoint, memory.stores, memory.tenant, sessionId, memory.planned, record!.memory ?? {});
        const into = await mountMemory(record!.endpoint, memory.stores, memory.tenant, memory.planned, out.held);
        notes.push(...[...out.notes, ...into.notes].map((n) => corralNote(name, n)));
        if (out.changed || into.changed) {
          const next = { ...record!, memory: into.held };
          if (await this.put(next, { ref: record!.ref, state: 'ready' })) record = next;
        }
      }
      const { output: out, outputsMarker: marker } = await new SandboxClient(record!.endpoint).executeWithMarker(tool, input, opts);
      if (memory && WRITING_TOOLS.has(tool)) {
        // Before the result goes back: a write the result reports is in the store by then.
        const after = await collectMemoryWrites(record!.endpoint, memory.stores, memory.tenant, sessionId, memory.planned, record!.memory ?? {});
        notes.push(...after.notes.map((n) => corralNote(name, n)));
        if (after.changed) record = { ...record!, memory: after.held };
      }
      let outputsMarker = record!.outputsMarker;
      if (this.files && plan.tenant && WRITING_TOOLS.has(tool) && (marker === null || marker !== outputsMarker)) {
        // Never a reason to fail the call: what is not catalogued now is at the next call (the
        // marker is kept only once everything it stands for is catalogued).
        const caught = await catalogueOutputs(record!.endpoint, this.files, plan.tenant, sessionId).catch(() => ({ notes: [] as string[], complete: false }));
        notes.push(...caught.notes.map((n) => corralNote(name, n)));
        outputsMarker = caught.complete && marker !== null ? marker : undefined;
      }
      const { busyUntil: _busy, outputsMarker: _marker, ...rest } = record!;
      await this.put({ ...rest, lastUsedAt: new Date().toISOString(), ...(outputsMarker ? { outputsMarker } : {}) }, { ref: record!.ref, state: 'ready' });
      return { ...out, output: withNotes(out.output), sandbox: name, provisionMs, ...(packages ? { packages } : {}) };
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
        ...(packages ? { packages } : {}),
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
   *
   * The provider is handed only the part of the plan it can deliver (`fitRecipe`); what it cannot
   * is reported here, the same way whatever the provider: a skipped item is a note for the model,
   * a refused one throws `SandboxSetupError` before anything starts.
   */
  async ensure(
    sessionId: string,
    name: string,
    plan: RecipePlan,
    opts: { signal?: AbortSignal } = {},
  ): Promise<{ record: SandboxRecord; provisionMs: number; notes: string[]; replaced?: SandboxRecord; workspace?: WorkspaceOutcome; packages?: SandboxPackagesReport }> {
    const existing = await this.get(sessionId, name);
    if (existing && existing.state === 'ready') return { record: existing, provisionMs: 0, notes: [] };
    const started = Date.now();
    if (opts.signal?.aborted) throw opts.signal.reason;
    const { recipe, issues } = fitRecipe(plan, this.provider.recipeSupport);
    const refused = issues.find((i) => i.outcome === 'refused');
    if (refused) throw new SandboxSetupError(refused.errorType, `${refused.errorType}: ${refused.message}`);
    // A pooled sandbox of exactly this recipe when the environment keeps some (bound to this
    // session as a handoff binds it), else a fresh one. The pool refills in the background.
    const pool = this.warmPool?.eligible(recipe) ? this.warmPool : undefined;
    const claimed = pool
      ? await withSpan('sandbox.claim', { kind: 'client', attributes: { 'corral.session.id': sessionId, 'corral.sandbox.name': name } }, () => pool.claim({ sessionId, name }, recipe, opts.signal).catch((err: unknown) => {
          // The pool's table or a pooled sandbox failed: a fresh sandbox, as without a pool.
          this.logger?.warn('could not claim a pooled sandbox; starting one', { sessionId, sandbox: name, error: (err as Error)?.message ?? String(err) });
          return undefined;
        }))
      : undefined;
    if (pool) void pool.replenish(recipe);
    if (opts.signal?.aborted) {
      if (claimed) await this.provider.release(sessionId, name, claimed.ref).catch(() => undefined);
      throw opts.signal.reason;
    }
    const provision = (cached: boolean) =>
      withSpan('sandbox.provision', { kind: 'client', attributes: { 'corral.session.id': sessionId, 'corral.sandbox.name': name, 'corral.sandbox.replaces': existing ? existing.state : undefined, 'corral.sandbox.packages_cached': cached } }, () =>
        this.provider.provision({ sessionId, name, recipe: cached ? { ...recipe, packagesCached: true } : recipe, ...(opts.signal ? { signal: opts.signal } : {}) }),
      );
    let packages: SandboxPackagesReport | undefined;
    let provisioned: ProvisionedSandbox;
    if (claimed) provisioned = claimed;
    else ({ provisioned, packages } = await this.provisionWithPackages(sessionId, name, recipe, provision, opts.signal));
    // Before the record says it is ready, so no tool call runs in a workspace half restored.
    let workspace: WorkspaceOutcome | undefined;
    try {
      workspace = await this.restoreInto(existing, provisioned.endpoint, opts.signal);
    } catch (err) {
      // Cut by the deadline or an interrupt: nothing half-restored is left running.
      await this.provider.release(sessionId, name, provisioned.ref).catch(() => undefined);
      throw err;
    }
    const now = new Date().toISOString();
    const record: SandboxRecord = {
      sessionId,
      name,
      state: 'ready',
      endpoint: provisioned.endpoint,
      ref: provisioned.ref,
      createdAt: now,
      lastUsedAt: now,
      // The latest snapshot stays the record's until a newer one replaces it (and deletes it).
      ...(existing?.snapshot ? { snapshot: existing.snapshot } : {}),
    };
    await this.put(record);
    const notes = [...issues.map((i) => i.message), ...(provisioned.notes ?? [])];
    return { record, provisionMs: Date.now() - started, notes, replaced: existing, ...(workspace ? { workspace } : {}), ...(packages ? { packages } : {}) };
  }

  /**
   * A fresh sandbox with the environment's packages: restored from the package cache when it holds
   * this recipe's (the sandbox skipped installing them), else installed by the sandbox and then
   * stored. An entry that cannot be restored is deleted and the sandbox is started again, installing;
   * a store that fails is logged (the next sandbox installs again), never the call's failure.
   */
  private async provisionWithPackages(
    sessionId: string,
    name: string,
    recipe: ReturnType<typeof fitRecipe>['recipe'],
    provision: (cached: boolean) => Promise<ProvisionedSandbox>,
    signal: AbortSignal | undefined,
  ): Promise<{ provisioned: ProvisionedSandbox; packages?: SandboxPackagesReport }> {
    const listed = Object.values(recipe.packages).some((l) => l?.length);
    const key = this.packageCache ? packageCacheKey(recipe) : undefined;
    const cache = key ? this.packageCache : undefined;
    const hit = cache && key ? await cache.has(key).catch(() => false) : false;
    const provisioned = await provision(hit);
    if (!listed) return { provisioned };
    const installMs = async () => {
      const health = await new SandboxClient(provisioned.endpoint).status({ ...(signal ? { signal } : {}) });
      return health.state === 'ready' ? (health.packages?.installed ?? {}) : {};
    };
    if (!cache || !key) return { provisioned, packages: { cache: 'off', install_ms: await installMs() } };
    if (hit) {
      const started = Date.now();
      try {
        await cache.restore(provisioned.endpoint, key, { ...(signal ? { signal } : {}) });
        return { provisioned, packages: { cache: 'hit', restore_ms: Date.now() - started, install_ms: await installMs() } };
      } catch (err) {
        await this.provider.release(sessionId, name, provisioned.ref).catch(() => undefined);
        if (signal?.aborted) throw signal.reason;
        this.logger?.warn('the package cache entry could not be restored; installing instead', { sessionId, sandbox: name, environmentId: recipe.environmentId, error: (err as Error)?.message ?? String(err) });
        await cache.delete(key).catch(() => undefined);
        const again = await provision(false);
        return { provisioned: again, packages: await this.storePackages(again, key, signal, sessionId, name) };
      }
    }
    return { provisioned, packages: await this.storePackages(provisioned, key, signal, sessionId, name) };
  }

  /** After an install: the packages directory into the cache (`stored` says whether it was). */
  private async storePackages(provisioned: ProvisionedSandbox, key: string, signal: AbortSignal | undefined, sessionId: string, name: string): Promise<SandboxPackagesReport> {
    const health = await new SandboxClient(provisioned.endpoint).status({ ...(signal ? { signal } : {}) });
    // A sandbox that installed nothing (started without installing: its note says so) has nothing to keep.
    if (health.state !== 'ready' || !health.packages) return { cache: 'off', install_ms: {} };
    const install_ms = health.packages.installed;
    const stored = await this.packageCache!.save(provisioned.endpoint, key, { ...(signal ? { signal } : {}) }).then(
      () => true,
      (err: unknown) => {
        this.logger?.warn('the installed packages were not stored in the package cache', { sessionId, sandbox: name, error: (err as Error)?.message ?? String(err) });
        return false;
      },
    );
    return { cache: 'miss', install_ms, stored };
  }

  /**
   * The workspace of the sandbox `replaced` stood for, restored into a new one: only when it was
   * stopped on purpose (or seeds a fork) and its snapshot is of that very sandbox. A restore that
   * fails is reported, and the new sandbox goes on with what its recipe made.
   */
  private async restoreInto(replaced: SandboxRecord | undefined, endpoint: SandboxEndpoint, signal?: AbortSignal): Promise<WorkspaceOutcome | undefined> {
    if (!replaced || replaced.state !== 'released') return undefined;
    if (replaced.snapshotError) return { kind: 'not_saved', error: replaced.snapshotError };
    const snapshot = replaced.snapshot;
    if (!snapshot || snapshot.ofRef !== replaced.ref) return undefined;
    if (!this.workspaces) return { kind: 'not_restored', error: 'this deployment keeps no workspace snapshots' };
    try {
      const summary = await this.workspaces.restore(endpoint, snapshot.key, { signal });
      return { kind: 'restored', summary, snapshot };
    } catch (err) {
      if (signal?.aborted) throw err;
      return { kind: 'not_restored', error: withoutAddress((err as Error)?.message ?? String(err)) };
    }
  }

  /**
   * A fork's sandboxes start from its source's workspaces: each sandbox name of `from` gets a
   * seed record in `to` pointing at a copy of its latest workspace (a snapshot taken now of a
   * sandbox that is running and not busy; else the latest one kept). What cannot be copied is
   * left out: the fork's sandbox of that name starts from its recipe. Never throws.
   */
  async seedFork(tenant: string, from: string, to: string, logger?: { warn(message: string, extra?: Record<string, unknown>): void }): Promise<Array<{ name: string; error?: string }>> {
    const out: Array<{ name: string; error?: string }> = [];
    if (!this.workspaces) return out;
    for (const stored of await this.list(from)) {
      const source = await this.opened(stored);
      const ref = `fork:${from}:${source.name}`;
      // The record that seeds the fork's first sandbox of this name, with or without a snapshot.
      const seed = (now: string): SandboxRecord => ({
        sessionId: to,
        name: source.name,
        state: 'released',
        endpoint: { kind: 'unix', socketPath: '', capability: '' },
        ref,
        createdAt: now,
        lastUsedAt: now,
        endedReason: `forked from session ${from}`,
        forkedFrom: { sessionId: from, name: source.name },
      });
      try {
        const id = snapshotIdOf(source.name, ref, new Date().toISOString());
        const key = workspaceSnapshotKey(tenant, to, id);
        let bytes: number | null = null;
        const live = source.state === 'ready' && !(source.busyUntil && Date.parse(source.busyUntil) > Date.now());
        if (live) bytes = (await this.workspaces.take(source.endpoint, key)).bytes;
        else if (source.snapshot) bytes = (await this.workspaces.copy(source.snapshot.key, key))?.bytes ?? null;
        if (bytes === null) continue;
        const now = new Date().toISOString();
        await this.put({ ...seed(now), snapshot: { id, key, bytes, takenAt: now, ofRef: ref } });
        out.push({ name: source.name });
      } catch (err) {
        const error = withoutAddress((err as Error)?.message ?? String(err));
        logger?.warn('a fork could not copy its source\'s workspace', { from, to, sandbox: source.name, error });
        out.push({ name: source.name, error });
        // The fork's first tool call in that sandbox says so.
        await this.put({ ...seed(new Date().toISOString()), snapshotError: error }).catch(() => undefined);
      }
    }
    return out;
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
    await records.delete(this.table, from.sessionId, from.name);
    // The workspace went with the sandbox: the source's snapshot of it has no record left.
    if (record.snapshot) await this.workspaces?.delete(record.snapshot.key).catch(() => undefined);
    return moved;
  }

  /** Stop and forget every sandbox of a session, and delete its workspace snapshots. */
  async releaseAll(sessionId: string): Promise<void> {
    for (const record of await this.list(sessionId)) {
      await this.provider.release(sessionId, record.name, record.ref).catch(() => undefined);
      await records.delete(this.table, sessionId, record.name);
      if (record.snapshot) await this.workspaces?.delete(record.snapshot.key);
    }
    await this.provider.releaseAll?.(sessionId);
  }
}

/** What the model is told about a sandbox that replaced one that had been stopped. */
function replacedNote(replaced: SandboxRecord, workspace: WorkspaceOutcome | undefined): string {
  const why = replaced.forkedFrom ? `this session was forked from session ${replaced.forkedFrom.sessionId}` : `it had been stopped (${replaced.endedReason ?? 'released'})`;
  if (workspace?.kind === 'restored') {
    const s = workspace.summary;
    const skipped = s.skipped ? `; ${s.skipped} link${s.skipped === 1 ? '' : 's'} pointing out of the workspace were not restored (${s.skippedExamples.slice(0, 3).join(', ')})` : '';
    const from = replaced.forkedFrom ? "a copy of that session's workspace" : `the snapshot taken when it stopped (${workspace.snapshot.takenAt})`;
    return `${why}; this call runs in a new sandbox whose workspace was restored from ${from}: ${s.files} files, ${describeBytes(s.bytes)}${skipped}. Processes from before it are gone`;
  }
  if (workspace?.kind === 'not_restored') return `${why}; this call runs in a fresh sandbox and its workspace could NOT be restored (${workspace.error}), so files from before it are gone`;
  if (workspace?.kind === 'not_saved' && replaced.forkedFrom) return `${why}, whose workspace could NOT be copied (${workspace.error}), so this call runs in a fresh sandbox`;
  if (workspace?.kind === 'not_saved') return `${why}; its workspace could NOT be saved when it stopped (${workspace.error}), so this call runs in a fresh sandbox without files from before it`;
  return `${why}; this call runs in a fresh sandbox, so files and processes from before it are gone`;
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
