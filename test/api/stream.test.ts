/**
 * The event stream (lambdas/api/stream.ts) over a real log (dynalite), with a notifier the test
 * controls: events announced with their append go out without a read of the log, and whatever the
 * announcements do (out of order, repeated, missing, without the event), every position is sent
 * once, in order.
 */
import { Hono } from 'hono';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { DynamoEventLog } from '../../lambdas/adapters/aws/dynamodb-event-log.js';
import { ensureTables } from '../../lambdas/adapters/aws/tables.js';
import { startDynalite, type EmbeddedDynamo } from '../../lambdas/adapters/local/dynalite.js';
import { streamEvents, type StreamOptions } from '../../lambdas/api/stream.js';
import type { CorralServices } from '../../lambdas/core/services.js';
import type { SessionEvent, StoredEvent } from '../../lambdas/core/session/events.js';
import type { GetEventsOptions } from '../../lambdas/core/session/log.js';
import type { LogNotifier } from '../../lambdas/core/session/notifier.js';

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';

/** Announcements are held until the test releases them, in the order (and number) it chooses. */
class HeldNotifier implements LogNotifier {
  readonly held: StoredEvent[] = [];
  private readonly listeners = new Set<(stored?: StoredEvent) => void>();
  passThrough = true;
  subscribe(_sessionId: string, onAppend: (stored?: StoredEvent) => void) {
    this.listeners.add(onAppend);
    return () => void this.listeners.delete(onAppend);
  }
  announce(stored: StoredEvent) {
    if (this.passThrough) this.emit(stored);
    else this.held.push(stored);
  }
  emit(stored?: StoredEvent) {
    for (const l of this.listeners) l(stored);
  }
  release(position: number) {
    const s = this.held.find((h) => h.position === position);
    if (!s) throw new Error(`nothing held at ${position}`);
    this.emit(s);
  }
}

let db: EmbeddedDynamo;
let log: DynamoEventLog;
let notifier: HeldNotifier;
let reads = 0;
let session = 0;

beforeAll(async () => {
  db = await startDynalite();
  await ensureTables(db.client, { events: 'events', state: 'state' });
  log = new DynamoEventLog(db.client, 'events', (_id, stored) => notifier.announce(stored));
});
afterAll(() => db.close());
beforeEach(() => {
  notifier = new HeldNotifier();
  reads = 0;
  session++;
});

const message = (n: number): SessionEvent =>
  ({ id: `sevt_${session}_${n}`, type: 'user.message', content: [{ type: 'text', text: `m${n}` }], processed_at: new Date().toISOString() }) as SessionEvent;

/** Opens the stream of the current session (no poll, no heartbeat within a test). */
async function open(lastEventId?: string, opts: StreamOptions = {}) {
  const counted = {
    getEvents: (id: string, opts?: GetEventsOptions) => {
      reads++;
      return log.getEvents(id, opts);
    },
    lastPosition: (id: string) => log.lastPosition(id),
  };
  const id = `sesn_stream_${session}`;
  const app = new Hono();
  app.get('/stream', (c) =>
    streamEvents(c, { events: counted } as unknown as CorralServices, id, notifier, { pollMs: 3_600_000, heartbeatMs: 3_600_000, ...opts }),
  );
  const res = await app.request('/stream', { headers: lastEventId ? { 'last-event-id': lastEventId } : {} });
  const reader = res.body!.getReader();
  const decoder = new TextDecoder();
  let buf = '';
  const frames: Array<{ id: number; event: string; data: { id: string; type: string } }> = [];
  return {
    id,
    frames,
    /** Reads until `n` frames in all have arrived. */
    async until(n: number) {
      while (frames.length < n) {
        const { value, done } = await reader.read();
        if (done) throw new Error('stream ended');
        buf += decoder.decode(value, { stream: true });
        let end: number;
        while ((end = buf.indexOf('\n\n')) >= 0) {
          const f = buf.slice(0, end);
          buf = buf.slice(end + 2);
          if (!f.includes('data:')) continue;
          frames.push({ id: Number(f.match(/^id: (.*)$/m)?.[1]), event: f.match(/^event: (.*)$/m)![1], data: JSON.parse(f.match(/^data: (.*)$/m)![1]) });
        }
      }
      return frames;
    },
    close: () => reader.cancel(),
  };
}

describe('the event stream with a notifier that carries the appended events', () => {
  it('sends announced events as announced: one read of the log when the stream opens, none per event', async () => {
    const s = await open();
    await s.until(0);
    for (let n = 1; n <= 5; n++) {
      await log.emitEvent(s.id, message(n));
      await s.until(n);
    }
    expect(s.frames.map((f) => f.id)).toEqual([1, 2, 3, 4, 5]);
    expect(s.frames.map((f) => f.data.id)).toEqual([1, 2, 3, 4, 5].map((n) => `sevt_${session}_${n}`));
    expect(s.frames.every((f) => f.event === f.data.type)).toBe(true);
    expect(reads).toBe(1);
    await s.close();
  });

  it('loses nothing and repeats nothing when announcements come out of order, twice, late, without the event, or never', async () => {
    const s = await open();
    notifier.passThrough = false;
    for (let n = 1; n <= 6; n++) await log.emitEvent(s.id, message(n));
    // 3 before 1 and 2, 4 and 5 never: the gap is read from the log.
    notifier.release(3);
    await s.until(6);
    // Late and repeated announcements of what was sent are ignored.
    notifier.release(1);
    notifier.release(3);
    notifier.release(6);
    for (let n = 7; n <= 8; n++) await log.emitEvent(s.id, message(n));
    notifier.release(8); // 7 comes later: 8 alone is a gap
    await s.until(8);
    notifier.release(7);
    await log.emitEvent(s.id, message(9));
    notifier.emit(); // an announcement without the event
    await s.until(9);
    notifier.passThrough = true;
    await log.emitEvent(s.id, message(10));
    await s.until(10);
    expect(s.frames.map((f) => f.id)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    expect(s.frames.map((f) => f.data.id)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10].map((n) => `sevt_${session}_${n}`));
    await s.close();
  });

  it('holds at most maxCarriedBytes of announced events: past it, it reads them from the log', async () => {
    const s = await open(undefined, { maxCarriedBytes: 1 });
    await s.until(0);
    for (let n = 1; n <= 3; n++) {
      await log.emitEvent(s.id, message(n));
      await s.until(n);
    }
    expect(s.frames.map((f) => f.id)).toEqual([1, 2, 3]);
    expect(reads).toBeGreaterThan(1);
    await s.close();
  });

  it('resumes after Last-Event-ID, then follows the announcements', async () => {
    for (let n = 1; n <= 4; n++) await log.emitEvent(`sesn_stream_${session}`, message(n));
    const s = await open('2');
    await s.until(2);
    await log.emitEvent(s.id, message(5));
    await s.until(3);
    expect(s.frames.map((f) => f.id)).toEqual([3, 4, 5]);
    expect(s.frames.map((f) => f.data.id)).toEqual([3, 4, 5].map((n) => `sevt_${session}_${n}`));
    await s.close();
  });
});
