import type { SessionEvent } from '../lambdas/core/session/events.js';
import { ApiError, apiErrorOf, CancelledError, ConnectionError, type RawClient } from './client.js';

export interface SseMessage {
  id: string | null;
  event: string;
  data: string;
}

/**
 * Server-Sent Events from a response body, per the HTML standard's parsing rules (LF, CR or CRLF
 * line ends; `:` comments; multi-line `data:`). A message is only yielded once its blank line has
 * arrived, so a connection cut inside a message yields nothing of it.
 */
export async function* parseSse(body: ReadableStream<Uint8Array>): AsyncGenerator<SseMessage> {
  const decoder = new TextDecoder();
  let buf = '';
  let id: string | null = null;
  let event = '';
  let data: string[] = [];
  const reader = body.getReader();
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (!done) buf += decoder.decode(value, { stream: true });
      for (;;) {
        const m = /\r\n|\r|\n/.exec(buf);
        if (!m) break;
        // A lone CR at the very end may be the first half of CRLF: wait for more (unless none comes).
        if (!done && m[0] === '\r' && m.index === buf.length - 1) break;
        const line = buf.slice(0, m.index);
        buf = buf.slice(m.index + m[0].length);
        if (line === '') {
          if (data.length) yield { id, event: event || 'message', data: data.join('\n') };
          id = null;
          event = '';
          data = [];
          continue;
        }
        if (line.startsWith(':')) continue;
        const colon = line.indexOf(':');
        const field = colon < 0 ? line : line.slice(0, colon);
        let value = colon < 0 ? '' : line.slice(colon + 1);
        if (value.startsWith(' ')) value = value.slice(1);
        if (field === 'id') id = value;
        else if (field === 'event') event = value;
        else if (field === 'data') data.push(value);
      }
      if (done) return;
    }
  } finally {
    reader.cancel().catch(() => undefined);
  }
}

export interface FollowOptions {
  sessionId: string;
  /** The last position already seen: the stream resumes right after it (0 = from the start). */
  after: number;
  signal?: AbortSignal;
  /** Told when the connection changes, for progress output. */
  onState?: (state: 'connecting' | 'live' | 'reconnecting', detail?: string) => void;
  /** Longest pause between reconnection attempts. */
  maxDelayMs?: number;
  /** Give up after this many failed attempts in a row (default: never). */
  maxAttempts?: number;
  /**
   * With it, the stream is opened with `event_deltas[]=agent.message` and the previews it carries
   * (never stored, no position) go here instead of being yielded.
   */
  onPreview?: (preview: StreamPreview) => void;
}

/** A preview as the stream sends it (`event_start` / `event_delta`, the SDK's shapes). */
export type StreamPreview =
  | { type: 'event_start'; event: { type: string; id: string } }
  | { type: 'event_delta'; event_id: string; delta: { type: string; index?: number; content?: { type: string; text?: string } } };

export interface PositionedEvent {
  position: number;
  event: SessionEvent;
}

const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve) => {
    if (signal?.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });

/**
 * Follow a session's stream from a position, for as long as the caller iterates. Each event is
 * yielded once, in log order: on a dropped connection (or a stream the server ended, as a Lambda
 * near its timeout does) it reconnects with `Last-Event-ID` set to the last position yielded, and
 * skips anything at or before it. Authentication and not-found answers end the iteration with
 * their error, and so does a server that cannot be reached at all on the first attempt; after
 * that, network failures and 5xx answers are retried with backoff.
 */
export async function* followEvents(raw: RawClient, opts: FollowOptions): AsyncGenerator<PositionedEvent> {
  let last = opts.after;
  let failures = 0;
  const maxDelay = opts.maxDelayMs ?? 5_000;
  let first = true;
  let connected = false;
  while (!opts.signal?.aborted) {
    opts.onState?.(first ? 'connecting' : 'reconnecting', first ? undefined : `after position ${last}`);
    first = false;
    let res: Response | undefined;
    try {
      const query = opts.onPreview ? '?event_deltas[]=agent.message' : '';
      res = await raw.fetch(`/v1/sessions/${encodeURIComponent(opts.sessionId)}/events/stream${query}`, {
        headers: { accept: 'text/event-stream', 'last-event-id': String(last) },
        signal: opts.signal,
      });
    } catch (err) {
      if (opts.signal?.aborted || err instanceof CancelledError) return;
      // Nothing answers at all on the first try: a wrong CORRAL_URL, not a dropped stream.
      if (!(err instanceof ConnectionError) || !connected) throw err;
      res = undefined;
    }
    if (res && !res.ok) {
      const text = await res.text().catch(() => '');
      let parsed: unknown;
      try {
        parsed = JSON.parse(text);
      } catch {
        parsed = undefined;
      }
      const error = apiErrorOf(res.status, parsed, text);
      if (res.status < 500 && res.status !== 429) throw error;
      res = undefined;
    }
    if (res?.body) {
      connected = true;
      opts.onState?.('live');
      try {
        for await (const msg of parseSse(res.body)) {
          if (msg.event === 'ping') continue;
          if (msg.event === 'error') {
            let parsed: unknown;
            try {
              parsed = JSON.parse(msg.data);
            } catch {
              parsed = undefined;
            }
            throw apiErrorOf(500, parsed, msg.data);
          }
          if (msg.event === 'event_start' || msg.event === 'event_delta') {
            try {
              opts.onPreview?.(JSON.parse(msg.data) as StreamPreview);
            } catch {
              // a preview is best effort: one that cannot be read is skipped
            }
            continue;
          }
          const position = msg.id === null ? NaN : Number(msg.id);
          if (!Number.isInteger(position)) continue; // not a stored event
          if (position <= last) continue; // seen already
          failures = 0;
          last = position;
          yield { position, event: JSON.parse(msg.data) as SessionEvent };
        }
      } catch (err) {
        if (opts.signal?.aborted) return;
        if (err instanceof ApiError) throw err;
        // the connection broke: reconnect below
      }
    }
    if (opts.signal?.aborted) return;
    failures++;
    if (opts.maxAttempts !== undefined && failures >= opts.maxAttempts) {
      throw new ConnectionError(`the event stream of ${opts.sessionId} kept failing (${failures} attempts)`);
    }
    await sleep(Math.min(maxDelay, 100 * 2 ** Math.min(failures - 1, 10)), opts.signal);
  }
}
