import type { StoredEvent } from '../session/events.js';
import type { TurnState } from './state.js';

/**
 * What a harness keeps of a session between its wakes: the fold of the log (`TurnState`) and the
 * events of the model's view, up to the fold's position. The log is append-only and nothing in
 * it changes once written, so a fold of its first n events stays true whoever appends after
 * them: a later wake on the same harness (a warm Lambda container, the local runtime's process)
 * reads only what came after, at once and beside its other first reads, rather than the cursor
 * and then the view. The cursor in the state table stays the record (a cold harness starts from it).
 *
 * Bounded: the most recently used `maxSessions` sessions (a view is itself bounded by the
 * context budget). A wake takes its session's entry out while it runs and puts the new one back
 * at the end, so two wakes on one harness never share an entry.
 */
export interface CachedFold {
  state: TurnState;
  /** Where `events` start (at most `state.view.start`); they run to `state.position` without a gap. */
  from: number;
  events: StoredEvent[];
}

export class FoldCache {
  private readonly entries = new Map<string, CachedFold>();
  constructor(private readonly maxSessions = 256) {}

  /** The session's entry, removed from the cache (the wake puts back its own). */
  take(sessionId: string): CachedFold | undefined {
    const entry = this.entries.get(sessionId);
    this.entries.delete(sessionId);
    return entry;
  }

  put(sessionId: string, entry: CachedFold) {
    this.entries.delete(sessionId);
    this.entries.set(sessionId, entry);
    while (this.entries.size > this.maxSessions) this.entries.delete(this.entries.keys().next().value!);
  }

  forget(sessionId: string) {
    this.entries.delete(sessionId);
  }

  get size(): number {
    return this.entries.size;
  }
}
