import path from 'node:path';
import { InvalidRequestError, NotFoundError, PositionConflictError } from '../errors.js';
import { ID_PREFIX, newId } from '../ids.js';
import { memoryStoreResource, type MemoryStoreSource } from '../memory/session-resource.js';
import { OUTCOME_LIMITS, type FileResourceParam, type SessionCreate, type SessionResourceUpdate, type SessionUpdate, type UserEvent } from '../api/schemas.js';
import { defaultFileMountPath } from '../sandbox/recipe.js';
import type { WakeQueue } from '../harness/queue.js';
import { makeEvent, type SessionEvent, type SessionStatus, type StoredEvent } from '../session/events.js';
import { outcomeEvaluations, type OutcomeEvaluation } from '../harness/outcome.js';
import { missingBatchEvents, type EventLog } from '../session/log.js';
import { foldEvents, initialState, OUTCOME_EXPLANATION_CHARS, TERMINAL_OUTCOME_RESULTS, type TurnState } from '../harness/state.js';
import { ConditionFailedError, type Item, type StateTable } from '../store.js';
import { readCursor } from '../storage/cursor.js';
import { SessionHeadRecords, interruptSignals, sessionPartition, type HeadItem, type RepositoryCredentialRef, type SessionHeadFields, type SessionUsageFields } from '../storage/items.js';
import { tenantPrincipal, type Principal, type SystemPrincipal } from '../storage/principal.js';
import type { AgentService, Agent } from './agents.js';
import { coordinatorOf } from '../threads/multiagent.js';
import { assertRecordFits, nowIso, patchMetadata } from './common.js';
import type { EnvironmentService } from './environments.js';
import { collectBidirectionalPage, collectPage, createdAtFilter, type BidirectionalListResult, type CreatedAtRange, type ListParams, type ListResult } from './paging.js';
import type { SecretSink } from '../vault/secret-store.js';
import { RESOURCE_ID_PREFIX, normalizeRepositoryUrl, repositorySecretRef } from '../vault/types.js';
import type { VaultService } from '../vault/vaults.js';
import { CredentialProxyUnavailableError } from '../vault/vaults.js';
import { checkRepositoryUrl, type RepositoryUrlRule } from './repository-url.js';

/** A session resource as stored and returned: never an `authorization_token`. */
export type SessionResource = { id: string; type: string; created_at: string; updated_at: string; [k: string]: unknown };

/** What sessions need of the Files API: whether it is there, and whether a tenant has a file. */
export interface SessionFileSource {
  readonly available: boolean;
  get(tenant: string, id: string): Promise<unknown>;
  /** Delete the files scoped to a session (its outputs), idempotently. */
  deleteSessionFiles?(tenant: string, sessionId: string): Promise<number>;
  /** Why the sandboxes cannot hold file resources (no `/mnt/session`), if they cannot. */
  refusal?(): Promise<string | undefined>;
}

/** Most resources a session holds (as `SessionCreate` allows). */
const MAX_RESOURCES = 20;

/** What a session needs of the vaults: checking `vault_ids`, and handing repository tokens over. */
export interface SessionCredentials {
  vaults: VaultService;
  /** The credential proxy; without one, repository tokens are refused. */
  secrets?: SecretSink;
}

