import { randomUUID } from 'node:crypto';
import { NotFoundError, PositionConflictError } from '../errors.js';
import type { EnvironmentService } from '../resources/environments.js';
import type { Session, SessionService } from '../resources/sessions.js';
import type { SandboxManager } from '../sandbox/manager.js';
import { DEFAULT_SANDBOX } from '../sandbox/manager.js';
import type { SandboxRecipe } from '../sandbox/types.js';
import { makeEvent, type EventBody, type SessionEvent, type SessionStatus, type StoredEvent } from '../session/events.js';
import type { LeaseManager, Lease } from '../session/lease.js';
import type { EventLog } from '../session/log.js';
import { buildMessages } from './context.js';
import { ModelError, type ModelClient, type ModelResponse } from './model.js';
import type { WakeQueue } from './queue.js';
import { DEFAULT_MAX_MODEL_ATTEMPTS, nextAction, type NextAction } from './state.js';
import { buildToolbox, type Toolbox } from './tools.js';

export interface HarnessLogger {
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
}

/** Timings a harness reports, for metrics (CloudWatch EMF on AWS, logs locally). */
export interface HarnessObserver {
  modelCall?(m: { sessionId: string; timeToFirstTokenMs: number | null; durationMs: number; ok: boolean }): void;
  toolCall?(m: { sessionId: string; tool: string; sandbox: string; durationMs: number; provisionMs: number; isError: boolean }): void;
  step?(m: { sessionId: string; action: NextAction['kind']; durationMs: number }): void;
}

export interface HarnessOptions {
  maxModelAttempts?: number;
  /** Delay before retry n (n >= 1) of a failed model call. Default: exponential from 1 s, capped at 30 s. */
  retryDelayMs?: (attempt: number) => number;
  /** How often a running model call or tool checks the log for `user.interrupt`. */
  interruptPollMs?: number;
  maxTokens?: number;
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
  /** The deadline came first; a wake for the rest was queued. */
  | { status: 'yielded' }
  | { status: 'gone' };

class LeaseLostError extends Error {
  constructor(sessionId: string) {
    super(`lease on session ${sessionId} was lost`);
  }
}

const silent: HarnessLogger = { info() {}, warn() {}, error() {} };
const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve) => {
    const t = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => {
      clearTimeout(t);
      resolve();
    });
  });

/**
 * The harness: stateless. `wake(sessionId)` reads the log, decides the next action from it alone
 * (`nextAction`), performs it (a model call, a tool call, a status change), appends what it
 * produced at the positions it expects, and repeats until the session has nothing to do.
 */
export class Harness {
  private readonly log: HarnessLogger;
  private readonly maxModelAttempts: number;

  constructor(
    private readonly deps: {
      events: EventLog;
      sessions: SessionService;
      environments: EnvironmentService;
      leases: LeaseManager;
      sandboxes: SandboxManager;
      model: ModelClient;
      queue: WakeQueue;
    },
    private readonly opts: HarnessOptions = {},
  ) {
    this.log = opts.logger ?? silent;
    this.maxModelAttempts = opts.maxModelAttempts ?? DEFAULT_MAX_MODEL_ATTEMPTS;
  }

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
    let seen = 0;
    try {
      if (lease.takeover) await this.fence(sessionId, lease);
      for (;;) {
        if (lost.signal.aborted) throw new LeaseLostError(sessionId);
        const events = await this.deps.events.getEvents(sessionId);
        seen = events.length ? events[events.length - 1].position : 0;
        if (fencedOut(events, lease)) throw new LeaseLostError(sessionId);
        const action = nextAction(events, { maxModelAttempts: this.maxModelAttempts });
        await this.reconcile(session, events);
        if (action.kind === 'none') return { status: 'done' };
        if (opts.deadline !== undefined && Date.now() >= opts.deadline) {
          await this.deps.queue.wake(sessionId);
          return { status: 'yielded' };
        }
        const started = Date.now();
        try {
          await this.perform(session, lease, lost.signal, events, action);
        } catch (err) {
          if (err instanceof PositionConflictError) {
            // Another writer got there first: re-read the log and decide again.
            this.log.info('position conflict; re-reading the log', { sessionId, position: err.position });
            continue;
          }
          throw err;
        }
        this.opts.observer?.step?.({ sessionId, action: action.kind, durationMs: Date.now() - started });
        session = await this.deps.sessions.get(null, sessionId).catch((err) => {
          if (err instanceof NotFoundError) throw err;
          throw err;
        });
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
      await this.deps.leases.release(lease).catch(() => undefined);
      // An event that arrived after the last read (its wake found us busy) still gets a harness.
      const last = await this.deps.events.lastPosition(sessionId).catch(() => seen);
      if (last !== seen) await this.deps.queue.wake(sessionId).catch(() => undefined);
    }
  }

