import { randomUUID } from 'node:crypto';
import { sleep } from '../sleep.js';
import { NotFoundError, PositionConflictError } from '../errors.js';
import type { EnvironmentService } from '../resources/environments.js';
import type { Session, SessionService } from '../resources/sessions.js';
import type { SandboxManager } from '../sandbox/manager.js';
import { DEFAULT_SANDBOX } from '../sandbox/manager.js';
import { StepDeadlineError, type SandboxRecipe } from '../sandbox/types.js';
import { makeEvent, type EventBody, type SessionEvent, type SessionStatus, type StoredEvent } from '../session/events.js';
import type { LeaseManager, Lease } from '../session/lease.js';
import type { EventLog } from '../session/log.js';
import type { LogNotifier } from '../session/notifier.js';
import { ConditionFailedError, type StateTable } from '../store.js';
import { buildView, toMessages, withCacheBreakpoints } from './context.js';
import { ModelError, type ModelClient, type ModelResponse } from './model.js';
import { listCostCents, type ModelPrice } from './pricing.js';
import type { WakeQueue } from './queue.js';
import { DEFAULT_MAX_MODEL_ATTEMPTS, decide, foldEvents, initialState, viewChars, type Decision, type OpenTool, type TurnState } from './state.js';
import { buildToolbox, type Toolbox } from './tools.js';
import { McpError, type McpGateway, type McpToolInfo } from '../mcp/gateway.js';

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
  /** List prices for session budgets. */
  prices?: Record<string, ModelPrice>;
  /**
   * Provision the default sandbox when a turn starts instead of on the first tool call: the
   * coupled design, where thinking waits for a container. Only for measuring the difference.
   */
  eagerSandbox?: boolean;
  logger?: HarnessLogger;
  observer?: HarnessObserver;
}

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

class LeaseLostError extends Error {
  constructor(sessionId: string) {
    super(`lease on session ${sessionId} was lost`);
  }
}

const silent: HarnessLogger = { info() {}, warn() {}, error() {} };

/** Where a harness keeps its fold of the log: the cursor, derived and rebuildable. */
const cursorKey = (sessionId: string) => ({ pk: `session#${sessionId}`, sk: 'cursor' });

const SUMMARY_PROMPT =
  'The conversation above is the beginning of a long agent session. Write a summary of it that ' +
  'lets you carry on the work without it: the task, what was done and found (files, commands, ' +
  'results), decisions, and what remains. Be specific and brief; use plain prose and lists.';

/**
 * The harness: stateless between wakes. `wake(sessionId)` takes the session's lease, folds the
 * events after its cursor into the turn state, decides the next action from that state alone
 * (`decide`), performs it (a model call, a tool call, a status change), appends what it produced
 * right after the last position it read, and repeats until there is nothing to do. A step reads
 * the new events and the model's view, never the whole log, so its cost does not grow with the
 * session.
 */
export class Harness {
  private readonly log: HarnessLogger;
  private readonly maxModelAttempts: number;
  /** MCP tool lists, kept a minute per (vaults, server) so that not every step lists them again. */
  private readonly mcpTools = new Map<string, { at: number; tools: McpToolInfo[] }>();

  constructor(
    private readonly deps: {
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
    },
    private readonly opts: HarnessOptions = {},
  ) {
    this.log = opts.logger ?? silent;
    this.maxModelAttempts = opts.maxModelAttempts ?? DEFAULT_MAX_MODEL_ATTEMPTS;
  }

