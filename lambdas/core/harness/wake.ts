import { randomUUID } from 'node:crypto';
import { NotFoundError, PositionConflictError } from '../errors.js';
import type { Session } from '../resources/sessions.js';
import { StepDeadlineError } from '../sandbox/types.js';
import { makeEvent } from '../session/events.js';
import type { Lease } from '../session/lease.js';
import type { StateTable } from '../store.js';
import { readCursor, writeCursor } from '../storage/cursor.js';
import { overBudget, reconcile } from './record.js';
import { DEFAULT_MAX_MODEL_ATTEMPTS, decide, foldEvents, initialState, type TurnState } from './state.js';
import { HARNESS, LeaseLostError, viewBudgetChars, viewBudgetEvents, type HarnessDeps, type HarnessParts } from './step.js';
import { perform } from './steps/perform.js';

export type WakeResult =
  | { status: 'done' }
  /** Another harness holds the session; try again after `retryAfterMs`. */
  | { status: 'busy'; retryAfterMs: number }
  /**
   * The deadline came first (before an action, or cutting one short); the cursor was saved and
   * a wake for the rest was queued.
   */
  | { status: 'yielded' }
  | { status: 'gone' };

/**
 * The saved fold of a session's log (storage/cursor.ts), or the fold of nothing when there is
 * none or it is of another version (the wake then folds the log from the start).
 */
export async function loadCursor(table: StateTable, sessionId: string): Promise<TurnState> {
  return (await readCursor<TurnState>(table, sessionId)) ?? initialState();
}

/**
 * Save the fold; only ever forward (a stale harness cannot move the cursor back). Returns the
 * position saved: `state.position`, or `saved` when a newer cursor was there.
 */
export async function saveCursor(table: StateTable, sessionId: string, state: TurnState, saved: number): Promise<number> {
  return (await writeCursor(table, sessionId, state.position, state, saved > 0)) ? state.position : saved;
}

/**
 * Fence off a previous holder that may still be running: append `session.status_rescheduled`
 * carrying our fencing token. A harness only ever appends right after the last position it has
 * read, and on any conflict reads the log again; so once the marker is in, the old holder's
 * next append fails, and what it then reads shows it a newer fence, at which it stops.
 */
export async function fence(h: HarnessParts, sessionId: string, lease: Lease) {
  for (let attempt = 0; ; attempt++) {
    const tail = await h.deps.events.lastPosition(sessionId);
    try {
      await h.deps.events.emitEvent(sessionId, makeEvent({ type: 'session.status_rescheduled', fence: lease.fence }), {
        position: tail + 1,
      });
      h.log.warn('took over a session from a harness that did not release it', { sessionId, fence: lease.fence });
      return;
    } catch (err) {
      if (!(err instanceof PositionConflictError) || attempt > 20) throw err;
    }
  }
}

/** Keep the lease renewed while a wake runs; `lost` aborts when a renewal fails. Returns the stop. */
function keepLease(deps: HarnessDeps, lease: Lease, lost: AbortController): () => void {
  const renew = setInterval(() => {
    deps.leases.renew(lease).then(
      (ok) => {
        if (!ok) lost.abort();
      },
      () => lost.abort(),
    );
  }, deps.leases.renewEveryMs);
  return () => clearInterval(renew);
}

/**
 * One wake of a session (see `Harness.wake`): take the lease, fence off a dead holder, load the
 * cursor, then step (read the new events, fold, decide, perform) until there is nothing to do,
 * the deadline comes, or the wake has taken its share of steps, and hand the rest on.
 */
