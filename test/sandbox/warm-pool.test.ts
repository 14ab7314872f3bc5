/**
 * Warm pools (lambdas/core/sandbox/warm-pool.ts) with real local sandboxes over a real state
 * table (dynalite): a tool-first session's first call claims a pooled sandbox instead of
 * starting one; racing sessions never share one; a pooled sandbox holds nothing of a session
 * until its claim and is bound like a fresh one after it; a pool of an older environment
 * config is never used; sandboxes never claimed are reaped.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { DynamoStateTable } from '../../lambdas/adapters/aws/dynamodb-state-table.js';
import { ensureTables } from '../../lambdas/adapters/aws/tables.js';
import { startDynalite, type EmbeddedDynamo } from '../../lambdas/adapters/local/dynalite.js';
import { ProcessSandboxProvider } from '../../lambdas/adapters/local/process-sandbox.js';
import { SandboxClient } from '../../lambdas/core/sandbox/client.js';
import { SandboxManager } from '../../lambdas/core/sandbox/manager.js';
import { reapIdleSandboxes } from '../../lambdas/core/sandbox/reaper.js';
import { fitRecipe, type RecipePlan } from '../../lambdas/core/sandbox/recipe.js';
import { KeySealer } from '../../lambdas/core/sandbox/sealing.js';
import { SandboxUnavailableError, type ProvisionRequest, type ProvisionedSandbox, type SandboxProvider } from '../../lambdas/core/sandbox/types.js';
import { POOL_OWNER_PREFIX, WARM_POOL_MAX_SIZE, WarmPool, poolOwner, recipeKey, type PoolSlot } from '../../lambdas/core/sandbox/warm-pool.js';
import { keys } from '../../lambdas/core/storage/keys.js';
import { planFor, processAlive, tempDir, until } from './helpers.js';

let db: EmbeddedDynamo;
let table: DynamoStateTable;
let root: string;
let inner: ProcessSandboxProvider;
let n = 0;
const sessionId = () => `sesn_pool_${++n}`;
const envId = () => `env_pool_${n}_${crypto.randomBytes(3).toString('hex')}`;
const key = crypto.randomBytes(32);

/**
 * The local provider, counting who it starts sandboxes for; pool refills wait while it is held
 * (`hold`, `open`), so a test decides when the pool may refill.
 */
class CountingProvider implements SandboxProvider {
  readonly starts: string[] = [];
  /** Refs released, in order. */
  readonly releases: string[] = [];
  private held = false;
  private readonly waiting: Array<() => void> = [];
  constructor(readonly inner: ProcessSandboxProvider) {}
  hold() {
    this.held = true;
  }
  open() {
    this.held = false;
    for (const go of this.waiting.splice(0)) go();
  }
  get recipeSupport() {
    return this.inner.recipeSupport;
  }
  async provision(req: ProvisionRequest): Promise<ProvisionedSandbox> {
    if (req.sessionId.startsWith(POOL_OWNER_PREFIX) && this.held) await new Promise<void>((r) => this.waiting.push(r));
    this.starts.push(req.sessionId);
    return this.inner.provision(req);
  }
  release(sessionId: string, name: string, ref: string) {
    this.releases.push(ref);
    return this.inner.release(sessionId, name, ref);
  }
  releaseAll(sessionId: string) {
    return this.inner.releaseAll(sessionId);
  }
  transfer(...args: Parameters<ProcessSandboxProvider['transfer']>) {
    return this.inner.transfer(...args);
  }
}

function setup(sizes: Record<string, number>, maxAgeMs = 60 * 60_000) {
  const provider = new CountingProvider(inner);
  const manager = new SandboxManager(provider, table, key, undefined, undefined, { warmPool: { sizes, maxAgeMs } });
  return { provider, manager, pool: manager.warmPool! };
}

const recipeOf = (plan: RecipePlan) => fitRecipe(plan, inner.recipeSupport).recipe;
const ready = async (pool: WarmPool, env: string) => (await pool.slots(env)).filter((s) => s.state === 'ready');

