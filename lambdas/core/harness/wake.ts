import { randomUUID } from 'node:crypto';
import { NotFoundError, PositionConflictError } from '../errors.js';
import type { Session, SessionService, SessionSnapshot } from '../resources/sessions.js';
import type { SessionEvent, StoredEvent } from '../session/events.js';
import type { EventLog } from '../session/log.js';
import { StepDeadlineError } from '../sandbox/types.js';
import { makeEvent } from '../session/events.js';
import type { Lease } from '../session/lease.js';
import type { Item, StateTable } from '../store.js';
import { cursorFromItem, cursorKey, readCursor, writeCursor } from '../storage/cursor.js';
import { overBudget, reconcile } from './record.js';
import { DEFAULT_MAX_MODEL_ATTEMPTS, decide, foldEvents, initialState, type TurnState } from './state.js';
import { HARNESS, LeaseLostError, viewBudgetChars, viewBudgetEvents, type HarnessDeps, type HarnessParts } from './step.js';
import { callModel } from './steps/call-model.js';
import { perform } from './steps/perform.js';
import type { CachedFold } from './fold-cache.js';
import type { ThreadReport } from './state.js';
import { collectThreadReports } from '../threads/collect.js';

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
 * With a held fold, the first read takes at most this many events after it; more (another
 * harness has run the session since) are read on, in a second call.
 */
const FOLLOW_LIMIT = 500;

/**
 * The events a wake holds: every event from `from` to the fold's position, so that the model's
 * view (which starts at `state.view.start`) is built without reading the log again. It holds at
 * most the view and what came after it (older events are dropped as the view's start moves on).
 */
export class ViewWindow {
  constructor(
    private from: number,
    private events: StoredEvent[] = [],
  ) {}

  /** What a later wake may start from (fold-cache.ts), with `state` the fold up to the last event held. */
  keep(state: TurnState): CachedFold {
    this.since(state.view.start);
    return { state, from: this.from, events: this.events };
  }

  /** Events read (or appended) right after the last ones held. */
  add(events: StoredEvent[]) {
    this.events.push(...events);
  }

  /** The events from `start` on, or undefined when the window does not reach back that far. */
  since(start: number): StoredEvent[] | undefined {
    if (start < this.from) return undefined;
    if (start > this.from) {
      const first = this.events.findIndex((e) => e.position >= start);
      this.events = first < 0 ? [] : this.events.slice(first);
      this.from = start;
    }
    return this.events;
  }
}

/**
 * An event log that remembers what this wake appended (the step's writes are folded in without
 * reading them back when they landed right after the fold: see `wakeSession`).
 */
function recordingLog(log: EventLog): { log: EventLog; take(): StoredEvent[] } {
  let appended: StoredEvent[] = [];
  return {
    log: {
      async emitEvent(sessionId, event, opts) {
        const stored = await log.emitEvent(sessionId, event, opts);
        appended.push(stored);
        return stored;
      },
      async appendBatch(sessionId, events, opts) {
        const stored = await log.appendBatch(sessionId, events, opts);
        appended.push(...stored);
        return stored;
      },
      getEvents: (sessionId, opts) => log.getEvents(sessionId, opts),
      lastPosition: (sessionId) => log.lastPosition(sessionId),
      deleteAll: (sessionId) => log.deleteAll(sessionId),
    },
    take() {
      const out = appended;
      appended = [];
      return out;
    },
  };
}

/** The events appended right after `position`, in order and with no gap, or null. */
function contiguousAfter(position: number, appended: StoredEvent[]): StoredEvent[] | null {
  if (appended.length === 0) return null;
  return appended.every((e, i) => e.position === position + 1 + i) ? appended : null;
}

/**
 * One wake of a session (see `Harness.wake`): read the session with the cursor and the lease,
 * take the lease while reading the log from the view's start, fence off a dead holder, then step
 * (read the new events, fold, decide, perform) until there is nothing to do, the deadline comes,
 * or the wake has taken its share of steps, and hand the rest on.
 *
 * Storage round trips before a turn's model request (see docs/ARCHITECTURE.md, "The wake"):
 * 1. one batch get: the session's head and usage, the cursor, the lease;
 * 2. the lease's conditional write, and in parallel the read of the log from the view's start;
 * 3. the session record's status (`running`), then 4. the turn's first events. The events a step
 * appends are folded in without reading them back when they landed right after the fold, and the
 * model's view is built from the events the wake already holds; a model call's first append is
 * conditional on its position, so anything another writer appended meanwhile is still seen.
 */
