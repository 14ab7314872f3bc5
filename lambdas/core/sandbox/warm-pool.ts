/**
 * Warm pools (optional, per environment): sandboxes started ahead of any session, so that a
 * session whose first action is a tool call waits for a claim (a conditional write and a
 * capability rotation) instead of a start.
 *
 * What a pooled sandbox holds: the environment's part of a recipe only (packages, networking),
 * started under an owner of the pool's own (`warmpool_<environment>`), with a capability only
 * the pool knows (sealed at rest like every other). No session, tenant, repository, vault or
 * file reaches it before its claim. So a session can claim one only when its recipe has nothing
 * of the session in it (no repository, no vault) and is exactly the recipe the sandbox was
 * started with (`recipeKey`: the environment id, its packages and its egress policy); any other
 * session, or an environment whose config changed since, starts a fresh sandbox as before.
 *
 * A claim is the same binding as a handoff (manager.ts `handOff`): the slot is taken with a
 * conditional write (two claimers can never take the same sandbox; a taken slot never becomes
 * ready again), the capability is replaced through the agent (the pool's no longer opens it),
 * and the provider moves it to its new owner (`transfer`). From there on the sandbox is the
 * session's exactly as a freshly provisioned one would be.
 *
 * Bounded: each environment has at most `size` slots (`WARM_POOL_MAX_SIZE` at most), and a slot
 * is filled only by the refill that reserved it (`ifNotExists`). A pooled sandbox never claimed
 * is stopped `maxAgeMs` after it started, by the idle reaper (`reapExpired`); the pool is
 * refilled after claims (and after a session of a pooled environment starts a fresh sandbox),
 * never on the claiming call's path, so an environment no session uses drains to nothing.
 *
 * State table items (storage/keys.ts): the environment's slots and the recipe it fills them
 * with under `warmpool#<environment>`, and the environments that have a pool under `warmpools`.
 */
import { createHash, randomBytes } from 'node:crypto';
import { ConditionFailedError, type Item, type StateTable } from '../store.js';
import { keys, WARM_POOL_SLOT_PREFIX } from '../storage/keys.js';
import { SandboxClient } from './client.js';
import type { CapabilitySealer } from './sealing.js';
import { DEFAULT_WARM_POOL_MAX_AGE_MS, WARM_POOL_MAX_SIZE, type WarmPoolSettings } from '../config.js';
import type { ProvisionedSandbox, SandboxEndpoint, SandboxOwner, SandboxProvider, SandboxRecipe } from './types.js';

export { DEFAULT_WARM_POOL_MAX_AGE_MS, WARM_POOL_MAX_SIZE, type WarmPoolSettings };

/** Session ids of pool owners: never a session's (`sesn_...`). */
export const POOL_OWNER_PREFIX = 'warmpool_';
/** The owner a pooled sandbox is started under, until a session claims it. */
export const poolOwner = (environmentId: string, name: string): SandboxOwner => ({ sessionId: `${POOL_OWNER_PREFIX}${environmentId}`, name });

/** A slot reserved by a refill that never finished (its process died) is given up after this. */
const STARTING_STALE_MS = 15 * 60_000;

export type SlotState = 'starting' | 'ready' | 'taken';

/** One slot of an environment's pool, as stored. */
export interface PoolSlot {
  environmentId: string;
  slot: number;
  state: SlotState;
  /** The recipe the sandbox was started with (`recipeKey`). */
  recipeKey: string;
  startedAt: string;
  /** Ready slots: the pooled sandbox. */
  name?: string;
  ref?: string;
  endpoint?: SandboxEndpoint;
  notes?: string[];
}

/** What identifies a recipe a pooled sandbox can serve: a hash of all of it, keys sorted. */
export function recipeKey(recipe: SandboxRecipe): string {
  const canonical = (v: unknown): unknown =>
    Array.isArray(v) ? v.map(canonical) : v && typeof v === 'object' ? Object.fromEntries(Object.entries(v).filter(([, x]) => x !== undefined).sort(([a], [b]) => (a < b ? -1 : 1)).map(([k, x]) => [k, canonical(x)])) : v;
  return createHash('sha256').update(JSON.stringify(canonical(recipe))).digest('hex').slice(0, 32);
}

