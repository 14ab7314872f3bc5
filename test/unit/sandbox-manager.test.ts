import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import { putSandboxRecord, SandboxManager, sandboxKey, type SandboxRecord } from '../../lambdas/core/sandbox/manager.js';
import { reapIdleSandboxes, startSandboxReaper } from '../../lambdas/core/sandbox/reaper.js';
import { planRecipe, type RecipeSupport } from '../../lambdas/core/sandbox/recipe.js';
import type { ProvisionRequest, SandboxProvider } from '../../lambdas/core/sandbox/types.js';
import { AgentCreate, EnvironmentCreate, SessionCreate } from '../../lambdas/core/api/schemas.js';
import type { ModelClient } from '../../lambdas/core/harness/model.js';
import { handOffSandbox, publicSandbox } from '../../lambdas/core/sandbox/handoff.js';
import { createServices } from '../../lambdas/core/services.js';
import { makeEvent } from '../../lambdas/core/session/events.js';
import { MemoryEventLog, MemoryStateTable } from './memory-store.js';
import { DELIVERS_EVERYTHING } from './recipe-support.js';

/**
 * The sandbox manager's bookkeeping and the idle reaper, on the in-memory state table, with a
 * provider that records what it is asked. Its sandboxes answer at a socket path where nothing
 * listens, so every call finds its sandbox dead: the manager's side of that (a tool error, the
 * record marked dead, the sandbox released, a fresh one next time) is what is checked here; live
 * sandboxes are the integration project's.
 */
class RecordingProvider implements SandboxProvider {
  recipeSupport: RecipeSupport = DELIVERS_EVERYTHING;
  readonly provisioned: ProvisionRequest[] = [];
  readonly released: string[] = [];
  notes: string[] = [];
  failWith: Error | null = null;
  async provision(req: ProvisionRequest) {
    if (this.failWith) throw this.failWith;
    this.provisioned.push(req);
    const n = this.provisioned.length;
    return { endpoint: { kind: 'unix' as const, socketPath: join(tmpdir(), `corral-unit-nothing-${process.pid}-${n}.sock`), capability: `cap-${n}` }, ref: `ref-${n}`, notes: this.notes };
  }
  async release(_sessionId: string, _name: string, ref: string) {
    if (ref === 'ref-unreleasable') throw new Error('StopTask failed');
    this.released.push(ref);
  }
}

const recipe = planRecipe({ session: { environment_id: 'env_1', resources: [] }, environment: { config: { type: 'cloud' } }, credentials: [] });
let table: MemoryStateTable;
let provider: RecordingProvider;
let manager: SandboxManager;

beforeEach(() => {
  table = new MemoryStateTable();
  provider = new RecordingProvider();
  manager = new SandboxManager(provider, table, randomBytes(32));
});