  /**
   * Run the session until there is nothing to do, or until `deadline` (epoch ms). The deadline
   * reaches every long call: a model call is aborted at it, a sandbox tool call stops waiting
   * (the tool goes on in the sandbox and the next wake picks its result up by idempotency key),
   * a provisioning is stopped. A wake cut that way saves its cursor, queues its continuation and
   * returns `yielded`, as one that reaches the deadline between actions does.
   */
  async wake(sessionId: string, opts: { deadline?: number; owner?: string } = {}): Promise<WakeResult> {
    let session: Session;
    try {
      session = await this.deps.sessions.get(null, sessionId);
    } catch (err) {
      if (err instanceof NotFoundError) return { status: 'gone' };
      throw err;
    }
    const owner = opts.owner ?? `harness-${randomUUID()}`;
    const lease = await this.deps.leases.acquire(sessionId, owner);
    if (!lease) return { status: 'busy', retryAfterMs: Math.max(50, await this.deps.leases.remainingMs(sessionId)) };
    const lost = new AbortController();
    const renew = setInterval(() => {
      this.deps.leases.renew(lease).then(
        (ok) => {
          if (!ok) lost.abort();
        },
        () => lost.abort(),
      );
    }, this.deps.leases.renewEveryMs);
    // Aborts the action in flight when the deadline comes (a timer past 2^31-1 ms would fire at once).
    const cut = new AbortController();
    const untilDeadline = opts.deadline === undefined ? Infinity : opts.deadline - Date.now();
    const cutTimer = untilDeadline < 2 ** 31 - 1 ? setTimeout(() => cut.abort(new StepDeadlineError()), Math.max(0, untilDeadline)) : undefined;
    const minModelCallMs = this.opts.minModelCallMs ?? 120_000;
    let state: TurnState | null = null;
    let saved = 0;
    const handOn = async (st: TurnState): Promise<WakeResult> => {
      if (st.position > saved) saved = await this.saveCursor(sessionId, st, saved);
      await this.deps.queue.wake(sessionId);
      return { status: 'yielded' };
    };
    try {
      if (lease.takeover) await this.fence(sessionId, lease);
      state = await this.loadCursor(sessionId);
      saved = state.position;
      for (let steps = 0; ; steps++) {
        // A step runs from here: reading the new events and deciding are part of its cost.
        const started = Date.now();
        if (lost.signal.aborted) throw new LeaseLostError(sessionId);
        state = foldEvents(state, await this.deps.events.getEvents(sessionId, { from: state.position + 1 }));
        if (state.maxFence > lease.fence) throw new LeaseLostError(sessionId);
        await this.reconcile(session, state);
        const decision = decide(state, {
          maxModelAttempts: this.maxModelAttempts,
          viewBudgetChars: (this.opts.contextBudgetTokens ?? 100_000) * 4,
          viewBudgetEvents: this.opts.contextBudgetEvents ?? 1_000,
          overBudget: this.overBudget(session, state),
        });
        if (decision.kind === 'none') {
          if (state.position > saved) saved = await this.saveCursor(sessionId, state, saved);
          return { status: 'done' };
        }
        // Out of time, too little time left for a model call, or a long run of steps: hand the
        // rest to a fresh wake.
        const remaining = opts.deadline === undefined ? Infinity : opts.deadline - Date.now();
        const callsModel = decision.kind === 'call_model' || decision.kind === 'compact';
        if (remaining <= 0 || (callsModel && steps > 0 && remaining < minModelCallMs) || steps >= (this.opts.maxStepsPerWake ?? 200)) {
          return await handOn(state);
        }
        try {
          await this.perform(session, { lost: lost.signal, cut: cut.signal, deadline: opts.deadline }, state, decision);
        } catch (err) {
          if (err instanceof StepDeadlineError) {
            // Cut short: what the action did write is folded in before the cursor is saved.
            this.log.info('the deadline cut an action short; handing the session to a new wake', { sessionId, action: decision.kind });
            state = foldEvents(state, await this.deps.events.getEvents(sessionId, { from: state.position + 1 }));
            return await handOn(state);
          }
          if (err instanceof PositionConflictError) {
            // Another writer got there first: read what it wrote and decide again.
            this.log.info('position conflict; reading the log again', { sessionId, position: err.position });
            continue;
          }
          throw err;
        }
        this.opts.observer?.step?.({ sessionId, action: decision.kind, durationMs: Date.now() - started });
        session = await this.deps.sessions.get(null, sessionId);
      }
    } catch (err) {
      if (err instanceof NotFoundError) return { status: 'gone' };
      if (err instanceof LeaseLostError) {
        this.log.warn('lease lost; stopping without further writes', { sessionId });
        return { status: 'busy', retryAfterMs: 1000 };
      }
      throw err;
    } finally {
      clearInterval(renew);
      clearTimeout(cutTimer);
      await this.deps.leases.release(lease).catch(() => undefined);
      // An event that arrived after the last read (its wake found us busy) still gets a harness.
      if (state) {
        const seen = state.position;
        const last = await this.deps.events.lastPosition(sessionId).catch(() => seen);
        if (last !== seen) await this.deps.queue.wake(sessionId).catch(() => undefined);
      }
    }
  }

  private async loadCursor(sessionId: string): Promise<TurnState> {
    const item = await this.deps.table.get(cursorKey(sessionId).pk, cursorKey(sessionId).sk);
    return item ? (item.state as TurnState) : initialState();
  }

  /** Save the fold; only ever forward (a stale harness cannot move the cursor back). */
  private async saveCursor(sessionId: string, state: TurnState, saved: number): Promise<number> {
    try {
      await this.deps.table.put(
        { ...cursorKey(sessionId), position: state.position, state },
        saved > 0 ? { ifBelow: { name: 'position', value: state.position } } : {},
      );
      return state.position;
    } catch (err) {
      if (err instanceof ConditionFailedError) return saved;
      throw err;
    }
  }

