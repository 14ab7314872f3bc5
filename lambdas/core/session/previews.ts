import type { BetaManagedAgentsDeltaType } from '@anthropic-ai/sdk/resources/beta/sessions/sessions';
import { EventEmitter } from 'node:events';
import { previewChunkRecords, previewWatchRecords } from '../storage/items.js';
import type { StateTable } from '../store.js';

/**
 * Previews: what a stream opened with `event_deltas` sees of an event while the model is still
 * producing it (`event_start`, then `event_delta` fragments), before the event is stored.
 *
 * Previews are never part of the log. The stored event stays authoritative: it carries the id its
 * preview announced and its complete content, and a stream drops whatever it has not yet sent of
 * a preview once that event (or the request's `span.model_request_end`) has gone out. They are
 * best effort: a preview may stop early (the caps below, a failed write), and a stream that
 * attaches mid-request sees what is left of the channel's copy.
 *
 * The harness publishes a model request's preview as a numbered series of chunks (coalesced
 * fragments, see harness/previews.ts); a stream reads the chunks of the one request that is open
 * in the log it follows. How chunks travel is the channel's: in process locally
 * (`MemoryPreviewChannel`), through short-lived items of the state table on AWS
 * (storage/preview-items.ts), where the harness and the stream run in different functions.
 */

/** The event types a stream may ask previews of: the SDK's `BetaManagedAgentsDeltaType`. */
export type PreviewType = BetaManagedAgentsDeltaType;

/** Every `PreviewType`; a new one in the SDK fails to compile here until it is named. */
const PREVIEW_TYPE_SET: Record<PreviewType, true> = { 'agent.message': true, 'agent.thinking': true };
export const PREVIEW_TYPES = Object.keys(PREVIEW_TYPE_SET) as PreviewType[];

export function isPreviewType(type: string): type is PreviewType {
  return Object.hasOwn(PREVIEW_TYPE_SET, type);
}

/**
 * One step of a preview: it opens (the event's type and the id the stored event will carry), or
 * text lands in entry `index` of the previewed `agent.message`'s content.
 */
export type PreviewFrame =
  | { kind: 'start'; type: PreviewType; id: string }
  | { kind: 'delta'; event_id: string; index: number; text: string };

/** Coalesced frames of one model request, numbered from 0 in the order they were produced. */
export interface PreviewChunk {
  /** The id of the request's `span.model_request_start`. */
  request: string;
  seq: number;
  frames: PreviewFrame[];
}

/**
 * The bounds of the channel. A preview is cut (not stored, not retried) past them; the stored
 * event carries the whole content anyway.
 */
export const PREVIEW_LIMITS = {
  /** Shortest interval between two chunks of one request: at most 4 writes a second. */
  flushMs: 250,
  /** Most characters of text in one chunk (an item far below DynamoDB's 400 KB). */
  maxChunkChars: 8 * 1024,
  /** Most characters previewed per model request; past them the preview stops. */
  maxRequestChars: 64 * 1024,
  /** Most chunks per model request (≈ a 10-minute model call at the flush interval). */
  maxChunks: 2_400,
  /** How long a chunk is kept: longer than a model call may last (10 minutes), so a stream
   *  that attaches mid-request still finds the request's first chunks. */
  ttlMs: 15 * 60_000,
  /** How often a stream reads the channel while a model request is open and nothing wakes it. */
  pollMs: 250,
  /** How long a stream's declared interest lasts (`PreviewChannel.watch`), and how often it renews it. */
  watchTtlMs: 90_000,
  watchRenewMs: 30_000,
} as const;

/**
 * Where the harness puts chunks and streams find them. `publish` may fail (the harness drops the
 * preview then); `read` returns only unexpired chunks.
 */
export interface PreviewChannel {
  publish(sessionId: string, chunk: PreviewChunk): Promise<void>;
  /** The chunks of `request` numbered above `afterSeq` (-1 for all), in order. */
  read(sessionId: string, request: string, afterSeq: number): Promise<PreviewChunk[]>;
  /** Announces publishes in this process, so a stream need not wait for its next read. */
  subscribe?(sessionId: string, onPublish: () => void): () => void;
  /**
   * A stream with `event_deltas` declares that it is open (renewed every `watchRenewMs`), where
   * publishing costs a write per chunk: the harness then publishes a model request's preview only
   * if some stream watches the session when the request starts (`watched`). A channel without
   * these publishes every request's preview.
   */
  watch?(sessionId: string): Promise<void>;
  watched?(sessionId: string): Promise<boolean>;
}