  /**
   * Fence off a previous holder that may still be running: append `session.status_rescheduled`
   * carrying our fencing token. A harness only ever appends right after the last position it has
   * read, and on any conflict re-reads the log; so once the marker is in, the old holder's next
   * append fails, and its re-read shows it a newer fence, at which it stops.
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

  /** Keep the session record's status in line with the log (it is derived from it). */
  private async reconcile(session: Session, events: StoredEvent[]) {
    let status: SessionStatus = 'idle';
    for (const { event } of events) {
      if (event.type === 'session.status_running') status = 'running';
      else if (event.type === 'session.status_idle') status = 'idle';
      else if (event.type === 'session.status_terminated') status = 'terminated';
    }
    if (status !== session.status) {
      await this.deps.sessions.mutate(null, session.id, (s) => (s.status === status ? null : { ...s, status }));
      session.status = status;
    }
  }

  private async perform(session: Session, lease: Lease, lost: AbortSignal, events: StoredEvent[], action: NextAction) {
    const sessionId = session.id;
    const tail = events.length ? events[events.length - 1].position : 0;
    const append = (bodies: Array<EventBody | SessionEvent>) => this.append(sessionId, tail, bodies);
    switch (action.kind) {
      case 'none':
        return;
      case 'complete_batch':
        for (const [i, event] of action.events.entries()) {
          await this.deps.events.emitEvent(sessionId, event, { position: tail + 1 + i });
        }
        await this.afterAppend(sessionId, action.events);
        return;
      case 'start_turn':
        if (this.opts.eagerSandbox) await this.deps.sandboxes.ensure(sessionId, DEFAULT_SANDBOX, await this.recipe(session));
        await append([{ type: 'session.status_running' }]);
        return;
      case 'interrupt': {
        const bodies: EventBody[] = [];
        if (action.danglingRequestId) bodies.push(requestEnd(action.danglingRequestId, null, true));
        for (const toolUse of action.openToolUses) {
          bodies.push(toolResultBody(toolUse.id, 'Interrupted by the user before this tool call completed.', true));
        }
        bodies.push({ type: 'session.status_idle', stop_reason: { type: 'end_turn' }, stop_details: null });
        await append(bodies);
        return;
      }
      case 'close_request':
        await append([requestEnd(action.requestId, null, true)]);
        return;
      case 'requires_action':
        await append([{ type: 'session.status_idle', stop_reason: { type: 'requires_action', event_ids: action.eventIds }, stop_details: null }]);
        return;
      case 'end_turn':
        await append([{ type: 'session.status_idle', stop_reason: { type: 'end_turn' }, stop_details: null }]);
        return;
      case 'retries_exhausted':
        await append([{ type: 'session.status_idle', stop_reason: { type: 'retries_exhausted' }, stop_details: null }]);
        return;
      case 'run_tool':
        await this.runTool(session, tail, lost, action.toolUse, action.confirmation);
        return;
      case 'call_model':
        await this.callModel(session, lease, tail, lost, events, action.attempt);
        return;
    }
  }

  /** Append events from `tail + 1` on, as one batch when there are several. */
  private async append(sessionId: string, tail: number, bodies: Array<EventBody | SessionEvent>): Promise<SessionEvent[]> {
    const now = new Date();
    const events = bodies.map((b) => ('id' in b && 'processed_at' in b ? (b as SessionEvent) : makeEvent(b, now)));
    if (events.length === 1) await this.deps.events.emitEvent(sessionId, events[0], { position: tail + 1 });
    else await this.deps.events.appendBatch(sessionId, events, { position: tail + 1, mayFollow: isUserEvent });
    await this.afterAppend(sessionId, events);
    return events;
  }