describe('the sandbox manager', () => {
  it('provisions lazily, and turns a sandbox that stopped answering into a tool error and a fresh one next time', async () => {
    provider.notes = ['apt packages were not installed'];
    const first = await manager.execute('sesn_1', 'default', recipe, 'bash', { command: 'true' });
    expect(provider.provisioned).toEqual([{ sessionId: 'sesn_1', name: 'default', recipe: { environmentId: 'env_1', packages: {}, repositories: [], networking: { type: 'unrestricted' } } }]);
    expect(first).toMatchObject({ sandbox: 'default', isError: true });
    expect(first.output).toContain('[corral] sandbox "default": apt packages were not installed');
    expect(first.output).toContain('sandbox "default" became unavailable during this call (socket does not exist (sandbox not running)). Its state is lost');
    expect(first.output).not.toContain('corral-unit-nothing'); // the model is not told the address
    expect(provider.released).toEqual(['ref-1']);
    expect(await manager.get('sesn_1', 'default')).toMatchObject({ state: 'dead', ref: 'ref-1' });

    provider.notes = [];
    await manager.execute('sesn_1', 'default', recipe, 'bash', { command: 'true' });
    expect(provider.provisioned).toHaveLength(2);
    expect((await manager.list('sesn_1')).map((r) => r.ref)).toEqual(['ref-2']);
  });

  it('keeps the capability sealed at rest, and reuses a ready sandbox', async () => {
    const { record } = await manager.ensure('sesn_2', 'default', recipe);
    const stored = await table.get(sandboxKey('sesn_2', 'default').pk, sandboxKey('sesn_2', 'default').sk);
    expect(JSON.stringify(stored)).not.toContain('cap-1');
    expect((await manager.get('sesn_2', 'default'))!.endpoint.capability).toBe('cap-1');
    expect((await manager.ensure('sesn_2', 'default', recipe)).record.ref).toBe(record.ref);
    expect(provider.provisioned).toHaveLength(1);
    // another process (another key) cannot open it: the sandbox reads as gone, and is replaced
    const other = new SandboxManager(provider, table, randomBytes(32));
    expect(await other.get('sesn_2', 'default')).toMatchObject({ state: 'dead' });
    expect((await other.ensure('sesn_2', 'default', recipe)).record.ref).toBe('ref-2');
  });

  it('names a bad sandbox name or a failed start as a tool error, without provisioning for a bad name', async () => {
    expect(await manager.execute('sesn_3', 'no spaces', recipe, 'bash', {})).toMatchObject({ isError: true, output: 'invalid sandbox name "no spaces": use 1-64 letters, digits, - or _' });
    provider.failWith = new Error('sandbox at unix:/srv/x.sock is unavailable: capacity');
    expect(await manager.execute('sesn_3', 'default', recipe, 'bash', {})).toMatchObject({ isError: true, output: 'could not start sandbox "default": capacity' });
    expect(provider.provisioned).toEqual([]);
  });

  it('hands the provider only what it delivers, tells the model what it skipped, and refuses before provisioning', async () => {
    // Prepare: a provider that installs apt packages only and has no git channel for credentials
    provider.recipeSupport = {
      label: 'a test sandbox',
      packages: { managers: ['apt'], otherwise: 'it has no other installer' },
      publicRepositories: { supported: true },
      credentialedRepositories: { supported: false, reason: 'it has no git channel' },
    };
    provider.notes = ['repository https://git.example.com/o/pub.git is at /workspace/pub'];
    const plan = (credentials: Array<{ url: string }>) =>
      planRecipe({
        session: {
          environment_id: 'env_1',
          resources: [
            { type: 'github_repository', url: 'https://git.example.com/o/pub.git', mount_path: '/workspace/pub' },
            { type: 'github_repository', url: 'https://git.example.com/o/priv.git', mount_path: '/workspace/priv' },
            { type: 'file', file_id: 'file_1', mount_path: '/mnt/f' },
          ],
        },
        environment: { config: { type: 'cloud', packages: { apt: ['jq'], pip: ['requests'] } } },
        credentials,
      });

    // Act: both repositories public
    const ok = await manager.execute('sesn_fit', 'default', plan([]), 'bash', {});

    // Assess: apt and both repositories delivered; pip and the file told, before the provider's notes
    expect(provider.provisioned.map((p) => p.recipe)).toEqual([
      {
        environmentId: 'env_1',
        packages: { apt: ['jq'] },
        repositories: [
          { url: 'https://git.example.com/o/pub.git', mountPath: '/workspace/pub', checkout: null, channel: 'public' },
          { url: 'https://git.example.com/o/priv.git', mountPath: '/workspace/priv', checkout: null, channel: 'public' },
        ],
        networking: { type: 'unrestricted' },
      },
    ]);
    expect(ok.output.split('\n').slice(0, 3)).toEqual([
      '[corral] sandbox "default": the environment\'s packages (pip: requests) are not installed in a test sandbox; it has no other installer',
      '[corral] sandbox "default": file resource file_1 was not mounted: mount_path must be an absolute path under /mnt/session/uploads/',
      '[corral] sandbox "default": repository https://git.example.com/o/pub.git is at /workspace/pub',
    ]);
    expect(ok.setupError).toBeUndefined();

    // Act: the session holds a credential for the second one
    const refused = await manager.execute('sesn_fit2', 'default', plan([{ url: 'https://git.example.com/o/priv' }]), 'bash', {});

    // Assess: nothing started; a tool error and a setup error of the clone type, naming why
    expect(provider.provisioned).toHaveLength(1);
    expect(refused).toMatchObject({ isError: true, setupError: { type: 'repository_clone_error' } });
    expect(refused.output).toBe(
      'could not start sandbox "default": repository_clone_error: repository https://git.example.com/o/priv.git needs the credential this session holds for it, ' +
        "which reaches a sandbox only through the credential proxy's git channel, and it has no git channel",
    );
    expect(await manager.get('sesn_fit2', 'default')).toBeUndefined();
  });
});

