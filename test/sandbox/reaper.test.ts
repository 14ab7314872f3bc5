/**
 * The sandbox registry (SandboxManager) and the idle reaper over a real state table (dynalite),
 * with real local sandboxes, and with the Fargate provider against a mocked ECS.
 */
import { ECSClient, ServerException, StopTaskCommand } from '@aws-sdk/client-ecs';
import type { Logger as PowertoolsLogger } from '@aws-lambda-powertools/logger';
import { mockClient } from 'aws-sdk-client-mock';
import fs from 'node:fs';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { DynamoStateTable } from '../../lambdas/adapters/aws/dynamodb-state-table.js';
import { EcsSandboxProvider } from '../../lambdas/adapters/aws/ecs-sandbox-provider.js';
import { ensureTables } from '../../lambdas/adapters/aws/tables.js';
import { startDynalite, type EmbeddedDynamo } from '../../lambdas/adapters/local/dynalite.js';
import { ProcessSandboxProvider } from '../../lambdas/adapters/local/process-sandbox.js';
import { SandboxClient } from '../../lambdas/core/sandbox/client.js';
import { SandboxManager, putSandboxRecord, sandboxKey, type SandboxRecord } from '../../lambdas/core/sandbox/manager.js';
import { limiter, reapIdleSandboxes, sandboxIdleMsFromEnv, startSandboxReaper } from '../../lambdas/core/sandbox/reaper.js';
import type { SandboxProvider } from '../../lambdas/core/sandbox/types.js';
import { SandboxUnavailableError } from '../../lambdas/core/sandbox/types.js';
import { createSandboxReaperHandler } from '../../lambdas/sandbox-reaper/handler.js';
import { planFor, processAlive, tempDir, until } from './helpers.js';

const recipe = planFor();
const ecs = mockClient(ECSClient);

let db: EmbeddedDynamo;
let table: DynamoStateTable;
let root: string;
let provider: ProcessSandboxProvider;
let manager: SandboxManager;
let n = 0;
const sessionId = () => `sesn_reap_${++n}`;

beforeAll(async () => {
  db = await startDynalite();
  await ensureTables(db.client, { events: 'events', state: 'state' });
  table = new DynamoStateTable(db.client, 'state');
  root = tempDir('corral-reaper-');
  provider = new ProcessSandboxProvider({ dataDir: root, isolation: 'none', logger: { warn: () => {} } });
  manager = new SandboxManager(provider, table);
});
beforeEach(() => {
  ecs.reset();
});
afterEach(async () => {
  // Leave no ready sandbox behind for the next test's reaper run.
  await reapIdleSandboxes({ table, provider, idleMs: 1, now: new Date(Date.now() + 3_600_000) });
});
afterAll(async () => {
  await provider.close();
  await db.close();
  fs.rmSync(root, { recursive: true, force: true });
});

const bash = (sid: string, command: string, name = 'default') => manager.execute(sid, name, recipe, 'bash', { command });