/** `https://github.com/org/repo.git` -> `repo` (the default mount path's last segment). */
function repositoryName(url: string): string {
  const last = url.replace(/[?#].*$/, '').replace(/\/+$/, '').split(/[/:]/).pop() ?? '';
  const name = last.replace(/\.git$/, '');
  return /^[A-Za-z0-9._-]+$/.test(name) && name !== '.' && name !== '..' ? name : 'repository';
}

/** `/workspace/a/../b`, `b` -> `/workspace/b`: where a mount path lands, for comparing two. */
function mountKey(mountPath: string): string {
  return path.posix.normalize(mountPath.startsWith('/') ? mountPath : `/workspace/${mountPath}`).replace(/\/+$/, '');
}

/** The agent a session runs: a pinned agent version (`BetaManagedAgentsSessionAgent`). */
export type SessionAgent = Pick<
  Agent,
  'id' | 'type' | 'version' | 'name' | 'description' | 'model' | 'system' | 'tools' | 'mcp_servers' | 'skills' | 'execution_identity' | 'multiagent'
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
  outcome_evaluations: OutcomeEvaluation[];
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
  /** Corral extension: an archived, read-only copy of a session imported from an export. */
  imported_from?: { session_id: string; created_at: string; events: number };
  /**
   * Corral internal: this record is a session thread's (core/threads/), run by the harness as a
   * session of its own; the API shows it as a thread of `session_id`, never as a session.
   */
  thread_of?: { session_id: string; agent_name: string; tenant: string };
  /** Corral internal: a coordinator's roster with the agents' names (the names its spawn tool takes). */
  thread_roster?: Array<{ id: string; version: number; name: string }>;
}

/** The event with its id and every reference to another event rewritten by `to` (fork, import). */
function remapEventIds(event: SessionEvent, to: (ref: string) => string): SessionEvent {
  const out = { ...event, id: to(event.id) };
  switch (out.type) {
    case 'agent.tool_result':
    case 'user.tool_confirmation':
    case 'user.tool_result':
      return { ...out, tool_use_id: to(out.tool_use_id) };
    case 'agent.mcp_tool_result':
      return { ...out, mcp_tool_use_id: to(out.mcp_tool_use_id) };
    case 'user.custom_tool_result':
      return { ...out, custom_tool_use_id: to(out.custom_tool_use_id) };
    case 'span.model_request_end':
      return { ...out, model_request_start_id: to(out.model_request_start_id) };
    case 'span.outcome_evaluation_end':
      return { ...out, outcome_evaluation_start_id: to(out.outcome_evaluation_start_id) };
    case 'session.status_idle':
      // (an imported event's fields are not checked beyond its type: a malformed list becomes empty)
      return out.stop_reason?.type === 'requires_action'
        ? { ...out, stop_reason: { ...out.stop_reason, event_ids: Array.isArray(out.stop_reason.event_ids) ? out.stop_reason.event_ids.map((r) => to(String(r))) : [] } }
        : out;
    default:
      return out;
  }
}

/** Session heads in the state table, listed per tenant, each with its usage item beside it. */
const heads = new SessionHeadRecords<Session, SessionHeadFields>();
type SessionHead = HeadItem<Session, SessionHeadFields>;

/**
 * A session as read at one revision of its head (the harness keeps it through a wake): `data` is
 * the session. Writing from it is conditional on that revision, so a stale one costs a re-read,
 * never a lost update (`SessionService.mutateFrom`).
 */
export type SessionSnapshot = SessionHead;

/** The session's fields kept in its usage item rather than in the (indexed) head. */
const USAGE_FIELDS = ['usage', 'stats', 'updated_at'] as const;

/** The session with what its usage item holds: that item's usage and stats, the later `updated_at`. */
function withUsage(stored: Session, usage: SessionUsageFields | undefined): Session {
  const session = complete(stored);
  if (!usage) return session;
  return {
    ...session,
    usage: usage.usage as Session['usage'],
    stats: usage.stats as Session['stats'],
    updated_at: usage.updated_at > session.updated_at ? usage.updated_at : session.updated_at,
  };
}

/**
 * A stored session with the fields the API declares that it was stored without: sessions pinned
 * before the session's agent carried `multiagent` (always null: Corral refuses multiagent).
 */
function complete(session: Session): Session {
  return session.agent.multiagent === undefined ? { ...session, agent: { ...session.agent, multiagent: null } } : session;
}

/** Do `a` and `b` differ only in what the usage item holds? */
function onlyUsageDiffers(a: Session, b: Session): boolean {
  const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
  for (const k of USAGE_FIELDS) keys.delete(k);
  for (const k of keys) {
    if (JSON.stringify((a as unknown as Record<string, unknown>)[k]) !== JSON.stringify((b as unknown as Record<string, unknown>)[k])) return false;
  }
  return true;
}

const usageOf = (s: Session): SessionUsageFields => ({ usage: s.usage, stats: s.stats, updated_at: s.updated_at });
const sameUsage = (a: Session, b: Session) => JSON.stringify([a.usage, a.stats]) === JSON.stringify([b.usage, b.stats]);

function pinAgent(agent: Agent): SessionAgent {
  const { id, type, version, name, description, model, system, tools, mcp_servers, skills, execution_identity } = agent;
  return { id, type, version, name, description, model, system, tools, mcp_servers, skills, execution_identity, multiagent: agent.multiagent ?? null };
}

function invalidEvent(index: number): never {
  throw new InvalidRequestError(`initial_events.${index}: not a storable event`);
}

/**
 * Turn a validated user event into a stored event. An outcome gets its `outc_` id and its
 * `max_iterations` resolved (the default when none was given), as the SDK's echo carries them.
 */
export function userEvent(body: UserEvent, now = new Date()): SessionEvent {
  if (body.type === 'user.define_outcome') {
    return makeEvent(
      { ...body, outcome_id: newId(ID_PREFIX.outcome, now.getTime()), max_iterations: body.max_iterations ?? OUTCOME_LIMITS.defaultIterations },
      now,
    );
  }
  return makeEvent(body, now);
}

/** An outcome's entry in `outcome_evaluations` when it is defined (the harness moves it on: record.ts). */
function outcomeEntry(e: SessionEvent): OutcomeEvaluation | null {
  if (e.type !== 'user.define_outcome') return null;
  return { type: 'outcome_evaluation', outcome_id: e.outcome_id, description: e.description, iteration: 0, result: 'pending', explanation: null, completed_at: null };
}

/** The `outcome_evaluations` a log makes (a fork's): each outcome it defines, in the state its events leave it. */
function outcomesOfLog(events: StoredEvent[]): OutcomeEvaluation[] {
  const defined = events.flatMap((s) => outcomeEntry(s.event) ?? []);
  return defined.length ? outcomeEvaluations(defined, foldEvents(initialState(), events)) : [];
}

/**
 * The session with the outcomes of `events` added to `outcome_evaluations`, refused (400, naming
 * the event) when an outcome is still being worked on, when the session would hold more than
 * `OUTCOME_LIMITS.perSession`, or when the record would no longer fit.
 */
function withOutcomes(session: Session, events: SessionEvent[], field: string): Session {
  let list = session.outcome_evaluations as OutcomeEvaluation[];
  events.forEach((e, i) => {
    const entry = outcomeEntry(e);
    if (!entry) return;
    const open = list.find((o) => !(TERMINAL_OUTCOME_RESULTS as readonly string[]).includes(o.result));
    if (open) throw new InvalidRequestError(`${field}.${i}: outcome ${open.outcome_id} of session ${session.id} is still ${open.result}; define the next outcome once it is settled`);
    if (list.length >= OUTCOME_LIMITS.perSession) throw new InvalidRequestError(`${field}.${i}: a session takes at most ${OUTCOME_LIMITS.perSession} outcomes`);
    list = [...list, entry];
  });
  if (list === session.outcome_evaluations) return session;
  const next = { ...session, outcome_evaluations: list };
  // Room for every explanation the harness may add to the record (each clipped to OUTCOME_EXPLANATION_CHARS).
  assertRecordFits('session', { ...next, room: 'x'.repeat(list.length * OUTCOME_EXPLANATION_CHARS * 2) });
  return next;
}

export class SessionService {
  constructor(
    private readonly table: StateTable,
    private readonly log: EventLog,
    private readonly agents: AgentService,
    private readonly environments: EnvironmentService,
    private readonly queue: WakeQueue,
    private readonly credentials?: SessionCredentials,
    /** Which repository URLs are accepted (see `repository-url.ts`). @default https to public hosts only */
    private readonly repositoryUrls: RepositoryUrlRule = { allow: [] },
    /** The Files API, which `file` resources name (a missing or another tenant's file is a 404). */
    private readonly files?: SessionFileSource,
    /** Memory stores, which `memory_store` resources name (core/memory/session-resource.ts). */
    private readonly memoryStores?: MemoryStoreSource,
  ) {}

  /** A `file` resource as stored: the file must be the tenant's; the mount path must not meet another's. */
  private async fileResource(
    tenant: string,
    r: FileResourceParam,
    field: string,
    taken: readonly SessionResource[],
    now: Date,
  ): Promise<SessionResource> {
    if (!this.files?.available) throw new InvalidRequestError(`${field}: this deployment has no file storage configured`);
    const refused = await this.files.refusal?.();
    if (refused) throw new InvalidRequestError(`${field}: file resources are not available: ${refused}`);
    await this.files.get(tenant, r.file_id).catch((err) => {
      if (err instanceof NotFoundError) throw new NotFoundError(`${field}.file_id: file ${r.file_id} not found`);
      throw err;
    });
    const mountPath = r.mount_path ?? defaultFileMountPath(r.file_id);
    for (const other of taken) {
      if (other.type !== 'file') continue;
      const p = String(other.mount_path);
      if (p === mountPath || p.startsWith(`${mountPath}/`) || mountPath.startsWith(`${p}/`)) {
        throw new InvalidRequestError(`${field}.mount_path: ${mountPath} meets the mount path of file ${String(other.file_id)} (${p})`);
      }
    }
    return { id: newId(RESOURCE_ID_PREFIX, now.getTime()), type: 'file', file_id: r.file_id, mount_path: mountPath, created_at: nowIso(now), updated_at: nowIso(now) };
  }

  /**
   * The resources as stored (ids, timestamps, default mount paths) and the repository tokens to
   * hand to the proxy. A token never goes further than this function's caller.
   */
  private prepareResources(
    tenant: string,
    sessionId: string,
    resources: NonNullable<SessionCreate['resources']>,
    now: Date,
  ): { stored: SessionResource[]; tokens: Array<{ ref: RepositoryCredentialRef; token: string }> } {
    const stored: SessionResource[] = [];
    const tokens: Array<{ ref: RepositoryCredentialRef; token: string }> = [];
    const mounts = new Set<string>();
    for (const [i, r] of resources.entries()) {
      const id = newId(RESOURCE_ID_PREFIX, now.getTime());
      const base = { id, created_at: nowIso(now), updated_at: nowIso(now) };
      if (r.type === 'github_repository') {
        const { authorization_token: token, ...rest } = r as Extract<typeof r, { type: 'github_repository' }>;
        checkRepositoryUrl(rest.url, this.repositoryUrls, `resources[${i}]`);
        const mountPath = rest.mount_path ?? `/workspace/${repositoryName(rest.url)}`;
        // Two repositories in one place: only one could be cloned there (and the other would be
        // reachable through the proxy without ever being in the sandbox).
        if (mounts.has(mountKey(mountPath))) throw new InvalidRequestError(`resources[${i}]: mount_path ${mountPath} is already used by another repository`);
        mounts.add(mountKey(mountPath));
        stored.push({
          ...base,
          type: 'github_repository',
          url: rest.url,
          mount_path: mountPath,
          checkout: rest.checkout ?? null,
        });
        if (token) {
          if (!/^https?:\/\//i.test(rest.url)) {
            throw new InvalidRequestError('resources: an authorization_token needs an http(s) repository url (it is used through the credential proxy)');
          }
          tokens.push({ ref: { resource_id: id, url: normalizeRepositoryUrl(rest.url), secret_ref: repositorySecretRef(tenant, sessionId, id) }, token });
        }
      } else if (r.type === 'file') {
        stored.push({ ...base, type: 'file', file_id: r.file_id, mount_path: r.mount_path ?? null, pending: i });
      } else {
        stored.push({ ...(r as Record<string, unknown>), ...base } as SessionResource);
      }
    }
    if (tokens.length && !this.credentials?.secrets) {
      throw new CredentialProxyUnavailableError('no credential proxy is configured on this deployment: repository tokens cannot be stored');
    }
    return { stored, tokens };
  }

  /** Hand a repository token to the proxy; its failures name what failed, never the token. */
  private async storeToken(ref: string, token: string): Promise<void> {
    try {
      await this.credentials!.secrets!.storeSecret(ref, { token });
    } catch (err) {
      throw new CredentialProxyUnavailableError(`the credential proxy could not store the repository token: ${(err as Error)?.message ?? 'error'}`);
    }
  }

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
    // A coordinator's roster, with each agent's name (what its spawn tool names them by).
    const roster = coordinatorOf(pinned.multiagent);
    const threadRoster = roster
      ? await Promise.all(roster.agents.map(async (r) => ({ id: r.id, version: r.version, name: r.id === agent.id ? agent.name : (await this.agents.get(tenant, r.id, r.version)).name })))
      : undefined;
    const vaultIds = params.vault_ids ?? [];
    if (vaultIds.length) {
      if (!this.credentials) throw new InvalidRequestError('vault_ids: this deployment has no vaults');
      await this.credentials.vaults.assertUsable(tenant, vaultIds);
    }
    const id = newId(ID_PREFIX.session, now.getTime());
    const { stored: prepared, tokens } = this.prepareResources(tenant, id, params.resources ?? [], now);
    // File resources: each file checked (the tenant's, there) and its mount path against the others.
    const resources: SessionResource[] = [];
    for (const r of prepared) {
      if (r.type === 'memory_store') {
        resources.push(await memoryStoreResource(this.memoryStores, tenant, r, resources, now));
        continue;
      }
      if (r.type !== 'file' || r.pending === undefined) {
        resources.push(r);
        continue;
      }
      const i = Number(r.pending);
      const param = params.resources![i] as FileResourceParam;
      resources.push(await this.fileResource(tenant, param, `resources[${i}]`, resources, now));
    }
    const session: Session = {
      id,
      type: 'session',
      status: 'idle',
      agent: pinned,
      environment_id: env.id,
      title: params.title ?? null,
      metadata: params.metadata ?? {},
      resources,
      vault_ids: vaultIds,
      budget: params.budget ?? null,
      outcome_evaluations: [],
      stats: {},
      usage: {},
      created_at: nowIso(now),
      updated_at: nowIso(now),
      archived_at: null,
      ...(threadRoster ? { thread_roster: threadRoster } : {}),
    };
    // Everything that can be refused is refused before the first write.
    assertRecordFits('session', session);
    const initial = (params.initial_events ?? []).map((body) => userEvent(body, now));
    session.outcome_evaluations = withOutcomes(session, initial, 'initial_events').outcome_evaluations;
    initial.forEach((e, i) => {
      // The API's depth limit makes this unreachable through HTTP; a direct caller gets a 400 too.
      try {
        JSON.stringify(e);
      } catch {
        invalidEvent(i);
      }
    });
    const gitCredentials = tokens.map((t) => t.ref);
    // Then the writes, the session record last: until it is there, the session does not exist for
    // any reader (no get, list or harness finds it), and if a write fails, what was written before
    // it is removed again. Tokens go to the proxy first: a session never refers to a missing secret.
    let stored = 0;
    let headWritten = false;
    try {
      for (const t of tokens) {
        await this.storeToken(t.ref.secret_ref, t.token);
        stored++;
      }
      for (const event of initial) await this.log.emitEvent(id, event);
      await heads.put(this.table, tenant, session, { rev: 0, ...(gitCredentials.length ? { git_credentials: gitCredentials } : {}) }, { ifNotExists: true });
      headWritten = true;
      if (initial.length) await this.queue.wake(id);
    } catch (err) {
      if (headWritten) await heads.delete(this.table, id).catch(() => undefined);
      if (initial.length) await this.log.deleteAll(id).catch(() => undefined);
      for (const ref of gitCredentials.slice(0, stored)) await this.credentials?.secrets?.deleteSecret(ref.secret_ref).catch(() => undefined);
      throw err;
    }
    return session;
  }

  /**
   * The session's head, its `data` the whole session (with what its usage item holds); not found
   * when it is missing or `who` may not read it. One query reads both items.
   */
  private async head(who: Principal, id: string): Promise<SessionHead> {
    return (await this.headWith(who, id, [])).head;
  }

  private async headWith(who: Principal, id: string, extraKeys: ReadonlyArray<{ pk: string; sk: string }>) {
    const found = await heads.getWithUsage(this.table, who, id, extraKeys);
    if (!found) throw new NotFoundError(`session ${id} not found`);
    return { head: { ...found.head, data: withUsage(found.head.data, found.usage) }, extra: found.extra };
  }

  /**
   * The session (as `get`) and other items of the state table, in one round trip: the harness
   * reads its cursor and lease with the session when a wake starts.
   */
  async snapshotWith(who: SystemPrincipal, id: string, extraKeys: ReadonlyArray<{ pk: string; sk: string }> = []): Promise<{ snapshot: SessionSnapshot; extra: Array<Item | undefined> }> {
    const { head, extra } = await this.headWith(who, id, extraKeys);
    return { snapshot: head, extra };
  }

  /**
   * A session as `who` may read it: a tenant principal reads its own tenant's sessions; the
   * system principal (the harness) any.
   */
  async get(who: Principal, id: string): Promise<Session> {
    return (await this.head(who, id)).data;
  }

  /** The tenant a session belongs to (the harness, which reads sessions of every tenant). */
  async tenantOf(who: SystemPrincipal, id: string): Promise<string> {
    return (await this.head(who, id)).tenant;
  }

  /**
   * What a sandbox recipe needs of the session's record besides the session (`core/sandbox/recipe.ts`):
   * its tenant, and the repositories it holds a token for (refs only; a token never leaves the proxy).
   */
  async recipeSources(who: SystemPrincipal, id: string): Promise<{ tenant: string; repositoryCredentials: RepositoryCredentialRef[] }> {
    const head = await this.head(who, id);
    return { tenant: head.tenant, repositoryCredentials: head.git_credentials ?? [] };
  }

  /**
   * Read-modify-write of the session record, retried on concurrent change.
   *
   * A change of nothing but usage, stats and `updated_at` (the harness after each model call) is
   * written to the session's usage item alone: the head, and with it the tenant's index entry,
   * is written only when something else changes (its status, above all), so the tenant's index
   * partition takes two writes per turn (running, idle) however many model calls the turn makes.
   */
  async mutate(who: Principal, id: string, change: (s: Session) => Session | null): Promise<Session> {
    return (await this.mutateFrom(who, id, change)).data;
  }

  /**
   * `mutate`, starting from `known` (a snapshot the caller holds, with no read first) when given,
   * and answering the snapshot written. Only the harness passes one, and only of a session whose
   * lease it holds: a head change is conditional on the snapshot's revision (a stale one is read
   * again and the change applied anew); a usage-only change is not, and the harness, the usage
   * item's one writer, computes usage from its log alone.
   */
  async mutateFrom(who: Principal, id: string, change: (s: Session) => Session | null, known?: SessionSnapshot): Promise<SessionSnapshot> {
    for (let attempt = 0; ; attempt++) {
      const item = attempt === 0 && known ? known : await this.head(who, id);
      const next = change(item.data);
      if (next === null) return item;
      if (onlyUsageDiffers(item.data, next)) {
        await heads.putUsage(this.table, id, usageOf(next));
        return { ...item, data: next };
      }
      // Usage that changes with something else: the usage item first, which readers prefer.
      if (!sameUsage(item.data, next)) await heads.putUsage(this.table, id, usageOf(next));
      try {
        const rev = Number(item.rev) + 1;
        await heads.replace(this.table, item, { rev, data: next }, { ifEquals: { rev: item.rev } });
        return { ...item, rev, data: next };
      } catch (err) {
        if (!(err instanceof ConditionFailedError) || attempt > 20) throw err;
      }
    }
  }

  update(tenant: string, id: string, params: SessionUpdate, now = new Date()): Promise<Session> {
    if (params.vault_ids !== undefined) throw new InvalidRequestError("vault_ids: changing a session's vaults is not supported by Corral; they can only be set when the session is created");
    return this.mutate(tenantPrincipal(tenant), id, (s) => {
      const next = {
        ...s,
        agent: params.agent === undefined ? s.agent : this.updateAgent(s, params.agent, now),
        title: params.title === undefined ? s.title : params.title,
        metadata: patchMetadata(s.metadata, params.metadata),
        budget: params.budget === undefined ? s.budget : params.budget,
        updated_at: nowIso(now),
      };
      assertRecordFits('session', next);
      return next;
    });
  }

  /**
   * `agent` on a session update: only `tools` and `mcp_servers` change mid-session, each replaced
   * whole when given, and only while the session is not running (the next turn sees them). The
   * same rules as an agent update check them (an `mcp_toolset` must name a listed server).
   */
  private updateAgent(s: Session, update: NonNullable<SessionUpdate['agent']>, now: Date): SessionAgent {
    if (s.status === 'running') throw new InvalidRequestError(`agent: session ${s.id} is running; its tools can change once it is idle`);
    if (update.tools === undefined && update.mcp_servers === undefined) return s.agent;
    const current = { ...s.agent, metadata: {}, multiagent: null, created_at: s.created_at, updated_at: s.updated_at, archived_at: null } as Agent;
    const next = this.agents.preview(current, { tools: update.tools, mcp_servers: update.mcp_servers }, now);
    return { ...s.agent, tools: next.tools, mcp_servers: next.mcp_servers };
  }

  archive(tenant: string, id: string, now = new Date()): Promise<Session> {
    return this.mutate(tenantPrincipal(tenant), id, (s) => (s.archived_at ? null : { ...s, archived_at: nowIso(now), updated_at: nowIso(now) }));
  }

  /**
   * Remove the session, its output files (metadata and bytes), its history, its repository
   * tokens and (through `onDelete`) its sandboxes. The files go before the head, so a deletion
   * that fails halfway can be retried (the session is still there to find them); they are looked
   * for again once the sandboxes are stopped, for an output a call in flight catalogued meanwhile.
   */
  async delete(tenant: string, id: string, onDelete?: (id: string) => Promise<void>) {
    const head = await this.head(tenantPrincipal(tenant), id);
    // A coordinator's threads go with it, each as a session (its record, log and sandboxes), first.
    // (Only a coordinator's log is read for them: any other session has none.)
    const threads = head.data.thread_roster
      ? (await this.log.getEvents(id)).flatMap((s) => (s.event.type === 'session.thread_created' ? [s.event.session_thread_id] : []))
      : [];
    for (const thread of new Set(threads)) {
      if (await heads.getWithUsage(this.table, tenantPrincipal(tenant), thread, [])) await this.delete(tenant, thread, onDelete);
    }
    await this.files?.deleteSessionFiles?.(tenant, id);
    await heads.delete(this.table, id);
    for (const ref of head.git_credentials ?? []) {
      await this.credentials?.secrets?.deleteSecret(ref.secret_ref);
    }
    await this.log.deleteAll(id);
    await onDelete?.(id);
    await this.files?.deleteSessionFiles?.(tenant, id);
    // Last, once the head is gone (a harness waking now finds the session gone and stops) and
    // its sandboxes and files are released: what is left in its partition (usage, cursor, lease,
    // interrupt signal, sandbox records, preview chunks).
    await sessionPartition.sweep(this.table, id);
    return { id, type: 'session_deleted' as const };
  }

  async list(
    tenant: string,
    params: ListParams & {
      include_archived?: boolean;
      agent_id?: string;
      agent_version?: number;
      statuses?: SessionStatus[];
      created_at?: CreatedAtRange;
    },
  ): Promise<BidirectionalListResult<Session>> {
    if (params.agent_version !== undefined && !params.agent_id) throw new InvalidRequestError('agent_version: only applies with agent_id');
    const created = createdAtFilter(params.created_at);
    const page = await collectBidirectionalPage(
      (q) => heads.page(this.table, tenant, q),
      params,
      (item) => item.gsi1sk,
      (item) => {
        const s = item.data;
        if (s.thread_of) return false; // a session thread's record (core/threads/)
        if (!params.include_archived && s.archived_at) return false;
        if (params.agent_id && s.agent.id !== params.agent_id) return false;
        if (params.agent_version !== undefined && s.agent.version !== params.agent_version) return false;
        if (!created(s.created_at)) return false;
        if (params.statuses?.length && !params.statuses.includes(s.status)) return false;
        return true;
      },
      // The head and its usage item come from one batch get (a running session's usage is in its usage item).
      (item) => withUsage(item.data, item.listed_usage),
    );
    return page;
  }

  /**
   * Append user events in order and wake the harness. Accepted in any status but terminated.
   *
   * Two round trips before the wake: the session and the log's last position are read together
   * (the position is used only once the session is found and the caller may write to it), then
   * each event is written at the next position; one that finds its position taken (the harness
   * appended meanwhile) is appended at the tail instead, as `emitEvent` does.
   */
  async send(tenant: string, id: string, events: UserEvent[], now = new Date()): Promise<SessionEvent[]> {
    const tail = this.log.lastPosition(id);
    tail.catch(() => undefined); // awaited below unless the session is refused first
    const session = await this.get(tenantPrincipal(tenant), id);
    if (session.archived_at) throw new InvalidRequestError(`session ${id} is archived`);
    if (session.status === 'terminated') throw new InvalidRequestError(`session ${id} is terminated`);
    await this.assertAnswersOpenCalls(id, events);
    const made = events.map((body) => userEvent(body, now));
    // An outcome is on the session record before its event is in the log, so that the harness,
    // which moves the entry on as it evaluates, always finds it there.
    if (made.some((e) => e.type === 'user.define_outcome')) {
      await this.mutate(tenantPrincipal(tenant), id, (s) => withOutcomes(s, made, 'events'));
    }
    const stored: SessionEvent[] = [];
    let position = await tail;
    try {
      for (const event of made) {
        position = (await this.appendNext(id, event, position + 1)).position;
        stored.push(event);
      }
    } catch (err) {
      // An outcome whose event never made it into the log would stay `pending` for ever (and
      // refuse the next): its entry goes again.
      const lost = new Set(made.filter((e) => !stored.includes(e)).flatMap((e) => (e.type === 'user.define_outcome' ? [e.outcome_id] : [])));
      if (lost.size) {
        await this.mutate(tenantPrincipal(tenant), id, (s) => ({ ...s, outcome_evaluations: s.outcome_evaluations.filter((o) => !lost.has(o.outcome_id)) })).catch(() => undefined);
      }
      throw err;
    }
    // After the append, so a harness that sees the signal change (or the wake) finds the events
    // in the log; the signal and the wake do not depend on each other.
    const interrupt = stored.some((e) => e.type === 'user.interrupt');
    await Promise.all([interrupt ? interruptSignals.raise(this.table, id) : undefined, this.queue.wake(id)]);
    return stored;
  }

  /** `event` at `position` if it is free, else at the tail of the log. */
  private async appendNext(id: string, event: SessionEvent, position: number) {
    try {
      return await this.log.emitEvent(id, event, { position });
    } catch (err) {
      if (!(err instanceof PositionConflictError)) throw err;
      return this.log.emitEvent(id, event);
    }
  }

  /**
   * A `user.tool_confirmation` must answer a tool call that waits for one, and a
   * `user.custom_tool_result` a custom tool call that waits for its result (400 naming the id
   * otherwise), each once. The calls still open are the harness's fold of the log (`open`),
   * continued from its saved cursor to the end of the log, so this reads only the recent tail.
   */
  private async assertAnswersOpenCalls(id: string, events: UserEvent[]): Promise<void> {
    if (!events.some((e) => e.type === 'user.tool_confirmation' || e.type === 'user.custom_tool_result')) return;
    // The harness's cursor (storage/cursor.ts): derived, may be absent or of another version.
    let state = (await readCursor<TurnState>(this.table, id)) ?? initialState();
    for (;;) {
      const fresh = await this.log.getEvents(id, { from: state.position + 1, limit: 500 });
      state = foldEvents(state, fresh);
      if (fresh.length < 500) break;
    }
    const answered = new Set<string>();
    events.forEach((e, i) => {
      if (e.type === 'user.tool_confirmation') {
        const call = state.open.find((t) => t.id === e.tool_use_id && t.permission === 'ask' && !t.confirmation);
        if (!call || answered.has(e.tool_use_id)) {
          throw new InvalidRequestError(`events.${i}.tool_use_id: ${e.tool_use_id} is not a tool call of session ${id} waiting for confirmation`);
        }
        answered.add(e.tool_use_id);
      } else if (e.type === 'user.custom_tool_result') {
        const call = state.open.find((t) => t.id === e.custom_tool_use_id && t.type === 'agent.custom_tool_use');
        if (!call || answered.has(e.custom_tool_use_id)) {
          throw new InvalidRequestError(`events.${i}.custom_tool_use_id: ${e.custom_tool_use_id} is not a custom tool call of session ${id} waiting for its result`);
        }
        answered.add(e.custom_tool_use_id);
      }
    });
  }

  /**
   * Fork (Corral extension): a new session whose log is a copy of this one's up to `upTo`
   * (inclusive; default: all of it), with fresh event ids and references rewritten to them. The
   * two share nothing mutable: not the log, not a sandbox. The new session continues from where
   * the copy ends.
   *
   * `seed` runs once the fork exists and before it is woken (the API seeds the fork's sandboxes
   * from the source's workspaces there): a wake before it could start a sandbox from its recipe
   * instead of from the copy. It must not throw (`SandboxManager.seedFork` never does).
   */
  async fork(
    tenant: string,
    id: string,
    opts: { upTo?: number; title?: string | null; seed?: (forkId: string) => Promise<unknown> } = {},
    now = new Date(),
  ): Promise<Session> {
    const source = await this.get(tenantPrincipal(tenant), id);
    const last = await this.log.lastPosition(id);
    const upTo = opts.upTo ?? last;
    if (!Number.isInteger(upTo) || upTo < 0 || upTo > last) {
      throw new InvalidRequestError(`up_to_position: must be an event position from 0 to ${last}`);
    }
    const copied = upTo > 0 ? await this.log.getEvents(id, { from: 1, to: upTo + 1 }) : [];
    const newId_ = newId(ID_PREFIX.session, now.getTime());
    const ids = new Map(copied.map((e) => [e.event.id, newId(ID_PREFIX.event, Date.parse(e.event.processed_at) || now.getTime())]));
    const remap = (event: SessionEvent) => remapEventIds(event, (ref) => ids.get(ref) ?? ref);
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
      outcome_evaluations: outcomesOfLog(copied),
      created_at: nowIso(now),
      updated_at: nowIso(now),
      archived_at: null,
      forked_from: { session_id: id, position: upTo },
    };
    // The fork's repository tokens are copies, so that deleting either session leaves the other's.
    const sourceRefs = (await this.head(tenantPrincipal(tenant), id)).git_credentials ?? [];
    const gitCredentials = sourceRefs.map((r) => ({ ...r, secret_ref: repositorySecretRef(tenant, newId_, r.resource_id) }));
    if (sourceRefs.length && !this.credentials?.secrets) {
      throw new CredentialProxyUnavailableError('no credential proxy is configured on this deployment: repository tokens cannot be copied');
    }
    // As in `create`: the copies first, the session record last, and all of it removed again if a
    // write fails, so a failed fork leaves nothing behind.
    let copiedSecrets = 0;
    let headWritten = false;
    try {
      for (let i = 0; i < sourceRefs.length; i++) {
        await this.credentials!.secrets!.copySecret(sourceRefs[i].secret_ref, gitCredentials[i].secret_ref);
        copiedSecrets++;
      }
      for (const stored of copied) {
        await this.log.emitEvent(newId_, remap(stored.event), { position: stored.position });
      }
      // A batch cut by the fork point is completed here: the copies carry no batch head to finish it from.
      let position = upTo;
      for (const e of missingBatchEvents(copied)) await this.log.emitEvent(newId_, remap(e), { position: ++position });
      await heads.put(this.table, tenant, session, { rev: 0, ...(gitCredentials.length ? { git_credentials: gitCredentials } : {}) }, { ifNotExists: true });
      headWritten = true;
      if (opts.seed) await opts.seed(newId_);
      await this.queue.wake(newId_);
    } catch (err) {
      if (headWritten) await heads.delete(this.table, newId_).catch(() => undefined);
      await this.log.deleteAll(newId_).catch(() => undefined);
      for (const ref of gitCredentials.slice(0, copiedSecrets)) await this.credentials?.secrets?.deleteSecret(ref.secret_ref).catch(() => undefined);
      throw err;
    }
    return session;
  }

  /**
   * Corral extension (`corral import`): a session log from an export, written as an archived,
   * read-only copy under a new id in `tenant`'s account. The agent and environment it names must
   * be the tenant's (the import's own copies); the events get new ids (references between them
   * rewritten, as in a fork) and positions 1, 2, 3, ... in the order given. Nothing wakes it, and
   * an archived session takes no events, so the copy can only be read. The caller has validated
   * and bounded `events` (api/imports.ts): each is an object of a known event type.
   */
  async importArchived(
    tenant: string,
    params: { agent_id: string; agent_version?: number; environment_id: string; title: string | null; metadata: Record<string, string>; source: { session_id: string; created_at: string }; events: SessionEvent[] },
    now = new Date(),
  ): Promise<Session> {
    const agent = await this.agents.get(tenant, params.agent_id, params.agent_version).catch((err) => {
      if (err instanceof NotFoundError) throw new InvalidRequestError(`agent_id: ${err.message}`);
      throw err;
    });
    const env = await this.environments.get(tenant, params.environment_id).catch((err) => {
      if (err instanceof NotFoundError) throw new InvalidRequestError(`environment_id: ${err.message}`);
      throw err;
    });
    const id = newId(ID_PREFIX.session, now.getTime());
    const ids = new Map<string, string>();
    for (const e of params.events) {
      if (ids.has(e.id)) throw new InvalidRequestError(`events: event id ${e.id} occurs twice`);
      ids.set(e.id, newId(ID_PREFIX.event, Date.parse(e.processed_at) || now.getTime()));
    }
    // A reference to an event not in the import is left pointing nowhere (a fresh id), never at
    // an event of another session.
    const to = (ref: string) => ids.get(ref) ?? newId(ID_PREFIX.event, now.getTime());
    const session: Session = {
      id,
      type: 'session',
      status: 'idle',
      agent: pinAgent(agent),
      environment_id: env.id,
      title: params.title,
      metadata: params.metadata,
      resources: [],
      vault_ids: [],
      budget: null,
      outcome_evaluations: [],
      stats: {},
      usage: {},
      created_at: nowIso(now),
      updated_at: nowIso(now),
      archived_at: nowIso(now),
      imported_from: { session_id: params.source.session_id, created_at: params.source.created_at, events: params.events.length },
    };
    assertRecordFits('session', session);
    try {
      let position = 0;
      for (const e of params.events) await this.log.emitEvent(id, remapEventIds(e, to), { position: ++position });
      // The head last: until it is there, the session does not exist for anyone.
      await heads.put(this.table, tenant, session, { rev: 0 }, { ifNotExists: true });
    } catch (err) {
      await this.log.deleteAll(id).catch(() => undefined);
      throw err;
    }
    return session;
  }

  // --- resources (`client.beta.sessions.resources`) -----------------------------------------------

  /** One page always: at most 20 resources of a few KB each (no token), far under the page budget. */
  async listResources(tenant: string, id: string): Promise<ListResult<SessionResource>> {
    const session = await this.get(tenantPrincipal(tenant), id);
    return { data: session.resources as SessionResource[], next_page: null };
  }

  async getResource(tenant: string, id: string, resourceId: string): Promise<SessionResource> {
    const session = await this.get(tenantPrincipal(tenant), id);
    const r = (session.resources as SessionResource[]).find((x) => x.id === resourceId);
    if (!r) throw new NotFoundError(`resource ${resourceId} not found in session ${id}`);
    return r;
  }

  /**
   * `resources.add`: a file, mounted read-only in the session's sandboxes from their next tool call
   * on (the sandbox manager hands it to a running one then). Refused once the session is terminated.
   */
  async addResource(tenant: string, id: string, params: FileResourceParam, now = new Date()): Promise<SessionResource> {
    let added: SessionResource | undefined;
    await this.mutateChecked(tenant, id, async (s) => {
      if (s.status === 'terminated') throw new InvalidRequestError(`session ${id} is terminated`);
      if (s.archived_at) throw new InvalidRequestError(`session ${id} is archived`);
      const resources = s.resources as SessionResource[];
      if (resources.length >= MAX_RESOURCES) throw new InvalidRequestError(`resources: a session holds at most ${MAX_RESOURCES}`);
      added = await this.fileResource(tenant, params, 'body', resources, now);
      return { ...s, resources: [...resources, added], updated_at: nowIso(now) };
    });
    return added!;
  }

  /**
   * `resources.delete`: a file resource leaves the session (its sandboxes lose the mount at their
   * next tool call; the file itself stays in the Files API). Repository resources stay: their clone
   * is the sandbox's workspace, which removing the resource could not undo.
   */
  async deleteResource(tenant: string, id: string, resourceId: string, now = new Date()): Promise<{ id: string; type: 'session_resource_deleted' }> {
    await this.mutateChecked(tenant, id, async (s) => {
      const resources = s.resources as SessionResource[];
      const r = resources.find((x) => x.id === resourceId);
      if (!r) throw new NotFoundError(`resource ${resourceId} not found in session ${id}`);
      if (r.type !== 'file') throw new InvalidRequestError(`resource ${resourceId} is a ${r.type}: only file resources can be removed from a session`);
      return { ...s, resources: resources.filter((x) => x.id !== resourceId), updated_at: nowIso(now) };
    });
    return { id: resourceId, type: 'session_resource_deleted' };
  }

  /** Read-modify-write of the head with an async change, conditional on its revision (retried). */
  private async mutateChecked(tenant: string, id: string, change: (s: Session) => Promise<Session>): Promise<Session> {
    for (let attempt = 0; ; attempt++) {
      const item = await this.head(tenantPrincipal(tenant), id);
      const next = await change(item.data);
      assertRecordFits('session', next);
      try {
        await heads.replace(this.table, item, { rev: Number(item.rev) + 1, data: next }, { ifEquals: { rev: item.rev } });
        return next;
      } catch (err) {
        if (!(err instanceof ConditionFailedError) || attempt > 20) throw err;
      }
    }
  }

  /** Rotate a repository's token: it goes to the proxy; the resource only changes `updated_at`. */
  async updateResource(tenant: string, id: string, resourceId: string, params: SessionResourceUpdate, now = new Date()): Promise<SessionResource> {
    for (let attempt = 0; ; attempt++) {
      const item = await this.head(tenantPrincipal(tenant), id);
      const session = item.data;
      const resources = session.resources as SessionResource[];
      const r = resources.find((x) => x.id === resourceId);
      if (!r) throw new NotFoundError(`resource ${resourceId} not found in session ${id}`);
      if (r.type !== 'github_repository') throw new InvalidRequestError(`resource ${resourceId} is a ${r.type}: only github_repository resources take an authorization_token`);
      const url = String(r.url);
      if (!/^https?:\/\//i.test(url)) throw new InvalidRequestError('authorization_token: needs an http(s) repository url');
      if (!this.credentials?.secrets) throw new CredentialProxyUnavailableError('no credential proxy is configured on this deployment: repository tokens cannot be stored');
      const refs = (item.git_credentials ?? []).filter((x) => x.resource_id !== resourceId);
      const ref: RepositoryCredentialRef = { resource_id: resourceId, url: normalizeRepositoryUrl(url), secret_ref: repositorySecretRef(tenant, id, resourceId) };
      await this.storeToken(ref.secret_ref, params.authorization_token);
      const updated = { ...r, updated_at: nowIso(now) };
      const next: Session = { ...session, resources: resources.map((x) => (x.id === resourceId ? updated : x)), updated_at: nowIso(now) };
      try {
        await heads.replace(this.table, item, { rev: Number(item.rev) + 1, data: next, git_credentials: [...refs, ref] }, { ifEquals: { rev: item.rev } });
        return updated;
      } catch (err) {
        if (!(err instanceof ConditionFailedError) || attempt > 20) throw err;
      }
    }
  }

  /**
   * The record a session thread runs on (core/threads/threads.ts): a session of the parent's
   * tenant and environment, running the roster agent `agentKey` (its name or id) at the pinned
   * version. Idempotent: the id is derived from the spawning call, and a second create finds the
   * first's record. Answers the thread's record.
   */
  async createThreadRecord(who: SystemPrincipal, parentId: string, threadId: string, agentKey: string, now = new Date()): Promise<Session> {
    const parent = await this.head(who, parentId);
    const existing = await heads.getWithUsage(this.table, who, threadId, []);
    if (existing) return existing.head.data;
    const entry = parent.data.thread_roster?.find((r) => r.name === agentKey || r.id === agentKey);
    if (!entry) throw new InvalidRequestError(`agent ${JSON.stringify(agentKey.slice(0, 100))} is not in this agent's multiagent roster`);
    const agent = await this.agents.get(parent.tenant, entry.id, entry.version);
    const pinned = pinAgent(agent);
    const thread: Session = {
      id: threadId,
      type: 'session',
      status: 'idle',
      // A roster agent has no roster of its own (depth limit 1), except `self`, which runs without one.
      agent: { ...pinned, multiagent: null },
      environment_id: parent.data.environment_id,
      title: null,
      metadata: {},
      resources: [],
      vault_ids: parent.data.vault_ids,
      budget: null,
      outcome_evaluations: [],
      stats: {},
      usage: {},
      created_at: nowIso(now),
      updated_at: nowIso(now),
      archived_at: null,
      thread_of: { session_id: parentId, agent_name: agent.name, tenant: parent.tenant },
    };
    try {
      await heads.put(this.table, parent.tenant, thread, { rev: 0 }, { ifNotExists: true });
    } catch (err) {
      if (!(err instanceof ConditionFailedError)) throw err;
      return (await this.head(who, threadId)).data;
    }
    return thread;
  }

  /** Every session id of every tenant that is not terminated (start-up recovery of the local runtime). */
  async activeSessionIds(who: SystemPrincipal): Promise<string[]> {
    const items = await heads.all(this.table, who);
    return items.filter((i) => i.data.status !== 'terminated').map((i) => i.data.id);
  }
}