describe('the idle reaper', () => {
  const record = (sessionId: string, lastUsedAt: string, extra: Partial<SandboxRecord> = {}): SandboxRecord => ({
    sessionId,
    name: 'default',
    state: 'ready',
    endpoint: { kind: 'unix', socketPath: '/nowhere', capability: 'c' },
    ref: `ref-${sessionId}`,
    createdAt: lastUsedAt,
    lastUsedAt,
    ...extra,
  });

  it('releases ready sandboxes unused for longer than the idle time, and leaves busy and recent ones', async () => {
    const now = new Date('2026-01-01T12:00:00Z');
    await putSandboxRecord(table, record('sesn_old', '2026-01-01T11:00:00.000Z'));
    await putSandboxRecord(table, record('sesn_recent', '2026-01-01T11:59:00.000Z'));
    await putSandboxRecord(table, record('sesn_busy', '2026-01-01T10:00:00.000Z', { busyUntil: '2026-01-01T13:00:00.000Z' }));
    await putSandboxRecord(table, record('sesn_dead', '2026-01-01T09:00:00.000Z', { state: 'dead' }));
    const result = await reapIdleSandboxes({ table, provider, idleMs: 15 * 60_000, now, pageSize: 1 });
    expect(result).toEqual({ reaped: [{ sessionId: 'sesn_old', name: 'default', ref: 'ref-sesn_old' }], failed: [], snapshots: [] }); // no blob store: nothing snapshotted
    expect(provider.released).toEqual(['ref-sesn_old']);
    expect((await manager.list('sesn_old'))[0]).toMatchObject({ state: 'released', endedReason: 'unused for more than 15 minutes' });
    expect((await manager.list('sesn_recent'))[0].state).toBe('ready');
    expect((await manager.list('sesn_busy'))[0].state).toBe('ready');
    // a second run finds nothing more to do
    expect(await reapIdleSandboxes({ table, provider, idleMs: 15 * 60_000, now })).toEqual({ reaped: [], failed: [], snapshots: [] });
  });

  it('puts back a sandbox it could not release, so the next run tries again', async () => {
    const now = new Date('2026-01-01T12:00:00Z');
    await putSandboxRecord(table, record('sesn_x', '2026-01-01T11:00:00.000Z', { ref: 'ref-unreleasable' }));
    const result = await reapIdleSandboxes({ table, provider, idleMs: 90_000, now });
    expect(result.failed).toEqual([{ sessionId: 'sesn_x', name: 'default', error: 'StopTask failed' }]);
    expect((await manager.list('sesn_x'))[0].state).toBe('ready');
    expect((await reapIdleSandboxes({ table, provider, idleMs: 90_000, now })).failed).toHaveLength(1);
  });

  it('runs on demand as well as on its timer, one run at a time, and stops', async () => {
    await putSandboxRecord(table, record('sesn_t', '2000-01-01T00:00:00.000Z'));
    const reaper = startSandboxReaper({ table, provider, idleMs: 60_000, intervalMs: 3_600_000 });
    const [a, b] = [reaper.runOnce(), reaper.runOnce()];
    expect(a).toBe(b);
    expect((await a).reaped.map((x) => x.sessionId)).toEqual(['sesn_t']);
    await reaper.stop();
    expect(provider.released).toEqual(['ref-sesn_t']);
  });
});

describe('handing a sandbox to another session', () => {
  it('is refused, naming why, unless both sessions are the caller\'s and idle and the sandbox can be reached', async () => {
    const svc = createServices({ table, events: new MemoryEventLog(), queue: { wake: async () => undefined }, sandboxProvider: provider, model: {} as ModelClient });
    const a = await svc.agents.create('tnt_s', AgentCreate.parse({ name: 'a', model: 'claude-sonnet-4-6' }));
    const e = await svc.environments.create('tnt_s', EnvironmentCreate.parse({ name: 'e' }));
    const newSession = () => svc.sessions.create('tnt_s', SessionCreate.parse({ agent: a.id, environment_id: e.id }));
    const to = await newSession();
    let fromId = (await newSession()).id;
    const why = (req: Partial<Parameters<typeof handOffSandbox>[2]>, tenant = 'tnt_s') =>
      handOffSandbox(svc, tenant, { sessionId: fromId, name: 'default', toSessionId: to.id, ...req }).then(
        () => 'ok',
        (err: Error & { status?: number }) => `${err.status} ${err.message}`,
      );
    expect(await why({ name: 'bad name' })).toBe('400 sandbox name "bad name" is not valid: use 1-64 letters, digits, - or _');
    expect(await why({ as: '' })).toMatch(/^400 as: "" is not a valid sandbox name/);
    expect(await why({ toSessionId: fromId })).toBe('400 to_session_id: a sandbox can only be handed to another session');
    expect(await why({}, 'tnt_other')).toBe(`404 session ${fromId} not found`);
    expect(await why({})).toBe(`404 session ${fromId} has no running sandbox named "default"`);
    await svc.events.emitEvent(fromId, makeEvent({ type: 'user.message', content: [] }));
    expect(await why({})).toBe(`409 session ${fromId} is running; a sandbox can be handed off only while both sessions are idle`);
    // (from here on, a session whose log is empty: idle)
    fromId = (await newSession()).id;
    await svc.sandboxes.ensure(to.id, 'default', recipe);
    await svc.sandboxes.ensure(fromId, 'default', recipe);
    expect(await why({})).toBe(`409 session ${to.id} already has a running sandbox named "default"; choose another name with "as"`);
    // nothing listens at its socket: it cannot be reached, and the answer does not name its address
    const unreachable = await why({ as: 'theirs' });
    expect(unreachable).toBe(`503 sandbox "default" of session ${fromId} could not be reached to hand it off: socket does not exist (sandbox not running)`);
    expect((await svc.sandboxes.get(fromId, 'default'))!.state).toBe('ready');
    const shown = publicSandbox((await svc.sandboxes.get(fromId, 'default'))!);
    expect(Object.keys(shown).sort()).toEqual(['created_at', 'last_used_at', 'name', 'state', 'type']);
    await svc.sandboxes.releaseAll(fromId);
    expect(await svc.sandboxes.list(fromId)).toEqual([]);
    expect(provider.released).toContain('ref-2');
  });
});