export interface WarmPoolOptions {
  table: StateTable;
  provider: SandboxProvider;
  settings: WarmPoolSettings;
  /** Seals pooled capabilities at rest, as the manager seals sessions'. @default - stored as they are */
  sealer?: CapabilitySealer;
  logger?: { warn(message: string, extra?: Record<string, unknown>): void; info?(message: string, extra?: Record<string, unknown>): void };
}

export interface WarmPoolReapResult {
  stopped: Array<{ environmentId: string; ref: string; reason: string }>;
}

export class WarmPool {
  private readonly refills = new Map<string, Promise<void>>();
  private readonly again = new Set<string>();
  /** The recipe key each environment's pool was last told about by this process. */
  private readonly known = new Map<string, string>();
  /** Sandboxes this process started for pools (benchmarks and tests read it). */
  started = 0;

  constructor(private readonly opts: WarmPoolOptions) {
    for (const [env, size] of Object.entries(opts.settings.sizes)) {
      if (!Number.isInteger(size) || size < 0 || size > WARM_POOL_MAX_SIZE) throw new Error(`warm pool of ${env}: size must be an integer from 0 to ${WARM_POOL_MAX_SIZE}, got ${size}`);
    }
  }

  /** Pooled sandboxes kept for an environment (0: it has no pool). */
  size(environmentId: string): number {
    return Object.hasOwn(this.opts.settings.sizes, environmentId) ? this.opts.settings.sizes[environmentId] : 0;
  }

  /** Whether a session with this recipe may be given a pooled sandbox: nothing of the session in it. */
  eligible(recipe: SandboxRecipe): boolean {
    return this.size(recipe.environmentId) > 0 && recipe.repositories.length === 0 && !recipe.vaults;
  }

  /** The environment's slots, as stored. */
  async slots(environmentId: string): Promise<PoolSlot[]> {
    const out: PoolSlot[] = [];
    let after: string | undefined;
    for (;;) {
      const page = await this.opts.table.query(keys.warmPool(environmentId), { prefix: WARM_POOL_SLOT_PREFIX, after });
      for (const item of page.items) out.push(slotFromItem(environmentId, item));
      if (page.last === null) return out;
      after = page.last;
    }
  }

  /**
   * A pooled sandbox of exactly this recipe, now `owner`'s (capability replaced, provider moved),
   * or undefined when the pool has none ready (the caller provisions one). Never throws for a
   * pooled sandbox that turns out dead: it is stopped and the next one is tried.
   */
  async claim(owner: SandboxOwner, recipe: SandboxRecipe, signal?: AbortSignal): Promise<ProvisionedSandbox | undefined> {
    if (!this.eligible(recipe)) return undefined;
    const env = recipe.environmentId;
    const key = recipeKey(recipe);
    const fresh = Date.now() - this.opts.settings.maxAgeMs;
    const candidates = (await this.slots(env)).filter((s) => s.state === 'ready' && s.recipeKey === key && s.slot < this.size(env) && Date.parse(s.startedAt) > fresh);
    // Claimers start at different slots, so that racing ones mostly take different sandboxes.
    const offset = candidates.length ? randomBytes(1)[0] % candidates.length : 0;
    for (let i = 0; i < candidates.length; i++) {
      if (signal?.aborted) return undefined;
      const slot = candidates[(offset + i) % candidates.length];
      if (!(await this.take(slot, owner.sessionId))) continue;
      try {
        const bound = await this.bind(slot, owner, signal);
        return bound;
      } catch (err) {
        this.opts.logger?.warn('a pooled sandbox could not be claimed; it is stopped', { environmentId: env, error: (err as Error)?.message ?? String(err) });
        await this.opts.provider.release(poolOwner(env, slot.name!).sessionId, slot.name!, slot.ref!).catch(() => undefined);
      } finally {
        // The slot is free for the refill; only the one who took it deletes it.
        const k = keys.warmPoolSlot(env, slot.slot);
        await this.opts.table.delete(k.pk, k.sk).catch(() => undefined);
      }
    }
    return undefined;
  }

