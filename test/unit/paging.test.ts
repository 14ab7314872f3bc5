import { describe, expect, it } from 'vitest';
import { InvalidRequestError } from '../../lambdas/core/errors.js';
import { clampLimit, collectBidirectionalPage, collectPage, decodeCursor, encodeBackCursor, encodeCursor, PageBudget, responseBytes } from '../../lambdas/core/resources/paging.js';
import type { Item } from '../../lambdas/core/store.js';
import { MemoryStateTable } from './memory-store.js';

/** A partition of `n` items with sort keys k01..kNN and an `even` flag, in a memory table. */
async function partition(n: number) {
  const table = new MemoryStateTable();
  for (let i = 1; i <= n; i++) await table.put({ pk: 'p', sk: `k${String(i).padStart(2, '0')}`, n: i, even: i % 2 === 0 });
  return table;
}
const all = () => true;
const nOf = (i: Item) => i.n as number;

/** Every page of a listing, following next_page. */
async function pages(table: MemoryStateTable, params: Parameters<typeof collectPage>[1], keep: (i: Item) => boolean = all, fetchLimit?: number) {
  const out: number[][] = [];
  let page: string | null | undefined = params.page;
  for (let guard = 0; guard < 100; guard++) {
    const r = await collectPage((o) => table.query('p', { ...o, limit: fetchLimit ?? o.limit }), { ...params, page }, (i) => i.sk, keep, nOf);
    out.push(r.data);
    if (!r.next_page) return out;
    page = r.next_page;
  }
  throw new Error('paging did not end');
}

describe('page cursors', () => {
  it('round-trip a sort key, opaquely', () => {
    const c = encodeCursor('sesn_01#x');
    expect(c).not.toContain('sesn_01');
    expect(decodeCursor(c)).toBe('sesn_01#x');
    expect(decodeCursor(undefined)).toBeUndefined();
    expect(decodeCursor(null)).toBeUndefined();
    expect(decodeCursor('')).toBeUndefined();
  });

  it('refuse anything they did not make with a 400 naming page', () => {
    for (const bad of ['not-base64-json', Buffer.from('{"b":1}').toString('base64url'), Buffer.from('{"a":3}').toString('base64url')]) {
      const err = (() => {
        try {
          decodeCursor(bad);
        } catch (e) {
          return e;
        }
      })();
      expect(err).toBeInstanceOf(InvalidRequestError);
      expect(err).toMatchObject({ status: 400, message: 'page: not a valid page cursor' });
    }
  });
});

describe('clampLimit', () => {
  it('defaults, and accepts integers from 1 to the maximum', () => {
    expect(clampLimit(undefined)).toBe(20);
    expect(clampLimit(Number.NaN, 7)).toBe(7);
    expect(clampLimit(1)).toBe(1);
    expect(clampLimit(100)).toBe(100);
    expect(clampLimit(1000, 20, 1000)).toBe(1000);
  });

  it('refuses zero, negatives, fractions and values past the maximum', () => {
    for (const bad of [0, -1, 1.5, 101]) expect(() => clampLimit(bad)).toThrow('limit: must be an integer from 1 to 100');
    expect(() => clampLimit(1001, 20, 1000)).toThrow('limit: must be an integer from 1 to 1000');
  });
});

describe('the byte budget of a page', () => {
  it('counts an item as a JSON string escaped once more, plus a comma', () => {
    expect(responseBytes({ a: 1 })).toBe(Buffer.byteLength(JSON.stringify(JSON.stringify({ a: 1 }))) - 1);
    // a quote inside a text costs 4 bytes in the doubly encoded body, not 2
    expect(responseBytes({ t: '"' }) - responseBytes({ t: 'x' })).toBe(3);
    expect(responseBytes({ t: 'é' }) - responseBytes({ t: 'e' })).toBe(1);
  });

  it('always takes the first item, then only what fits', () => {
    const b = new PageBudget(10);
    expect(b.take('x', 50)).toBe(true);
    expect(b.bytes).toBe(50);
    expect(b.take('y', 1)).toBe(false);
    const c = new PageBudget(10);
    expect(c.take('a', 4)).toBe(true);
    expect(c.take('b', 6)).toBe(true);
    expect(c.take('c', 1)).toBe(false);
    expect(c.bytes).toBe(10);
  });

  it('must be positive', () => {
    expect(() => new PageBudget(0)).toThrow(RangeError);
    expect(() => new PageBudget(Number.NaN)).toThrow(RangeError);
  });
});

