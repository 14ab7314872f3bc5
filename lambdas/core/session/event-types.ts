import type * as Sdk from '@anthropic-ai/sdk/resources/beta/sessions/events';
import type * as SdkSessions from '@anthropic-ai/sdk/resources/beta/sessions/sessions';
import type { SandboxPackagesReport } from '../sandbox/package-cache.js';

/**
 * Every event a session's log may hold, as one discriminated union on `type`.
 *
 * The shapes are the official SDK's (`@anthropic-ai/sdk/resources/beta/sessions/events`), which
 * is what the API promises its clients. Where Corral stores more than the SDK declares, the type
 * here is the SDK's plus Corral's fields (still assignable to the SDK's type, so every client
 * reads it); where it stores something the SDK's type does not allow, the type says so and
 * `test/unit/event-types.test.ts` names the exception. Event types Corral does not write (threads,
 * workflow runs, ...) are the SDK's as they are, derived from its union, so a new SDK
 * release that adds one adds it here (and `EVENT_TYPE_SET` below stops compiling until it is named).
 *
 * No type here has an index signature: reading a field an event does not have is a compile error,
 * and `switch (event.type)` narrows to the fields of that type.
 */

/**
 * A stored event always has its processing time (the SDK declares it optional on user events,
 * which the hosted service may echo before processing them).
 */
type Stored<E> = E extends unknown ? E & { processed_at: string } : never;

// --- events the user sends (validated by `UserEvent` in core/api/schemas.ts) -------------------
export type UserMessageEvent = Stored<Sdk.BetaManagedAgentsUserMessageEvent>;
export type UserInterruptEvent = Stored<Sdk.BetaManagedAgentsUserInterruptEvent>;
export type UserToolConfirmationEvent = Stored<Sdk.BetaManagedAgentsUserToolConfirmationEvent>;
export type UserCustomToolResultEvent = Stored<Sdk.BetaManagedAgentsUserCustomToolResultEvent>;
/**
 * An outcome the agent works toward, graded against its rubric (harness/outcome.ts). Stored with
 * its `outcome_id` and `max_iterations` resolved (the default when the user gave none).
 */
export type UserDefineOutcomeEvent = Stored<Sdk.BetaManagedAgentsUserDefineOutcomeEvent>;
/** Privileged context for the turn it accompanies and those after (a `role: "system"` message). */
export type SystemMessageEvent = Stored<SdkSessions.BetaManagedAgentsSystemMessageEvent>;

// --- what the model did ----------------------------------------------------------------------
export type AgentMessageEvent = Sdk.BetaManagedAgentsAgentMessageEvent;
/**
 * A thinking block, as the Messages API returned it: `thinking` with its `signature`, or a
 * `redacted_thinking` block's opaque `data`. Kept byte for byte: the API checks them when they
 * are sent back.
 */
export type ThinkingBlock = { type: 'thinking'; thinking: string; signature: string } | { type: 'redacted_thinking'; data: string };

/**
 * The model thought (extended thinking). Corral extension: `blocks`, the model's thinking blocks
 * of that answer, which the view sends back with the answer as the Messages API requires (an
 * answer that called a tool must be followed by its thinking, signatures intact).
 */
export interface AgentThinkingEvent extends Sdk.BetaManagedAgentsAgentThinkingEvent {
  blocks?: ThinkingBlock[];
}
/**
 * A content block of the model's answer that the model provider produced and ran itself (a
 * server tool's `server_tool_use`, or its result such as `web_search_tool_result`), as the
 * Messages API returned it: the view sends it back unchanged.
 */
export interface ServerToolBlock {
  type: string;
  [field: string]: unknown;
}

/**
 * A tool call. Corral extension: `model_block`, present when the model provider ran the tool
 * (web_search, web_fetch): the model's `server_tool_use` block; the harness runs nothing for it,
 * and its result follows it in the same batch.
 */
export interface AgentToolUseEvent extends Sdk.BetaManagedAgentsAgentToolUseEvent {
  model_block?: ServerToolBlock;
}
export type AgentCustomToolUseEvent = Sdk.BetaManagedAgentsAgentCustomToolUseEvent;
export type AgentMcpToolUseEvent = Sdk.BetaManagedAgentsAgentMCPToolUseEvent;
/** Any of the three tool calls: each waits for its result (or the user's answer). */
export type ToolUseEvent = AgentToolUseEvent | AgentCustomToolUseEvent | AgentMcpToolUseEvent;

export interface AgentToolResultEvent extends Sdk.BetaManagedAgentsAgentToolResultEvent {
  /** Corral extension: the sandbox the tool ran in (absent for tools that need none). */
  sandbox?: string;
  /**
   * Corral extension, on the result of the call that started a new sandbox of an environment
   * with packages: how they got in (restored from the environment's package cache or installed)
   * and how long that took (lambdas/core/sandbox/package-cache.ts).
   */
  sandbox_packages?: SandboxPackagesReport;
  /**
   * Corral extension, for a tool the model provider ran: its result block as the Messages API
   * returned it (`web_search_tool_result`, `web_fetch_tool_result`), which the view sends back
   * unchanged; `content` is its transcript (search results, the fetched document's address).
   */
  model_block?: ServerToolBlock;
}