  /**
   * Tell the pool a session of this recipe's environment wanted a sandbox (claimed or not): the
   * pool takes this recipe as the one to keep ready, and refills in the background. Returns the
   * refill (callers on a session's path do not wait for it).
   */
  replenish(recipe: SandboxRecipe): Promise<void> {
    if (!this.eligible(recipe)) return Promise.resolve();
    const env = recipe.environmentId;
    const key = recipeKey(recipe);
    const run = async () => {
      if (this.known.get(env) !== key) {
        const k = keys.warmPoolRecipe(env);
        const stored = await this.opts.table.get(k.pk, k.sk);
        if (stored?.recipeKey !== key) await this.opts.table.put({ ...k, recipeKey: key, recipe: JSON.stringify(recipe), updatedAt: new Date().toISOString() });
        const r = keys.warmPoolRegistry(env);
        await this.opts.table.put({ ...r, environmentId: env });
        this.known.set(env, key);
      }
    };
    return run().then(() => this.refill(env)).catch((err: unknown) => {
      this.opts.logger?.warn('warm pool refill failed; the next claim tries again', { environmentId: env, error: (err as Error)?.message ?? String(err) });
    });
  }

  /**
   * Fill the environment's empty slots with the recipe it keeps (one refill at a time per
   * environment in this process; a request during one runs once more after it). Sandboxes of
   * another recipe (the environment changed), past their age or beyond the size are stopped.
   */
  refill(environmentId: string): Promise<void> {
    const running = this.refills.get(environmentId);
    if (running) {
      this.again.add(environmentId);
      return running;
    }
    const run = (async () => {
      do {
        this.again.delete(environmentId);
        await this.fill(environmentId);
      } while (this.again.has(environmentId));
    })().finally(() => this.refills.delete(environmentId));
    this.refills.set(environmentId, run);
    return run;
  }

  private async fill(env: string): Promise<void> {
    const size = this.size(env);
    const k = keys.warmPoolRecipe(env);
    const stored = await this.opts.table.get(k.pk, k.sk);
    const now = Date.now();
    const occupied = new Set<number>();
    for (const slot of await this.slots(env)) {
      const stop = this.stopReason(slot, now, stored ? String(stored.recipeKey) : undefined);
      if (stop) await this.retire(slot, stop);
      else occupied.add(slot.slot);
    }
    if (!stored || size === 0) return;
    const recipe = JSON.parse(String(stored.recipe)) as SandboxRecipe;
    const fills: Array<Promise<void>> = [];
    for (let i = 0; i < size; i++) if (!occupied.has(i)) fills.push(this.fillSlot(env, i, recipe, String(stored.recipeKey)));
    await Promise.all(fills);
  }

  /** Why a slot's sandbox should be stopped now, or undefined. */
  private stopReason(slot: PoolSlot, now: number, keep: string | undefined): string | undefined {
    if (slot.state === 'starting') return now - Date.parse(slot.startedAt) > STARTING_STALE_MS ? 'its refill never finished' : undefined;
    if (slot.state !== 'ready') return undefined;
    if (slot.slot >= this.size(slot.environmentId)) return 'the pool is smaller now';
    if (now - Date.parse(slot.startedAt) > this.opts.settings.maxAgeMs) return 'never claimed';
    if (keep !== undefined && slot.recipeKey !== keep) return 'the environment changed';
    return undefined;
  }