  /** Derived records: the session's status and usage follow what was appended. */
  private async afterAppend(sessionId: string, events: SessionEvent[]) {
    let status: SessionStatus | null = null;
    const usage = { input_tokens: 0, output_tokens: 0, cache_read_input_tokens: 0, cache_creation_input_tokens: 0 };
    let hasUsage = false;
    for (const e of events) {
      if (e.type === 'session.status_running') status = 'running';
      if (e.type === 'session.status_idle') status = 'idle';
      if (e.type === 'span.model_request_end' && e.model_usage) {
        const u = e.model_usage as typeof usage;
        usage.input_tokens += u.input_tokens ?? 0;
        usage.output_tokens += u.output_tokens ?? 0;
        usage.cache_read_input_tokens += u.cache_read_input_tokens ?? 0;
        usage.cache_creation_input_tokens += u.cache_creation_input_tokens ?? 0;
        hasUsage = true;
      }
    }
    if (status === null && !hasUsage) return;
    await this.deps.sessions.mutate(null, sessionId, (s) => ({
      ...s,
      status: status ?? s.status,
      updated_at: new Date().toISOString(),
      usage: hasUsage
        ? {
            input_tokens: (s.usage.input_tokens ?? 0) + usage.input_tokens,
            output_tokens: (s.usage.output_tokens ?? 0) + usage.output_tokens,
            cache_read_input_tokens: (s.usage.cache_read_input_tokens ?? 0) + usage.cache_read_input_tokens,
            cache_creation: {
              ephemeral_5m_input_tokens: (s.usage.cache_creation?.ephemeral_5m_input_tokens ?? 0) + usage.cache_creation_input_tokens,
            },
          }
        : s.usage,
    }));
  }

  /**
   * Abort `signal` when a `user.interrupt` lands after `from` or the lease is lost. The returned
   * function stops watching.
   */
  private watchInterrupt(sessionId: string, from: number, lost: AbortSignal, controller: AbortController): () => void {
    const poll = this.opts.interruptPollMs ?? 250;
    let stopped = false;
    let cursor = from;
    const onLost = () => controller.abort(new LeaseLostError(sessionId));
    lost.addEventListener('abort', onLost);
    const tick = async () => {
      while (!stopped && !controller.signal.aborted) {
        await sleep(poll, controller.signal);
        if (stopped || controller.signal.aborted) break;
        try {
          const fresh = await this.deps.events.getEvents(sessionId, { from: cursor + 1 });
          if (fresh.length) cursor = fresh[fresh.length - 1].position;
          if (fresh.some((e) => e.event.type === 'user.interrupt')) controller.abort(new Error('interrupted'));
        } catch {
          // a failed poll is retried on the next tick
        }
      }
    };
    void tick();
    return () => {
      stopped = true;
      lost.removeEventListener('abort', onLost);
    };
  }

