import type { Context } from 'hono';
import { streamSSE } from 'hono/streaming';
import { InvalidRequestError } from '../core/errors.js';
import type { CorralServices } from '../core/services.js';

import type { StoredEvent } from '../core/session/events.js';
import type { LogNotifier } from '../core/session/notifier.js';
import { isPreviewType, PREVIEW_LIMITS, PREVIEW_TYPES, type PreviewType } from '../core/session/previews.js';
import { queryList } from './http.js';
import { OPEN_REQUEST_LOOKBACK, PreviewFollower } from './stream-previews.js';

export type { LogNotifier };

export interface StreamOptions {
  /** How often the log is read when no notification comes (other processes append too). */
  pollMs?: number;
  /**
   * Most announced events, and most bytes of them, held for delivery (while an earlier position
   * is missing, or the client reads slowly); past either, the stream forgets further
   * announcements and reads the log. @default 1000 events, 4 MiB
   */
  maxCarried?: number;
  maxCarriedBytes?: number;
  /** Heartbeat interval (`event: ping`). */
  heartbeatMs?: number;
  /** How often the preview channel is read while a model request is open (`event_deltas`). */
  previewPollMs?: number;
}

/**
 * The `event_deltas` of a stream request (`event_deltas[]=agent.message`, repeatable): the types
 * whose previews it wants. A type the API does not preview is a 400 that names it.
 */
export function parseEventDeltas(c: Context): Set<PreviewType> {
  const given = queryList(c, 'event_deltas');
  const unknown = given.filter((t) => !isPreviewType(t));
  if (unknown.length) {
    throw new InvalidRequestError(
      `event_deltas: ${unknown.map((t) => JSON.stringify(t.slice(0, 100))).join(', ')} cannot be previewed (one of ${PREVIEW_TYPES.join(', ')})`,
    );
  }
  return new Set(given as PreviewType[]);
}

/**
 * `GET /v1/sessions/{id}/events/stream`: Server-Sent Events, one per stored event, as
 * `id: <position>`, `event: <type>`, `data: <event JSON>`. Without `Last-Event-ID` the stream
 * starts at the end of the log, as the hosted service does; with it, it resumes right after that
 * position, so a client that reconnects misses nothing and sees nothing twice.
 *
 * With `event_deltas`, the stream also carries previews of those types while the model produces
 * them (`event: event_start` / `event: event_delta`, without `id:` lines: they are not in the
 * log), read from the preview channel every `previewPollMs` while a model request is open in the
 * log (stream-previews.ts).
 *
 * Where a notifier announces appends with the events they stored (the local runtime), an event
 * that comes right after the last one sent goes out as announced, without a read of the log. An
 * announcement that leaves a gap (concurrent appends announced out of order), or that carries no
 * event, makes the stream read the log from the last position it sent, as does the poll every
 * `pollMs`; positions at or before the last one sent are never sent again. So the stream sends
 * every position once, in order, whatever the notifier does.
 */