/** A content block of an MCP tool result that is not one of the SDK's blocks, stored as the server gave it. */
export interface McpContentBlock {
  type: string;
  [field: string]: unknown;
}

/**
 * An MCP tool's result. Corral stores the server's content as the server gave it: text blocks
 * are the SDK's text blocks, other MCP blocks (an MCP `image` has `data` and `mimeType`, not a
 * `source`) are kept whole rather than reshaped, so `content` is wider than the SDK's.
 */
export interface AgentMcpToolResultEvent extends Omit<Sdk.BetaManagedAgentsAgentMCPToolResultEvent, 'content'> {
  content?: Array<NonNullable<Sdk.BetaManagedAgentsAgentMCPToolResultEvent['content']>[number] | McpContentBlock>;
}

/** Any event that closes a tool call. */
export type ToolResultEvent = AgentToolResultEvent | AgentMcpToolResultEvent | UserCustomToolResultEvent;

/**
 * The model's view was compacted. Corral extension fields: the summary and the span of the log it
 * stands for; the summarised events stay in the log.
 */
export interface AgentThreadContextCompactedEvent extends Sdk.BetaManagedAgentsAgentThreadContextCompactedEvent {
  summary: string;
  /** First position the summary covers (the view's start before this compaction). */
  from_position: number;
  /** Last position the summary covers; the view now starts after it. */
  up_to_position: number;
  /** Characters of conversation kept in the view after the summary, and the number of events. */
  retained_chars: number;
  retained_events: number;
}

/**
 * A session thread's answer, delivered to the coordinator's log (core/threads/). Corral
 * extension: `thread_position`, the position of the thread's own idle it reports (so a
 * coordinator that re-reads the thread's log reports each turn once).
 */
export interface AgentThreadMessageReceivedEvent extends Sdk.BetaManagedAgentsAgentThreadMessageReceivedEvent {
  thread_position?: number;
}

// --- session status, spans, errors -----------------------------------------------------------
export type SessionStatusRunningEvent = Sdk.BetaManagedAgentsSessionStatusRunningEvent;
export type SessionStatusIdleEvent = Sdk.BetaManagedAgentsSessionStatusIdleEvent;
export type StopReason = SessionStatusIdleEvent['stop_reason'];

/**
 * A harness took the session over from one that did not release it. Corral extension: the new
 * holder's fencing token, so that the old holder, reading it, stops writing.
 */
export interface SessionStatusRescheduledEvent extends Sdk.BetaManagedAgentsSessionStatusRescheduledEvent {
  fence: number;
}

export type RetryStatus = Sdk.BetaManagedAgentsSessionErrorEvent['error']['retry_status'];

/**
 * A sandbox whose recipe failed (Corral extension). The type is the sandbox's own:
 * `repository_clone_error`, `repository_checkout_error` (the SDK's names, without the SDK's
 * `repository_url`, which the sandbox does not report), `package_install_error` or
 * `invalid_recipe`, which the SDK does not have.
 */
export interface SandboxSetupErrorObject {
  type: string;
  message: string;
  retry_status: RetryStatus;
}

/** What `session.error` reports: one of the SDK's error objects, or a sandbox's setup error. */
export type SessionErrorObject = Sdk.BetaManagedAgentsSessionErrorEvent['error'] | SandboxSetupErrorObject;

export interface SessionErrorEvent extends Omit<Sdk.BetaManagedAgentsSessionErrorEvent, 'error'> {
  error: SessionErrorObject;
}

export type SpanModelRequestStartEvent = Sdk.BetaManagedAgentsSpanModelRequestStartEvent;
export interface SpanModelRequestEndEvent extends Sdk.BetaManagedAgentsSpanModelRequestEndEvent {
  /** Corral extension: when the first token of the answer came (the console's latency strip). */
  time_to_first_token_ms?: number;
}

/** One evaluation cycle of an outcome: its start, heartbeats, and its end (with the grader's verdict and usage). */
export type SpanOutcomeEvaluationStartEvent = Sdk.BetaManagedAgentsSpanOutcomeEvaluationStartEvent;
export type SpanOutcomeEvaluationEndEvent = Sdk.BetaManagedAgentsSpanOutcomeEvaluationEndEvent;
/** A heartbeat while the grader runs (`HarnessOptions.outcomeHeartbeatMs`). */
export type SpanOutcomeEvaluationOngoingEvent = Sdk.BetaManagedAgentsSpanOutcomeEvaluationOngoingEvent;

