import type { EventLog } from '../session/log.js';
import type { LogNotifier } from '../session/notifier.js';
import { LeaseLostError } from './step.js';

/** How often a watcher reads the log when nothing announces appends. */
export const DEFAULT_INTERRUPT_POLL_MS = 250;

/**
 * Abort `controller` when a `user.interrupt` lands after position `from` (reason: an `Error`
 * 'interrupted') or `lost` aborts (reason: `LeaseLostError`). A model call or a tool runs under
 * the controller's signal, so an interrupt stops it mid-way. The returned function stops watching.
 */
export function watchInterrupt(
  src: { events: EventLog; notifier?: LogNotifier },
  sessionId: string,
  from: number,
  lost: AbortSignal,
  controller: AbortController,
  pollMs = DEFAULT_INTERRUPT_POLL_MS,
): () => void {
  // With a notifier, a poll only backs it up; without one, polling is how interrupts arrive.
  const poll = src.notifier ? Math.max(pollMs, 2_000) : pollMs;
  let stopped = false;
  let cursor = from;
  let nudge: (() => void) | null = null;
  let nudged = false;
  const unsubscribe = src.notifier?.subscribe(sessionId, () => {
    nudged = true;
    nudge?.();
  });
  const onLost = () => controller.abort(new LeaseLostError(sessionId));
  lost.addEventListener('abort', onLost);
  const wait = () =>
    new Promise<void>((resolve) => {
      if (nudged) return resolve();
      const done = () => {
        clearTimeout(timer);
        controller.signal.removeEventListener('abort', done);
        nudge = null;
        resolve();
      };
      const timer = setTimeout(done, poll);
      nudge = done;
      controller.signal.addEventListener('abort', done, { once: true });
    });
  const tick = async () => {
    while (!stopped && !controller.signal.aborted) {
      await wait();
      nudged = false;
      if (stopped || controller.signal.aborted) break;
      try {
        const fresh = await src.events.getEvents(sessionId, { from: cursor + 1 });
        if (fresh.length) cursor = fresh[fresh.length - 1].position;
        if (fresh.some((e) => e.event.type === 'user.interrupt')) controller.abort(new Error('interrupted'));
      } catch {
        // a failed read is retried on the next tick
      }
    }
  };
  void tick();
  return () => {
    stopped = true;
    unsubscribe?.();
    nudge?.();
    lost.removeEventListener('abort', onLost);
  };
}
