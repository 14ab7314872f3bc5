import { CorralError, InvalidRequestError, NotFoundError } from '../errors.js';
import { newId } from '../ids.js';
import type { DeploymentCreate, DeploymentUpdate, ScheduleParams } from '../api/deployment-schemas.js';
import type { SessionCreate } from '../api/schemas.js';
import type { AgentService } from '../resources/agents.js';
import type { EnvironmentService } from '../resources/environments.js';
import type { SessionService } from '../resources/sessions.js';
import { assertRecordFits, nowIso, patchMetadata } from '../resources/common.js';
import { collectPage, createdAtFilter, type CreatedAtRange, type ListParams, type ListResult } from '../resources/paging.js';
import { RateLimitedError } from '../resources/rate-limits.js';
import { DeploymentRecords, DeploymentRunRecords } from '../storage/deployment-items.js';
import { tenantPrincipal } from '../storage/principal.js';
import type { StateTable } from '../store.js';
import type { VaultService } from '../vault/vaults.js';
import type { WebhookPublisher } from '../webhooks/publish.js';
import { matches, nextRuns, parseCron } from './cron.js';

/** Id prefixes of deployments and their runs, as the hosted API spells them. */
export const DEPLOYMENT_ID_PREFIX = 'depl';
export const DEPLOYMENT_RUN_ID_PREFIX = 'drun';

/** How many upcoming runs a deployment lists (`schedule.upcoming_runs_at`). */
export const UPCOMING_RUNS = 5;

export interface DeploymentSchedule {
  type: 'cron';
  expression: string;
  timezone: string;
  last_run_at: string | null;
  upcoming_runs_at: string[];
}

export type PausedReason = { type: 'manual' } | { type: 'error'; error: { type: string } };

/** A deployment as the API returns it (`BetaManagedAgentsDeployment`). */
export interface Deployment {
  id: string;
  type: 'deployment';
  name: string;
  description: string | null;
  agent: { type: 'agent'; id: string; version: number };
  environment_id: string;
  initial_events: DeploymentCreate['initial_events'];
  metadata: Record<string, string>;
  resources: NonNullable<DeploymentCreate['resources']>;
  vault_ids: string[];
  budget?: DeploymentCreate['budget'];
  schedule: DeploymentSchedule | null;
  status: 'active' | 'paused';
  paused_reason: PausedReason | null;
  created_at: string;
  updated_at: string;
  archived_at: string | null;
}

export interface RunError {
  type: string;
  message: string;
}

/** A deployment run as the API returns it (`BetaManagedAgentsDeploymentRun`). */
export interface DeploymentRun {
  id: string;
  type: 'deployment_run';
  deployment_id: string;
  agent: { type: 'agent'; id: string; version: number };
  session_id: string | null;
  error: RunError | null;
  trigger_context: { type: 'schedule'; scheduled_at: string } | { type: 'manual' };
  created_at: string;
}

/**
 * Where deployments' schedules are armed: the in-process scheduler locally
 * (local-runtime/deployment-scheduler.ts), EventBridge Scheduler on AWS
 * (adapters/aws/deployment-schedules.ts). Told of every change; it arms the deployment's schedule
 * when it has one and is active and not archived, and disarms it otherwise.
 */
export interface DeploymentSchedules {
  /**
   * `since`: the schedule clock's time when the change was made, from which the deployment's
   * upcoming runs were computed; the first tick armed is the first occurrence after it, so the
   * first run listed is the first run made.
   */
  sync(deployment: Deployment, since: number): Promise<void>;
}

/** What the stored deployment keeps of its schedule: computed fields are filled in on every read. */
type StoredSchedule = Pick<DeploymentSchedule, 'type' | 'expression' | 'timezone'>;

/**
 * Run errors that pause the deployment when a scheduled run meets them: the template refers to
 * something gone, so every later fire would fail the same way. A rate limit, a rejected request
 * and an unknown error (a failed write, a timeout) do not: the next fire may succeed.
 */
const PAUSING_ERRORS = new Set([
  'agent_archived_error',
  'environment_archived_error',
  'environment_not_found_error',
  'vault_not_found_error',
  'vault_archived_error',
  'file_not_found_error',
  'session_resource_not_found_error',
]);