beforeAll(async () => {
  db = await startDynalite();
  await ensureTables(db.client, { events: 'events', state: 'state' });
  table = new DynamoStateTable(db.client, 'state');
  root = tempDir('corral-warmpool-');
  inner = new ProcessSandboxProvider({ dataDir: root, isolation: 'none', logger: { warn: () => {} } });
});
afterEach(async () => {
  // Stop every pooled sandbox left behind.
  await new WarmPool({ table, provider: inner, settings: { sizes: {}, maxAgeMs: 1 } }).reapExpired(new Date(Date.now() + 3_600_000));
});
afterAll(async () => {
  await inner.close();
  await db.close();
  fs.rmSync(root, { recursive: true, force: true });
});

describe('a warm pool of local sandboxes', () => {
  it("gives a tool-first session's first call the pooled sandbox, starts none for it, and refills in the background", async () => {
    const env = envId();
    const plan = planFor({ environmentId: env });
    const { provider, manager, pool } = setup({ [env]: 1 });
    await pool.replenish(recipeOf(plan));
    const [pooled] = await ready(pool, env);
    expect(pooled).toMatchObject({ slot: 0, state: 'ready', recipeKey: recipeKey(recipeOf(plan)) });
    // Sealed at rest, for the pool's owner: a read of the table opens nothing.
    expect(pooled.endpoint!.capability).toMatch(/^sealed:v1:/);
    const poolCapability = (await new KeySealer(key).open(poolOwner(env, pooled.name!), pooled.endpoint!.capability))!;
    const pooledWorkspace = inner.workspaceDir(poolOwner(env, pooled.name!).sessionId, pooled.name!);

    provider.hold(); // no refill until the test says so
    const sid = sessionId();
    const out = await manager.execute(sid, 'default', plan, 'bash', { command: 'echo first; pwd' });
    expect(out).toMatchObject({ isError: false, sandbox: 'default' });
    expect(out.output).toMatch(/^first\n/);
    const record = (await manager.get(sid, 'default'))!;
    expect(record.ref).toBe(pooled.ref);
    expect(provider.starts.filter((s) => s === sid)).toEqual([]);
    // The slot was emptied by the claim; nothing was started (the refill waits at the gate).
    expect(await ready(pool, env)).toEqual([]);

    // Bound as a fresh one: a capability of its own (the pool's is refused), the provider's
    // bookkeeping follows the session (its releaseAll stops it).
    expect(record.endpoint.capability).not.toBe(poolCapability);
    await expect(new SandboxClient({ ...pooled.endpoint!, capability: poolCapability }).execute('bash', { command: 'echo no' })).rejects.toBeInstanceOf(SandboxUnavailableError);
    expect(inner.workspaceDir(sid, 'default')).toBe(pooledWorkspace);

    provider.open();
    await pool.settled();
    const [refilled] = await ready(pool, env);
    expect(refilled.ref).not.toBe(pooled.ref);
    expect(provider.starts.filter((s) => s.startsWith(POOL_OWNER_PREFIX)).length).toBe(2);

    await manager.releaseAll(sid);
    expect(processAlive(Number(pooled.ref))).toBe(false);
  });

  it('gives one of two sessions racing for a pool of one the pooled sandbox, and the other a fresh one', async () => {
    const env = envId();
    const plan = planFor({ environmentId: env });
    const { provider, manager, pool } = setup({ [env]: 1 });
    await pool.replenish(recipeOf(plan));
    const [pooled] = await ready(pool, env);
    provider.hold();
    const [a, b] = [sessionId(), sessionId()];
    const outs = await Promise.all([a, b].map((sid) => manager.execute(sid, 'default', plan, 'bash', { command: 'echo $$' })));
    for (const out of outs) expect(out.isError).toBe(false);
    const refs = [(await manager.get(a, 'default'))!.ref, (await manager.get(b, 'default'))!.ref];
    expect(refs.filter((r) => r === pooled.ref)).toHaveLength(1);
    expect(refs[0]).not.toBe(refs[1]);
    // Exactly one of them started a sandbox, and it was the one that did not get the pooled one.
    const started = provider.starts.filter((s) => s === a || s === b);
    expect(started).toHaveLength(1);
    expect(refs[[a, b].indexOf(started[0])]).not.toBe(pooled.ref);
    // Only one of them took the slot: the other never tried to bind it (and, failing, stop it).
    expect(provider.releases).not.toContain(pooled.ref);
    await manager.releaseAll(a);
    await manager.releaseAll(b);
  });

  it('holds nothing of any session before its claim, and serves no session that brings something of its own', async () => {
    const env = envId();
    const plan = planFor({ environmentId: env });
    const { provider, manager, pool } = setup({ [env]: 1 });
    await pool.replenish(recipeOf(plan));
    const [pooled] = await ready(pool, env);
    // Its item names no session or tenant; its directory is the pool's; its workspace is empty;
    // its agent was given no credential placeholder and no recipe.
    const k = keys.warmPoolSlot(env, 0);
    const item = (await table.get(k.pk, k.sk))!;
    expect(JSON.stringify(item)).not.toMatch(/sesn_|tenant/);
    const workspace = inner.workspaceDir(poolOwner(env, pooled.name!).sessionId, pooled.name!);
    expect(workspace.split(path.sep)).toContain(`${POOL_OWNER_PREFIX}${env}`);
    expect(fs.readdirSync(workspace)).toEqual([]);
    const environ = fs.readFileSync(`/proc/${pooled.ref}/environ`, 'utf8').split('\0');
    expect(environ.filter((v) => /^CORRAL_(TOOL_ENV|SANDBOX_RECIPE)=/.test(v))).toEqual([]);

    // A session with vaults, or with a repository, is not given the pooled sandbox.
    provider.hold();
    const withVaults = sessionId();
    await manager.execute(withVaults, 'default', { ...plan, vaults: true }, 'bash', { command: 'true' });
    expect((await manager.get(withVaults, 'default'))!.ref).not.toBe(pooled.ref);
    expect(provider.starts).toContain(withVaults);
    expect(pool.eligible({ ...recipeOf(plan), repositories: [{ url: 'https://example.com/a.git', mountPath: '/workspace/a', checkout: null, channel: 'public' }] })).toBe(false);
    expect((await ready(pool, env)).map((s) => s.ref)).toEqual([pooled.ref]);
    await manager.releaseAll(withVaults);
  });

  it('never gives a sandbox of an older environment config, and replaces it with one of the new', async () => {
    const env = envId();
    const before = planFor({ environmentId: env });
    const after = planFor({ environmentId: env, config: { type: 'cloud', networking: { type: 'limited', allowed_hosts: ['example.com'] } } });
    expect(recipeKey(recipeOf(before))).not.toBe(recipeKey(recipeOf(after)));
    const { provider, manager, pool } = setup({ [env]: 1 });
    await pool.replenish(recipeOf(before));
    const [old] = await ready(pool, env);
    const sid = sessionId();
    await manager.execute(sid, 'default', after, 'bash', { command: 'true' });
    expect((await manager.get(sid, 'default'))!.ref).not.toBe(old.ref);
    expect(provider.starts).toContain(sid);
    // The refill that followed stopped the old one and pooled one of the new config.
    await pool.settled();
    const [now] = await ready(pool, env);
    expect(now.recipeKey).toBe(recipeKey(recipeOf(after)));
    expect(now.ref).not.toBe(old.ref);
    await until(() => !processAlive(Number(old.ref)), 10_000, 'the old pooled sandbox to stop');
    await manager.releaseAll(sid);
  });

  it('is reaped when never claimed, and a reaped sandbox is never claimed', async () => {
    const env = envId();
    const plan = planFor({ environmentId: env });
    const { provider, manager, pool } = setup({ [env]: 2 }, 60_000);
    await pool.replenish(recipeOf(plan));
    const pooled = await ready(pool, env);
    expect(pooled).toHaveLength(2);
    // Not yet expired: the reaper leaves them.
    expect((await reapIdleSandboxes({ table, provider, idleMs: 60_000, warmPool: pool })).pooled).toEqual([]);
    const result = await reapIdleSandboxes({ table, provider, idleMs: 60_000, warmPool: pool, now: new Date(Date.now() + 120_000) });
    expect(result.pooled!.map((p) => p.ref).sort()).toEqual(pooled.map((p: PoolSlot) => p.ref).sort());
    expect(result.pooled!.every((p) => p.reason === 'never claimed')).toBe(true);
    for (const p of pooled) expect(processAlive(Number(p.ref))).toBe(false);
    // Their directories go with them (a pool's names are never reused).
    for (const p of pooled) expect(fs.existsSync(path.dirname(inner.workspaceDir(poolOwner(env, p.name!).sessionId, p.name!)))).toBe(false);
    expect(await pool.slots(env)).toEqual([]);
    provider.hold();
    const sid = sessionId();
    await manager.execute(sid, 'default', plan, 'bash', { command: 'true' });
    expect(provider.starts).toContain(sid);
    await manager.releaseAll(sid);
  });

  it('stops the sandbox of a refill that never finished, from the ref it recorded when it started', async () => {
    const env = envId();
    const released: string[] = [];
    // A provider whose sandbox starts (and says so) but never becomes healthy: the refilling process "died".
    const stuck: SandboxProvider = {
      recipeSupport: inner.recipeSupport,
      provision: async (req) => {
        await req.onStarted?.('stuck-ref');
        return new Promise<ProvisionedSandbox>(() => {});
      },
      release: async (_s, _n, ref) => void released.push(ref),
    };
    const pool = new WarmPool({ table, provider: stuck, settings: { sizes: { [env]: 1 }, maxAgeMs: 60_000 } });
    void pool.replenish(recipeOf(planFor({ environmentId: env })));
    await until(async () => (await pool.slots(env)).some((s) => s.ref === 'stuck-ref'), 10_000, 'the starting slot to record its ref');
    expect((await pool.reapExpired()).stopped).toEqual([]);
    const result = await pool.reapExpired(new Date(Date.now() + 16 * 60_000));
    expect(result.stopped).toEqual([{ environmentId: env, ref: 'stuck-ref', reason: 'its refill never finished' }]);
    expect(released).toEqual(['stuck-ref']);
    expect(await pool.slots(env)).toEqual([]);
  });

  it('at start, frees the slots an earlier run left (their capabilities open no more) and refills', async () => {
    const env = envId();
    const recipe = recipeOf(planFor({ environmentId: env }));
    const before = new WarmPool({ table, provider: inner, sealer: new KeySealer(crypto.randomBytes(32)), settings: { sizes: { [env]: 1 }, maxAgeMs: 3_600_000 } });
    await before.replenish(recipe);
    const [old] = await ready(before, env);
    // The runtime restarts: a new sealing key, the same table.
    const after = new WarmPool({ table, provider: inner, sealer: new KeySealer(crypto.randomBytes(32)), settings: { sizes: { [env]: 1 }, maxAgeMs: 3_600_000 } });
    await after.prewarm();
    const [now] = await ready(after, env);
    expect(now.ref).not.toBe(old.ref);
    expect(processAlive(Number(old.ref))).toBe(false);
  });

  it('has a hard maximum size', () => {
    expect(() => new WarmPool({ table, provider: inner, settings: { sizes: { env_x: WARM_POOL_MAX_SIZE + 1 }, maxAgeMs: 1 } })).toThrow(`size must be an integer from 0 to ${WARM_POOL_MAX_SIZE}`);
  });
});