  /**
   * Fence off a previous holder that may still be running: append `session.status_rescheduled`
   * carrying our fencing token. A harness only ever appends right after the last position it has
   * read, and on any conflict reads the log again; so once the marker is in, the old holder's
   * next append fails, and what it then reads shows it a newer fence, at which it stops.
   */
  private async fence(sessionId: string, lease: Lease) {
    for (let attempt = 0; ; attempt++) {
      const tail = await this.deps.events.lastPosition(sessionId);
      try {
        await this.deps.events.emitEvent(sessionId, makeEvent({ type: 'session.status_rescheduled', fence: lease.fence }), {
          position: tail + 1,
        });
        this.log.warn('took over a session from a harness that did not release it', { sessionId, fence: lease.fence });
        return;
      } catch (err) {
        if (!(err instanceof PositionConflictError) || attempt > 20) throw err;
      }
    }
  }

  /** What a new sandbox of this session is built from: its environment's config and its resources. */
  private async recipe(session: Session): Promise<SandboxRecipe> {
    const tenant = await this.deps.sessions.tenantOf(session.id);
    const env = await this.deps.environments.get(tenant, session.environment_id).catch(() => null);
    return { environmentId: session.environment_id, config: env?.config ?? { type: 'cloud' }, resources: session.resources };
  }

  /** The session's budget is spent, or it has one and the model has no list price. */
  private overBudget(session: Session, state: TurnState): boolean {
    const budget = session.budget as { max_list_cost?: { amount?: string } } | null;
    const max = Number(budget?.max_list_cost?.amount);
    if (!budget || !Number.isFinite(max)) return false;
    const cost = listCostCents(session.agent.model.id, state.usage, this.opts.prices);
    return cost === null || cost >= max;
  }

  /** Keep the session record's status and usage in line with the log (they derive from it). */
  private async reconcile(session: Session, state: TurnState) {
    const status: SessionStatus = state.running ? 'running' : 'idle';
    const cost = listCostCents(session.agent.model.id, state.usage, this.opts.prices);
    const usage: Session['usage'] = {
      input_tokens: state.usage.input_tokens,
      output_tokens: state.usage.output_tokens,
      cache_read_input_tokens: state.usage.cache_read_input_tokens,
      cache_creation: { ephemeral_5m_input_tokens: state.usage.cache_creation_input_tokens },
      ...(cost !== null ? { list_cost: { amount: String(Math.ceil(cost)), currency: 'USD' } } : {}),
    };
    if (session.status === status && JSON.stringify(session.usage) === JSON.stringify(usage)) return;
    const next = await this.deps.sessions.mutate(null, session.id, (s) =>
      s.status === status && JSON.stringify(s.usage) === JSON.stringify(usage)
        ? null
        : { ...s, status, usage, updated_at: new Date().toISOString() },
    );
    session.status = next.status;
    session.usage = next.usage;
  }

  /**
   * Perform one decision. `lost` aborts when the lease is lost; `cut` when the step's deadline
   * comes, at which a long call throws `StepDeadlineError` (after writing what keeps the log whole).
   */
  private async perform(session: Session, step: { lost: AbortSignal; cut: AbortSignal; deadline?: number }, state: TurnState, d: Decision) {
    const { lost } = step;
    const sessionId = session.id;
    const tail = state.position;
    const append = (bodies: Array<EventBody | SessionEvent>) => this.append(sessionId, tail, bodies);
    const idle = (stop_reason: Record<string, unknown>) => ({ type: 'session.status_idle', stop_reason, stop_details: null });
    switch (d.kind) {
      case 'none':
        return;
      case 'complete_batch': {
        const [head] = await this.deps.events.getEvents(sessionId, { from: d.headPosition, to: d.headPosition + 1 });
        const missing = (head?.rest ?? []).filter((e) => d.missing.includes(e.id));
        for (const [i, event] of missing.entries()) {
          await this.deps.events.emitEvent(sessionId, event, { position: tail + 1 + i });
        }
        return;
      }
      case 'start_turn':
        if (this.opts.eagerSandbox) await this.deps.sandboxes.ensure(sessionId, DEFAULT_SANDBOX, await this.recipe(session));
        await append([{ type: 'session.status_running' }]);
        return;
      case 'interrupt': {
        const bodies: EventBody[] = [];
        if (d.danglingRequestId) bodies.push(requestEnd(d.danglingRequestId, null, true));
        for (const tool of d.open) {
          bodies.push(resultFor(tool, 'Interrupted by the user before this tool call completed.', true));
        }
        bodies.push(idle({ type: 'end_turn' }));
        await append(bodies);
        return;
      }
      case 'close_request':
        await append([requestEnd(d.requestId, null, true)]);
        return;
      case 'requires_action':
        await append([idle({ type: 'requires_action', event_ids: d.eventIds })]);
        return;
      case 'end_turn':
        await append([idle({ type: 'end_turn' })]);
        return;
      case 'retries_exhausted':
        await append([idle({ type: 'retries_exhausted' })]);
        return;
      case 'budget_reached':
        await append([idle({ type: 'budget_reached' })]);
        return;
      case 'run_tool':
        await this.runTool(session, tail, step, d.tool);
        return;
      case 'compact':
        await this.compact(session, state, step.cut);
        return;
      case 'call_model':
        await this.callModel(session, state, step, d.attempt);
        return;
    }
  }