export async function streamEvents(
  c: Context,
  s: CorralServices,
  sessionId: string,
  notifier?: LogNotifier,
  opts: StreamOptions = {},
) {
  const lastEventId = c.req.header('last-event-id') ?? c.req.query('last_event_id');
  let position: number;
  if (lastEventId !== undefined && lastEventId !== '') {
    position = Number(lastEventId);
    if (!/^[0-9]{1,16}$/.test(lastEventId) || !Number.isSafeInteger(position)) throw new InvalidRequestError('Last-Event-ID: must be an event position');
  } else {
    position = await s.events.lastPosition(sessionId);
  }
  const pollMs = opts.pollMs ?? 1000;
  const heartbeatMs = opts.heartbeatMs ?? 15_000;
  const deltas = parseEventDeltas(c);
  const previews = deltas.size && s.previews ? new PreviewFollower(s.previews, sessionId, deltas) : undefined;
  if (previews && position > 0) {
    previews.resume(await s.events.getEvents(sessionId, { to: position + 1, order: 'desc', limit: OPEN_REQUEST_LOOKBACK }));
  }
  const previewPollMs = opts.previewPollMs ?? PREVIEW_LIMITS.pollMs;
  c.header('Cache-Control', 'no-cache');
  c.header('X-Accel-Buffering', 'no');
  return streamSSE(c, async (stream) => {
    let wake: (() => void) | null = null;
    // A notification of an append (or of a preview) makes the next pass read the log (or the
    // channel) at once; without one, the log is read every `pollMs` and, while a model request
    // is open, the channel every `previewPollMs`.
    let logDirty = true;
    let previewDirty = false;
    // Events announced with their append, by position, not sent yet. Serialized when announced,
    // so the stream sends the event as it was stored even if its writer's object changes later.
    const carried = new Map<number, { stored: StoredEvent; data: string; seq: number }>();
    const maxCarried = opts.maxCarried ?? 1000;
    const maxCarriedBytes = opts.maxCarriedBytes ?? 4 * 1024 * 1024;
    let carriedBytes = 0;
    let announcements = 0;
    const take = (p: number) => {
      const c = carried.get(p);
      if (c) {
        carried.delete(p);
        carriedBytes -= c.data.length;
      }
      return c;
    };
    const unsubscribe = notifier?.subscribe(sessionId, (stored) => {
      if (!stored) logDirty = true;
      else if (stored.position > position && !carried.has(stored.position)) {
        const data = carried.size < maxCarried && carriedBytes < maxCarriedBytes ? JSON.stringify(stored.event) : '';
        if (data && carriedBytes + data.length <= maxCarriedBytes) {
          carried.set(stored.position, { stored, data, seq: ++announcements });
          carriedBytes += data.length;
        } else logDirty = true;
      }
      wake?.();
    });
    const unsubscribePreviews = previews
      ? s.previews?.subscribe?.(sessionId, () => {
          previewDirty = true;
          wake?.();
        })
      : undefined;
    let closed = false;
    stream.onAbort(() => {
      closed = true;
      wake?.();
    });
    let lastWrite = Date.now();
    let lastLogRead = 0;
    // Where previews cost a write per chunk, the harness publishes them only while a stream says it watches.
    let lastWatch = 0;
    const renewWatch = async () => {
      if (!previews || !s.previews?.watch || Date.now() - lastWatch < PREVIEW_LIMITS.watchRenewMs) return;
      lastWatch = Date.now();
      await s.previews.watch(sessionId).catch(() => {
        lastWatch = 0; // try again on the next pass
      });
    };
    try {
      /** Sends the event at `position + 1` (and the previews that belong before it). */
      const send = async (stored: StoredEvent, data: string) => {
        if (previews) for (const m of await previews.before(stored.event)) await stream.writeSSE(m);
        await stream.writeSSE({ id: String(stored.position), event: stored.event.type, data });
        previews?.after(stored.event);
        position = stored.position;
        lastWrite = Date.now();
      };
      while (!closed) {
        await renewWatch();
        // Announced events that follow what was sent: no read needed.
        for (let next = take(position + 1); next && !closed; next = take(position + 1)) await send(next.stored, next.data);
        for (const p of carried.keys()) if (p <= position) take(p);
        if (carried.size) logDirty = true; // a gap: the positions before them are in the log
        if (logDirty || Date.now() - lastLogRead >= pollMs) {
          logDirty = false;
          lastLogRead = Date.now();
          const heardBefore = announcements;
          const fresh = await s.events.getEvents(sessionId, { from: position + 1, limit: 500 });
          for (const stored of fresh) {
            if (stored.position <= position) continue;
            const announced = take(stored.position);
            await send(stored, announced?.data ?? JSON.stringify(stored.event));
          }
          // What was announced before this read and is still not next was not in the log as
          // read (it cannot be, appends are announced once stored): the poll will look again.
          for (const [p, c] of carried) if (p <= position || (fresh.length < 500 && c.seq <= heardBefore)) take(p);
          if (fresh.length === 500) {
            logDirty = true;
            continue;
          }
        }
        previewDirty = false;
        if (previews?.active) {
          const messages = await previews.drain();
          for (const m of messages) await stream.writeSSE(m);
          if (messages.length) lastWrite = Date.now();
        }
        if (Date.now() - lastWrite >= heartbeatMs) {
          await stream.writeSSE({ event: 'ping', data: '{"type":"ping"}' });
          lastWrite = Date.now();
        }
        if (logDirty || previewDirty || closed || carried.size) continue;
        const untilLog = Math.max(0, lastLogRead + pollMs - Date.now());
        await new Promise<void>((resolve) => {
          const timer = setTimeout(done, Math.min(previews?.active ? Math.min(previewPollMs, untilLog) : untilLog, heartbeatMs));
          function done() {
            clearTimeout(timer);
            wake = null;
            resolve();
          }
          wake = done;
        });
      }
    } finally {
      unsubscribe?.();
      unsubscribePreviews?.();
    }
  });
}