// --- Corral's own events -----------------------------------------------------------------------
/** This session's sandbox `sandbox` was handed to session `to_session_id`, where it is `to_sandbox`. */
export interface SandboxHandoffSentEvent {
  id: string;
  type: 'corral.sandbox_handoff_sent';
  processed_at: string;
  sandbox: string;
  to_session_id: string;
  to_sandbox: string;
}

/** Session `from_session_id`'s sandbox `from_sandbox` is this session's sandbox `sandbox` now. */
export interface SandboxHandoffReceivedEvent {
  id: string;
  type: 'corral.sandbox_handoff_received';
  processed_at: string;
  sandbox: string;
  from_session_id: string;
  from_sandbox: string;
}

/** The events whose shape Corral writes itself (the SDK's shape or a superset of it, see above). */
type CorralWritten =
  | UserMessageEvent
  | UserInterruptEvent
  | UserToolConfirmationEvent
  | UserCustomToolResultEvent
  | SystemMessageEvent
  | AgentMessageEvent
  | AgentThinkingEvent
  | AgentToolUseEvent
  | AgentCustomToolUseEvent
  | AgentMcpToolUseEvent
  | AgentToolResultEvent
  | AgentMcpToolResultEvent
  | AgentThreadContextCompactedEvent
  | SessionStatusRunningEvent
  | SessionStatusIdleEvent
  | SessionStatusRescheduledEvent
  | SessionErrorEvent
  | SpanModelRequestStartEvent
  | SpanModelRequestEndEvent
  | UserDefineOutcomeEvent
  | SpanOutcomeEvaluationStartEvent
  | SpanOutcomeEvaluationOngoingEvent
  | SpanOutcomeEvaluationEndEvent
  | AgentThreadMessageReceivedEvent;

/** The SDK's session events that Corral does not write yet, exactly as the SDK declares them. */
export type OtherSdkEvent = Stored<Exclude<Sdk.BetaManagedAgentsSessionEvent, { type: CorralWritten['type'] }>>;

/** Corral's own event types, under a `corral.` prefix the Managed Agents API cannot clash with. */
export type CorralExtensionEvent = SandboxHandoffSentEvent | SandboxHandoffReceivedEvent;

/** A stored session event: `id`, `type`, `processed_at` and the fields of its type. */
export type SessionEvent = CorralWritten | CorralExtensionEvent | OtherSdkEvent;

export type SessionEventType = SessionEvent['type'];

/** The event of one type. */
export type EventOf<T extends SessionEventType> = Extract<SessionEvent, { type: T }>;

/** An event before it is stored: everything but its `id` and `processed_at` (see `makeEvent`). */
export type EventBody = SessionEvent extends infer E ? (E extends unknown ? Omit<E, 'id' | 'processed_at'> : never) : never;

/** The body of one type. */
export type BodyOf<T extends SessionEventType> = Extract<EventBody, { type: T }>;

/**
 * Every event type, once. A `Record` over the union, so a type missing here, or one here that
 * the union does not have, is a compile error.
 */
const EVENT_TYPE_SET: Record<SessionEventType, true> = {
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
  'corral.sandbox_handoff_sent': true,
  'corral.sandbox_handoff_received': true,
};

/** Every event type a session's log may hold (the API's `types[]` filter accepts these). */
export const EVENT_TYPES = Object.keys(EVENT_TYPE_SET) as SessionEventType[];

export function isEventType(type: string): type is SessionEventType {
  return Object.hasOwn(EVENT_TYPE_SET, type);
}

/** The event types that close a tool call, and the field that names the call they close. */
export function toolUseIdOf(e: ToolResultEvent): string {
  switch (e.type) {
    case 'agent.tool_result':
      return e.tool_use_id;
    case 'agent.mcp_tool_result':
      return e.mcp_tool_use_id;
    case 'user.custom_tool_result':
      return e.custom_tool_use_id;
  }
}

export function isToolResult(e: SessionEvent): e is ToolResultEvent {
  return e.type === 'agent.tool_result' || e.type === 'agent.mcp_tool_result' || e.type === 'user.custom_tool_result';
}

export function isToolUse(e: SessionEvent): e is ToolUseEvent {
  return e.type === 'agent.tool_use' || e.type === 'agent.custom_tool_use' || e.type === 'agent.mcp_tool_use';
}

/** Whether the event is of one of these types. */
export function isEventOf<T extends SessionEventType>(e: SessionEvent, ...types: T[]): e is EventOf<T> {
  return (types as SessionEventType[]).includes(e.type);
}

/**
 * The event, known to be of one of these types (an event the log holds where a decision put it,
 * such as the tool use at an open tool's position); anything else is a broken log and throws.
 */
export function expectEvent<T extends SessionEventType>(e: SessionEvent, ...types: T[]): EventOf<T> {
  if (!isEventOf(e, ...types)) throw new Error(`event ${e.id} is ${e.type}, not ${types.join(' or ')}`);
  return e;
}