describe('SandboxManager records', () => {
  it('indexes ready sandboxes by last use, and drops dead ones from the index', async () => {
    const sid = sessionId();
    expect(await bash(sid, 'echo hi')).toMatchObject({ output: 'hi\n', isError: false, sandbox: 'default' });
    const k = sandboxKey(sid, 'default');
    const item = (await table.get(k.pk, k.sk))!;
    const record = item.record as SandboxRecord;
    expect(item).toMatchObject({ ref: record.ref, state: 'ready', lastUsedAt: record.lastUsedAt, gsi1sk: `${record.lastUsedAt}#${sid}#default` });
    expect(String(item.gsi1pk)).toMatch(/^sandboxes#active#([0-9]|[1-5][0-9]|6[0-3])$/);
    expect(record.busyUntil).toBeUndefined();

    process.kill(Number(record.ref), 'SIGKILL');
    await until(() => !processAlive(Number(record.ref)), 10_000, 'agent to die');
    const failed = await bash(sid, 'echo again');
    expect(failed).toMatchObject({ isError: true, output: expect.stringMatching(/^sandbox "default" became unavailable during this call/) });
    const dead = (await table.get(k.pk, k.sk))!;
    expect(dead).toMatchObject({ state: 'dead' });
    expect(dead.gsi1pk).toBeUndefined();
  });

  it('writes after provisioning only while the record still describes the same sandbox', async () => {
    const sid = sessionId();
    await bash(sid, 'true');
    const record = (await manager.get(sid, 'default'))!;
    expect(await putSandboxRecord(table, { ...record, lastUsedAt: new Date().toISOString() }, { ref: 'some-other-ref' })).toBe(false);
    expect(await putSandboxRecord(table, { ...record, state: 'dead' }, { ref: record.ref, state: 'ready' })).toBe(true);
    expect(await putSandboxRecord(table, { ...record }, { ref: record.ref, state: 'ready' })).toBe(false);
    expect((await manager.get(sid, 'default'))!.state).toBe('dead');
    await provider.release(sid, 'default', record.ref);
  });
});

describe('reapIdleSandboxes in parallel', () => {
  /** A provider whose release waits until told, counting releases in flight. */
  function slowProvider() {
    const state = { inFlight: 0, most: 0, released: [] as string[], open: [] as Array<() => void> };
    const p = {
      async release(_sid: string, _name: string, ref: string) {
        state.inFlight++;
        state.most = Math.max(state.most, state.inFlight);
        await new Promise<void>((r) => state.open.push(r));
        state.inFlight--;
        state.released.push(ref);
        if (ref === 'ref-fails') throw new Error('StopTask failed');
      },
    } as unknown as SandboxProvider;
    return { p, state };
  }

  it('stops idle sandboxes of many sessions at most `concurrency` at a time, and one failure stops none of the others', async () => {
    const old = new Date(Date.now() - 3_600_000).toISOString();
    const sessions = Array.from({ length: 12 }, () => sessionId());
    for (const [i, sid] of sessions.entries()) {
      const ref = i === 0 ? 'ref-fails' : `ref-${sid}`;
      const record: SandboxRecord = { sessionId: sid, name: 'default', state: 'ready', endpoint: { kind: 'tcp', host: '10.0.0.1', port: 8080, capability: 'c' }, ref, createdAt: old, lastUsedAt: old };
      expect(await putSandboxRecord(table, record)).toBe(true);
    }
    const { p, state } = slowProvider();
    const run = reapIdleSandboxes({ table, provider: p, idleMs: 60_000, concurrency: 4 });
    // Let releases through only once 4 are waiting: a one-at-a-time reaper would never get there.
    for (let released = 0; released < sessions.length; ) {
      await until(() => state.open.length > 0 && (state.inFlight === Math.min(4, sessions.length - released)), 10_000, 'the reaper to fill its slots');
      released += state.open.length;
      state.open.splice(0).forEach((r) => r());
    }
    const result = await run;
    expect(state.most).toBe(4);
    expect(result.reaped.map((r) => r.sessionId).sort()).toEqual(sessions.slice(1).sort());
    expect(result.failed).toEqual([{ sessionId: sessions[0], name: 'default', error: 'StopTask failed' }]);
    // the failed one is put back as it was, for the next run
    expect(await manager.get(sessions[0], 'default')).toMatchObject({ state: 'ready', ref: 'ref-fails' });
    for (const sid of sessions.slice(1)) expect(await manager.get(sid, 'default')).toMatchObject({ state: 'released' });
    await reapIdleSandboxes({ table, provider: { release: async () => {} } as unknown as SandboxProvider, idleMs: 60_000 });
  });

  it('limiter: never more than its limit at once, every task run', async () => {
    const slot = limiter(3);
    let inFlight = 0;
    let most = 0;
    const done = await Promise.all(
      Array.from({ length: 10 }, (_, i) =>
        slot(async () => {
          inFlight++;
          most = Math.max(most, inFlight);
          await new Promise((r) => setImmediate(r));
          inFlight--;
          return i;
        }),
      ),
    );
    expect(done).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(most).toBe(3);
  });
});

describe('reapIdleSandboxes (local sandboxes)', () => {
  it('stops sandboxes idle for longer than idleMs across sessions; the next call gets a fresh one and is told', async () => {
    const a = sessionId();
    const b = sessionId();
    await bash(a, 'echo a > mark');
    await bash(b, 'true', 'web');
    const ra = (await manager.get(a, 'default'))!;
    const rb = (await manager.get(b, 'web'))!;

    // Not idle yet at the real time
    expect((await reapIdleSandboxes({ table, provider, idleMs: 60_000 })).reaped).toEqual([]);

    const result = await reapIdleSandboxes({ table, provider, idleMs: 60_000, now: new Date(Date.now() + 120_000) });
    expect(result.failed).toEqual([]);
    expect(result.reaped).toEqual(expect.arrayContaining([
      { sessionId: a, name: 'default', ref: ra.ref },
      { sessionId: b, name: 'web', ref: rb.ref },
    ]));
    expect(processAlive(Number(ra.ref))).toBe(false);
    expect(processAlive(Number(rb.ref))).toBe(false);
    expect(await manager.get(a, 'default')).toMatchObject({ state: 'released', endedReason: 'unused for more than 1 minute' });

    const next = await bash(a, 'echo fresh');
    expect(next.isError).toBe(false);
    expect(next.output).toBe(
      '[corral] sandbox "default": it had been stopped (unused for more than 1 minute); this call runs in a fresh sandbox, so files and processes from before it are gone\nfresh\n',
    );
    const fresh = (await manager.get(a, 'default'))!;
    expect(fresh).toMatchObject({ state: 'ready' });
    expect(fresh.ref).not.toBe(ra.ref);
    // and only once
    expect((await bash(a, 'echo once')).output).toBe('once\n');
  });

  it('leaves a sandbox alone while a call runs on it', async () => {
    const sid = sessionId();
    await bash(sid, 'true');
    const running = bash(sid, 'sleep 1; echo finished');
    await until(async () => Boolean((await manager.get(sid, 'default'))?.busyUntil), 10_000, 'the call to mark the sandbox busy');
    const result = await reapIdleSandboxes({ table, provider, idleMs: 10, now: new Date(Date.now() + 60_000) });
    expect(result.reaped.filter((r) => r.sessionId === sid)).toEqual([]);
    expect(await running).toMatchObject({ output: 'finished\n', isError: false });
    expect((await manager.get(sid, 'default'))!.busyUntil).toBeUndefined();
  });

  it('runs on a timer in the local runtime’s way', async () => {
    const sid = sessionId();
    await bash(sid, 'true');
    const ref = (await manager.get(sid, 'default'))!.ref;
    const reaper = startSandboxReaper({ table, provider, idleMs: 200, intervalMs: 100 });
    try {
      await until(async () => (await manager.get(sid, 'default'))?.state === 'released', 20_000, 'the timer to reap it');
      // marked released first, then stopped
      await until(() => !processAlive(Number(ref)), 10_000, 'the sandbox to stop');
    } finally {
      await reaper.stop();
    }
  });

  it('reads CORRAL_SANDBOX_IDLE_MS', () => {
    expect(sandboxIdleMsFromEnv({})).toBe(15 * 60_000);
    expect(sandboxIdleMsFromEnv({ CORRAL_SANDBOX_IDLE_MS: '5000' })).toBe(5000);
    expect(() => sandboxIdleMsFromEnv({ CORRAL_SANDBOX_IDLE_MS: 'soon' })).toThrow(/positive number/);
  });
});

describe('SandboxManager.handOff', () => {
  it('moves the running sandbox to another session with a new capability; the source gets a fresh one', async () => {
    const from = sessionId();
    const to = sessionId();
    await bash(from, 'echo work > result.txt');
    const before = (await manager.get(from, 'default'))!;
    const moved = await manager.handOff({ sessionId: from, name: 'default' }, { sessionId: to, name: 'impl' });
    expect(moved).toMatchObject({ sessionId: to, name: 'impl', ref: before.ref, state: 'ready', receivedFrom: { sessionId: from, name: 'default' } });
    expect(moved.endpoint.capability).not.toBe(before.endpoint.capability);
    expect(await manager.get(from, 'default')).toBeUndefined();
    await expect(new SandboxClient(before.endpoint).execute('bash', { command: 'true' })).rejects.toBeInstanceOf(SandboxUnavailableError);
    expect((await bash(to, 'cat result.txt', 'impl')).output).toBe('work\n');
    const again = await bash(from, 'cat result.txt || echo missing');
    expect(again.output).toContain('missing');
    expect((await manager.get(from, 'default'))!.ref).not.toBe(before.ref);
    expect(processAlive(Number(before.ref))).toBe(true);
    await expect(manager.handOff({ sessionId: from, name: 'nope' }, { sessionId: to, name: 'x' })).rejects.toThrow(/has no running sandbox named "nope"/);
    await expect(manager.handOff({ sessionId: from, name: 'default' }, { sessionId: to, name: 'impl' })).rejects.toThrow(/already has a running sandbox named "impl"/);
  });
});

describe('SandboxManager.handOff of an unreachable sandbox', () => {
  it('answers 503 and changes nothing (the source finds out on its next call)', async () => {
    const from = sessionId();
    await bash(from, 'true');
    const before = (await manager.get(from, 'default'))!;
    process.kill(Number(before.ref), 'SIGKILL');
    await until(() => !processAlive(Number(before.ref)), 10_000, 'agent to die');
    const err = await manager.handOff({ sessionId: from, name: 'default' }, { sessionId: sessionId(), name: 'x' }).catch((e: unknown) => e);
    expect(err).toMatchObject({ status: 503, message: expect.stringMatching(/^sandbox "default" of session \S+ could not be reached to hand it off: /) });
    expect((err as Error).message).not.toContain('/');
    expect(await manager.get(from, 'default')).toEqual(before);
  });
});

describe('the reaper with Fargate sandboxes (ECS mocked) and its Lambda handler', () => {
  const ARN = 'arn:aws:ecs:eu-west-1:123456789012:task/corral/abc';
  const ecsProvider = () =>
    new EcsSandboxProvider({
      ecs: new ECSClient({ region: 'eu-west-1', credentials: { accessKeyId: 'x', secretAccessKey: 'y' } }),
      cluster: 'corral',
      taskDefinition: 'corral-sandbox',
      subnets: ['subnet-a'],
      securityGroups: ['sg-a'],
      containerName: 'sandbox',
      port: 8080,
    });
  const old = new Date(Date.now() - 3_600_000).toISOString();
  const record = (sid: string): SandboxRecord => ({
    sessionId: sid,
    name: 'default',
    state: 'ready',
    endpoint: { kind: 'tcp', host: '10.0.0.9', port: 8080, capability: 'c'.repeat(43) },
    ref: ARN,
    createdAt: old,
    lastUsedAt: old,
  });

  it('stops idle tasks; a StopTask that fails leaves the record ready for the next run', async () => {
    const sid = sessionId();
    await putSandboxRecord(table, record(sid));
    ecs.on(StopTaskCommand).rejects(new ServerException({ message: 'internal', $metadata: {} }));
    const failed = await reapIdleSandboxes({ table, provider: ecsProvider(), idleMs: 60_000 });
    expect(failed.failed).toEqual([{ sessionId: sid, name: 'default', error: expect.stringMatching(/StopTask failed/) }]);
    expect((await table.get(sandboxKey(sid, 'default').pk, sandboxKey(sid, 'default').sk))).toMatchObject({ state: 'ready', gsi1pk: expect.any(String) });

    ecs.reset();
    ecs.on(StopTaskCommand).resolves({});
    const handler = createSandboxReaperHandler(() => ({
      table,
      provider: ecsProvider(),
      idleMs: 60_000,
      logger: { addContext() {}, info() {}, warn() {}, error() {} } as unknown as PowertoolsLogger,
    }));
    expect(await handler({})).toEqual({ reaped: 1, failed: 0, snapshots: 0, snapshotsFailed: 0 });
    expect(ecs.commandCalls(StopTaskCommand).map((c) => c.args[0].input)).toEqual([
      { cluster: 'corral', task: ARN, reason: `corral: released sandbox default of session ${sid}` },
    ]);
    expect(await manager.get(sid, 'default')).toMatchObject({ state: 'released' });
    expect(await handler({})).toEqual({ reaped: 0, failed: 0, snapshots: 0, snapshotsFailed: 0 });
  });
});


