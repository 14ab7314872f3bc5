import { NotFoundError } from '../errors.js';
import { foldEvents, initialState, type TurnState } from '../harness/state.js';
import type { Session, SessionService } from '../resources/sessions.js';
import { nowIso } from '../resources/common.js';
import { clampLimit, decodeCursor, encodeCursor, type ListResult } from '../resources/paging.js';
import type { EventLog } from '../session/log.js';
import type { StateTable } from '../store.js';
import { readCursor } from '../storage/cursor.js';
import { tenantPrincipal } from '../storage/principal.js';

export type ThreadStatus = 'running' | 'idle' | 'rescheduling' | 'terminated';

/** A session thread as the API returns it (`BetaManagedAgentsSessionThread`). */
export interface SessionThread {
  id: string;
  type: 'session_thread';
  agent: Omit<Session['agent'], 'multiagent'>;
  archived_at: string | null;
  created_at: string;
  updated_at: string;
  parent_thread_id: string | null;
  session_id: string;
  stats: Session['stats'] | null;
  status: ThreadStatus;
  usage: Session['usage'] | null;
  workflow_run_id: null;
}

/**
 * `client.beta.sessions.threads`: the threads a coordinator session spawned. A thread runs on a
 * session record of its own (`SessionService.createThreadRecord`): its status and usage are that
 * record's, kept in line with the thread's log by its harness; which threads a session has is
 * its own log's (`session.thread_created`), folded from the harness's cursor on.
 */
export class ThreadService {
  constructor(
    private readonly table: StateTable,
    private readonly log: EventLog,
    private readonly sessions: SessionService,
  ) {}

  /** The session's thread ids in the order they were created (404 when the tenant has no such session). */
  private async threadIds(tenant: string, sessionId: string): Promise<string[]> {
    const session = await this.sessions.get(tenantPrincipal(tenant), sessionId);
    if (session.thread_of) throw new NotFoundError(`session ${sessionId} not found`);
    let state = (await readCursor<TurnState>(this.table, sessionId)) ?? initialState();
    for (;;) {
      const fresh = await this.log.getEvents(sessionId, { from: state.position + 1, limit: 500 });
      state = foldEvents(state, fresh);
      if (fresh.length < 500) break;
    }
    return Object.keys(state.threads ?? {});
  }

  async list(tenant: string, sessionId: string, params: { limit?: number; page?: string; statuses?: ThreadStatus[] }): Promise<ListResult<SessionThread>> {
    const ids = await this.threadIds(tenant, sessionId);
    const after = decodeCursor(params.page);
    const start = after ? ids.indexOf(after) + 1 : 0;
    const limit = clampLimit(params.limit);
    const data: SessionThread[] = [];
    let i = start;
    for (; i < ids.length && data.length < limit; i++) {
      const thread = await this.read(tenant, sessionId, ids[i]).catch((err) => (err instanceof NotFoundError ? null : Promise.reject(err)));
      if (thread && (!params.statuses?.length || params.statuses.includes(thread.status))) data.push(thread);
    }
    return { data, next_page: i < ids.length ? encodeCursor(ids[i - 1]) : null };
  }

  async get(tenant: string, sessionId: string, threadId: string): Promise<SessionThread> {
    await this.sessions.get(tenantPrincipal(tenant), sessionId);
    return this.read(tenant, sessionId, threadId);
  }

  /**
   * Archive a thread: it is `terminated` from then on, and the coordinator's `message_thread` to
   * it fails. Its log stays readable. Idempotent.
   */
  async archive(tenant: string, sessionId: string, threadId: string, now = new Date()): Promise<SessionThread> {
    await this.read(tenant, sessionId, threadId);
    const record = await this.sessions.mutate(tenantPrincipal(tenant), threadId, (s) => (s.archived_at ? null : { ...s, archived_at: nowIso(now), updated_at: nowIso(now) }));
    return toThread(record);
  }

  /** The record of a thread of `sessionId` (404 for anything else, a session included). */
  private async read(tenant: string, sessionId: string, threadId: string): Promise<SessionThread> {
    const record = await this.sessions.get(tenantPrincipal(tenant), threadId).catch((err) => {
      if (err instanceof NotFoundError) throw new NotFoundError(`thread ${threadId} of session ${sessionId} not found`);
      throw err;
    });
    if (record.thread_of?.session_id !== sessionId) throw new NotFoundError(`thread ${threadId} of session ${sessionId} not found`);
    return toThread(record);
  }
}

/** The thread a thread's session record describes. */
export function toThread(record: Session): SessionThread {
  const { multiagent: _roster, ...agent } = record.agent;
  return {
    id: record.id,
    type: 'session_thread',
    agent,
    archived_at: record.archived_at,
    created_at: record.created_at,
    updated_at: record.updated_at,
    // Threads are spawned by the primary thread, which has no thread id of its own here.
    parent_thread_id: null,
    session_id: record.thread_of!.session_id,
    stats: record.stats ?? null,
    status: record.archived_at ? 'terminated' : record.status,
    usage: record.usage ?? null,
    workflow_run_id: null,
  };
}
