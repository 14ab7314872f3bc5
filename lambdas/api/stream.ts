import type { Context } from 'hono';
import { streamSSE } from 'hono/streaming';
import { InvalidRequestError } from '../core/errors.js';
import type { CorralServices } from '../core/services.js';

import type { LogNotifier } from '../core/session/notifier.js';

export type { LogNotifier };

export interface StreamOptions {
  /** How often the log is read when no notification comes (other processes append too). */
  pollMs?: number;
  /** Heartbeat interval (`event: ping`). */
  heartbeatMs?: number;
}

/**
 * `GET /v1/sessions/{id}/events/stream`: Server-Sent Events, one per stored event, as
 * `id: <position>`, `event: <type>`, `data: <event JSON>`. Without `Last-Event-ID` the stream
 * starts at the end of the log, as the hosted service does; with it, it resumes right after that
 * position, so a client that reconnects misses nothing and sees nothing twice.
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
  c.header('Cache-Control', 'no-cache');
  c.header('X-Accel-Buffering', 'no');
  return streamSSE(c, async (stream) => {
    let wake: (() => void) | null = null;
    let dirty = false;
    const unsubscribe = notifier?.subscribe(sessionId, () => {
      dirty = true;
      wake?.();
    });
    let closed = false;
    stream.onAbort(() => {
      closed = true;
      wake?.();
    });
    let lastWrite = Date.now();
    try {
      while (!closed) {
        dirty = false;
        const fresh = await s.events.getEvents(sessionId, { from: position + 1, limit: 500 });
        for (const stored of fresh) {
          await stream.writeSSE({ id: String(stored.position), event: stored.event.type, data: JSON.stringify(stored.event) });
          position = stored.position;
          lastWrite = Date.now();
        }
        if (fresh.length === 500) continue;
        if (Date.now() - lastWrite >= heartbeatMs) {
          await stream.writeSSE({ event: 'ping', data: '{"type":"ping"}' });
          lastWrite = Date.now();
        }
        if (dirty || closed) continue;
        await new Promise<void>((resolve) => {
          const timer = setTimeout(done, Math.min(pollMs, heartbeatMs));
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
    }
  });
}