  private async callModel(session: Session, lease: Lease, tail: number, lost: AbortSignal, events: StoredEvent[], attempt: number) {
    const sessionId = session.id;
    if (attempt > 1) {
      const delay = this.opts.retryDelayMs?.(attempt - 1) ?? Math.min(30_000, 1000 * 2 ** (attempt - 2)) * (0.5 + Math.random() / 2);
      await sleep(delay, lost);
    }
    const toolbox = buildToolbox(session.agent.tools);
    const [start] = await this.append(sessionId, tail, [{ type: 'span.model_request_start' }]);
    let position = tail + 1;
    const controller = new AbortController();
    const stopWatching = this.watchInterrupt(sessionId, position, lost, controller);
    const started = Date.now();
    let response: ModelResponse;
    try {
      response = await this.deps.model.complete(
        {
          model: session.agent.model.id,
          system: session.agent.system ?? undefined,
          messages: buildMessages(events) as never,
          tools: toolbox.specs,
          maxTokens: this.opts.maxTokens ?? 8192,
        },
        { signal: controller.signal },
      );
    } catch (err) {
      stopWatching();
      if (controller.signal.aborted) {
        if (lost.aborted) throw new LeaseLostError(sessionId);
        return; // interrupted: the next decision closes the request and the turn
      }
      const e = err instanceof ModelError ? err : new ModelError('model_request_failed_error', true, String((err as Error)?.message ?? err));
      this.opts.observer?.modelCall?.({ sessionId, timeToFirstTokenMs: null, durationMs: Date.now() - started, ok: false });
      const exhausted = e.retryable && attempt >= this.maxModelAttempts;
      const retryStatus = !e.retryable ? 'terminal' : exhausted ? 'exhausted' : 'retrying';
      this.log.warn('model call failed', { sessionId, attempt, errorType: e.errorType, retryStatus });
      const bodies: EventBody[] = [
        requestEnd(start.id, null, true),
        { type: 'session.error', error: { type: e.errorType, message: e.message, retry_status: { type: retryStatus } } },
      ];
      if (retryStatus !== 'retrying') {
        bodies.push({
          type: 'session.status_idle',
          stop_reason: { type: exhausted ? 'retries_exhausted' : 'end_turn' },
          stop_details: null,
        });
      }
      await this.appendAfter(sessionId, position, bodies);
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
    void lease;
  }

  /**
   * Append a batch after `position`. If user events slipped in meanwhile (the API appends them at
   * the tail), the batch follows them; if anything else did, another harness is writing and the
   * batch is dropped (the caller re-reads the log).
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
    if (!calledTools) {
      bodies.push({ type: 'session.status_idle', stop_reason: { type: 'end_turn' }, stop_details: null });
    }
    return bodies;
  }

  private async runTool(session: Session, tail: number, lost: AbortSignal, toolUse: SessionEvent, confirmation: SessionEvent | null) {
    const sessionId = session.id;
    if (confirmation?.result === 'deny') {
      const why = confirmation.deny_message ? `: ${confirmation.deny_message}` : '.';
      await this.append(sessionId, tail, [toolResultBody(toolUse.id, `The user denied this tool call${why}`, true)]);
      return;
    }
    const name = String(toolUse.name);
    const route = buildToolbox(session.agent.tools).routes.get(name);
    if (!route || route.kind !== 'sandbox') {
      await this.append(sessionId, tail, [toolResultBody(toolUse.id, `Unknown tool ${JSON.stringify(name)}.`, true)]);
      return;
    }
    const { sandbox = DEFAULT_SANDBOX, ...input } = (toolUse.input ?? {}) as { sandbox?: unknown; [k: string]: unknown };
    const controller = new AbortController();
    const stopWatching = this.watchInterrupt(sessionId, tail, lost, controller);
    const started = Date.now();
    try {
      const report = await this.deps.sandboxes.execute(
        sessionId,
        String(sandbox),
        await this.recipe(session),
        route.tool,
        input,
        { idempotencyKey: toolUse.id, signal: controller.signal },
      );
      this.opts.observer?.toolCall?.({
        sessionId,
        tool: name,
        sandbox: report.sandbox,
        durationMs: Date.now() - started,
        provisionMs: report.provisionMs,
        isError: report.isError,
      });
      stopWatching();
      await this.appendAfter(sessionId, tail, [{ ...toolResultBody(toolUse.id, report.output, report.isError), sandbox: report.sandbox }]);
    } catch (err) {
      stopWatching();
      if (controller.signal.aborted) {
        if (lost.aborted) throw new LeaseLostError(sessionId);
        return; // interrupted: the next decision records it
      }
      throw err;
    }
  }
}

/** Events the API appends at any moment; a harness's events may follow them. */
function isUserEvent(e: SessionEvent): boolean {
  return e.type.startsWith('user.');
}

/** A newer harness has fenced this one off (see `Harness.fence`). */
function fencedOut(events: StoredEvent[], lease: Lease): boolean {
  return events.some((s) => s.event.type === 'session.status_rescheduled' && Number(s.event.fence) > lease.fence);
}

function requestEnd(startId: string, response: ModelResponse | null, isError: boolean): EventBody {
  return {
    type: 'span.model_request_end',
    model_request_start_id: startId,
    is_error: isError,
    model_usage: {
      input_tokens: response?.usage.input_tokens ?? 0,
      output_tokens: response?.usage.output_tokens ?? 0,
      cache_read_input_tokens: response?.usage.cache_read_input_tokens ?? 0,
      cache_creation_input_tokens: response?.usage.cache_creation_input_tokens ?? 0,
    },
  };
}

function toolResultBody(toolUseId: string, text: string, isError: boolean): EventBody {
  return { type: 'agent.tool_result', tool_use_id: toolUseId, content: [{ type: 'text', text }], is_error: isError };
}
