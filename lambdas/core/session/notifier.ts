import type { StoredEvent } from './events.js';

/**
 * Tells readers of a session's log that it grew, so they need not wait for their next poll.
 * In one process (the local runtime) appends are announced directly, each with the event it
 * stored, so a reader that has everything before it can deliver it without reading the log;
 * where none is available (Lambda), readers poll.
 *
 * An announcement is a hint, never the only way an event reaches a reader: announcements of
 * concurrent appends may come out of position order, and one without `stored` (or one a reader
 * cannot place right after what it has) means "read the log".
 */
export interface LogNotifier {
  subscribe(sessionId: string, onAppend: (stored?: StoredEvent) => void): () => void;
}

/**
 * A `LogNotifier` fed from outside the process that appends: the stream tier's, whose appends
 * arrive as DynamoDB Streams records (adapters/aws/dynamodb-stream-consumer.ts). `notify` wakes
 * the readers of one session; `notifyAll` wakes every reader, for when notifications may have been
 * missed (the consumer restarted a shard, or lost its place), so each rereads its log from its own
 * position and nothing is lost.
 */
export class FanoutNotifier implements LogNotifier {
  private readonly readers = new Map<string, Set<() => void>>();

  subscribe(sessionId: string, onAppend: () => void): () => void {
    let set = this.readers.get(sessionId);
    if (!set) this.readers.set(sessionId, (set = new Set()));
    // A wrapper per subscription, so the same callback subscribed twice unsubscribes once each.
    const entry = () => onAppend();
    set.add(entry);
    return () => {
      set.delete(entry);
      if (!set.size && this.readers.get(sessionId) === set) this.readers.delete(sessionId);
    };
  }

  notify(sessionId: string): void {
    const set = this.readers.get(sessionId);
    if (set) for (const f of [...set]) f();
  }

  notifyAll(): void {
    for (const set of [...this.readers.values()]) for (const f of [...set]) f();
  }

  /** Open subscriptions (the tier's connection count). */
  get size(): number {
    let n = 0;
    for (const set of this.readers.values()) n += set.size;
    return n;
  }
}