/** The run error a failed session create maps to (`BetaManagedAgentsDeploymentRun.error`). */
export function runErrorOf(err: unknown): RunError {
  if (err instanceof RateLimitedError) return { type: 'session_rate_limited_error', message: err.message };
  if (err instanceof CorralError && err.status === 400) {
    const m = err.message;
    const type = /^agent: .*archived/.test(m)
      ? 'agent_archived_error'
      : /^agent: /.test(m)
        ? 'agent_archived_error'
        : /^environment_id: .*archived/.test(m)
          ? 'environment_archived_error'
          : /^environment_id: /.test(m)
            ? 'environment_not_found_error'
            : /^vault_ids: .*archived/.test(m)
              ? 'vault_archived_error'
              : /^vault_ids: .*not found/.test(m)
                ? 'vault_not_found_error'
                : /file .*not found/.test(m)
                  ? 'file_not_found_error'
                  : 'session_creation_rejected_error';
    return { type, message: m };
  }
  // Anything else is Corral's own failure; its text stays in the logs, not in the record.
  return { type: 'unknown_error', message: 'the session could not be created; the next run may succeed' };
}

export interface DeploymentServiceOptions {
  /** The clock of schedules (upcoming runs); the local runtime's may be time-scaled. @default Date.now */
  clock?: () => number;
  logger?: { warn(msg: string, fields?: Record<string, unknown>): void };
  /**
   * Webhook events of what the scheduler does (the API's own calls publish theirs in
   * api/webhooks.ts): `deployment_run.started` and then `.succeeded` or `.failed` for every run,
   * `session.created` for the session a run starts, `deployment.paused` when an error pauses it.
   */
  webhooks?: WebhookPublisher;
}

/**
 * `client.beta.deployments` and `client.beta.deploymentRuns`: deployments (a session template, an
 * optional cron schedule), and the runs that start a session from the template.
 *
 * At most one run per scheduled time: `fire` claims `(deployment, scheduled time)` with a
 * conditional write before it creates the session, so a scheduler that fires twice (EventBridge
 * Scheduler delivers at least once; two local timers) starts one session. A process that dies
 * between the claim and the session's creation loses that run (none is retried): at most once,
 * never twice. A manual run (`run`) claims a key of its own.
 */
export class DeploymentService {
  private readonly heads: DeploymentRecords<Deployment>;
  private readonly runs: DeploymentRunRecords<DeploymentRun>;
  private readonly clock: () => number;
  /** Where schedules are armed; set by the runtime that owns one (none: schedules are stored, never fired). */
  schedules?: DeploymentSchedules;

  constructor(
    table: StateTable,
    private readonly agents: AgentService,
    private readonly environments: EnvironmentService,
    private readonly sessions: SessionService,
    private readonly vaults: VaultService | undefined,
    private readonly opts: DeploymentServiceOptions = {},
  ) {
    this.heads = new DeploymentRecords(table);
    this.runs = new DeploymentRunRecords(table);
    this.clock = opts.clock ?? Date.now;
  }

  // --- deployments ------------------------------------------------------------------------------

  private async resolveAgent(tenant: string, ref: DeploymentCreate['agent']): Promise<Deployment['agent']> {
    const r = typeof ref === 'string' ? { id: ref, version: undefined } : ref;
    const agent = await this.agents.get(tenant, r.id, r.version).catch((err) => {
      if (err instanceof NotFoundError) throw new InvalidRequestError(`agent: ${err.message}`);
      throw err;
    });
    if (agent.archived_at) throw new InvalidRequestError(`agent: agent ${agent.id} is archived`);
    return { type: 'agent', id: agent.id, version: agent.version };
  }

  private async checkEnvironment(tenant: string, id: string): Promise<void> {
    const env = await this.environments.get(tenant, id).catch((err) => {
      if (err instanceof NotFoundError) throw new InvalidRequestError(`environment_id: ${err.message}`);
      throw err;
    });
    if (env.archived_at) throw new InvalidRequestError(`environment_id: environment ${env.id} is archived`);
  }

  private async checkVaults(tenant: string, ids: string[]): Promise<void> {
    if (!ids.length) return;
    if (!this.vaults) throw new InvalidRequestError('vault_ids: this deployment of Corral has no vaults');
    await this.vaults.assertUsable(tenant, ids);
  }

