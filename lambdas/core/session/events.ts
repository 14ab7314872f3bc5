import { ID_PREFIX, newId } from '../ids.js';

/**
 * A stored session event: the public shape of the Managed Agents API (`id`, `type`,
 * `processed_at` plus the fields of its type, as the official SDK declares them).
 */
export interface SessionEvent {
  id: string;
  type: string;
  processed_at: string;
  [field: string]: unknown;
}

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

export type EventBody = { type: string; [field: string]: unknown };

/** Give an event body its id and processing time. */
export function makeEvent(body: EventBody, now: Date = new Date(), id?: string): SessionEvent {
  return { ...body, id: id ?? newId(ID_PREFIX.event, now.getTime()), processed_at: now.toISOString() } as SessionEvent;
}

/** Event types a user may send through `POST /v1/sessions/{id}/events`. */
export const USER_EVENT_TYPES = [
  'user.message',
  'user.interrupt',
  'user.tool_confirmation',
  'user.custom_tool_result',
] as const;

export type SessionStatus = 'rescheduling' | 'running' | 'idle' | 'terminated';

export type StopReason =
  | { type: 'end_turn' }
  | { type: 'requires_action'; event_ids: string[] }
  | { type: 'retries_exhausted' }
  | { type: 'budget_reached' };