export async function wakeSession(h: HarnessParts, sessionId: string, opts: { deadline?: number; owner?: string } = {}): Promise<WakeResult> {
  const { deps } = h;
  const owner = opts.owner ?? `harness-${randomUUID()}`;
  // The first round trip, three calls at once: the lease's one conditional write; the session
  // (with the lease, for the wait when it is taken, and the cursor unless this harness holds the
  // session's fold); and, with a held fold, the events after it. Reading needs no lease, and what
  // is read is only acted on under it (every append is conditional on its position).
  const cached = h.folds?.take(sessionId);
  const leased = deps.leases.acquireAtOnce(sessionId, owner);
  leased.catch(() => undefined); // awaited below
  const after = cached && deps.events.getEvents(sessionId, { from: cached.state.position + 1, limit: FOLLOW_LIMIT });
  after?.catch(() => undefined); // awaited below, or dropped when the lease is not ours
  let known: SessionSnapshot;
  let cursorItem: Item | undefined;
  let leaseItem: Item | undefined;
  try {
    const read = await deps.sessions.snapshotWith(HARNESS, sessionId, [deps.leases.key(sessionId), ...(cached ? [] : [cursorKey(sessionId)])]);
    known = read.snapshot;
    [leaseItem, cursorItem] = read.extra;
  } catch (err) {
    const taken = await leased.catch(() => null);
    if (taken) await deps.leases.release(taken).catch(() => undefined);
    if (err instanceof NotFoundError) return { status: 'gone' };
    throw err;
  }
  const lease = await leased;
  if (!lease) return { status: 'busy', retryAfterMs: Math.max(50, deps.leases.remainingOf(deps.leases.read(leaseItem))) };
  const lost = new AbortController();
  const stopRenewing = keepLease(deps, lease, lost);
  // Aborts the action in flight when the deadline comes (a timer past 2^31-1 ms would fire at once).
  const cut = new AbortController();
  const untilDeadline = opts.deadline === undefined ? Infinity : opts.deadline - Date.now();
  const cutTimer = untilDeadline < 2 ** 31 - 1 ? setTimeout(() => cut.abort(new StepDeadlineError()), Math.max(0, untilDeadline)) : undefined;
  const minModelCallMs = h.opts.minModelCallMs ?? 120_000;
  // This wake's writers: session changes start from the snapshot it holds, appends are recorded.
  const sessions = Object.create(deps.sessions) as SessionService;
  sessions.mutate = async (who, id, change) => {
    if (id !== sessionId) return deps.sessions.mutate(who, id, change);
    known = await deps.sessions.mutateFrom(who, id, change, known);
    return known.data;
  };
  const recorder = recordingLog(deps.events);
  const parts: HarnessParts = { ...h, deps: { ...deps, sessions, events: recorder.log } };
  let state: TurnState | null = null;
  let saved = 0;
  const handOn = async (st: TurnState): Promise<WakeResult> => {
    if (st.position > saved) saved = await saveCursor(deps.table, sessionId, st, saved);
    await deps.queue.wake(sessionId);
    return { status: 'yielded' };
  };
  const readFrom = (st: TurnState) => Math.min(st.view.start, st.position + 1);
  try {
    let window: ViewWindow;
    let pending: Promise<StoredEvent[]> | null;
    if (cached) {
      state = cached.state;
      window = new ViewWindow(cached.from, cached.events);
      pending = after!.then(async (fresh) =>
        fresh.length < FOLLOW_LIMIT ? fresh : [...fresh, ...(await deps.events.getEvents(sessionId, { from: fresh[fresh.length - 1].position + 1 }))],
      );
    } else {
      state = cursorFromItem<TurnState>(cursorItem) ?? initialState();
      window = new ViewWindow(readFrom(state));
      pending = deps.events.getEvents(sessionId, { from: readFrom(state) });
    }
    // A held fold was saved as the cursor when its wake ended (or a newer cursor was there).
    saved = state.position;
    if (lease.takeover) {
      pending.catch(() => undefined);
      await fence(h, sessionId, lease);
      pending = null; // read again: the fence, and whatever came before it, must be folded
    }
    /** Whether the fold is of this wake's own appends, not read back (see above). */
    let unread = false;
    /** What the session's threads did since its log last reported them (read with the log). */
    let threadReports: ThreadReport[] | undefined;
    for (let steps = 0; ; steps++) {
      // A step runs from here: reading the new events and deciding are part of its cost.
      const started = Date.now();
      if (lost.signal.aborted) throw new LeaseLostError(sessionId);
      const choose = (st: TurnState, session: Session) =>
        decide(st, {
          maxModelAttempts: h.opts.maxModelAttempts ?? DEFAULT_MAX_MODEL_ATTEMPTS,
          viewBudgetChars: viewBudgetChars(h.opts),
          viewBudgetEvents: viewBudgetEvents(h.opts),
          overBudget: overBudget(session, st, h.opts.prices),
          threadReports,
        });
      let decision = unread ? choose(state, known.data) : null;
      // Only a model call goes on without reading: its first append, at the next position, is
      // what tells it whether another writer came in between.
      if (decision?.kind !== 'call_model') {
        let fresh: StoredEvent[];
        if (pending) {
          fresh = await pending;
          pending = null;
        } else if (steps === 0) {
          window = new ViewWindow(readFrom(state));
          fresh = await deps.events.getEvents(sessionId, { from: readFrom(state) });
        } else {
          const [events, read] = await Promise.all([deps.events.getEvents(sessionId, { from: state.position + 1 }), deps.sessions.snapshotWith(HARNESS, sessionId)]);
          fresh = events;
          known = read.snapshot;
        }
        const after = state.position;
        window.add(fresh);
        state = foldEvents(state, fresh.filter((e) => e.position > after));
        if (state.maxFence > lease.fence) throw new LeaseLostError(sessionId);
        // A coordinator reads its running threads' logs along with its own (threads/collect.ts).
        threadReports = Object.values(state.threads ?? {}).some((t) => t.status === 'running') ? await collectThreadReports(deps.events, state) : undefined;
        decision = null;
      }
      unread = false;
      const session = known.data;
      await reconcile(sessions, session, state, h.opts.prices);
      decision ??= choose(state, session);
      if (decision.kind === 'none') {
        if (state.position > saved) saved = await saveCursor(deps.table, sessionId, state, saved);
        h.folds?.put(sessionId, window.keep(state));
        // A thread with nothing left to do has its coordinator look at what it did (every time:
        // a wake that died between the thread's idle and this one's is made up by the next).
        if (session.thread_of) await deps.queue.wake(session.thread_of.session_id);
        return { status: 'done' };
      }
      // A turn that starts with a model call opens with it: the turn's start and the request's
      // start are one batch, appended right before the request goes out.
      // (Not with too little time left for a model call: the turn then starts alone, and the
      // call is handed to a fresh wake, as below.)
      let opening: { running: SessionEvent; attempt: number } | null = null;
      const timeLeft = opts.deadline === undefined ? Infinity : opts.deadline - Date.now();
      if (decision.kind === 'start_turn' && timeLeft >= minModelCallMs) {
        const running = makeEvent({ type: 'session.status_running' });
        const next = choose(foldEvents(state, [{ position: state.position + 1, event: running }]), session);
        if (next.kind === 'call_model') opening = { running, attempt: next.attempt };
      }
      // Out of time, too little time left for a model call, or a long run of steps: hand the
      // rest to a fresh wake.
      const remaining = opts.deadline === undefined ? Infinity : opts.deadline - Date.now();
      const callsModel = decision.kind === 'call_model' || decision.kind === 'compact' || decision.kind === 'evaluate_outcome' || opening !== null;
      if (remaining <= 0 || (callsModel && steps > 0 && remaining < minModelCallMs) || steps >= (h.opts.maxStepsPerWake ?? 200)) {
        const handed = await handOn(state);
        h.folds?.put(sessionId, window.keep(state));
        return handed;
      }
      recorder.take();
      try {
        const ctx = { ...parts, session: known.data, state, window: window.since(state.view.start), lost: lost.signal, cut: cut.signal, deadline: opts.deadline };
        if (opening) await callModel(ctx, opening.attempt, [opening.running]);
        else await perform(ctx, decision);
      } catch (err) {
        recorder.take();
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
      threadReports = undefined; // reported (or not due yet): read again with the log
      const own = contiguousAfter(state.position, recorder.take());
      if (own) {
        window.add(own);
        state = foldEvents(state, own);
        unread = true;
      }
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
