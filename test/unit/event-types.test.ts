import type * as Sdk from '@anthropic-ai/sdk/resources/beta/sessions/events';
import { describe, expect, expectTypeOf, it } from 'vitest';
import {
  EVENT_TYPES,
  expectEvent,
  isEventType,
  makeEvent,
  type EventOf,
  type SessionEvent,
  type SessionEventType,
} from '../../lambdas/core/session/events.js';
import { MemoryEventLog } from './memory-store.js';

/**
 * The event union against the official SDK's. The `expectTypeOf` checks are compiled by
 * `npm run typecheck` (tsc covers test/): an SDK release that adds an event type, adds a required
 * field, or changes one Corral relies on fails to compile here and in `EVENT_TYPE_SET`.
 */

type SdkEvent = Sdk.BetaManagedAgentsSessionEvent;
/** The SDK's event types, read off its union of events (its `BetaManagedAgentsSessionEventType` lacks `session.deleted`). */
type SdkType = SdkEvent['type'];
type SdkOf<T extends SdkType> = Extract<SdkEvent, { type: T }>;

/** The SDK's types whose stored event (as Corral types it) is not assignable to the SDK's type. */
type NotAssignableToSdk = { [T in SdkType]: EventOf<T> extends SdkOf<T> ? never : T }[SdkType];

/**
 * Where Corral stores a wider shape than the SDK declares, on purpose (see event-types.ts):
 * `session.error` also reports a sandbox's setup errors (`package_install_error`, a repository
 * error without `repository_url`), and `agent.mcp_tool_result` keeps an MCP server's non-text
 * blocks as the server gave them.
 */
type Wider = 'session.error' | 'agent.mcp_tool_result';

/** For the wider ones: an SDK event that is not a Corral event of its type (should be none). */
type SdkNotInCorral = { [T in Wider]: (SdkOf<T> & { processed_at: string }) extends EventOf<T> ? never : T }[Wider];

describe('the event union and the SDK', () => {
  it('has every SDK event type, and Corral adds only corral.* types', () => {
    expectTypeOf<SdkType>().toExtend<SessionEventType>();
    expectTypeOf<Exclude<SessionEventType, SdkType>>().toEqualTypeOf<'corral.sandbox_handoff_sent' | 'corral.sandbox_handoff_received'>();
    // The SDK's own list of type names is the union's, less `session.deleted` (as of SDK 1.12).
    expectTypeOf<Exclude<SdkType, Sdk.BetaManagedAgentsSessionEventType>>().toEqualTypeOf<'session.deleted'>();
    expectTypeOf<Sdk.BetaManagedAgentsSessionEventType>().toExtend<SessionEventType>();
  });

  it("stores each SDK event type in the SDK's shape, or a documented superset of it", () => {
    expectTypeOf<NotAssignableToSdk>().toEqualTypeOf<Wider>();
    expectTypeOf<SdkNotInCorral>().toBeNever();
    // Corral's extra fields are extra: the event is still the SDK's.
    expectTypeOf<EventOf<'agent.tool_result'>>().toExtend<Sdk.BetaManagedAgentsAgentToolResultEvent>();
    expectTypeOf<EventOf<'agent.thread_context_compacted'>>().toExtend<Sdk.BetaManagedAgentsAgentThreadContextCompactedEvent>();
    expectTypeOf<EventOf<'span.model_request_end'>>().toExtend<Sdk.BetaManagedAgentsSpanModelRequestEndEvent>();
    expectTypeOf<EventOf<'session.status_rescheduled'>>().toExtend<Sdk.BetaManagedAgentsSessionStatusRescheduledEvent>();
    // ...and every stored event has its processing time, though the SDK's user events make it optional.
    expectTypeOf<EventOf<'user.message'>['processed_at']>().toEqualTypeOf<string>();
  });

  it('has no index signature: a field an event type does not have is not readable', () => {
    expectTypeOf<SessionEvent>().not.toHaveProperty('stop_reason');
    expectTypeOf<EventOf<'session.status_idle'>>().toHaveProperty('stop_reason');
    expectTypeOf<EventOf<'agent.message'>>().not.toHaveProperty('anything');
    // @ts-expect-error a body of one type with a field of another does not compile
    makeEvent({ type: 'span.model_request_start', stop_reason: { type: 'end_turn' } });
  });
});

