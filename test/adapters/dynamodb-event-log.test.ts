import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DynamoEventLog } from '../../lambdas/adapters/aws/dynamodb-event-log.js';
import { ensureTables } from '../../lambdas/adapters/aws/tables.js';
import { startDynalite } from '../../lambdas/adapters/local/dynalite.js';
import { dynamoDbLocalUnavailable, startDynamoDbLocal } from '../helpers/dynamodb-local.js';
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { PositionConflictError } from '../../lambdas/core/errors.js';
import { makeEvent } from '../../lambdas/core/session/events.js';
import { missingBatchEvents } from '../../lambdas/core/session/log.js';

const TABLES = { events: 'events', state: 'state' };
const ev = (n: number) => makeEvent({ type: 'user.message', content: [{ type: 'text', text: `m${n}` }] });

type Backend = { client: DynamoDBClient; close(): Promise<void> };

/** The session log's contract, run against dynalite and against AWS's DynamoDB Local. */
function contract(name: string, start: () => Promise<Backend>) {
  describe(`DynamoEventLog (${name})`, () => {
    let db: Backend;
    let log: DynamoEventLog;
    beforeAll(async () => {
      db = await start();
      await ensureTables(db.client, TABLES);
      log = new DynamoEventLog(db.client, TABLES.events);
    });
    afterAll(() => db.close());

    it('appends at the tail in order and reads positional slices', async () => {
      const id = 'sesn_slices';
      const written = [];
      for (let i = 1; i <= 12; i++) written.push(await log.emitEvent(id, ev(i)));
      expect(written.map((w) => w.position)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
      expect(await log.lastPosition(id)).toBe(12);
      const slice = await log.getEvents(id, { from: 3, to: 7 });
      expect(slice.map((s) => s.position)).toEqual([3, 4, 5, 6]);
      expect(slice.map((s) => s.event.id)).toEqual(written.slice(2, 6).map((w) => w.event.id));
      expect((await log.getEvents(id, { from: 10 })).map((s) => s.position)).toEqual([10, 11, 12]);
      expect((await log.getEvents(id, { from: 2, limit: 3 })).map((s) => s.position)).toEqual([2, 3, 4]);
      expect((await log.getEvents(id, { to: 6, limit: 2, order: 'desc' })).map((s) => s.position)).toEqual([5, 4]);
      expect(await log.getEvents(id, { from: 5, to: 5 })).toEqual([]);
      expect(await log.lastPosition('sesn_empty')).toBe(0);
    });

    it('refuses a second writer at the same position instead of overwriting', async () => {
      const id = 'sesn_conflict';
      const first = ev(1);
      await log.emitEvent(id, first, { position: 1 });
      await expect(log.emitEvent(id, ev(2), { position: 1 })).rejects.toBeInstanceOf(PositionConflictError);
      const [stored] = await log.getEvents(id);
      expect(stored.event.id).toBe(first.id);
    });

    it('lets concurrent tail appends all land, each at its own position', async () => {
      const id = 'sesn_concurrent';
      const events = Array.from({ length: 20 }, (_, i) => ev(i));
      await Promise.all(events.map((e) => log.emitEvent(id, e)));
      const stored = await log.getEvents(id);
      expect(stored.map((s) => s.position)).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
      expect(new Set(stored.map((s) => s.event.id))).toEqual(new Set(events.map((e) => e.id)));
    });

    it('keeps a batch recoverable from its head, and steps around positions others took', async () => {
      const id = 'sesn_batch';
      const batch = [ev(1), ev(2), ev(3)];
      await log.appendBatch(id, batch, { position: 1 });
      const stored = await log.getEvents(id);
      expect(stored[0].rest?.map((e) => e.id)).toEqual([batch[1].id, batch[2].id]);
      expect(missingBatchEvents(stored)).toEqual([]);
      // A writer that dies after the head: the log itself says what is missing.
      const id2 = 'sesn_batch_partial';
      let puts = 0;
      const dying = new Proxy(db.client, {
        get(target, prop, receiver) {
          if (prop !== 'send') return Reflect.get(target, prop, receiver);
          return (command: { constructor: { name: string } }) => {
            if (command.constructor.name === 'PutItemCommand' && ++puts > 1) return Promise.reject(new Error('killed'));
            return target.send(command as never);
          };
        },
      });
      const partial = [ev(1), ev(2), ev(3)];
      await expect(new DynamoEventLog(dying, TABLES.events).appendBatch(id2, partial, { position: 1 })).rejects.toThrow('killed');
      const left = await log.getEvents(id2);
      expect(left.map((s) => s.event.id)).toEqual([partial[0].id]);
      expect(missingBatchEvents(left)).toEqual([partial[1], partial[2]]);
    });

    it('continues a batch after a position another writer took meanwhile', async () => {
      const id = 'sesn_batch_interleave';
      await log.emitEvent(id, ev(0), { position: 1 });
      // another writer (the API) takes position 3 before the batch gets there
      const intruder = ev(99);
      await log.emitEvent(id, intruder, { position: 3 });
      const batch = [ev(1), ev(2), ev(3)];
      await log.appendBatch(id, batch, { position: 2, mayFollow: (e) => e.type === 'user.message' });
      const ids = (await log.getEvents(id)).map((s) => s.event.id);
      expect(ids).toEqual([expect.any(String), batch[0].id, intruder.id, batch[1].id, batch[2].id]);
    });

    it('stops a batch at a position taken by an event it may not follow', async () => {
      const id = 'sesn_batch_fenced';
      await log.emitEvent(id, ev(0), { position: 1 });
      const marker = makeEvent({ type: 'session.status_rescheduled', fence: 2 });
      await log.emitEvent(id, marker, { position: 3 });
      const batch = [ev(1), ev(2)];
      await expect(
        log.appendBatch(id, batch, { position: 2, mayFollow: (e) => e.type === 'user.message' }),
      ).rejects.toBeInstanceOf(PositionConflictError);
      const stored = await log.getEvents(id);
      expect(stored.map((s) => s.event.id)).toEqual([expect.any(String), batch[0].id, marker.id]);
      // the batch stays recoverable from its head
      expect(missingBatchEvents(stored)).toEqual([batch[1]]);
    });

    it('deletes every event of one session and nothing else', async () => {
      const a = 'sesn_del_a';
      const b = 'sesn_del_b';
      for (let i = 0; i < 60; i++) await log.emitEvent(a, ev(i));
      await log.emitEvent(b, ev(0));
      await log.deleteAll(a);
      expect(await log.getEvents(a)).toEqual([]);
      expect(await log.lastPosition(b)).toBe(1);
    });

    it('round-trips content byte for byte (unicode, quotes, newlines)', async () => {
      const id = 'sesn_bytes';
      const text = 'héllo "wörld"\n\t\u0000 emoji 🐄 \\ backslash';
      const e = makeEvent({ type: 'user.message', content: [{ type: 'text', text }] });
      await log.emitEvent(id, e);
      const [stored] = await log.getEvents(id);
      expect(stored.event).toEqual(e);
    });
  });

  describe(`events larger than a DynamoDB item (${name})`, () => {
    let db: Backend;
    let log: DynamoEventLog;
    beforeAll(async () => {
      db = await start();
      await ensureTables(db.client, TABLES);
      log = new DynamoEventLog(db.client, TABLES.events);
    });
    afterAll(() => db.close());

    const big = (chars: number) => {
      // multi-byte text, so that bytes and characters differ
      const unit = 'Ωmega 🐄 lines\n';
      return unit.repeat(Math.ceil(chars / unit.length)).slice(0, chars);
    };

    it('stores and reads back a 2 MB event byte for byte, between small ones', async () => {
      const id = 'sesn_big';
      const small = ev(1);
      const large = makeEvent({ type: 'agent.tool_result', tool_use_id: 'x', content: [{ type: 'text', text: big(1_000_000) }] });
      expect(Buffer.byteLength(JSON.stringify(large))).toBeGreaterThan(1_000_000);
      await log.emitEvent(id, small);
      await log.emitEvent(id, large);
      await log.emitEvent(id, ev(3));
      const stored = await log.getEvents(id);
      expect(stored.map((s) => s.position)).toEqual([1, 2, 3]);
      expect(JSON.stringify(stored[1].event)).toBe(JSON.stringify(large));
      expect(stored[0].event).toEqual(small);
      expect((await log.getEvents(id, { from: 2, to: 3 }))[0].event).toEqual(large);
      expect(await log.lastPosition(id)).toBe(3);
    });

    it('keeps a large batch recoverable and refuses a second writer without touching the first one\'s chunks', async () => {
      const id = 'sesn_big_batch';
      const head = makeEvent({ type: 'agent.message', content: [{ type: 'text', text: 'head' }] });
      const huge = makeEvent({ type: 'agent.message', content: [{ type: 'text', text: big(600_000) }] });
      await log.appendBatch(id, [head, huge], { position: 1 });
      const [h, second] = await log.getEvents(id);
      expect(h.rest?.[0]).toEqual(huge); // the head carries the whole batch
      expect(second.event).toEqual(huge);
      const rival = makeEvent({ type: 'agent.message', content: [{ type: 'text', text: big(500_000) }] });
      await expect(log.emitEvent(id, rival, { position: 2 })).rejects.toBeInstanceOf(PositionConflictError);
      expect((await log.getEvents(id, { from: 2 }))[0].event).toEqual(huge);
    });

    it('deletes chunks with their session', async () => {
      const id = 'sesn_big_delete';
      const large = makeEvent({ type: 'user.message', content: [{ type: 'text', text: big(800_000) }] });
      await log.emitEvent(id, large);
      await log.deleteAll(id);
      expect(await log.getEvents(id)).toEqual([]);
      const { ScanCommand } = await import('@aws-sdk/client-dynamodb');
      const left = await db.client.send(new ScanCommand({ TableName: TABLES.events }));
      expect((left.Items ?? []).filter((i) => i.sessionId.S!.startsWith(`${id}`))).toEqual([]);
    });
  });
}

contract('dynalite', () => startDynalite());

const unavailable = dynamoDbLocalUnavailable();
if (unavailable && process.env.CI) throw new Error(`CI runs the contract against DynamoDB Local, but ${unavailable}`);
if (unavailable) {
  describe.skip(`DynamoDB Local contract (skipped: ${unavailable})`, () => {
    it('runs in CI', () => undefined);
  });
} else {
  contract('DynamoDB Local', () => startDynamoDbLocal());
}

describe('dynalite on disk', () => {
  it('keeps the log across a restart', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'corral-dyn-'));
    try {
      let db = await startDynalite({ path: dir });
      await ensureTables(db.client, TABLES);
      const e = ev(1);
      await new DynamoEventLog(db.client, TABLES.events).emitEvent('sesn_disk', e);
      await db.close();
      db = await startDynalite({ path: dir });
      await ensureTables(db.client, TABLES);
      const stored = await new DynamoEventLog(db.client, TABLES.events).getEvents('sesn_disk');
      expect(stored.map((s) => s.event)).toEqual([e]);
      await db.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

