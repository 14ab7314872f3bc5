/**
 * The events table's items: how one stored event is laid out, written and read back. The
 * DynamoDB adapter (adapters/aws/dynamodb-event-log.ts) only moves these items and adds the
 * conditions; the layout is decided here.
 *
 * Partition key `sessionId` (S), sort key `position` (N). An event is one item with its JSON in
 * `event` (and, for the head of a batch, the events it carries in `rest`). An event too large for
 * one item is stored in chunks in a partition of its own (`keys.eventChunks`, named after the
 * event id, unique per writer, so two writers racing for a position never overwrite each other's
 * chunks), and its item at the position names them: `chunks`, `chunkKey`, `eventType`.
 */
import type { SessionEvent, StoredEvent } from '../session/events.js';
import { keys } from './keys.js';

/**
 * Events whose JSON is larger than this (in UTF-8 bytes) do not fit one DynamoDB item (400 KB)
 * comfortably; they are stored in chunks beside the log.
 */
export const INLINE_LIMIT_BYTES = 350_000;
/** UTF-16 units per chunk: at most 3 UTF-8 bytes each, so a chunk stays under 300 KB. */
const CHUNK_UNITS = 100_000;

/** The item at a position of the log. */
export interface EventItem {
  sessionId: string;
  position: number;
  /** The event's JSON, when it is stored inline. */
  event?: string;
  /** The JSON of the events a batch head carries, when inline. */
  rest?: string;
  /** How many chunks hold the event (and its `rest`), when it is not inline. */
  chunks?: number;
  /** The partition of those chunks. */
  chunkKey?: string;
  eventType?: string;
}

/** One chunk of a large event: `data` is a slice of `{ event, rest }`'s JSON. */
export interface ChunkItem {
  sessionId: string;
  position: number;
  data: string;
}

/** The item for `event` at `position` and, when it is too large to be inline, its chunks (written first). */
export function encodeEvent(sessionId: string, position: number, event: SessionEvent, rest?: SessionEvent[]): { item: EventItem; chunks: ChunkItem[] } {
  const item: EventItem = { sessionId, position };
  const eventJson = JSON.stringify(event);
  const restJson = rest && rest.length ? JSON.stringify(rest) : undefined;
  if (Buffer.byteLength(eventJson) + (restJson ? Buffer.byteLength(restJson) : 0) <= INLINE_LIMIT_BYTES) {
    item.event = eventJson;
    if (restJson) item.rest = restJson;
    return { item, chunks: [] };
  }
  const payload = JSON.stringify({ event, rest: rest && rest.length ? rest : undefined });
  const partition = keys.eventChunks(sessionId, event.id);
  const chunks: ChunkItem[] = [];
  for (let i = 0; i * CHUNK_UNITS < payload.length; i++) {
    chunks.push({ sessionId: partition, position: i, data: payload.slice(i * CHUNK_UNITS, (i + 1) * CHUNK_UNITS) });
  }
  item.chunks = chunks.length;
  item.chunkKey = partition;
  item.eventType = event.type;
  return { item, chunks };
}

/** The stored event an item holds; `readChunks` fetches the chunks of one that is not inline, in order. */
export async function decodeEvent(item: EventItem, readChunks: (chunkKey: string) => Promise<string[]>): Promise<StoredEvent> {
  if (item.chunkKey) {
    const payload = JSON.parse((await readChunks(item.chunkKey)).join('')) as { event: SessionEvent; rest?: SessionEvent[] };
    const stored: StoredEvent = { position: item.position, event: payload.event };
    if (payload.rest) stored.rest = payload.rest;
    return stored;
  }
  const stored: StoredEvent = { position: item.position, event: JSON.parse(item.event!) };
  if (item.rest) stored.rest = JSON.parse(item.rest);
  return stored;
}
