import type { EventLog } from '../session/log.js';
import type { LogNotifier } from '../session/notifier.js';
import type { StateTable } from '../store.js';
import { interruptSignals } from '../storage/items.js';
import { LeaseLostError } from './step.js';

/**
 * How often a watcher reads the session's interrupt signal when nothing announces appends (AWS):
 * one small strongly consistent read a second, where reading the log every 250 ms took four
 * queries (docs/SCALE.md, "Interrupts", has the cost per 1,000 session-hours).
 */
export const DEFAULT_INTERRUPT_POLL_MS = 1_000;

/**
 * Abort `controller` when a `user.interrupt` lands after position `from` (reason: an `Error`
 * 'interrupted') or `lost` aborts (reason: `LeaseLostError`). A model call or a tool runs under
 * the controller's signal, so an interrupt stops it mid-way. The returned function stops watching.
 *
 * Without a notifier the log is read once at the start (an interrupt appended before the watch
 * began) and then only when something says it may hold an interrupt: the in-process notifier of the local runtime, at
 * once, or a change of the session's interrupt signal, which the API raises after appending a
 * `user.interrupt` (`interruptSignals`). The signal is read first and the log after it, so an
 * interrupt appended after that first log read raises the signal past the value read before it.
 */
export function watchInterrupt(
  src: { events: EventLog; table: StateTable; notifier?: LogNotifier },
  sessionId: string,
  from: number,
  lost: AbortSignal,
  controller: AbortController,
  pollMs = DEFAULT_INTERRUPT_POLL_MS,
): () => void {
  // With a notifier, the signal only backs it up; without one, the signal is how interrupts arrive.
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
  const readLog = async () => {
    const fresh = await src.events.getEvents(sessionId, { from: cursor + 1 });
    if (fresh.length) cursor = fresh[fresh.length - 1].position;
    if (fresh.some((e) => e.event.type === 'user.interrupt')) controller.abort(new Error('interrupted'));
  };
  const tick = async () => {
    // `null`: the signal's value is not known (a failed read), so the next tick reads the log.
    let seen: number | null = null;
    // Without a notifier, read the signal and then the log at once: an interrupt that came just
    // before the watch began. With one (the local runtime), the first backup tick reads both, as
    // the log's in-process announcements cover everything after the subscription.
    if (!src.notifier) {
      try {
        seen = await interruptSignals.read(src.table, sessionId);
        await readLog();
      } catch {
        seen = null; // read again on the next tick
      }
    }
    while (!stopped && !controller.signal.aborted) {
      await wait();
      const wasNudged = nudged;
      nudged = false;
      if (stopped || controller.signal.aborted) break;
      try {
        if (!wasNudged) {
          const signal = await interruptSignals.read(src.table, sessionId);
          if (signal === seen) continue;
          seen = signal;
        }
        await readLog();
      } catch {
        seen = null; // a failed read is retried on the next tick
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
