import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { unmarshall } from '@aws-sdk/util-dynamodb';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SandboxManager } from '../../lambdas/core/sandbox/manager.js';
import { planRecipe } from '../../lambdas/core/sandbox/recipe.js';
import { LeaseManager } from '../../lambdas/core/session/lease.js';
import { DELIVERS_EVERYTHING } from './recipe-support.js';
import { CURSOR_VERSION, cursorFromItem, writeCursor } from '../../lambdas/core/storage/cursor.js';
import {
  SandboxRecords,
  SessionHeadRecords,
  counterRecords,
  interruptSignals,
  leaseRecords,
  previewChunkRecords,
  previewWatchRecords,
  taskStateRecords,
} from '../../lambdas/core/storage/items.js';
import { keys } from '../../lambdas/core/storage/keys.js';
import { systemPrincipal } from '../../lambdas/core/storage/principal.js';
import { NewerRecordError, SCHEMA_ATTRIBUTE, SCHEMA_VERSIONS, setSchemaLogger, type DerivedKind } from '../../lambdas/core/storage/schema.js';
import type { Item } from '../../lambdas/core/store.js';
import { MemoryStateTable } from './memory-store.js';

/**
 * Derived records carry a schema version (`sv`, storage/schema.ts). Records written before
 * versions existed (the committed fixture, written by that release) are read as they were; a
 * record of a newer version is never read as if it were current, and is logged.
 */

