import { InvalidRequestError } from '../errors.js';
import type { Item, Page, QueryOptions } from '../store.js';

/** Opaque page cursors: the sort key to resume after, base64url-encoded. */
export function encodeCursor(after: string): string {
  return Buffer.from(JSON.stringify({ a: after }), 'utf8').toString('base64url');
}

export function decodeCursor(cursor: string | undefined | null): string | undefined {
  if (!cursor) return undefined;
  try {
    const parsed = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
    if (typeof parsed?.a === 'string') return parsed.a;
  } catch {
    // fall through
  }
  throw new InvalidRequestError('page: not a valid page cursor');
}

/**
 * A cursor that pages back (a list's `prev_page`): the page of items just before the one with
 * this sort key, in the list's order. Only bidirectional lists (sessions) accept it; elsewhere
 * `decodeCursor` refuses it as not a page cursor.
 */
export function encodeBackCursor(before: string): string {
  return Buffer.from(JSON.stringify({ b: before }), 'utf8').toString('base64url');
}

/** Either way a bidirectional list's `page` cursor goes. */
export function decodeBidirectionalCursor(cursor: string | undefined | null): { after?: string; before?: string } {
  if (!cursor) return {};
  try {
    const parsed = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
    if (typeof parsed?.a === 'string') return { after: parsed.a };
    if (typeof parsed?.b === 'string') return { before: parsed.b };
  } catch {
    // fall through
  }
  throw new InvalidRequestError('page: not a valid page cursor');
}

export interface ListParams {
  limit?: number;
  page?: string | null;
  order?: 'asc' | 'desc';
  /** Largest page in bytes (see {@link PAGE_BYTE_BUDGET}); tests set it lower. */
  maxBytes?: number;
}

/**
 * Most bytes of items one page carries. On AWS every list is answered by a buffered Lambda behind
 * API Gateway, whose response may not pass 6 MB (API Gateway answers 502 past it); a page stops
 * before this budget, leaving room for the envelope and headers. `limit` still caps the count.
 */
export const PAGE_BYTE_BUDGET = 5 * 1024 * 1024;

/**
 * Bytes an item takes in a buffered Lambda response: the body is a JSON string inside the proxy
 * result's JSON, so it is escaped once more (a `"` in a text costs 4 bytes, not 2). Counting it
 * this way keeps the bound true however the item's text is made.
 */
export function responseBytes(item: unknown): number {
  return Buffer.byteLength(JSON.stringify(JSON.stringify(item))) - 2 + 1; // less the outer quotes, plus a comma
}

/**
 * The byte side of a page: `fits` says whether one more item may join it. The first item always
 * joins (it cannot be split, and a request body, hence any item, is at most 4 MiB), so every page
 * makes progress.
 */
export class PageBudget {
  private used = 0;
  private count = 0;
  constructor(readonly maxBytes: number = PAGE_BYTE_BUDGET) {
    if (!(maxBytes > 0)) throw new RangeError('maxBytes must be positive');
  }

  /** Add `item` if it fits (always, when the page is empty); false means the page ends before it. */
  take(item: unknown, bytes = responseBytes(item)): boolean {
    if (this.count > 0 && this.used + bytes > this.maxBytes) return false;
    this.used += bytes;
    this.count += 1;
    return true;
  }

  get bytes(): number {
    return this.used;
  }
}

export interface ListResult<T> {
  data: T[];
  next_page: string | null;
}

export function clampLimit(limit: number | undefined, fallback = 20, max = 100): number {
  if (limit === undefined || Number.isNaN(limit)) return fallback;
  if (!Number.isInteger(limit) || limit < 1 || limit > max) {
    throw new InvalidRequestError(`limit: must be an integer from 1 to ${max}`);
  }
  return limit;
}

/**
 * Page through an ordered source, keeping only items that pass `keep`, until `limit` are found or
 * the next item would take the page past `params.maxBytes` (default {@link PAGE_BYTE_BUDGET}).
 * The cursor is the sort key of the last item looked at (and, when the bytes ran out, not the one
 * that did not fit), so filtered-out items are never revisited and none is skipped.
 */
export async function collectPage<T, I extends Item = Item>(
  fetch: (opts: QueryOptions) => Promise<Page<I>>,
  params: ListParams,
  sortKeyOf: (item: I) => string,
  keep: (item: I) => boolean,
  map: (item: I) => T,
): Promise<ListResult<T>> {
  const limit = clampLimit(params.limit);
  const budget = new PageBudget(params.maxBytes);
  let after = decodeCursor(params.page);
  const data: T[] = [];
  let lastSeen: string | undefined;
  for (;;) {
    const page = await fetch({ after, limit: limit - data.length, reverse: params.order === 'desc' });
    for (const item of page.items) {
      if (keep(item)) {
        const mapped = map(item);
        // A page that holds something always has a lastSeen: the next one starts at this item.
        if (!budget.take(mapped)) return { data, next_page: encodeCursor(lastSeen!) };
        data.push(mapped);
      }
      lastSeen = sortKeyOf(item);
    }
    if (page.last === null) return { data, next_page: null };
    after = page.last;
    if (data.length >= limit) return { data, next_page: encodeCursor(lastSeen ?? page.last) };
  }
}