describe('collectPage', () => {
  it('pages forward and backward through every item exactly once', async () => {
    const table = await partition(7);
    expect(await pages(table, { limit: 3 })).toEqual([[1, 2, 3], [4, 5, 6], [7]]);
    expect(await pages(table, { limit: 3, order: 'desc' })).toEqual([[7, 6, 5], [4, 3, 2], [1]]);
    expect(await pages(table, { limit: 7 })).toEqual([[1, 2, 3, 4, 5, 6, 7]]);
  });

  it('filters without revisiting or skipping, across short fetches', async () => {
    const table = await partition(9);
    const even = (i: Item) => i.even === true;
    const twos = await pages(table, { limit: 2 }, even);
    expect(twos.flat()).toEqual([2, 4, 6, 8]);
    expect(twos.slice(0, 2)).toEqual([[2, 4], [6, 8]]);
    // the store answers one item per fetch: collectPage keeps fetching until the page is full
    expect(await pages(table, { limit: 3 }, even, 1)).toEqual([[2, 4, 6], [8]]);
  });

  it('ends a page before the item that would pass the byte budget, and resumes at it', async () => {
    const table = await partition(5);
    const one = responseBytes(1);
    expect(await pages(table, { limit: 5, maxBytes: 2 * one })).toEqual([[1, 2], [3, 4], [5]]);
    // an item larger than the budget still makes progress alone
    expect(await pages(table, { limit: 5, maxBytes: 1 })).toEqual([[1], [2], [3], [4], [5]]);
  });

  it('rejects a bad limit or cursor before reading', async () => {
    const table = await partition(1);
    let reads = 0;
    const fetch = (o: object) => (reads++, table.query('p', o));
    await expect(collectPage(fetch, { limit: 0 }, (i) => i.sk, all, nOf)).rejects.toThrow(/limit/);
    await expect(collectPage(fetch, { page: 'garbage' }, (i) => i.sk, all, nOf)).rejects.toThrow(/page/);
    expect(reads).toBe(0);
  });
});

describe('collectBidirectionalPage', () => {
  const page = (table: MemoryStateTable, params: Parameters<typeof collectPage>[1], keep: (i: Item) => boolean = all, fetchLimit?: number) =>
    collectBidirectionalPage((o) => table.query('p', { ...o, limit: fetchLimit ?? o.limit }), params, (i) => i.sk, keep, nOf);

  /** Walk forward to the end, then back to the start, checking each page back against the page forward. */
  async function roundTrip(table: MemoryStateTable, params: Parameters<typeof collectPage>[1], keep: (i: Item) => boolean = all, fetchLimit?: number) {
    const forward = [await page(table, params, keep, fetchLimit)];
    expect(forward[0].prev_page).toBeNull();
    while (forward.at(-1)!.next_page) forward.push(await page(table, { ...params, page: forward.at(-1)!.next_page }, keep, fetchLimit));
    if (forward.at(-1)!.data.length === 0 && forward.length > 1) forward.pop(); // an empty last page has nothing to page back from
    const back = [forward.at(-1)!];
    while (back.at(-1)!.prev_page) back.push(await page(table, { ...params, page: back.at(-1)!.prev_page }, keep, fetchLimit));
    return { forward: forward.map((p) => p.data), back: back.map((p) => p.data).reverse() };
  }

  it('pages back to exactly the pages it paged forward, in either order, filtered or not', async () => {
    const table = await partition(9);
    for (const order of ['asc', 'desc'] as const) {
      for (const [keep, fetchLimit] of [[all, undefined], [(i: Item) => !!i.even, 1], [(i: Item) => !!i.even, undefined]] as const) {
        const { forward, back } = await roundTrip(table, { limit: 2, order }, keep, fetchLimit);
        expect(back).toEqual(forward);
      }
    }
    const { forward } = await roundTrip(table, { limit: 2, order: 'asc' });
    expect(forward).toEqual([[1, 2], [3, 4], [5, 6], [7, 8], [9]]);
  });

  it('turns back a page whose items are larger than the byte budget allows together', async () => {
    const table = await partition(6);
    const budget = responseBytes(1) * 2;
    const { forward, back } = await roundTrip(table, { limit: 5, order: 'asc', maxBytes: budget });
    expect(forward).toEqual([[1, 2], [3, 4], [5, 6]]);
    // Back pages fill from the end: the same items, page boundaries the budget sets from that side.
    expect(back.flat()).toEqual([1, 2, 3, 4, 5, 6]);
    expect(back.every((p) => p.length <= 2)).toBe(true);
  });

  it('gives the first page when paging back past the start, and a forward cursor after the last item', async () => {
    const table = await partition(5);
    const past = await page(table, { limit: 2, order: 'asc', page: encodeBackCursor('k01') });
    expect(past).toMatchObject({ data: [1, 2], prev_page: null });
    const before3 = await page(table, { limit: 2, order: 'asc', page: encodeBackCursor('k03') });
    expect(before3).toMatchObject({ data: [1, 2], prev_page: null, next_page: encodeCursor('k02') });
    const before5 = await page(table, { limit: 2, order: 'asc', page: encodeBackCursor('k05') });
    expect(before5).toMatchObject({ data: [3, 4], prev_page: encodeBackCursor('k03') });
  });

  it('is refused by the one-way lists', () => {
    expect(() => decodeCursor(encodeBackCursor('k03'))).toThrow(InvalidRequestError);
  });
});
