import { decodeCursor, encodeCursor, clampLimit, PageBudget, responseBytes } from '../resources/paging.js';
import { InvalidRequestError } from '../errors.js';
import type { SessionEvent } from './events.js';
import type { EventLog } from './log.js';

export interface HistoryParams {
  limit?: number;
  page?: string | null;
  order?: 'asc' | 'desc';
  types?: string[];
  createdAt?: { gt?: string; gte?: string; lt?: string; lte?: string };
  /** Corral extension (`from_position`, `to_position`): only events at these log positions, both inclusive. */
  positions?: { from?: number; to?: number };
  /** Largest page in bytes (default `PAGE_BYTE_BUDGET`, 5 MiB); tests set it lower. */
  maxBytes?: number;
}

/** Events read by the first query of a page, before their sizes are known (an event may be MBs). */
const FIRST_SLICE = 10;

export interface HistoryPage {
  data: SessionEvent[];
  next_page: string | null;
}

/**
 * A page of `GET /v1/sessions/{id}/events`: the log read in position order (or reverse), filtered
 * by type and time, at most `limit` events and at most `maxBytes` of them (an event that alone is
 * larger goes out alone). The cursor is the position of the last event looked at and put on the
 * page (never of one left for the next page), so pages never overlap or skip, however the filter
 * thins them.
 */
export async function readHistory(log: EventLog, sessionId: string, params: HistoryParams): Promise<HistoryPage> {
  const limit = clampLimit(params.limit, 100, 1000);
  const desc = params.order === 'desc';
  const cursorRaw = decodeCursor(params.page);
  const cursor = cursorRaw === undefined ? undefined : Number(cursorRaw);
  if (cursor !== undefined && (!Number.isSafeInteger(cursor) || cursor < 0)) throw new InvalidRequestError('page: not a valid page cursor');
  const types = params.types?.length ? new Set(params.types) : null;
  const time = (bound: string | undefined, name: string) => {
    if (bound === undefined) return undefined;
    const t = Date.parse(bound);
    if (Number.isNaN(t)) throw new InvalidRequestError(`created_at[${name}]: not a timestamp`);
    return t;
  };
  const gt = time(params.createdAt?.gt, 'gt');
  const gte = time(params.createdAt?.gte, 'gte');
  const lt = time(params.createdAt?.lt, 'lt');
  const lte = time(params.createdAt?.lte, 'lte');
  const keep = (e: SessionEvent) => {
    if (types && !types.has(e.type)) return false;
    const t = Date.parse(e.processed_at);
    if (gt !== undefined && !(t > gt)) return false;
    if (gte !== undefined && !(t >= gte)) return false;
    if (lt !== undefined && !(t < lt)) return false;
    if (lte !== undefined && !(t <= lte)) return false;
    return true;
  };

  const low = params.positions?.from ?? 1;
  const high = params.positions?.to ?? Number.MAX_SAFE_INTEGER - 1;
  for (const [name, v] of [['from_position', low], ['to_position', high]] as const) {
    if (!Number.isSafeInteger(v) || v < 0) throw new InvalidRequestError(`${name}: must be a log position (an integer from 0)`);
  }

  const data: SessionEvent[] = [];
  const budget = new PageBudget(params.maxBytes);
  let next = cursor;
  const chunk = Math.max(limit, 100);
  // Events can be megabytes each: read about as many as the rest of the budget holds (by the
  // sizes seen so far), so a page never holds a hundred large events in memory to send five.
  let seenBytes = 0;
  let seenCount = 0;
  const sliceSize = () => {
    if (seenCount === 0) return Math.min(chunk, FIRST_SLICE);
    const left = Math.max(0, budget.maxBytes - budget.bytes);
    return Math.max(1, Math.min(chunk, Math.ceil(left / (seenBytes / seenCount)) + 1));
  };
  for (;;) {
    const size = sliceSize();
    const slice = desc
      ? await log.getEvents(sessionId, { from: low, to: Math.min(next ?? Infinity, high + 1), limit: size, order: 'desc' })
      : await log.getEvents(sessionId, { from: Math.max((next ?? 0) + 1, low), to: high + 1, limit: size });
    for (const stored of slice) {
      const bytes = responseBytes(stored.event);
      seenBytes += bytes;
      seenCount += 1;
      if (keep(stored.event)) {
        // Full: the next page starts at this event (`next` is still the one before it).
        if (!budget.take(stored.event, bytes)) return { data, next_page: encodeCursor(String(next)) };
        data.push(stored.event);
      }
      next = stored.position;
      if (data.length === limit) {
        const more = desc
          ? next > Math.max(1, low)
          : Math.min(high, await log.lastPosition(sessionId)) > next;
        return { data, next_page: more ? encodeCursor(String(next)) : null };
      }
    }
    if (slice.length < size) return { data, next_page: null };
  }
}