  /** The stored form of a schedule; the cron expression is normalized (trimmed) by the parse. */
  private static storedSchedule(s: ScheduleParams | null | undefined): StoredSchedule | null {
    if (!s) return null;
    const parsed = parseCron(s.expression, s.timezone);
    return { type: 'cron', expression: parsed.expression, timezone: parsed.timezone };
  }

  /** The deployment as the API shows it: its schedule's last and upcoming runs filled in. */
  private async view(d: Deployment, since = this.clock()): Promise<Deployment> {
    if (!d.schedule) return d;
    const s = parseCron(d.schedule.expression, d.schedule.timezone);
    const upcoming = d.archived_at ? [] : nextRuns(s, since, UPCOMING_RUNS).map((t) => new Date(t).toISOString());
    return { ...d, schedule: { ...d.schedule, last_run_at: await this.heads.lastRunAt(d.id), upcoming_runs_at: upcoming } };
  }

  private async save(tenant: string, d: Deployment, opts?: { ifNotExists?: boolean }): Promise<Deployment> {
    // Only the template and the schedule's own fields are stored; the computed ones are read fresh.
    const stored: Deployment = d.schedule
      ? { ...d, schedule: { type: 'cron', expression: d.schedule.expression, timezone: d.schedule.timezone, last_run_at: null, upcoming_runs_at: [] } }
      : d;
    assertRecordFits('deployment', stored);
    const since = this.clock();
    await this.heads.put(tenant, stored, opts);
    const shown = await this.view(stored, since);
    await this.schedules?.sync(shown, since);
    return shown;
  }

  async create(tenant: string, params: DeploymentCreate, now = new Date()): Promise<Deployment> {
    const agent = await this.resolveAgent(tenant, params.agent);
    await this.checkEnvironment(tenant, params.environment_id);
    await this.checkVaults(tenant, params.vault_ids ?? []);
    const schedule = DeploymentService.storedSchedule(params.schedule);
    const d: Deployment = {
      id: newId(DEPLOYMENT_ID_PREFIX, now.getTime()),
      type: 'deployment',
      name: params.name,
      description: params.description ?? null,
      agent,
      environment_id: params.environment_id,
      initial_events: params.initial_events,
      metadata: params.metadata ?? {},
      resources: params.resources ?? [],
      vault_ids: params.vault_ids ?? [],
      ...(params.budget ? { budget: params.budget } : {}),
      schedule: schedule && { ...schedule, last_run_at: null, upcoming_runs_at: [] },
      status: 'active',
      paused_reason: null,
      created_at: nowIso(now),
      updated_at: nowIso(now),
      archived_at: null,
    };
    return this.save(tenant, d, { ifNotExists: true });
  }

  private async stored(tenant: string, id: string): Promise<Deployment> {
    const d = await this.heads.get(tenantPrincipal(tenant), id);
    if (!d) throw new NotFoundError(`deployment ${id} not found`);
    return d;
  }

  async get(tenant: string, id: string): Promise<Deployment> {
    return this.view(await this.stored(tenant, id));
  }

  async update(tenant: string, id: string, params: DeploymentUpdate, now = new Date()): Promise<Deployment> {
    const current = await this.stored(tenant, id);
    if (current.archived_at) throw new InvalidRequestError(`deployment ${id} is archived`);
    const agent = params.agent !== undefined ? await this.resolveAgent(tenant, params.agent) : current.agent;
    if (params.environment_id !== undefined) await this.checkEnvironment(tenant, params.environment_id);
    if (params.vault_ids) await this.checkVaults(tenant, params.vault_ids);
    const next: Deployment = {
      ...current,
      name: params.name ?? current.name,
      // "send empty string or null to clear"
      description: params.description === undefined ? current.description : params.description || null,
      agent,
      environment_id: params.environment_id ?? current.environment_id,
      initial_events: params.initial_events ?? current.initial_events,
      metadata: patchMetadata(current.metadata, params.metadata),
      resources: params.resources === undefined ? current.resources : (params.resources ?? []),
      vault_ids: params.vault_ids === undefined ? current.vault_ids : (params.vault_ids ?? []),
      schedule:
        params.schedule === undefined
          ? current.schedule
          : params.schedule && { ...DeploymentService.storedSchedule(params.schedule)!, last_run_at: null, upcoming_runs_at: [] },
      updated_at: nowIso(now),
    };
    if (params.budget === null) delete next.budget;
    else if (params.budget !== undefined) next.budget = params.budget;
    return this.save(tenant, next);
  }