  private async fillSlot(env: string, i: number, recipe: SandboxRecipe, key: string): Promise<void> {
    const k = keys.warmPoolSlot(env, i);
    const startedAt = new Date().toISOString();
    try {
      await this.opts.table.put({ ...k, environmentId: env, slot: i, state: 'starting', recipeKey: key, startedAt }, { ifNotExists: true });
    } catch (err) {
      if (err instanceof ConditionFailedError) return; // another refill has it
      throw err;
    }
    const name = `pool-${randomBytes(6).toString('hex')}`;
    const owner = poolOwner(env, name);
    let sandbox: ProvisionedSandbox;
    try {
      // The ref goes into the reservation as soon as the sandbox exists: a refill that dies
      // before it is healthy leaves a slot the reaper can stop it from.
      const onStarted = async (ref: string) => {
        await this.opts.table.put({ ...k, environmentId: env, slot: i, state: 'starting', recipeKey: key, startedAt, name, ref }, { ifEquals: { state: 'starting', startedAt } });
      };
      sandbox = await this.opts.provider.provision({ sessionId: owner.sessionId, name, recipe, onStarted });
      this.started++;
    } catch (err) {
      await this.opts.table.delete(k.pk, k.sk);
      throw err;
    }
    const capability = this.opts.sealer ? await this.opts.sealer.seal(owner, sandbox.endpoint.capability) : sandbox.endpoint.capability;
    try {
      await this.opts.table.put(
        { ...k, environmentId: env, slot: i, state: 'ready', recipeKey: key, startedAt, name, ref: sandbox.ref, endpoint: { ...sandbox.endpoint, capability }, ...(sandbox.notes?.length ? { notes: sandbox.notes } : {}) },
        { ifEquals: { state: 'starting', startedAt } },
      );
    } catch (err) {
      // Given up as stale meanwhile: the slot is another refill's now.
      await this.opts.provider.release(owner.sessionId, name, sandbox.ref).catch(() => undefined);
      if (!(err instanceof ConditionFailedError)) throw err;
    }
  }

  /** Take a ready slot for `by` (a session id, or the reaper): a conditional write only one can win. */
  private async take(slot: PoolSlot, by: string): Promise<boolean> {
    const k = keys.warmPoolSlot(slot.environmentId, slot.slot);
    try {
      await this.opts.table.put({ ...slotItem(slot), ...k, state: 'taken', takenBy: by, takenAt: new Date().toISOString() }, { ifEquals: { state: 'ready', ref: slot.ref } });
      return true;
    } catch (err) {
      if (err instanceof ConditionFailedError) return false;
      throw err;
    }
  }

  /** Stop a slot's sandbox (taken first, so no claim can race it) and free the slot. */
  private async retire(slot: PoolSlot, reason: string): Promise<boolean> {
    const k = keys.warmPoolSlot(slot.environmentId, slot.slot);
    if (slot.state === 'starting') {
      // Only if still the same reservation.
      try {
        await this.opts.table.put({ ...slotItem(slot), ...k, state: 'taken', takenBy: 'warmpool:stale' }, { ifEquals: { state: 'starting', startedAt: slot.startedAt } });
      } catch (err) {
        if (err instanceof ConditionFailedError) return false;
        throw err;
      }
      // Its sandbox, if the refill got as far as starting one, is stopped with it.
      if (slot.ref && slot.name) await this.opts.provider.release(poolOwner(slot.environmentId, slot.name).sessionId, slot.name, slot.ref);
      await this.opts.table.delete(k.pk, k.sk);
      return true;
    }
    if (!(await this.take(slot, 'warmpool:retired'))) return false;
    await this.opts.provider.release(poolOwner(slot.environmentId, slot.name!).sessionId, slot.name!, slot.ref!);
    await this.opts.table.delete(k.pk, k.sk);
    this.opts.logger?.info?.('pooled sandbox stopped', { environmentId: slot.environmentId, reason });
    return true;
  }

