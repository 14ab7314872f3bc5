import { InvalidRequestError, NotFoundError } from '../errors.js';
import { ID_PREFIX, newId } from '../ids.js';
import type { SessionCreate, SessionUpdate, UserEvent } from '../api/schemas.js';
import type { WakeQueue } from '../harness/queue.js';
import { makeEvent, type SessionEvent, type SessionStatus } from '../session/events.js';
import type { EventLog } from '../session/log.js';
import { ConditionFailedError, type Item, type StateTable } from '../store.js';
import type { AgentService, Agent } from './agents.js';
import { nowIso, patchMetadata } from './common.js';
import type { EnvironmentService } from './environments.js';
import { collectPage, type ListParams, type ListResult } from './paging.js';

/** The agent a session runs: a pinned agent version (`BetaManagedAgentsSessionAgent`). */
export type SessionAgent = Pick<
  Agent,
  'id' | 'type' | 'version' | 'name' | 'description' | 'model' | 'system' | 'tools' | 'mcp_servers' | 'skills' | 'execution_identity'
>;

export interface Usage {
  input_tokens: number;
  output_tokens: number;
  cache_read_input_tokens: number;
  cache_creation_input_tokens: number;
}

/** A session as the API returns it (`BetaManagedAgentsSession`), plus Corral's `forked_from`. */
export interface Session {
  id: string;
  type: 'session';
  status: SessionStatus;
  agent: SessionAgent;
  environment_id: string;
  title: string | null;
  metadata: Record<string, string>;
  resources: unknown[];
  vault_ids: string[];
  budget: unknown;
  outcome_evaluations: unknown[];
  stats: { active_seconds?: number; duration_seconds?: number };
  usage: {
    input_tokens?: number;
    output_tokens?: number;
    cache_read_input_tokens?: number;
    cache_creation?: { ephemeral_5m_input_tokens?: number };
  };
  created_at: string;
  updated_at: string;
  archived_at: string | null;
  /** Corral extension: the session and position this one was forked from. */
  forked_from?: { session_id: string; position: number };
}

const headPk = (id: string) => `session#${id}`;

function pinAgent(agent: Agent): SessionAgent {
  const { id, type, version, name, description, model, system, tools, mcp_servers, skills, execution_identity } = agent;
  return { id, type, version, name, description, model, system, tools, mcp_servers, skills, execution_identity };
}

/** Turn a validated user event into a stored event. */
export function userEvent(body: UserEvent, now = new Date()): SessionEvent {
  return makeEvent(body as { type: string }, now);
}

export class SessionService {
  constructor(
    private readonly table: StateTable,
    private readonly log: EventLog,
    private readonly agents: AgentService,
    private readonly environments: EnvironmentService,
    private readonly queue: WakeQueue,
  ) {}

  async create(tenant: string, params: SessionCreate, now = new Date()): Promise<Session> {
    const ref = typeof params.agent === 'string' ? { id: params.agent } : params.agent;
    const agent = await this.agents.get(tenant, ref.id, 'version' in ref ? ref.version : undefined).catch((err) => {
      if (err instanceof NotFoundError) throw new InvalidRequestError(`agent: ${err.message}`);
      throw err;
    });
    if (agent.archived_at) throw new InvalidRequestError(`agent: agent ${agent.id} is archived`);
    const env = await this.environments.get(tenant, params.environment_id).catch((err) => {
      if (err instanceof NotFoundError) throw new InvalidRequestError(`environment_id: ${err.message}`);
      throw err;
    });
    if (env.archived_at) throw new InvalidRequestError(`environment_id: environment ${env.id} is archived`);
    let pinned = pinAgent(agent);
    if (typeof params.agent === 'object' && params.agent.type === 'agent_with_overrides') {
      const o = params.agent;
      const overridden = await this.agents.preview(agent, {
        model: o.model,
        system: o.system,
        tools: o.tools,
        mcp_servers: o.mcp_servers,
        skills: o.skills,
      });
      pinned = pinAgent({ ...overridden, version: agent.version });
    }
    const id = newId(ID_PREFIX.session, now.getTime());
    const session: Session = {
      id,
      type: 'session',
      status: 'idle',
      agent: pinned,
      environment_id: env.id,
      title: params.title ?? null,
      metadata: params.metadata ?? {},
      resources: params.resources ?? [],
      vault_ids: params.vault_ids ?? [],
      budget: params.budget ?? null,
      outcome_evaluations: [],
      stats: {},
      usage: {},
      created_at: nowIso(now),
      updated_at: nowIso(now),
      archived_at: null,
    };
    await this.table.put(
      { pk: headPk(id), sk: 'head', tenant, rev: 0, data: session, gsi1pk: `${tenant}#sessions`, gsi1sk: id },
      { ifNotExists: true },
    );
    if (params.initial_events?.length) {
      for (const body of params.initial_events) await this.log.emitEvent(id, userEvent(body, now));
      await this.queue.wake(id);
    }
    return session;
  }