  async pause(tenant: string, id: string, now = new Date()): Promise<Deployment> {
    const current = await this.stored(tenant, id);
    if (current.archived_at) throw new InvalidRequestError(`deployment ${id} is archived`);
    if (current.status === 'paused') return this.view(current);
    return this.save(tenant, { ...current, status: 'paused', paused_reason: { type: 'manual' }, updated_at: nowIso(now) });
  }

  async unpause(tenant: string, id: string, now = new Date()): Promise<Deployment> {
    const current = await this.stored(tenant, id);
    if (current.archived_at) throw new InvalidRequestError(`deployment ${id} is archived`);
    if (current.status === 'active') return this.view(current);
    return this.save(tenant, { ...current, status: 'active', paused_reason: null, updated_at: nowIso(now) });
  }

  /** Archive: the schedule is disarmed for good; runs and `last_run_at` stay readable. */
  async archive(tenant: string, id: string, now = new Date()): Promise<Deployment> {
    const current = await this.stored(tenant, id);
    if (current.archived_at) return this.view(current);
    // "Archived deployments report `active` with `archived_at` set."
    return this.save(tenant, { ...current, status: 'active', paused_reason: null, archived_at: nowIso(now), updated_at: nowIso(now) });
  }

  async list(
    tenant: string,
    params: ListParams & { include_archived?: boolean; status?: 'active' | 'paused'; agent_id?: string; created_at?: CreatedAtRange },
  ): Promise<ListResult<Deployment>> {
    if (params.include_archived && params.status) throw new InvalidRequestError('status: cannot be combined with include_archived');
    const inRange = createdAtFilter(params.created_at);
    const page = await collectPage(
      (q) => this.heads.page(tenant, q),
      params,
      (item) => item.gsi1sk,
      ({ data: d }) =>
        (params.include_archived === true || !d.archived_at) &&
        (params.status === undefined || (d.status === params.status && !d.archived_at)) &&
        (params.agent_id === undefined || d.agent.id === params.agent_id) &&
        inRange(d.created_at),
      (item) => item.data,
    );
    return { ...page, data: await Promise.all(page.data.map((d) => this.view(d))) };
  }

  /** Every deployment of every tenant (the local scheduler's start-up). */
  async all(): Promise<Deployment[]> {
    return (await this.heads.all()).map((d) => d.data);
  }

  // --- runs -------------------------------------------------------------------------------------

  /** Run now (`POST /v1/deployments/{id}/run`): allowed while paused, not once archived. */
  async run(tenant: string, id: string, now = new Date()): Promise<DeploymentRun> {
    const d = await this.stored(tenant, id);
    if (d.archived_at) throw new InvalidRequestError(`deployment ${id} is archived`);
    return (await this.start(tenant, d, null, now)).run;
  }

  /**
   * The scheduler's trigger: start the run of `scheduledAt` (an ISO instant) unless it was started
   * already. Nothing starts when the deployment is gone, archived, paused or unscheduled, or when
   * `scheduledAt` is not an occurrence of its current schedule (a stale schedule's late fire).
   * Returns the run of that time (new or earlier), or null when nothing was to start.
   */
  async fire(deploymentId: string, scheduledAt: string, now = new Date()): Promise<{ run: DeploymentRun; started: boolean } | null> {
    const found = await this.heads.readForFire(deploymentId);
    if (!found) return null;
    const { tenant, data: d } = found;
    if (d.archived_at || d.status !== 'active' || !d.schedule) return null;
    const at = Date.parse(scheduledAt);
    if (Number.isNaN(at) || !matches(parseCron(d.schedule.expression, d.schedule.timezone), at)) return null;
    const result = await this.start(tenant, d, new Date(at).toISOString(), now);
    if (!result.started) return result;
    if (result.run.session_id) await this.heads.recordLastRun(d.id, result.run.created_at);
    else if (result.run.error && PAUSING_ERRORS.has(result.run.error.type)) {
      const latest = await this.heads.get(tenantPrincipal(tenant), d.id);
      if (latest && latest.status === 'active' && !latest.archived_at) {
        await this.save(tenant, { ...latest, status: 'paused', paused_reason: { type: 'error', error: { type: result.run.error.type } }, updated_at: nowIso(now) });
        await this.notify(tenant, 'deployment.paused', d.id);
      }
    }
    return result;
  }