  /**
   * Append events from `tail + 1` on, as one batch when there are several. A status change is
   * written to the session record first, so a client that sees the status event in the stream
   * finds the session in that status (a failed append is corrected by the next `reconcile`).
   */
  private async append(sessionId: string, tail: number, bodies: Array<EventBody | SessionEvent>): Promise<SessionEvent[]> {
    const now = new Date();
    const events = bodies.map((b) => ('id' in b && 'processed_at' in b ? (b as SessionEvent) : makeEvent(b, now)));
    const status = events
      .map((e): SessionStatus | null => (e.type === 'session.status_running' ? 'running' : e.type === 'session.status_idle' ? 'idle' : null))
      .filter((x): x is SessionStatus => x !== null)
      .pop();
    if (status) {
      await this.deps.sessions.mutate(null, sessionId, (s) => (s.status === status ? null : { ...s, status, updated_at: now.toISOString() }));
    }
    if (events.length === 1) await this.deps.events.emitEvent(sessionId, events[0], { position: tail + 1 });
    else await this.deps.events.appendBatch(sessionId, events, { position: tail + 1, mayFollow: isUserEvent });
    return events;
  }

  /**
   * Append a batch after `position`. If user events slipped in meanwhile (the API appends them at
   * any time), the batch follows them; if anything else did, another harness is writing and the
   * batch is dropped (the loop reads the log again and decides anew).
   */
  private async appendAfter(sessionId: string, position: number, bodies: EventBody[]) {
    for (let attempt = 0; ; attempt++) {
      try {
        await this.append(sessionId, position, bodies);
        return;
      } catch (err) {
        if (!(err instanceof PositionConflictError) || attempt > 20) throw err;
        const fresh = await this.deps.events.getEvents(sessionId, { from: position + 1 });
        if (!fresh.every((e) => isUserEvent(e.event))) throw err;
        position = fresh.length ? fresh[fresh.length - 1].position : position;
      }
    }
  }