  private async head(tenant: string | null, id: string): Promise<Item> {
    const item = await this.table.get(headPk(id), 'head');
    if (!item || (tenant !== null && item.tenant !== tenant)) throw new NotFoundError(`session ${id} not found`);
    return item;
  }

  /** A session of a tenant; `tenant` null reads across tenants (the harness, which has no tenant). */
  async get(tenant: string | null, id: string): Promise<Session> {
    return (await this.head(tenant, id)).data as Session;
  }

  async tenantOf(id: string): Promise<string> {
    return String((await this.head(null, id)).tenant);
  }

  /** Read-modify-write of the session record, retried on concurrent change. */
  async mutate(tenant: string | null, id: string, change: (s: Session) => Session | null): Promise<Session> {
    for (let attempt = 0; ; attempt++) {
      const item = await this.head(tenant, id);
      const next = change(item.data as Session);
      if (next === null) return item.data as Session;
      try {
        await this.table.put({ ...item, rev: Number(item.rev) + 1, data: next } as Item, { ifEquals: { rev: item.rev } });
        return next;
      } catch (err) {
        if (!(err instanceof ConditionFailedError) || attempt > 20) throw err;
      }
    }
  }

  update(tenant: string, id: string, params: SessionUpdate, now = new Date()): Promise<Session> {
    if (params.vault_ids !== undefined) throw new InvalidRequestError('vault_ids: can only be set when the session is created');
    return this.mutate(tenant, id, (s) => ({
      ...s,
      title: params.title === undefined ? s.title : params.title,
      metadata: patchMetadata(s.metadata, params.metadata),
      budget: params.budget === undefined ? s.budget : params.budget,
      updated_at: nowIso(now),
    }));
  }

  archive(tenant: string, id: string, now = new Date()): Promise<Session> {
    return this.mutate(tenant, id, (s) => (s.archived_at ? null : { ...s, archived_at: nowIso(now), updated_at: nowIso(now) }));
  }

  /** Remove the session, its history and (through `onDelete`) its sandboxes. */
  async delete(tenant: string, id: string, onDelete?: (id: string) => Promise<void>) {
    await this.head(tenant, id);
    await this.table.delete(headPk(id), 'head');
    await this.log.deleteAll(id);
    await onDelete?.(id);
    return { id, type: 'session_deleted' as const };
  }

  list(
    tenant: string,
    params: ListParams & { include_archived?: boolean; agent_id?: string; statuses?: SessionStatus[] },
  ): Promise<ListResult<Session>> {
    return collectPage(
      (q) => this.table.queryIndex(`${tenant}#sessions`, q),
      params,
      (item) => String(item.gsi1sk),
      (item) => {
        const s = item.data as Session;
        if (!params.include_archived && s.archived_at) return false;
        if (params.agent_id && s.agent.id !== params.agent_id) return false;
        if (params.statuses?.length && !params.statuses.includes(s.status)) return false;
        return true;
      },
      (item) => item.data as Session,
    );
  }

