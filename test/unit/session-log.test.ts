import { randomBytes } from 'node:crypto';
import { beforeEach, describe, expect, it } from 'vitest';
import { classifyModelError, ModelError } from '../../lambdas/core/harness/model.js';
import { responseBytes } from '../../lambdas/core/resources/paging.js';
import { openCapability, sealCapability } from '../../lambdas/core/sandbox/manager.js';
import { makeEvent, type SessionEvent } from '../../lambdas/core/session/events.js';
import { readHistory, type HistoryParams } from '../../lambdas/core/session/history.js';
import { LeaseManager } from '../../lambdas/core/session/lease.js';
import { MemoryEventLog, MemoryStateTable } from './memory-store.js';

/** The event history's paging and filters, leases, model error classes and sealed capabilities. */
const S = 'sesn_h';
let log: MemoryEventLog;
let written: SessionEvent[];

beforeEach(async () => {
  log = new MemoryEventLog();
  written = [];
  // ten events a second apart: user, agent, user, agent, ...
  for (let i = 1; i <= 10; i++) {
    const content = [{ type: 'text' as const, text: String(i) }];
    const e = makeEvent(i % 2 ? { type: 'user.message', content } : { type: 'agent.message', content }, new Date(Date.UTC(2026, 0, 1, 0, 0, i)));
    written.push(e);
    await log.emitEvent(S, e);
  }
});

/** Which of the ten events these are (each one's text is its number). */
const ns = (events: SessionEvent[]) => events.map((e) => Number(JSON.stringify('content' in e ? e.content : null).match(/"text":"(\d+)"/)?.[1]));
async function allPages(params: HistoryParams) {
  const pages: number[][] = [];
  let page: string | null | undefined;
  for (let i = 0; i < 50; i++) {
    const r = await readHistory(log, S, { ...params, page });
    pages.push(ns(r.data));
    if (!r.next_page) return pages;
    page = r.next_page;
  }
  throw new Error('history paging did not end');
}

describe('the event history', () => {
  it('pages forward and backward, ending without an empty page', async () => {
    expect(await allPages({ limit: 4 })).toEqual([[1, 2, 3, 4], [5, 6, 7, 8], [9, 10]]);
    expect(await allPages({ limit: 5 })).toEqual([[1, 2, 3, 4, 5], [6, 7, 8, 9, 10]]);
    expect(await allPages({ limit: 4, order: 'desc' })).toEqual([[10, 9, 8, 7], [6, 5, 4, 3], [2, 1]]);
    expect((await readHistory(log, 'sesn_empty', {})).data).toEqual([]);
  });

  it('filters by type and by time, without skipping across pages', async () => {
    expect((await allPages({ limit: 2, types: ['agent.message'] })).flat()).toEqual([2, 4, 6, 8, 10]);
    const at = (s: number) => new Date(Date.UTC(2026, 0, 1, 0, 0, s)).toISOString();
    expect(ns((await readHistory(log, S, { createdAt: { gt: at(3), lte: at(6) } })).data)).toEqual([4, 5, 6]);
    expect(ns((await readHistory(log, S, { createdAt: { gte: at(3), lt: at(6) } })).data)).toEqual([3, 4, 5]);
    await expect(readHistory(log, S, { createdAt: { gt: 'yesterday' } })).rejects.toThrow('created_at[gt]: not a timestamp');
  });

  it('reads positions, both ends inclusive, in either order', async () => {
    expect((await allPages({ positions: { from: 3, to: 7 }, limit: 2 })).flat()).toEqual([3, 4, 5, 6, 7]);
    expect((await allPages({ positions: { from: 3, to: 7 }, limit: 2, order: 'desc' })).flat()).toEqual([7, 6, 5, 4, 3]);
    await expect(readHistory(log, S, { positions: { from: -1 } })).rejects.toThrow('from_position: must be a log position (an integer from 0)');
  });

  it('ends a page before the event that would pass the byte budget', async () => {
    const one = responseBytes(written[0]);
    const pages = await allPages({ limit: 100, maxBytes: one * 3 + 2 });
    expect(pages.flat()).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    for (const p of pages) expect(p.length).toBeLessThanOrEqual(3);
  });

  it('refuses cursors it did not make, and limits out of range', async () => {
    await expect(readHistory(log, S, { page: Buffer.from('{"a":"x"}').toString('base64url') })).rejects.toThrow('page: not a valid page cursor');
    await expect(readHistory(log, S, { limit: 1001 })).rejects.toThrow('limit: must be an integer from 1 to 1000');
  });
});