  /**
   * Abort `controller` when a `user.interrupt` lands after `from` or the lease is lost. The
   * returned function stops watching.
   */
  private watchInterrupt(sessionId: string, from: number, lost: AbortSignal, controller: AbortController): () => void {
    // With a notifier, a poll only backs it up; without one, polling is how interrupts arrive.
    const poll = this.deps.notifier ? Math.max(this.opts.interruptPollMs ?? 250, 2_000) : (this.opts.interruptPollMs ?? 250);
    let stopped = false;
    let cursor = from;
    let nudge: (() => void) | null = null;
    let nudged = false;
    const unsubscribe = this.deps.notifier?.subscribe(sessionId, () => {
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
    const tick = async () => {
      while (!stopped && !controller.signal.aborted) {
        await wait();
        nudged = false;
        if (stopped || controller.signal.aborted) break;
        try {
          const fresh = await this.deps.events.getEvents(sessionId, { from: cursor + 1 });
          if (fresh.length) cursor = fresh[fresh.length - 1].position;
          if (fresh.some((e) => e.event.type === 'user.interrupt')) controller.abort(new Error('interrupted'));
        } catch {
          // a failed read is retried on the next tick
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

  /** The model's view: the window from the view's start (one read), summary first. */
  private async view(session: Session, state: TurnState) {
    const events = await this.deps.events.getEvents(session.id, { from: state.view.start });
    const view = buildView(events, { start: state.view.start, summary: state.view.summary });
    const { tools: mcpTools, errors } = await this.listMcpTools(session);
    const toolbox = buildToolbox(session.agent.tools, { readLog: view.partial, mcpServers: session.agent.mcp_servers, mcpTools });
    return { events, view, toolbox, errors };
  }

  /**
   * The tools of the agent's MCP servers that its toolsets use. A server that cannot be listed
   * is reported (`session.error`) and left out of this request; the turn goes on without it.
   */
  private async listMcpTools(session: Session): Promise<{ tools: Map<string, McpToolInfo[]>; errors: EventBody[] }> {
    const tools = new Map<string, McpToolInfo[]>();
    const errors: EventBody[] = [];
    const wanted = new Set(session.agent.tools.filter((t) => t.type === 'mcp_toolset').map((t) => (t as { mcp_server_name: string }).mcp_server_name));
    for (const server of session.agent.mcp_servers.filter((m) => wanted.has(m.name))) {
      if (!this.deps.mcp) {
        errors.push(mcpErrorEvent(new McpError('connection', server.name, `MCP server ${server.name}: no credential proxy is configured on this deployment`)));
        continue;
      }
      const key = `${[...session.vault_ids].sort().join(',')}|${server.name}|${server.url}`;
      const cached = this.mcpTools.get(key);
      if (cached && Date.now() - cached.at < 60_000) {
        tools.set(server.name, cached.tools);
        continue;
      }
      try {
        const listed = await this.deps.mcp.listTools({ sessionId: session.id, vaultIds: session.vault_ids, server });
        this.mcpTools.set(key, { at: Date.now(), tools: listed });
        tools.set(server.name, listed);
      } catch (err) {
        const e = err instanceof McpError ? err : new McpError('connection', server.name, `MCP server ${server.name}: ${(err as Error)?.message ?? err}`);
        this.log.warn('MCP server could not be listed', { sessionId: session.id, server: server.name, kind: e.kind });
        errors.push(mcpErrorEvent(e));
      }
    }
    return { tools, errors };
  }

  private async callModel(session: Session, state: TurnState, step: { lost: AbortSignal; cut: AbortSignal }, attempt: number) {
    const { lost, cut } = step;
    const sessionId = session.id;
    if (attempt > 1) {
      const delay = this.opts.retryDelayMs?.(attempt - 1) ?? Math.min(30_000, 1000 * 2 ** (attempt - 2)) * (0.5 + Math.random() / 2);
      await sleep(delay, AbortSignal.any([lost, cut]));
      if (cut.aborted && !lost.aborted) throw new StepDeadlineError('the retry delay');
    }
    const { view, toolbox, errors } = await this.view(session, state);
    const opened = await this.append(sessionId, state.position, [...errors, { type: 'span.model_request_start' }]);
    const start = opened[opened.length - 1];
    const position = state.position + opened.length;
    const controller = new AbortController();
    const stopWatching = this.watchInterrupt(sessionId, position, lost, controller);
    const started = Date.now();
    let response: ModelResponse;
    try {
      response = await this.deps.model.complete(
        {
          model: session.agent.model.id,
          system: session.agent.system ?? undefined,
          messages: withCacheBreakpoints(view.messages, state.view.summary !== null) as never,
          tools: toolbox.specs,
          maxTokens: this.opts.maxTokens ?? 8192,
          cache: true,
        },
        { signal: AbortSignal.any([controller.signal, cut]) },
      );
    } catch (err) {
      stopWatching();
      if (controller.signal.aborted) {
        if (lost.aborted) throw new LeaseLostError(sessionId);
        return; // interrupted: the next decision closes the request and the turn
      }
      // Cut by the deadline: the request is closed as a failed attempt (so a call that never fits
      // in a step cannot loop forever), and a new wake retries it.
      const byDeadline = cut.aborted;
      const e = byDeadline
        ? new ModelError('model_request_failed_error', true, "the model call did not finish before the harness step's deadline; it is tried again in a new step")
        : err instanceof ModelError
          ? err
          : new ModelError('model_request_failed_error', true, String((err as Error)?.message ?? err));
      this.opts.observer?.modelCall?.({ sessionId, timeToFirstTokenMs: null, durationMs: Date.now() - started, ok: false });
      const exhausted = e.retryable && attempt >= this.maxModelAttempts;
      const retryStatus = !e.retryable ? 'terminal' : exhausted ? 'exhausted' : 'retrying';
      this.log.warn('model call failed', { sessionId, attempt, errorType: e.errorType, retryStatus });
      const bodies: EventBody[] = [
        requestEnd(start.id, null, true),
        { type: 'session.error', error: { type: e.errorType, message: e.message, retry_status: { type: retryStatus } } },
      ];
      if (retryStatus !== 'retrying') {
        bodies.push({ type: 'session.status_idle', stop_reason: { type: exhausted ? 'retries_exhausted' : 'end_turn' }, stop_details: null });
      }
      await this.appendAfter(sessionId, position, bodies);
      if (byDeadline) throw new StepDeadlineError('the model call');
      return;
    }
    stopWatching();
    this.opts.observer?.modelCall?.({
      sessionId,
      timeToFirstTokenMs: response.timeToFirstTokenMs,
      durationMs: Date.now() - started,
      ok: true,
    });
    await this.appendAfter(sessionId, position, this.responseEvents(start.id, response, toolbox));
  }

  /**
   * Compaction: summarise the older part of the view with the model and append the summary as
   * `agent.thread_context_compacted`. The view then starts after it; the summarised events stay
   * in the log, readable with `getEvents` and, for the model, `read_session_log`.
   */
  private async compact(session: Session, state: TurnState, cut: AbortSignal) {
    const sessionId = session.id;
    const events = await this.deps.events.getEvents(sessionId, { from: state.view.start });
    const budgetChars = (this.opts.contextBudgetTokens ?? 100_000) * 4;
    const budgetEvents = this.opts.contextBudgetEvents ?? 1_000;
    // Cut right before a model request: every earlier tool call has its result by then, so the
    // part that stays starts cleanly. Keep as much as fits half of each budget.
    let boundary = -1;
    let keptChars = 0;
    for (let i = events.length - 1; i >= 0; i--) {
      keptChars += viewChars(events[i].event);
      const keptEvents = events.length - i;
      if (keptChars > budgetChars / 2 || keptEvents > budgetEvents / 2) break;
      if (events[i].event.type === 'span.model_request_start' && i > 0) boundary = i;
    }
    if (boundary < 0) {
      // Nothing fits half the budget: keep only from the last model request.
      for (let i = events.length - 1; i > 0 && boundary < 0; i--) if (events[i].event.type === 'span.model_request_start') boundary = i;
    }
    if (boundary <= 0) boundary = events.length; // no clean cut: summarise all of it
    const older = events.slice(0, boundary);
    const kept = events.slice(boundary);
    const upTo = older.length ? older[older.length - 1].position : state.view.start - 1;
    let summary: string;
    try {
      const view = buildView(older, { start: state.view.start, summary: state.view.summary });
      const messages = [...view.messages];
      const instruction = { type: 'text', text: SUMMARY_PROMPT };
      if (messages.length && messages[messages.length - 1].role === 'user') messages[messages.length - 1].content.push(instruction);
      else messages.push({ role: 'user', content: [instruction] });
      const response = await this.deps.model.complete(
        {
          model: session.agent.model.id,
          system: session.agent.system ?? undefined,
          messages: messages as never,
          tools: [],
          maxTokens: 4096,
        },
        { signal: cut },
      );
      summary = response.content
        .filter((b) => b.type === 'text')
        .map((b) => String((b as { text?: unknown }).text ?? ''))
        .join('\n')
        .trim();
      if (!summary) throw new Error('empty summary');
      // A summary must leave room for the conversation that follows it.
      if (summary.length > budgetChars / 4) summary = `${summary.slice(0, budgetChars / 4)}\n[summary cut short]`;
    } catch (err) {
      // Cut by the deadline: nothing written; the next wake compacts afresh.
      if (cut.aborted) throw new StepDeadlineError('the summary');
      this.log.warn('summary failed; compacting with a plain note', { sessionId, error: String((err as Error)?.message ?? err) });
      summary =
        `(No summary could be written. Events ${state.view.start} to ${upTo} are out of view; ` +
        `${state.view.summary ? `before them: ${state.view.summary.text}` : ''})`;
    }
    await this.append(sessionId, state.position, [
      {
        type: 'agent.thread_context_compacted',
        summary,
        from_position: state.view.start,
        up_to_position: upTo,
        retained_chars: kept.reduce((n, e) => n + viewChars(e.event), 0),
        retained_events: kept.length,
      },
    ]);
  }

  private responseEvents(startId: string, response: ModelResponse, toolbox: Toolbox): EventBody[] {
    const bodies: EventBody[] = [];
    if (response.content.some((b) => b.type === 'thinking' || b.type === 'redacted_thinking')) {
      bodies.push({ type: 'agent.thinking' });
    }
    const text = response.content
      .filter((b) => b.type === 'text')
      .map((b) => String((b as { text?: unknown }).text ?? ''))
      .filter((t) => t.length > 0);
    if (text.length) bodies.push({ type: 'agent.message', content: text.map((t) => ({ type: 'text', text: t })) });
    let calledTools = false;
    for (const block of response.content) {
      if (block.type !== 'tool_use') continue;
      calledTools = true;
      const { name: rawName, input = {} } = block as { name?: unknown; input?: unknown };
      const name = String(rawName);
      const route = toolbox.routes.get(name);
      if (route?.kind === 'custom') {
        bodies.push({ type: 'agent.custom_tool_use', name, input });
      } else if (route?.kind === 'mcp') {
        const policy = route.policy.type;
        bodies.push({
          type: 'agent.mcp_tool_use',
          name: route.tool,
          mcp_server_name: route.server.name,
          input,
          evaluated_permission: policy === 'always_ask' ? 'ask' : 'allow',
          evaluation: { type: policy === 'auto' ? 'always_allow' : policy },
        });
      } else {
        const policy = route?.policy.type ?? 'always_allow';
        bodies.push({
          type: 'agent.tool_use',
          name,
          input,
          evaluated_permission: policy === 'always_ask' ? 'ask' : 'allow',
          evaluation: { type: policy === 'auto' ? 'always_allow' : policy },
        });
      }
    }
    bodies.push(requestEnd(startId, response, false));
    if (!calledTools) bodies.push({ type: 'session.status_idle', stop_reason: { type: 'end_turn' }, stop_details: null });
    return bodies;
  }

  private async runTool(session: Session, tail: number, step: { lost: AbortSignal; deadline?: number }, tool: OpenTool) {
    const { lost } = step;
    const sessionId = session.id;
    if (tool.confirmation?.result === 'deny') {
      const why = tool.confirmation.deny_message ? `: ${tool.confirmation.deny_message}` : '.';
      await this.append(sessionId, tail, [resultFor(tool, `The user denied this tool call${why}`, true)]);
      return;
    }
    if (tool.type === 'agent.mcp_tool_use') {
      await this.runMcpTool(session, tail, tool);
      return;
    }
    const route = buildToolbox(session.agent.tools, { readLog: true }).routes.get(tool.name);
    if (!route || route.kind === 'custom') {
      await this.append(sessionId, tail, [toolResultBody(tool.id, `Unknown tool ${JSON.stringify(tool.name)}.`, true)]);
      return;
    }
    const [stored] = await this.deps.events.getEvents(sessionId, { from: tool.position, to: tool.position + 1 });
    const toolUse = stored.event;
    if (route.kind === 'log') {
      await this.appendAfter(sessionId, tail, [await this.readLog(sessionId, toolUse)]);
      return;
    }
    const { sandbox = DEFAULT_SANDBOX, ...input } = (toolUse.input ?? {}) as { sandbox?: unknown; [k: string]: unknown };
    const controller = new AbortController();
    const stopWatching = this.watchInterrupt(sessionId, tail, lost, controller);
    const started = Date.now();
    try {
      const report = await this.deps.sandboxes.execute(sessionId, String(sandbox), await this.recipe(session), route.tool, input, {
        idempotencyKey: toolUse.id,
        signal: controller.signal,
        // At the deadline the manager stops waiting (or provisioning) and throws StepDeadlineError;
        // the tool goes on in the sandbox, and the next wake's call with this key gets its result.
        ...(step.deadline !== undefined ? { deadline: step.deadline } : {}),
      });
      this.opts.observer?.toolCall?.({
        sessionId,
        tool: tool.name,
        sandbox: report.sandbox,
        durationMs: Date.now() - started,
        provisionMs: report.provisionMs,
        isError: report.isError,
      });
      stopWatching();
      const result: EventBody = { ...toolResultBody(toolUse.id, report.output, report.isError), sandbox: report.sandbox };
      // A recipe that failed (a repository that would not clone) is also a session error of its type.
      const setup: EventBody[] = report.setupError
        ? [{ type: 'session.error', error: { type: report.setupError.type, message: report.setupError.message, retry_status: { type: 'terminal' } } }]
        : [];
      await this.appendAfter(sessionId, tail, [result, ...setup]);
    } catch (err) {
      stopWatching();
      if (controller.signal.aborted) {
        if (lost.aborted) throw new LeaseLostError(sessionId);
        return; // interrupted: the next decision records it
      }
      throw err;
    }
  }

  /** An MCP tool call, through the credential proxy. */
  private async runMcpTool(session: Session, tail: number, tool: OpenTool) {
    const sessionId = session.id;
    const [stored] = await this.deps.events.getEvents(sessionId, { from: tool.position, to: tool.position + 1 });
    const use = stored.event;
    const server = session.agent.mcp_servers.find((m) => m.name === use.mcp_server_name);
    if (!server || !this.deps.mcp) {
      const why = !server ? `the agent has no MCP server named ${JSON.stringify(use.mcp_server_name)}` : 'no credential proxy is configured on this deployment';
      await this.append(sessionId, tail, [resultFor(tool, `MCP tool ${tool.name} cannot be called: ${why}.`, true)]);
      return;
    }
    const started = Date.now();
    try {
      const result = await this.deps.mcp.callTool({
        sessionId,
        vaultIds: session.vault_ids,
        server,
        tool: tool.name,
        input: use.input ?? {},
        idempotencyKey: use.id,
      });
      this.opts.observer?.toolCall?.({ sessionId, tool: tool.name, sandbox: `mcp:${server.name}`, durationMs: Date.now() - started, provisionMs: 0, isError: result.isError });
      await this.appendAfter(sessionId, tail, [
        { type: 'agent.mcp_tool_result', mcp_tool_use_id: use.id, content: result.content.length ? result.content : [{ type: 'text', text: '(no output)' }], is_error: result.isError },
      ]);
    } catch (err) {
      const e = err instanceof McpError ? err : new McpError('connection', server.name, `MCP server ${server.name}: ${(err as Error)?.message ?? err}`);
      this.log.warn('MCP tool call failed', { sessionId, server: server.name, kind: e.kind });
      await this.appendAfter(sessionId, tail, [resultFor(tool, e.message, true), mcpErrorEvent(e)]);
    }
  }

  /** `read_session_log`: events of this session by position, as the model saw them. */
  private async readLog(sessionId: string, toolUse: SessionEvent): Promise<EventBody> {
    const input = (toolUse.input ?? {}) as { from_position?: unknown; to_position?: unknown };
    const from = Number(input.from_position);
    const to = input.to_position === undefined ? from : Number(input.to_position);
    if (!Number.isInteger(from) || !Number.isInteger(to) || from < 1 || to < from) {
      return toolResultBody(toolUse.id, 'from_position and to_position must be positions (1, 2, ...), from <= to.', true);
    }
    const events = await this.deps.events.getEvents(sessionId, { from, to: Math.min(to, from + 49) + 1 });
    const lines = events.map((s) => {
      const rendered = JSON.stringify(toMessages([s])[0]?.content ?? { type: s.event.type });
      return `#${s.position} ${s.event.type}: ${rendered.length > 20_000 ? `${rendered.slice(0, 20_000)} [...]` : rendered}`;
    });
    const more = to > from + 49 ? `\n(${to - from - 49} more: ask again from position ${from + 50})` : '';
    return toolResultBody(toolUse.id, (lines.join('\n') || 'No events in that range.') + more, false);
  }
}

/** Events the API appends at any moment; a harness's events may follow them. */
function isUserEvent(e: SessionEvent): boolean {
  return e.type.startsWith('user.');
}

function requestEnd(startId: string, response: ModelResponse | null, isError: boolean): EventBody {
  return {
    type: 'span.model_request_end',
    model_request_start_id: startId,
    is_error: isError,
    // Corral extension: when the first token of the answer came (the console's latency strip).
    ...(response?.timeToFirstTokenMs != null ? { time_to_first_token_ms: response.timeToFirstTokenMs } : {}),
    model_usage: {
      input_tokens: response?.usage.input_tokens ?? 0,
      output_tokens: response?.usage.output_tokens ?? 0,
      cache_read_input_tokens: response?.usage.cache_read_input_tokens ?? 0,
      cache_creation_input_tokens: response?.usage.cache_creation_input_tokens ?? 0,
    },
  };
}

/** The result event that closes an open tool call of any kind. */
function resultFor(tool: OpenTool, text: string, isError: boolean): EventBody {
  if (tool.type === 'agent.mcp_tool_use') {
    return { type: 'agent.mcp_tool_result', mcp_tool_use_id: tool.id, content: [{ type: 'text', text }], is_error: isError };
  }
  return toolResultBody(tool.id, text, isError);
}

function mcpErrorEvent(e: McpError): EventBody {
  return {
    type: 'session.error',
    error: {
      type: e.kind === 'authentication' ? 'mcp_authentication_failed_error' : 'mcp_connection_failed_error',
      mcp_server_name: e.serverName,
      message: e.message,
      retry_status: { type: 'terminal' },
    },
  };
}

function toolResultBody(toolUseId: string, text: string, isError: boolean): EventBody {
  return { type: 'agent.tool_result', tool_use_id: toolUseId, content: [{ type: 'text', text }], is_error: isError };
}
