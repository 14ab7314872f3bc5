import { ID_PREFIX, newId } from '../ids.js';

export * from './event-types.js';
import type { BodyOf, EventOf, SessionEvent, SessionEventType } from './event-types.js';

/** An event as it sits in the log: its position (1, 2, 3, ...) and the event. */
export interface StoredEvent {
  position: number;
  event: SessionEvent;
  /**
   * On the first event of a harness batch only: the events that must follow it. A harness that
   * dies after writing the head of a batch leaves the rest recoverable from the log itself.
   */
  rest?: SessionEvent[];
}

/** Give an event body its id and processing time: the event of the body's type. */
export function makeEvent<T extends SessionEventType>(body: BodyOf<T>, now: Date = new Date(), id?: string): EventOf<T> {
  // The spread is the body plus the two fields its type left out, which TypeScript cannot see
  // through the generic `Omit`.
  return { ...body, id: id ?? newId(ID_PREFIX.event, now.getTime()), processed_at: now.toISOString() } as unknown as EventOf<T>;
}

/** Event types a user may send through `POST /v1/sessions/{id}/events`. */
export const USER_EVENT_TYPES = [
  'user.message',
  'user.interrupt',
  'user.tool_confirmation',
  'user.custom_tool_result',
  'user.define_outcome',
  'system.message',
] as const;

export type SessionStatus = 'rescheduling' | 'running' | 'idle' | 'terminated';