export async function wakeSession(h: HarnessParts, sessionId: string, opts: { deadline?: number; owner?: string } = {}): Promise<WakeResult> {
  const { deps } = h;
  let session: Session;
  try {
    session = await deps.sessions.get(HARNESS, sessionId);
  } catch (err) {
    if (err instanceof NotFoundError) return { status: 'gone' };
    throw err;
  }
  const owner = opts.owner ?? `harness-${randomUUID()}`;
  const lease = await deps.leases.acquire(sessionId, owner);
  if (!lease) return { status: 'busy', retryAfterMs: Math.max(50, await deps.leases.remainingMs(sessionId)) };
  const lost = new AbortController();
  const stopRenewing = keepLease(deps, lease, lost);
  // Aborts the action in flight when the deadline comes (a timer past 2^31-1 ms would fire at once).
  const cut = new AbortController();
  const untilDeadline = opts.deadline === undefined ? Infinity : opts.deadline - Date.now();
  const cutTimer = untilDeadline < 2 ** 31 - 1 ? setTimeout(() => cut.abort(new StepDeadlineError()), Math.max(0, untilDeadline)) : undefined;
  const minModelCallMs = h.opts.minModelCallMs ?? 120_000;
  let state: TurnState | null = null;
  let saved = 0;
  const handOn = async (st: TurnState): Promise<WakeResult> => {
    if (st.position > saved) saved = await saveCursor(deps.table, sessionId, st, saved);
    await deps.queue.wake(sessionId);
    return { status: 'yielded' };
  };
  try {
    if (lease.takeover) await fence(h, sessionId, lease);
    state = await loadCursor(deps.table, sessionId);
    saved = state.position;
    for (let steps = 0; ; steps++) {
      // A step runs from here: reading the new events and deciding are part of its cost.
      const started = Date.now();
      if (lost.signal.aborted) throw new LeaseLostError(sessionId);
      state = foldEvents(state, await deps.events.getEvents(sessionId, { from: state.position + 1 }));
      if (state.maxFence > lease.fence) throw new LeaseLostError(sessionId);
      await reconcile(deps.sessions, session, state, h.opts.prices);
      const decision = decide(state, {
        maxModelAttempts: h.opts.maxModelAttempts ?? DEFAULT_MAX_MODEL_ATTEMPTS,
        viewBudgetChars: viewBudgetChars(h.opts),
        viewBudgetEvents: viewBudgetEvents(h.opts),
        overBudget: overBudget(session, state, h.opts.prices),
      });
      if (decision.kind === 'none') {
        if (state.position > saved) saved = await saveCursor(deps.table, sessionId, state, saved);
        return { status: 'done' };
      }
      // Out of time, too little time left for a model call, or a long run of steps: hand the
      // rest to a fresh wake.
      const remaining = opts.deadline === undefined ? Infinity : opts.deadline - Date.now();
      const callsModel = decision.kind === 'call_model' || decision.kind === 'compact';
      if (remaining <= 0 || (callsModel && steps > 0 && remaining < minModelCallMs) || steps >= (h.opts.maxStepsPerWake ?? 200)) {
        return await handOn(state);
      }
      try {
        await perform({ ...h, session, state, lost: lost.signal, cut: cut.signal, deadline: opts.deadline }, decision);
      } catch (err) {
        if (err instanceof StepDeadlineError) {
          // Cut short: what the action did write is folded in before the cursor is saved.
          h.log.info('the deadline cut an action short; handing the session to a new wake', { sessionId, action: decision.kind });
          state = foldEvents(state, await deps.events.getEvents(sessionId, { from: state.position + 1 }));
          return await handOn(state);
        }
        if (err instanceof PositionConflictError) {
          // Another writer got there first: read what it wrote and decide again.
          h.log.info('position conflict; reading the log again', { sessionId, position: err.position });
          continue;
        }
        throw err;
      }
      h.opts.observer?.step?.({ sessionId, action: decision.kind, durationMs: Date.now() - started });
      session = await deps.sessions.get(HARNESS, sessionId);
    }
  } catch (err) {
    if (err instanceof NotFoundError) return { status: 'gone' };
    if (err instanceof LeaseLostError) {
      h.log.warn('lease lost; stopping without further writes', { sessionId });
      return { status: 'busy', retryAfterMs: 1000 };
    }
    throw err;
  } finally {
    stopRenewing();
    clearTimeout(cutTimer);
    await deps.leases.release(lease).catch(() => undefined);
    // An event that arrived after the last read (its wake found us busy) still gets a harness.
    if (state) {
      const seen = state.position;
      const last = await deps.events.lastPosition(sessionId).catch(() => seen);
      if (last !== seen) await deps.queue.wake(sessionId).catch(() => undefined);
    }
  }
}