/**
 * The local runtime's channel: chunks in memory, announced to the streams of this process. Each
 * session keeps the chunks of its last few requests only, each for `ttlMs`.
 */
export class MemoryPreviewChannel implements PreviewChannel {
  private readonly sessions = new Map<string, Map<string, { chunks: PreviewChunk[]; expiresAt: number }>>();
  private readonly emitter = new EventEmitter().setMaxListeners(0);
  private lastSweep = 0;

  constructor(
    private readonly opts: { ttlMs?: number; requestsPerSession?: number; clock?: () => number } = {},
  ) {}

  private now() {
    return (this.opts.clock ?? Date.now)();
  }

  async publish(sessionId: string, chunk: PreviewChunk): Promise<void> {
    const now = this.now();
    this.sweep(now);
    let requests = this.sessions.get(sessionId);
    if (!requests) this.sessions.set(sessionId, (requests = new Map()));
    for (const [id, r] of requests) if (r.expiresAt <= now) requests.delete(id);
    let entry = requests.get(chunk.request);
    if (!entry) {
      requests.set(chunk.request, (entry = { chunks: [], expiresAt: 0 }));
      // Oldest first (insertion order): only the last few requests of a session are kept.
      while (requests.size > (this.opts.requestsPerSession ?? 2)) requests.delete(requests.keys().next().value!);
    }
    entry.chunks.push(structuredClone(chunk));
    entry.expiresAt = now + (this.opts.ttlMs ?? PREVIEW_LIMITS.ttlMs);
    this.emitter.emit(sessionId);
  }

  async read(sessionId: string, request: string, afterSeq: number): Promise<PreviewChunk[]> {
    const entry = this.sessions.get(sessionId)?.get(request);
    if (!entry || entry.expiresAt <= this.now()) return [];
    return entry.chunks.filter((c) => c.seq > afterSeq).map((c) => structuredClone(c));
  }

  subscribe(sessionId: string, onPublish: () => void): () => void {
    this.emitter.on(sessionId, onPublish);
    return () => void this.emitter.off(sessionId, onPublish);
  }

  /** Drop expired requests of every session, at most once a minute, so memory follows live sessions only. */
  private sweep(now: number) {
    if (now - this.lastSweep < 60_000) return;
    this.lastSweep = now;
    for (const [sessionId, requests] of this.sessions) {
      for (const [id, r] of requests) if (r.expiresAt <= now) requests.delete(id);
      if (!requests.size) this.sessions.delete(sessionId);
    }
  }
}

/**
 * The channel where the harness and the stream are different processes (AWS: two functions):
 * one state-table item per chunk (storage/items.ts, `previewChunkRecords`), expiring after
 * `ttlMs`. The harness writes at most one item per `flushMs` per model request in progress; a
 * stream with `event_deltas` queries the open request's chunks after the last one it read, every
 * `pollMs` while that request is open (and not at all otherwise). Nothing announces a publish
 * across processes, so this channel has no `subscribe`. A session nobody watches costs no write:
 * a stream with `event_deltas` keeps a watch item alive (`watch`, an UpdateItem every
 * `watchRenewMs`), and the harness reads it once per model request (`watched`) and publishes only
 * when it is there; a stream that opens during a request sees the previews from the next one.
 */
export class TablePreviewChannel implements PreviewChannel {
  constructor(
    private readonly table: StateTable,
    private readonly opts: { ttlMs?: number; clock?: () => number } = {},
  ) {}

  private now() {
    return (this.opts.clock ?? Date.now)();
  }

  watch(sessionId: string): Promise<void> {
    return previewWatchRecords.watch(this.table, sessionId, this.now() + PREVIEW_LIMITS.watchTtlMs);
  }

  watched(sessionId: string): Promise<boolean> {
    return previewWatchRecords.watched(this.table, sessionId, this.now());
  }

  publish(sessionId: string, chunk: PreviewChunk): Promise<void> {
    return previewChunkRecords.put(this.table, sessionId, chunk, this.now() + (this.opts.ttlMs ?? PREVIEW_LIMITS.ttlMs));
  }

  async read(sessionId: string, request: string, afterSeq: number): Promise<PreviewChunk[]> {
    const chunks = await previewChunkRecords.read(this.table, sessionId, request, afterSeq, this.now());
    return chunks as PreviewChunk[];
  }
}