/** A page that can also be turned back (`BidirectionalPageCursor`). */
export interface BidirectionalListResult<T> extends ListResult<T> {
  prev_page: string | null;
}

/**
 * `collectPage` for a list that pages both ways. A forward page (no cursor, or a `next_page`)
 * is collected as `collectPage` does; its `prev_page` pages back from its first item (null on
 * the first page, and on an empty page, which has no item to page back from). A `prev_page`
 * cursor reads the source the other way from its item, keeps up to `limit` items (and bytes),
 * and turns them into the list's order: its `next_page` goes on after its last item (back to
 * where it came from), its `prev_page` pages back from its first, null when nothing kept lies
 * before it (read on to find out, as a filtered forward page reads on to fill itself).
 */
export async function collectBidirectionalPage<T, I extends Item = Item>(
  fetch: (opts: QueryOptions) => Promise<Page<I>>,
  params: ListParams,
  sortKeyOf: (item: I) => string,
  keep: (item: I) => boolean,
  map: (item: I) => T,
): Promise<BidirectionalListResult<T>> {
  const cursor = decodeBidirectionalCursor(params.page);
  if (cursor.before === undefined) {
    let first: string | undefined;
    const page = await collectPage(fetch, { ...params, page: cursor.after === undefined ? undefined : encodeCursor(cursor.after) }, sortKeyOf, (item) => {
      const kept = keep(item);
      if (kept && first === undefined) first = sortKeyOf(item);
      return kept;
    }, map);
    return { ...page, prev_page: cursor.after !== undefined && first !== undefined && page.data.length ? encodeBackCursor(first) : null };
  }
  const limit = clampLimit(params.limit);
  const budget = new PageBudget(params.maxBytes);
  const found: Array<{ key: string; value: T }> = [];
  const reverse = params.order !== 'desc';
  let after: string | undefined = cursor.before;
  // Whether a kept item lies beyond the page's first (so that it has a prev_page): known when an
  // item did not fit, else found by reading on until one is kept or the source ends.
  let more: boolean | undefined;
  collect: for (;;) {
    const page = await fetch({ after, limit: limit - found.length, reverse });
    for (const [i, item] of page.items.entries()) {
      after = sortKeyOf(item);
      if (!keep(item)) continue;
      const value = map(item);
      if (!budget.take(value)) {
        more = true;
        break collect;
      }
      found.push({ key: sortKeyOf(item), value });
      if (found.length >= limit) {
        if (page.last === null && i === page.items.length - 1) more = false;
        break collect;
      }
    }
    if (page.last === null) {
      more = false;
      break;
    }
    after = page.last;
  }
  while (more === undefined) {
    const page = await fetch({ after, limit, reverse });
    if (page.items.some(keep)) more = true;
    else if (page.last === null) more = false;
    else after = page.last;
  }
  // Nothing kept before the cursor: paging back past the start gives the first page.
  if (!found.length) return collectBidirectionalPage(fetch, { ...params, page: undefined }, sortKeyOf, keep, map);
  found.reverse();
  return {
    data: found.map((f) => f.value),
    next_page: encodeCursor(found[found.length - 1].key),
    prev_page: more ? encodeBackCursor(found[0].key) : null,
  };
}

/** `created_at[gt|gte|lt|lte]` of a list request, as sent (ISO 8601 timestamps). */
export interface CreatedAtRange {
  gt?: string;
  gte?: string;
  lt?: string;
  lte?: string;
}

/**
 * The test a list applies for `created_at[...]`: true when a timestamp lies in the range. Each
 * bound must parse as a timestamp; a bad one is a 400 naming the parameter.
 */
export function createdAtFilter(range: CreatedAtRange | undefined): (timestamp: string) => boolean {
  const bound = (name: keyof CreatedAtRange) => {
    const v = range?.[name];
    if (v === undefined) return undefined;
    const t = Date.parse(v);
    if (Number.isNaN(t)) throw new InvalidRequestError(`created_at[${name}]: not a timestamp`);
    return t;
  };
  const gt = bound('gt');
  const gte = bound('gte');
  const lt = bound('lt');
  const lte = bound('lte');
  if (gt === undefined && gte === undefined && lt === undefined && lte === undefined) return () => true;
  return (timestamp) => {
    const t = Date.parse(timestamp);
    if (gt !== undefined && !(t > gt)) return false;
    if (gte !== undefined && !(t >= gte)) return false;
    if (lt !== undefined && !(t < lt)) return false;
    if (lte !== undefined && !(t <= lte)) return false;
    return true;
  };
}