describe('EVENT_TYPES', () => {
  it('lists each type of the union once', () => {
    expectTypeOf(EVENT_TYPES).toEqualTypeOf<SessionEventType[]>();
    expect(new Set(EVENT_TYPES).size).toBe(EVENT_TYPES.length);
    // The SDK's event types at run time: the ones its type declarations name (checked above to
    // be the union's), so a list that lost one here would be caught.
    const sdkTypes: Record<SdkType, true> = {
      'user.message': true,
      'user.interrupt': true,
      'user.tool_confirmation': true,
      'user.custom_tool_result': true,
      'user.define_outcome': true,
      'user.tool_result': true,
      'agent.message': true,
      'agent.thinking': true,
      'agent.tool_use': true,
      'agent.tool_result': true,
      'agent.custom_tool_use': true,
      'agent.mcp_tool_use': true,
      'agent.mcp_tool_result': true,
      'agent.thread_message_received': true,
      'agent.thread_message_sent': true,
      'agent.thread_context_compacted': true,
      'session.status_running': true,
      'session.status_idle': true,
      'session.status_rescheduled': true,
      'session.status_terminated': true,
      'session.error': true,
      'session.deleted': true,
      'session.updated': true,
      'session.usage': true,
      'session.thread_created': true,
      'session.thread_status_running': true,
      'session.thread_status_idle': true,
      'session.thread_status_rescheduled': true,
      'session.thread_status_terminated': true,
      'span.model_request_start': true,
      'span.model_request_end': true,
      'span.outcome_evaluation_start': true,
      'span.outcome_evaluation_ongoing': true,
      'span.outcome_evaluation_end': true,
      'system.message': true,
      'workflow_run.created': true,
      'workflow_run.status_running': true,
      'workflow_run.status_idle': true,
      'workflow_run.status_ended': true,
      'workflow_run.error': true,
      'workflow_run.phase_started': true,
      'workflow_run.phase_ended': true,
    };
    expect([...EVENT_TYPES].sort()).toEqual([...Object.keys(sdkTypes), 'corral.sandbox_handoff_sent', 'corral.sandbox_handoff_received'].sort());
  });

  it('tells event types from other strings', () => {
    for (const t of EVENT_TYPES) expect(isEventType(t)).toBe(true);
    for (const t of ['', 'user', 'user.messages', 'corral.sandbox_handoff', 'toString', '__proto__', 'constructor']) expect(isEventType(t)).toBe(false);
  });
});

describe('the unit tests\' log', () => {
  it('refuses an event whose type is not in the union, so every harness test checks what it writes', async () => {
    const log = new MemoryEventLog();
    const bad = { ...makeEvent({ type: 'agent.thinking' }), type: 'agent.thought' } as unknown as SessionEvent;
    await expect(log.emitEvent('s', bad)).rejects.toThrow('has type "agent.thought", which is not in EVENT_TYPES');
    await expect(log.appendBatch('s', [makeEvent({ type: 'agent.thinking' }), bad], { position: 1 })).rejects.toThrow('not in EVENT_TYPES');
    expect(await log.lastPosition('s')).toBe(0);
  });
});

describe('narrowing', () => {
  it('expectEvent returns the event of the type asked for and throws on another', () => {
    const idle = makeEvent({ type: 'session.status_idle', stop_reason: { type: 'end_turn' }, stop_details: null });
    expectTypeOf(idle).toEqualTypeOf<EventOf<'session.status_idle'>>();
    const e: SessionEvent = idle;
    expect(expectEvent(e, 'session.status_idle', 'session.status_running').type).toBe('session.status_idle');
    expect(() => expectEvent(e, 'agent.tool_use')).toThrow(`event ${idle.id} is session.status_idle, not agent.tool_use`);
  });
});