  private async start(tenant: string, d: Deployment, scheduledAt: string | null, now: Date): Promise<{ run: DeploymentRun; started: boolean }> {
    const runId = newId(DEPLOYMENT_RUN_ID_PREFIX, now.getTime());
    const earlier = await this.heads.claim(d.id, scheduledAt, runId);
    if (earlier !== null) {
      const run = earlier ? await this.runs.get(tenantPrincipal(tenant), earlier) : undefined;
      // The earlier claimant may still be creating its session (or died doing it): nothing to show yet.
      return { run: run ?? this.runRecord(d, earlier, scheduledAt, now, null, { type: 'unknown_error', message: 'this scheduled time was claimed by another run that has not recorded its session' }), started: false };
    }
    let sessionId: string | null = null;
    let error: RunError | null = null;
    try {
      const params: SessionCreate = {
        agent: { type: 'agent', id: d.agent.id, version: d.agent.version },
        environment_id: d.environment_id,
        title: d.name,
        metadata: { deployment_id: d.id, deployment_run_id: runId },
        resources: d.resources,
        vault_ids: d.vault_ids,
        ...(d.budget ? { budget: d.budget } : {}),
        initial_events: d.initial_events,
      };
      sessionId = (await this.sessions.create(tenant, params, now)).id;
    } catch (err) {
      error = runErrorOf(err);
      if (error.type === 'unknown_error') this.opts.logger?.warn('deployment run: session create failed', { deployment_id: d.id, run_id: runId, error: (err as Error)?.message ?? String(err) });
    }
    const run = this.runRecord(d, runId, scheduledAt, now, sessionId, error);
    await this.runs.put(tenant, run);
    await this.notify(tenant, 'deployment_run.started', run.id);
    if (sessionId) await this.notify(tenant, 'session.created', sessionId);
    await this.notify(tenant, sessionId ? 'deployment_run.succeeded' : 'deployment_run.failed', run.id);
    return { run, started: true };
  }

  /** Publishes a webhook event; a failure is logged, never the run's (the run and its session exist). */
  private async notify(tenant: string, type: 'deployment_run.started' | 'deployment_run.succeeded' | 'deployment_run.failed' | 'deployment.paused' | 'session.created', id: string): Promise<void> {
    if (!this.opts.webhooks) return;
    try {
      await this.opts.webhooks.publish(tenant, type, { id });
    } catch (err) {
      this.opts.logger?.warn('webhook publish failed', { type, id, error: (err as Error)?.message ?? String(err) });
    }
  }

  private runRecord(d: Deployment, id: string, scheduledAt: string | null, now: Date, sessionId: string | null, error: RunError | null): DeploymentRun {
    return {
      id,
      type: 'deployment_run',
      deployment_id: d.id,
      agent: d.agent,
      session_id: sessionId,
      error,
      trigger_context: scheduledAt === null ? { type: 'manual' } : { type: 'schedule', scheduled_at: scheduledAt },
      created_at: nowIso(now),
    };
  }

  async getRun(tenant: string, id: string): Promise<DeploymentRun> {
    const run = await this.runs.get(tenantPrincipal(tenant), id);
    if (!run) throw new NotFoundError(`deployment run ${id} not found`);
    return run;
  }

  listRuns(
    tenant: string,
    params: ListParams & { deployment_id?: string; has_error?: boolean; trigger_type?: 'schedule' | 'manual'; created_at?: CreatedAtRange },
  ): Promise<ListResult<DeploymentRun>> {
    const inRange = createdAtFilter(params.created_at);
    return collectPage(
      (q) => this.runs.page(tenant, q),
      params,
      (item) => item.gsi1sk,
      ({ data: r }) =>
        (params.deployment_id === undefined || r.deployment_id === params.deployment_id) &&
        (params.has_error === undefined || (r.error !== null) === params.has_error) &&
        (params.trigger_type === undefined || r.trigger_context.type === params.trigger_type) &&
        inRange(r.created_at),
      (item) => item.data,
    );
  }
}