const FIXTURE = join(dirname(fileURLToPath(import.meta.url)), '..', 'fixtures', 'upgrade', 'unversioned.jsonl');
const lines = readFileSync(FIXTURE, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
const meta = lines[0] as { session_id: string; idle_session_id: string };
const stateItems = lines.slice(1).filter((l) => l.table === 'corral-state').map((l) => unmarshall(l.item) as Item);
const find = (sk: string | RegExp, sessionId?: string) =>
  stateItems.find((i) => (typeof sk === 'string' ? i.sk === sk : sk.test(i.sk)) && (!sessionId || i.pk === keys.partition('session', sessionId)));

let table: MemoryStateTable;
let warnings: Array<Record<string, unknown>>;
let previousLogger: ReturnType<typeof setSchemaLogger>;
beforeEach(() => {
  table = new MemoryStateTable();
  warnings = [];
  previousLogger = setSchemaLogger({ info() {}, warn: (msg, f) => warnings.push({ msg, ...f }), error() {} });
});
afterEach(() => {
  setSchemaLogger(previousLogger);
});

const newer = (item: Item, kind: DerivedKind): Item => ({ ...item, [SCHEMA_ATTRIBUTE]: SCHEMA_VERSIONS[kind] + 1 });
const sandboxRecords = new SandboxRecords<{ sessionId: string; name: string; ref: string; state: string; lastUsedAt: string }>();
const heads = new SessionHeadRecords<{ id: string }>();

describe('records written before schema versions (the fixture)', () => {
  it('has none of the new version attribute, as that release wrote them', () => {
    expect(stateItems.length).toBeGreaterThan(10);
    for (const item of stateItems) expect(item).not.toHaveProperty(SCHEMA_ATTRIBUTE);
  });

  it('reads the lease, sandbox record, usage, interrupt signal and counters as they are', async () => {
    for (const item of stateItems) await table.put(item);
    const s = meta.session_id;
    const lease = await leaseRecords.get(table, s);
    expect(lease).toEqual({ owner: find('lease', s)!.owner, fence: 1, until: find('lease', s)!.until });
    const sandbox = await sandboxRecords.get(table, s, 'default');
    expect(sandbox).toMatchObject({ sessionId: s, name: 'default', ref: find('sandbox#default', s)!.ref });
    expect(await sandboxRecords.list(table, s)).toHaveLength(1);
    const usage = await heads.usage(table, s);
    expect(usage?.usage).toEqual(find('head#usage', s)!.usage);
    expect(await interruptSignals.read(table, meta.idle_session_id)).toBe(1);
    const counter = find(/^\d+$/)!;
    expect(await counterRecords.count(table, counter)).toBe(counter.count);
    expect(warnings).toEqual([]);
  });

  it('takes over a release-0 lease after it expired, and the new lease carries the version', async () => {
    for (const item of stateItems) await table.put(item);
    const old = find('lease', meta.session_id)!;
    const leases = new LeaseManager(table, 60_000);
    const lease = await leases.acquire(meta.session_id, 'new-harness', Number(old.until) + 1);
    expect(lease?.fence).toBe(2);
    const k = keys.lease(meta.session_id);
    expect((await table.get(k.pk, k.sk))?.[SCHEMA_ATTRIBUTE]).toBe(SCHEMA_VERSIONS.lease);
  });
});

describe('every derived record is written with its version', () => {
  it('lease, sandbox, usage, signal, counter, previews, task state', async () => {
    const s = 'sesn_x';
    await leaseRecords.put(table, s, { owner: 'o', fence: 1, until: 5 });
    await sandboxRecords.put(table, { sessionId: s, name: 'default', ref: 'r', state: 'ready', lastUsedAt: '2026-01-01T00:00:00Z' });
    await heads.putUsage(table, s, { usage: {}, stats: {}, updated_at: 'x' });
    await interruptSignals.raise(table, s);
    await counterRecords.increment(table, { pk: 'rate#t#write', sk: '1' }, 100);
    await previewWatchRecords.watch(table, s, Date.now() + 10_000);
    await previewChunkRecords.put(table, s, { request: 'req', seq: 0, frames: [] }, Date.now() + 10_000);
    await taskStateRecords.put(table, 'task1', { taskArn: 'arn:task1', version: 1, lastStatus: 'RUNNING' });
    const written: Array<[{ pk: string; sk: string }, DerivedKind]> = [
      [keys.lease(s), 'lease'],
      [keys.sandbox(s, 'default'), 'sandbox'],
      [keys.sessionUsage(s), 'session_usage'],
      [keys.interruptSignal(s), 'interrupt_signal'],
      [{ pk: 'rate#t#write', sk: '1' }, 'counter'],
      [keys.previewWatch(s), 'preview_watch'],
      [keys.previewChunk(s, 'req', 0), 'preview_chunk'],
      [keys.taskState('task1'), 'task_state'],
    ];
    for (const [k, kind] of written) expect((await table.get(k.pk, k.sk))?.[SCHEMA_ATTRIBUTE], kind).toBe(SCHEMA_VERSIONS[kind]);
    // the version is not part of what the readers hand back
    expect(await taskStateRecords.get(table, 'task1')).toEqual({ taskArn: 'arn:task1', version: 1, lastStatus: 'RUNNING' });
  });
});

describe('a record of a newer schema (after a rollback) is never misread', () => {
  const s = 'sesn_newer';
  const now = Date.now();

  it('sandbox record: refused by get, skipped by listings and the reaper, logged', async () => {
    await sandboxRecords.put(table, { sessionId: s, name: 'default', ref: 'r', state: 'ready', lastUsedAt: '2026-01-01T00:00:00Z' });
    const k = keys.sandbox(s, 'default');
    await table.put(newer((await table.get(k.pk, k.sk))!, 'sandbox'));
    await expect(sandboxRecords.get(table, s, 'default')).rejects.toBeInstanceOf(NewerRecordError);
    expect(await sandboxRecords.list(table, s)).toEqual([]);
    let found = 0;
    for (let shard = 0; shard < 64; shard++) found += (await sandboxRecords.activePage(table, systemPrincipal('sandbox-reaper'), shard, {})).items.length;
    expect(found).toBe(0);
    expect(warnings.map((w) => w.kind)).toContain('sandbox');
    expect(warnings[0]).toMatchObject({ msg: 'newer_record', version: SCHEMA_VERSIONS.sandbox + 1, pk: k.pk, sk: k.sk });
  });

  it('sandbox record: a tool call that needs it is a tool error; nothing is provisioned, released or rewritten', async () => {
    await sandboxRecords.put(table, { sessionId: s, name: 'default', ref: 'newer-ref', state: 'ready', lastUsedAt: '2026-01-01T00:00:00Z' });
    const k = keys.sandbox(s, 'default');
    const stored = newer((await table.get(k.pk, k.sk))!, 'sandbox');
    await table.put(stored);
    const calls: string[] = [];
    // with and without a capability key (the key makes the manager read the record before anything else)
    for (const key of [undefined, randomBytes(32)]) {
      const manager = new SandboxManager(
        {
          recipeSupport: DELIVERS_EVERYTHING,
          provision: async () => {
            calls.push('provision');
            throw new Error('not expected');
          },
          release: async () => void calls.push('release'),
        },
        table,
        key,
      );
      const recipe = planRecipe({ session: { environment_id: 'env_1', resources: [] }, environment: { config: { type: 'cloud' } }, credentials: [] });
      const report = await manager.execute(s, 'default', recipe, 'bash', { command: 'true' });
      expect(report).toMatchObject({ isError: true, output: expect.stringMatching(/newer (version of )?Corral/) });
      expect(calls).toEqual([]);
      expect(await table.get(k.pk, k.sk)).toEqual(stored);
    }
  });

  it('usage, signal, preview watch and chunks, task state: treated as absent', async () => {
    await heads.putUsage(table, s, { usage: { input_tokens: 5 }, stats: {}, updated_at: 'x' });
    await interruptSignals.raise(table, s);
    await previewWatchRecords.watch(table, s, now + 10_000);
    await previewChunkRecords.put(table, s, { request: 'req', seq: 0, frames: ['f'] }, now + 10_000);
    await taskStateRecords.put(table, 'task2', { taskArn: 'arn:task2', version: 1, lastStatus: 'RUNNING' });
    const bump: Array<[{ pk: string; sk: string }, DerivedKind]> = [
      [keys.sessionUsage(s), 'session_usage'],
      [keys.interruptSignal(s), 'interrupt_signal'],
      [keys.previewWatch(s), 'preview_watch'],
      [keys.previewChunk(s, 'req', 0), 'preview_chunk'],
      [keys.taskState('task2'), 'task_state'],
    ];
    for (const [k, kind] of bump) await table.put(newer((await table.get(k.pk, k.sk))!, kind));
    expect(await heads.usage(table, s)).toBeUndefined();
    expect(await interruptSignals.read(table, s)).toBe(0);
    expect(await previewWatchRecords.watched(table, s, now)).toBe(false);
    expect(await previewChunkRecords.read(table, s, 'req', -1, now)).toEqual([]);
    expect(await taskStateRecords.get(table, 'task2')).toBeUndefined();
    expect(warnings.map((w) => w.kind).sort()).toEqual(['interrupt_signal', 'preview_chunk', 'preview_watch', 'session_usage', 'task_state']);
  });

  it('lease and counters: read through the fields every version keeps, and logged', async () => {
    await leaseRecords.put(table, s, { owner: 'o', fence: 3, until: 7 });
    const k = keys.lease(s);
    await table.put({ ...newer((await table.get(k.pk, k.sk))!, 'lease'), added_later: { x: 1 } });
    expect(await leaseRecords.get(table, s)).toEqual({ owner: 'o', fence: 3, until: 7 });
    expect(warnings.map((w) => w.kind)).toEqual(['lease']);
  });

  it('a version this code cannot parse counts as newer', async () => {
    await heads.putUsage(table, s, { usage: {}, stats: {}, updated_at: 'x' });
    const k = keys.sessionUsage(s);
    await table.put({ ...(await table.get(k.pk, k.sk))!, [SCHEMA_ATTRIBUTE]: 'two' });
    expect(await heads.usage(table, s)).toBeUndefined();
  });

  it('cursor: not read, logged, and the next save replaces it', async () => {
    await writeCursor(table, s, 4, { a: 1 }, false);
    const k = keys.cursor(s);
    await table.put({ ...(await table.get(k.pk, k.sk))!, v: CURSOR_VERSION + 1 });
    expect(cursorFromItem(await table.get(k.pk, k.sk))).toBeUndefined();
    expect(warnings).toMatchObject([{ kind: 'cursor', version: CURSOR_VERSION + 1 }]);
    expect(await writeCursor(table, s, 9, { a: 2 }, false)).toBe(true);
    expect(cursorFromItem(await table.get(k.pk, k.sk))).toEqual({ a: 2 });
    // a release-0 cursor (no version) is older, not newer: not read, and not logged
    warnings.length = 0;
    await table.put({ ...keys.cursor('sesn_old'), position: 3, state: { a: 0 } });
    expect(cursorFromItem(await table.get(k.pk.replace(s, 'sesn_old'), 'cursor'))).toBeUndefined();
    expect(warnings).toEqual([]);
  });
});