describe('leases', () => {
  it('give a session to one holder at a time, with a fence that grows on every acquisition', async () => {
    let now = 1_000_000;
    const leases = new LeaseManager(new MemoryStateTable(), 30_000, () => now);
    expect(leases.renewEveryMs).toBe(10_000);
    const a = await leases.acquire(S, 'a');
    expect(a).toMatchObject({ owner: 'a', fence: 1, until: now + 30_000, takeover: false });
    expect(await leases.acquire(S, 'b')).toBeNull();
    expect(await leases.remainingMs(S)).toBe(30_000);
    now += 10_000;
    expect(await leases.renew(a!)).toBe(true);
    expect(a!.until).toBe(now + 30_000);
    await leases.release(a!);
    expect(await leases.remainingMs(S)).toBe(0);
    const b = await leases.acquire(S, 'b');
    expect(b).toMatchObject({ fence: 2, takeover: false });
    // b dies holding it: after expiry c takes over, and b can no longer renew
    now += 60_000;
    const c = await leases.acquire(S, 'c');
    expect(c).toMatchObject({ fence: 3, takeover: true });
    expect(await leases.renew(b!)).toBe(false);
    await leases.release(b!); // a stale release changes nothing
    expect(await leases.remainingMs(S)).toBe(30_000);
    await leases.expire(S);
    expect(await leases.remainingMs(S)).toBe(0);
    expect(await leases.acquire(S, 'd')).toMatchObject({ fence: 4, takeover: false });
  });
});

describe('model errors', () => {
  it('are classified the way session.error reports them, retryable or not', () => {
    const e = (status?: number, message = 'boom') => classifyModelError(Object.assign(new Error(message), status === undefined ? {} : { status }));
    expect(e(529)).toMatchObject({ errorType: 'model_overloaded_error', retryable: true, status: 529 });
    expect(e(429)).toMatchObject({ errorType: 'model_rate_limited_error', retryable: true });
    expect(e(402)).toMatchObject({ errorType: 'billing_error', retryable: false });
    expect(e(503)).toMatchObject({ errorType: 'model_request_failed_error', retryable: true, message: 'the model request failed (503)' });
    expect(e(400, 'bad request body')).toMatchObject({ errorType: 'model_request_failed_error', retryable: false, message: 'the model rejected the request (400): bad request body' });
    expect(e(undefined, 'socket hang up')).toMatchObject({ retryable: true, message: 'the model request failed: socket hang up' });
    expect(e(undefined, 'x'.repeat(2000)).message.length).toBeLessThan(600);
    // an error event inside a stream: no status, its type says which (Bedrock's mid-stream exceptions arrive so)
    const typed = (type: string) => classifyModelError(Object.assign(new Error('mid-stream'), { type }));
    expect(typed('overloaded_error')).toMatchObject({ errorType: 'model_overloaded_error', retryable: true });
    expect(typed('rate_limit_error')).toMatchObject({ errorType: 'model_rate_limited_error', retryable: true });
    expect(typed('api_error')).toMatchObject({ errorType: 'model_request_failed_error', retryable: true });
    const own = new ModelError('billing_error', false, 'no');
    expect(classifyModelError(own)).toBe(own);
  });
});

describe('sealed sandbox capabilities', () => {
  it('open only with the same key and for the same session and sandbox', () => {
    const key = randomBytes(32);
    const owner = { sessionId: 'sesn_1', name: 'default' };
    const sealed = sealCapability(key, owner, 'cap-value');
    expect(sealed).toMatch(/^sealed:v1:/);
    expect(sealed).not.toContain('cap-value');
    expect(openCapability(key, owner, sealed)).toBe('cap-value');
    expect(openCapability(randomBytes(32), owner, sealed)).toBeNull();
    expect(openCapability(key, { sessionId: 'sesn_2', name: 'default' }, sealed)).toBeNull();
    expect(openCapability(key, { sessionId: 'sesn_1', name: 'other' }, sealed)).toBeNull();
    expect(openCapability(key, owner, 'cap-value')).toBeNull();
    expect(sealCapability(key, owner, 'cap-value')).not.toBe(sealed); // a fresh IV each time
  });
});