  /** Append user events in order and wake the harness. Accepted in any status but terminated. */
  async send(tenant: string, id: string, events: UserEvent[], now = new Date()): Promise<SessionEvent[]> {
    const session = await this.get(tenant, id);
    if (session.archived_at) throw new InvalidRequestError(`session ${id} is archived`);
    if (session.status === 'terminated') throw new InvalidRequestError(`session ${id} is terminated`);
    const stored: SessionEvent[] = [];
    for (const body of events) {
      const event = userEvent(body, now);
      await this.log.emitEvent(id, event);
      stored.push(event);
    }
    await this.queue.wake(id);
    return stored;
  }

  /**
   * Fork (Corral extension): a new session whose log is a copy of this one's up to `upTo`
   * (inclusive; default: all of it), with fresh event ids and references rewritten to them. The
   * two share nothing mutable: not the log, not a sandbox. The new session continues from where
   * the copy ends.
   */
  async fork(tenant: string, id: string, opts: { upTo?: number; title?: string | null } = {}, now = new Date()): Promise<Session> {
    const source = await this.get(tenant, id);
    const last = await this.log.lastPosition(id);
    const upTo = opts.upTo ?? last;
    if (!Number.isInteger(upTo) || upTo < 0 || upTo > last) {
      throw new InvalidRequestError(`up_to_position: must be an event position from 0 to ${last}`);
    }
    const copied = upTo > 0 ? await this.log.getEvents(id, { from: 1, to: upTo + 1 }) : [];
    const newId_ = newId(ID_PREFIX.session, now.getTime());
    const ids = new Map(copied.map((e) => [e.event.id, newId(ID_PREFIX.event, Date.parse(e.event.processed_at) || now.getTime())]));
    const remap = (event: SessionEvent): SessionEvent => {
      const out: SessionEvent = { ...event, id: ids.get(event.id) ?? event.id };
      for (const field of ['tool_use_id', 'custom_tool_use_id', 'model_request_start_id']) {
        if (typeof out[field] === 'string') out[field] = ids.get(out[field] as string) ?? out[field];
      }
      const reason = out.stop_reason as { event_ids?: string[] } | undefined;
      if (reason?.event_ids) out.stop_reason = { ...reason, event_ids: reason.event_ids.map((e) => ids.get(e) ?? e) };
      return out;
    };
    let status: SessionStatus = 'idle';
    for (const { event } of copied) {
      if (event.type === 'session.status_running') status = 'running';
      else if (event.type === 'session.status_idle') status = 'idle';
    }
    const session: Session = {
      ...source,
      id: newId_,
      status,
      title: opts.title === undefined ? source.title : opts.title,
      usage: {},
      stats: {},
      created_at: nowIso(now),
      updated_at: nowIso(now),
      archived_at: null,
      forked_from: { session_id: id, position: upTo },
    };
    await this.table.put(
      { pk: headPk(newId_), sk: 'head', tenant, rev: 0, data: session, gsi1pk: `${tenant}#sessions`, gsi1sk: newId_ },
      { ifNotExists: true },
    );
    for (const stored of copied) {
      await this.log.emitEvent(newId_, remap(stored.event), { position: stored.position });
    }
    // Batches cut by the fork point are completed by the harness from their heads; give it those.
    if (copied.length) {
      const heads = copied.filter((c) => c.rest);
      const lastHead = heads[heads.length - 1];
      if (lastHead) {
        const written = new Set(copied.filter((c) => c.position > lastHead.position).map((c) => c.event.id));
        const missing = lastHead.rest!.filter((e) => !written.has(e.id));
        let position = upTo;
        for (const e of missing) await this.log.emitEvent(newId_, remap(e), { position: ++position });
      }
    }
    await this.queue.wake(newId_);
    return session;
  }

  /** Every session id of every tenant that is not terminated (start-up recovery of the local runtime). */
  async activeSessionIds(): Promise<string[]> {
    const items = await this.table.scanPrefix('session#');
    return items
      .filter((i) => i.sk === 'head' && (i.data as Session).status !== 'terminated')
      .map((i) => (i.data as Session).id);
  }
}
