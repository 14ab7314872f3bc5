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

export interface ListParams {
  limit?: number;
  page?: string | null;
  order?: 'asc' | 'desc';
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
 * Page through an ordered source, keeping only items that pass `keep`, until `limit` are found.
 * The cursor is the sort key of the last item looked at, so filtered-out items are never revisited.
 */
export async function collectPage<T>(
  fetch: (opts: QueryOptions) => Promise<Page<Item>>,
  params: ListParams,
  sortKeyOf: (item: Item) => string,
  keep: (item: Item) => boolean,
  map: (item: Item) => T,
): Promise<ListResult<T>> {
  const limit = clampLimit(params.limit);
  let after = decodeCursor(params.page);
  const data: T[] = [];
  let lastSeen: string | undefined;
  for (;;) {
    const page = await fetch({ after, limit: limit - data.length, reverse: params.order === 'desc' });
    for (const item of page.items) {
      lastSeen = sortKeyOf(item);
      if (keep(item)) data.push(map(item));
    }
    if (page.last === null) return { data, next_page: null };
    after = page.last;
    if (data.length >= limit) return { data, next_page: encodeCursor(lastSeen ?? page.last) };
  }
}