  /** The claim's binding: the handoff's (a new capability through the agent, the provider follows). */
  private async bind(slot: PoolSlot, owner: SandboxOwner, signal?: AbortSignal): Promise<ProvisionedSandbox> {
    const from = poolOwner(slot.environmentId, slot.name!);
    const stored = slot.endpoint!;
    const capability = this.opts.sealer ? await this.opts.sealer.open(from, stored.capability) : stored.capability;
    if (capability === null) throw new Error('its capability cannot be read by this process');
    const endpoint = await new SandboxClient({ ...stored, capability }).rotateCapability(randomBytes(32).toString('base64url'), { ...(signal ? { signal } : {}) });
    await this.opts.provider.transfer?.(from, owner, slot.ref!);
    return { endpoint, ref: slot.ref!, ...(slot.notes?.length ? { notes: slot.notes } : {}) };
  }

  /**
   * The reaper's part: every pooled sandbox never claimed `maxAgeMs` after it started, of an
   * environment that has no pool any more, or beyond its pool's size, is stopped; slots whose
   * refill never finished are freed. The pool is not refilled here (only claims refill it).
   */
  async reapExpired(now = new Date()): Promise<WarmPoolReapResult> {
    const result: WarmPoolReapResult = { stopped: [] };
    const environments = new Set(Object.keys(this.opts.settings.sizes));
    let after: string | undefined;
    for (;;) {
      const page = await this.opts.table.query(keys.warmPoolRegistryPartition, { after });
      for (const item of page.items) environments.add(String(item.environmentId));
      if (page.last === null) break;
      after = page.last;
    }
    for (const env of environments) {
      for (const slot of await this.slots(env)) {
        const reason = this.stopReason(slot, now.getTime(), undefined);
        if (!reason) continue;
        try {
          if ((await this.retire(slot, reason)) && slot.ref) result.stopped.push({ environmentId: env, ref: slot.ref, reason });
        } catch (err) {
          this.opts.logger?.warn('could not stop a pooled sandbox; the next run tries again', { environmentId: env, error: (err as Error)?.message ?? String(err) });
        }
      }
    }
    return result;
  }

  /**
   * At start: every configured environment whose pool has a recipe is refilled, after its slots
   * that this process cannot open (sealed by an earlier run, whose local sandboxes died with it)
   * are freed. An environment no session has used yet has no recipe, and fills at its first one.
   */
  async prewarm(): Promise<void> {
    await Promise.all(
      Object.keys(this.opts.settings.sizes).filter((env) => this.size(env) > 0).map(async (env) => {
        for (const slot of await this.slots(env)) {
          if (slot.state !== 'ready' || !this.opts.sealer) continue;
          const opened = await this.opts.sealer.open(poolOwner(env, slot.name!), slot.endpoint!.capability).catch(() => undefined);
          if (opened === null) await this.retire(slot, 'its capability cannot be read by this process');
        }
        await this.refill(env);
      }),
    ).catch((err: unknown) => this.opts.logger?.warn('warm pool prewarm failed; the next claim refills', { error: (err as Error)?.message ?? String(err) }));
  }

  /** Wait for the refills under way (shutdown, tests). */
  async settled(): Promise<void> {
    while (this.refills.size) await Promise.all([...this.refills.values()].map((p) => p.catch(() => undefined)));
  }
}

function slotItem(slot: PoolSlot): Record<string, unknown> {
  return Object.fromEntries(Object.entries(slot).filter(([, v]) => v !== undefined));
}

function slotFromItem(environmentId: string, item: Item): PoolSlot {
  return {
    environmentId,
    slot: Number(item.slot),
    state: item.state as SlotState,
    recipeKey: String(item.recipeKey),
    startedAt: String(item.startedAt),
    ...(typeof item.name === 'string' ? { name: item.name } : {}),
    ...(typeof item.ref === 'string' ? { ref: item.ref } : {}),
    ...(item.endpoint ? { endpoint: item.endpoint as SandboxEndpoint } : {}),
    ...(Array.isArray(item.notes) ? { notes: item.notes as string[] } : {}),
  };
}
