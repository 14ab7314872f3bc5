import type { EnvironmentService } from '../resources/environments.js';
import type { Session, SessionService } from '../resources/sessions.js';
import type { SandboxManager } from '../sandbox/manager.js';
import type { LeaseManager } from '../session/lease.js';
import type { EventLog } from '../session/log.js';
import type { LogNotifier } from '../session/notifier.js';
import type { PreviewChannel } from '../session/previews.js';
import type { StateTable } from '../store.js';
import { systemPrincipal } from '../storage/principal.js';
import type { McpGateway } from '../mcp/gateway.js';
import type { FoldCache } from './fold-cache.js';
import type { McpToolCache } from './mcp-tools.js';
import type { ModelClient } from './model.js';
import type { ModelPrice } from './pricing.js';
import type { WakeQueue } from './queue.js';
import type { Decision, TurnState } from './state.js';
import type { StoredEvent } from '../session/events.js';

/**
 * The vocabulary the harness's modules share: what a harness is built from (`HarnessDeps`,
 * `HarnessOptions`) and what one step of a wake is given (`StepContext`). The wake loop
 * (wake.ts) builds a `StepContext` per step and hands it to the module of the decision
 * (steps/), which reads from it and appends to the log; nothing in it outlives the step but the
 * harness's own parts.
 */

/** The harness acts for every tenant's sessions. */
export const HARNESS = systemPrincipal('harness');

export interface HarnessLogger {
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
}

/** Timings a harness reports, for metrics (CloudWatch EMF on AWS, logs locally). */
export interface HarnessObserver {
  modelCall?(m: { sessionId: string; timeToFirstTokenMs: number | null; durationMs: number; ok: boolean }): void;
  toolCall?(m: { sessionId: string; tool: string; sandbox: string; durationMs: number; provisionMs: number; isError: boolean }): void;
  step?(m: { sessionId: string; action: Decision['kind']; durationMs: number }): void;
}

export interface HarnessOptions {
  maxModelAttempts?: number;
  /** Delay before retry n (n >= 1) of a failed model call. Default: exponential from 1 s, capped at 30 s. */
  retryDelayMs?: (attempt: number) => number;
  /** How often a running model call or tool checks the log for `user.interrupt`. */
  interruptPollMs?: number;
  maxTokens?: number;
  /**
   * The model's view is compacted (older events summarised, `agent.thread_context_compacted`)
   * when it grows past this many tokens (estimated at 4 characters a token). Default 100,000.
   */
  contextBudgetTokens?: number;
  /** ...or past this many events. Default 1,000. */
  contextBudgetEvents?: number;
  /** Steps one wake takes before it hands the session to a new wake (default 200). */
  maxStepsPerWake?: number;
  /**
   * With a deadline, a wake does not start a model call (or a compaction) with less than this
   * much time left, unless it is the wake's first action (so a wake always makes progress): it
   * hands the session to a fresh wake instead, since a call cut by the deadline is wasted and
   * counts as a failed attempt. Default 2 minutes.
   */
  minModelCallMs?: number;
  /**
   * While the grader of an outcome runs, a `span.outcome_evaluation_ongoing` heartbeat is
   * appended this often (ms), so a client can tell a long evaluation from a stuck one. Default 15 s.
   */
  outcomeHeartbeatMs?: number;
  /** List prices for session budgets. */
  prices?: Record<string, ModelPrice>;
  logger?: HarnessLogger;
  observer?: HarnessObserver;
}

/** What the harness works with. */
export interface HarnessDeps {
  events: EventLog;
  table: StateTable;
  sessions: SessionService;
  environments: EnvironmentService;
  leases: LeaseManager;
  sandboxes: SandboxManager;
  model: ModelClient;
  queue: WakeQueue;
  /** The agent's MCP servers, through the credential proxy; absent where none is deployed. */
  mcp?: McpGateway;
  /** Announces appends (the local runtime): interrupts are then seen at once, with no polling. */
  notifier?: LogNotifier;
  /** Where previews of the model's answer go while it streams (`event_deltas`); none: no previews. */
  previews?: PreviewChannel;
}

/** The harness's own parts, the same for every wake. */
export interface HarnessParts {
  readonly deps: HarnessDeps;
  readonly opts: HarnessOptions;
  readonly log: HarnessLogger;
  /** MCP tool lists, kept across wakes (see mcp-tools.ts). */
  readonly mcpTools: McpToolCache;
  /** Folds of sessions' logs, kept across wakes (see fold-cache.ts); absent: every wake starts from the cursor. */
  readonly folds?: FoldCache;
}

/** What one step is given: the harness's parts, the session, the fold of its log, and the step's signals. */
export interface StepContext extends HarnessParts {
  /** The session record as of this step (status and usage kept in line with the log). */
  readonly session: Session;
  /** The fold up to the last position read; a step appends right after `state.position`. */
  readonly state: TurnState;
  /**
   * Every event from the view's start (`state.view.start`) to `state.position`, as the wake holds
   * them (the model's view is built from these without reading the log); absent: read them.
   */
  readonly window?: StoredEvent[];
  /** Aborts when the lease is lost: the step must stop without writing. */
  readonly lost: AbortSignal;
  /** Aborts (with `StepDeadlineError`) when the step's deadline comes. */
  readonly cut: AbortSignal;
  /** The step's deadline (epoch ms), for calls that take one (the sandbox manager). */
  readonly deadline?: number;
}

/** The lease was lost (renewal failed, or a newer fence is in the log): stop without writing. */
export class LeaseLostError extends Error {
  constructor(sessionId: string) {
    super(`lease on session ${sessionId} was lost`);
  }
}

export const silentLogger: HarnessLogger = { info() {}, warn() {}, error() {} };

/** The model's view budget in characters (estimated at 4 a token). */
export const viewBudgetChars = (opts: HarnessOptions) => (opts.contextBudgetTokens ?? 100_000) * 4;
/** The model's view budget in events. */
export const viewBudgetEvents = (opts: HarnessOptions) => opts.contextBudgetEvents ?? 1_000;
