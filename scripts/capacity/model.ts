/**
 * The capacity and cost model behind `npm run capacity`. Pure arithmetic: the deployed shape
 * (read from the synthesized template), the benchmark's per-step counts, a workload and a few
 * settings in; for each AWS limit its use at N sessions, the first to break, and the cost of a
 * session-hour out. No I/O.
 *
 * Every use is linear in the number of sessions, `base + perSession * N`, so the number of
 * sessions at which a limit breaks is `(quota - base) / perSession`. A session is either active
 * (it takes `turnsPerMinute` turns a minute) or idle (no turns, its event stream still open);
 * `idleFraction` of the N sessions are idle.
 *
 * Settings that describe what issue 20 proposes rather than what the template deploys are marked
 * `proposed`; a row whose number depends on one says so (`status: 'proposed'`). Settings that
 * bring back a design Corral has replaced (`interrupts=poll`, `sessionIndex=per-turn`), kept to
 * show what the change bought, mark theirs `former`. What the template deploys is read from it
 * (functions, stage throttle, rate limits and their shards, subnets, the sandbox task), not set here.
 */
import { shardPlan } from '../../lambdas/core/resources/rate-limits.js';
import { PREVIEW_LIMITS } from '../../lambdas/core/session/previews.js';
import type { DeployedShape } from './shape.js';
import type { Measured } from './measured.js';
import { CONSTANTS, PRICES, QUOTAS, type ConstantId, type PriceId, type QuotaId } from './sources.js';

export interface Workload {
  /** Concurrent sessions, each with an open event stream. */
  readonly sessions: number;
  /** Turns a minute of an active session. */
  readonly turnsPerMinute: number;
  /** Share of the sessions that are idle (stream open, no turns), 0-1. */
  readonly idleFraction: number;
  /** Tenants the sessions are spread over evenly (per-tenant limits). */
  readonly tenants: number;
  readonly modelCallsPerTurn: number;
  readonly modelCallSeconds: number;
  readonly toolCallsPerTurn: number;
  readonly toolCallSeconds: number;
}

/** What the model can vary beyond the template. Defaults describe the template as it deploys. */
export interface Settings {
  /**
   * `fargate`: the stream tier (infra/lib/constructs/stream-tier.ts: many SSE connections per
   * Fargate task, woken by the events table's DynamoDB stream); the template must have it (CDK
   * context `streamTier=fargate`, which `npm run capacity -- --context streamTier=fargate` passes on).
   */
  readonly streamTier: 'lambda' | 'fargate';
  /**
   * `signal` (deployed, lambdas/core/harness/interrupts.ts): a running harness reads the session's
   * interrupt signal item once a second and the log only when it moves, plus once per call.
   * `poll`: the former design, the log queried every 250 ms through every call.
   */
  readonly interrupts: 'poll' | 'signal';
  /**
   * `per-session` (deployed, lambdas/core/storage/items.ts SessionHeadRecords): the tenant's
   * session index holds a listing item per session, written at creation and deleted with the
   * session; no write a turn. Former designs, for comparison: `per-status`, the head in the index,
   * written on status changes (two a turn, where gsi1 carries the status); `per-turn`, 4 rewrites
   * of the session record a turn.
   */
  readonly sessionIndex: 'per-turn' | 'per-status' | 'per-session';
  /** Sandboxes on Fargate Spot (proposed). */
  readonly fargateSpot: boolean;
  /**
   * `events` (deployed where the template has the rule): task state from ECS's EventBridge events,
   * recorded in the state table, instead of DescribeTasks polling (`poll`, the former design).
   * @default - what the template deploys
   */
  readonly taskState?: 'poll' | 'events';
  /** Applied quota values where the account's differ from AWS's defaults (e.g. after increases). */
  readonly quotas: Partial<Record<QuotaId, number>>;
  /**
   * Usable addresses of an existing VPC's sandbox subnets (`vpcId`), which the template does not
   * describe. Where the template creates its subnets it says their size (CDK context
   * `sandboxCidrBlocks`), and the setting is refused.
   */
  readonly subnetIps?: number;
  /** Overrides of workload constants. */
  readonly constants: Partial<Record<ConstantId, number>>;
}

export const DEFAULT_SETTINGS: Settings = {
  streamTier: 'lambda',
  interrupts: 'signal',
  sessionIndex: 'per-session',
  fargateSpot: false,
  quotas: {},
  constants: {},
};

export const DEFAULT_WORKLOAD: Omit<Workload, 'sessions'> = {
  turnsPerMinute: 1,
  idleFraction: 0,
  tenants: CONSTANTS.tenants.value,
  modelCallsPerTurn: CONSTANTS.modelCallsPerTurn.value,
  modelCallSeconds: CONSTANTS.modelCallSeconds.value,
  toolCallsPerTurn: CONSTANTS.toolCallsPerTurn.value,
  toolCallSeconds: CONSTANTS.toolCallSeconds.value,
};

/** Settings that bring back a design Corral has replaced: the "former design" list. */
export function formerSettings(s: Settings, shape?: DeployedShape): string[] {
  const out: string[] = [];
  if (s.taskState === 'poll' && shape?.taskStateEvents) out.push('taskState=poll');
  if (s.interrupts !== 'signal') out.push(`interrupts=${s.interrupts}`);
  if (s.sessionIndex !== 'per-session') out.push(`sessionIndex=${s.sessionIndex}`);
  return out;
}

/** Which settings describe what is not built: the "proposed, not built" list. */
export function proposedSettings(s: Settings, shape: DeployedShape): string[] {
  const out: string[] = [];
  if (s.taskState === 'events' && !shape.taskStateEvents) out.push('taskState=events');
  if (s.fargateSpot && !shape.sandboxSpot) out.push('fargateSpot');
  return out;
}

/** What a row's number rests on: the template as deployed, a proposal, or a replaced design. */
export type Status = 'deployed' | 'proposed' | 'former';

export interface LimitRow {
  readonly id: string;
  readonly name: string;
  /** The quota applied (the default unless settings raised it). */
  readonly quota: number;
  readonly defaultQuota: number;
  readonly unit: string;
  /** Use independent of the number of sessions. */
  readonly base: number;
  /** Use per session (the mix of active and idle). */
  readonly perSession: number;
  /** Use at the workload's N sessions. */
  readonly used: number;
  /** used / quota. */
  readonly utilisation: number;
  /** Sessions at which use reaches the quota; Infinity if no session adds to it. */
  readonly breaksAt: number;
  readonly adjustable: boolean;
  readonly source: string;
  readonly status: Status;
  readonly note?: string;
}

export interface CostItem {
  readonly item: string;
  /** $ per active session-hour. */
  readonly active: number;
  /** $ per idle session-hour (stream open, no turns). */
  readonly idle: number;
  readonly prices: PriceId[];
  readonly how: string;
  readonly status: Status;
}

export interface FixedItem {
  readonly item: string;
  readonly perMonth: number;
  readonly prices: PriceId[];
  readonly status: Status;
}

export interface Comparison {
  readonly platform: string;
  readonly active: number;
  readonly idle: number;
  readonly fixedPerMonth: number;
  readonly how: string;
  readonly prices: PriceId[];
}

export interface CapacityReport {
  readonly workload: Workload;
  readonly settings: Settings;
  readonly proposed: string[];
  /** Settings that bring back a replaced design (for comparison). */
  readonly former: string[];
  readonly derived: Record<string, number>;
  readonly limits: LimitRow[];
  /** The limit with the fewest sessions to break; null if none depends on sessions. */
  readonly firstToBreak: { id: string; name: string; sessions: number } | null;
  readonly cost: {
    readonly items: CostItem[];
    readonly activePerSessionHour: number;
    readonly idlePerSessionHour: number;
    readonly fixed: FixedItem[];
    readonly fixedPerMonth: number;
    /** At N sessions with the workload's idle share, fixed costs spread over them (730 h a month). */
    readonly perSessionHourAtN: number;
  };
  readonly comparisons: Comparison[];
  /**
   * The interrupt watch on AWS, deployed (`signal`) and former (`poll`), for this workload: read
   * units and their cost per 1,000 running session-hours (hours inside a model or tool call, when
   * a harness watches) and per active session-hour.
   */
  readonly interrupts: Record<'signal' | 'poll', { rruPerRunningHour: number; dollarsPer1000RunningHours: number; rruPerActiveHour: number; dollarsPerActiveHour: number }>;
}

const HOURS_PER_MONTH = 730;

/** A limit row from its quota, base and per-session use. */
export function limitRow(
  r: Omit<LimitRow, 'used' | 'utilisation' | 'breaksAt' | 'defaultQuota' | 'quota'> & { quota: number; defaultQuota?: number },
  sessions: number,
): LimitRow {
  const used = r.base + r.perSession * sessions;
  const breaksAt = r.perSession > 0 ? Math.max(0, (r.quota - r.base) / r.perSession) : r.base > r.quota ? 0 : Infinity;
  return { ...r, defaultQuota: r.defaultQuota ?? r.quota, used, utilisation: r.quota > 0 ? used / r.quota : Infinity, breaksAt };
}

/** The limit that breaks first (fewest sessions); ties go to the earlier row. */
export function firstToBreak(rows: readonly LimitRow[]): LimitRow | null {
  let first: LimitRow | null = null;
  for (const r of rows) if (Number.isFinite(r.breaksAt) && (!first || r.breaksAt < first.breaksAt)) first = r;
  return first;
}

export interface ModelInput {
  readonly shape: DeployedShape;
  readonly measured: Measured;
  readonly workload: Workload;
  readonly settings?: Partial<Settings>;
}

export function capacity(input: ModelInput): CapacityReport {
  const { shape, measured: m, workload: w } = input;
  const s: Settings = { ...DEFAULT_SETTINGS, ...input.settings };
  validate(w, s);
  if (s.subnetIps !== undefined && shape.subnets.length > 0) {
    throw new RangeError('subnetIps: the template creates its sandbox subnets and says their size; size them with CDK context sandboxCidrBlocks (subnetIps stands for an existing VPC\'s subnets, vpcId)');
  }
  const c = (id: ConstantId) => s.constants[id] ?? CONSTANTS[id].value;
  const q = (id: QuotaId) => s.quotas[id] ?? QUOTAS[id].value;
  const N = w.sessions;
  const active = 1 - w.idleFraction;
  const idle = w.idleFraction;
  /** Per-session use from a rate per active session and a rate per idle session. */
  const mix = (perActive: number, perIdle = 0) => active * perActive + idle * perIdle;
  const proposedIf = (cond: boolean): Status => (cond ? 'proposed' : 'deployed');
  const taskEvents = (s.taskState ?? (shape.taskStateEvents ? 'events' : 'poll')) === 'events';
  const former = { interrupts: s.interrupts !== 'signal', sessionIndex: s.sessionIndex !== 'per-session', taskState: !taskEvents && shape.taskStateEvents };
  const taskStateProposed = taskEvents && !shape.taskStateEvents;
  /** A row's status: proposed if a proposed setting moves it, else former if a former one does. */
  const statusOf = (proposed: boolean, formerToo = false): Status => (proposed ? 'proposed' : formerToo ? 'former' : 'deployed');
  const lambdaStreams = s.streamTier === 'lambda';
  const harness = shape.functions.harness!;
  const api = shape.functions.api!;
  const streamFn = shape.functions.stream;
  if (lambdaStreams && !streamFn) throw new Error('the template has no stream function: use streamTier=fargate');
  const tier = shape.streamTier;
  if (!lambdaStreams && !tier) throw new Error('the template has no stream tier: synthesize it with --context streamTier=fargate');

  // ---- per active session ------------------------------------------------------------------
  const turnsPerSecond = w.turnsPerMinute / 60;
  const turnsPerHour = w.turnsPerMinute * 60;
  // One step per model call and one per tool call: the turn's start goes out with its first model
  // call (steps/start-turn.ts), so the benchmark's text-only turn is one step. Its calls, start
  // included, are what every step is charged (log_reads' steps_per_turn), which overstates the
  // later steps of a turn a little: they write no status.
  const stepsPerTurn = Math.max(1, w.modelCallsPerTurn + w.toolCallsPerTurn);
  const startsPerSecond = c('sandboxStartsPerActiveHour') / 3600;
  const startSecondsPerTurn = turnsPerHour > 0 ? (c('sandboxStartsPerActiveHour') * c('sandboxStartSeconds')) / turnsPerHour : 0;
  const modelSecondsPerTurn = w.modelCallsPerTurn * w.modelCallSeconds;
  const harnessSecondsPerTurn =
    modelSecondsPerTurn + w.toolCallsPerTurn * w.toolCallSeconds + stepsPerTurn * m.harnessOverheadSecondsPerStep + startSecondsPerTurn;
  const harnessConcurrency = turnsPerSecond * harnessSecondsPerTurn;
  const apiRps = turnsPerSecond * c('apiRequestsPerTurn');
  const apiConcurrency = apiRps * c('apiRequestSeconds');
  const proxyConcurrency = turnsPerSecond * c('credentialCallsPerTurn') * 0.2;
  const streamTimeout = streamFn?.timeoutSeconds ?? 900;
  // Both tiers end a stream before API Gateway's 15-minute cut; the client reconnects.
  const reconnectsPerSecond = 1 / streamTimeout;
  const modelCallFraction = turnsPerSecond * modelSecondsPerTurn; // share of time in a model call
  // Interrupts: a harness watches for one through every model and tool call (interrupts.ts).
  const watchedFraction = turnsPerSecond * (modelSecondsPerTurn + w.toolCallsPerTurn * w.toolCallSeconds);
  const watchedCallsPerSecond = turnsPerSecond * (w.modelCallsPerTurn + w.toolCallsPerTurn);
  const interruptReads = {
    // a signal read a second, and per call one signal read and one log query (1 RRU each)
    signal: { state: watchedFraction * c('signalReadsPerSecond') + watchedCallsPerSecond * (c('interruptReadsPerCall') - 1), events: watchedCallsPerSecond },
    // the former design: the log queried every 250 ms (1 RRU: a few events at most)
    poll: { state: 0, events: watchedFraction * c('interruptPollsPerSecond') },
  };
  const interruptLogReads = interruptReads[s.interrupts].events;
  const interruptSignalReads = interruptReads[s.interrupts].state;
  // The stream function polls the log every second; a stream tier connection reads it when the
  // events stream says its session grew (about once per event written) and every 30 s regardless.
  const streamReads = lambdaStreams
    ? c('streamPollsPerSecond')
    : 1 / c('streamTierLogPollSeconds') + turnsPerSecond * stepsPerTurn * m.eventWritesPerStep;
  const idleStreamReads = lambdaStreams ? streamReads : 1 / c('streamTierLogPollSeconds');
  // Previews (event_deltas): the harness writes chunks while text streams; streams asking for
  // them query the open request's chunks every 250 ms while a model request is open.
  // The harness writes chunks only for a session some stream with event_deltas watches (TablePreviewChannel.watched),
  // and reads the watch item once per model call; a watching stream renews it every watchRenewMs.
  const previewWrites =
    modelCallFraction * c('previewedShareOfModelTime') * c('previewChunksPerSecond') * c('streamsWithEventDeltas') +
    c('streamsWithEventDeltas') / (PREVIEW_LIMITS.watchRenewMs / 1000);
  const previewReads = modelCallFraction * c('streamsWithEventDeltas') * c('previewPollsPerSecond');
  const wcu = c('writeUnitsPerItem');
  // The index holds a listing item per session (items.ts): a write at creation and one at deletion,
  // none a turn. In the former per-status design a status change rewrote the head, an index write
  // where gsi1 carries the status (shape.ts); the template keeps gsi1's projection, so it cannot
  // tell the designs apart: the constant says which is deployed.
  const indexWritesPerTurn =
    s.sessionIndex === 'per-turn'
      ? c('sessionIndexWritesPerTurnFormer')
      : s.sessionIndex === 'per-status'
        ? shape.sessionIndexOnStatus
          ? c('sessionIndexWritesPerTurnPerStatus')
          : 0
        : c('sessionIndexWritesPerTurn');
  // every session, active or idle, is created and deleted once a lifetime
  const indexWritesPerSessionSecond = s.sessionIndex === 'per-session' ? c('sessionIndexWritesPerSession') / (c('sessionLifetimeHours') * 3600) : 0;
  const eventsRru = turnsPerSecond * stepsPerTurn * m.logReadUnitsPerStep + interruptLogReads;
  // With task state events, a starting task's record is read once a second (ecs-sandbox-provider.ts).
  const taskStateReads = taskEvents ? startsPerSecond * c('sandboxStartSeconds') * c('taskStateReadsPerSecond') : 0;
  const taskStateWrites = taskEvents ? startsPerSecond * c('taskStateEventsPerStart') : 0;
  const stateRru = turnsPerSecond * stepsPerTurn * m.stateReadsPerStep + interruptSignalReads + previewReads + taskStateReads;
  const eventsWru = turnsPerSecond * stepsPerTurn * m.eventWritesPerStep * wcu;
  const leaseRenewals = turnsPerSecond * (harnessSecondsPerTurn / c('leaseRenewEverySeconds'));
  // the session-index writes are the GSI's own (a write of the head also writes gsi1)
  const stateWru = (turnsPerSecond * (stepsPerTurn * m.stateWritesPerStep + indexWritesPerTurn) + leaseRenewals + previewWrites + taskStateWrites) * wcu;
  // The listing item's put and delete are state-table writes of every session (and a gsi1 write each).
  const stateWruPerSession = 2 * indexWritesPerSessionSecond * wcu;
  // Rate limits: the API's limits and shards as the template sets them (rate-limits.ts shardPlan).
  const writeLimit = shape.rateLimits.write;
  const writeShards = writeLimit > 0 ? shardPlan(writeLimit, shape.rateLimitShards).shards : 1;
  const sqsSend = turnsPerSecond * c('wakesPerTurn');
  const sqsVisibility = turnsPerSecond * (harnessSecondsPerTurn / c('visibilityHeartbeatEverySeconds'));
  const sandboxesPerActive = 1; // a session taking a tool call every turn keeps its sandbox (idle reaping never fires)
  const streamTasksPerSession = lambdaStreams ? 0 : 1 / c('streamConnectionsPerTask');
  const spot = s.fargateSpot || !!shape.sandboxSpot;
  const spotProposed = s.fargateSpot && !shape.sandboxSpot;
  const vcpuQuota: QuotaId = spot ? 'fargateSpotVcpu' : 'fargateOnDemandVcpu';
  const subnetIps = s.subnetIps ?? shape.subnets.reduce((sum, x) => sum + x.usableIps, 0);
  const clusters = shape.sandboxClusters;
  // Tasks a warm pool keeps started ahead, whatever the sessions (the template's CORRAL_WARM_POOL).
  const pool = shape.warmPoolTasks ?? 0;

  const derived: Record<string, number> = {
    stepsPerTurn,
    harnessSecondsPerTurn,
    harnessConcurrencyPerActiveSession: harnessConcurrency,
    eventsRruPerActiveSessionSecond: eventsRru + streamReads,
    stateRruPerActiveSessionSecond: stateRru,
    stateWruPerActiveSessionSecond: stateWru,
    previewWruPerActiveSessionSecond: previewWrites,
    previewRruPerActiveSessionSecond: previewReads,
    rateLimitWriteShards: writeShards,
    eventsWruPerActiveSessionSecond: eventsWru,
    subnetIps,
  };

  // ---- limits ------------------------------------------------------------------------------
  const rows: Array<Parameters<typeof limitRow>[0]> = [];
  const quotaRow = (id: QuotaId, rest: { id?: string; base?: number; perSession: number; status?: Status; note?: string; name?: string }) => {
    const d = QUOTAS[id];
    rows.push({
      id: rest.id ?? id,
      name: rest.name ?? d.name,
      quota: q(id),
      defaultQuota: d.value,
      unit: d.unit,
      base: rest.base ?? 0,
      perSession: rest.perSession,
      adjustable: d.adjustable,
      source: d.source,
      status: rest.status ?? 'deployed',
      note: rest.note,
    });
  };
  const templateRow = (r: { id: string; name: string; quota: number; unit: string; perSession: number; base?: number; note?: string; status?: Status }) =>
    rows.push({ base: 0, adjustable: true, source: 'the synthesized template', status: 'deployed', ...r });

  // A reservation takes its executions from the account whether the harness uses them or not:
  // the account row counts it whole (base) and the other functions per session; the harness's
  // own use is then a row against its reservation.
  const reserved = harness.reservedConcurrency;
  quotaRow('lambdaConcurrency', {
    ...(reserved !== undefined ? { name: `${QUOTAS.lambdaConcurrency.name}: the harness's reservation of ${reserved.toLocaleString('en-US')} counted whole, the other functions by use` } : {}),
    base: reserved ?? 0,
    perSession: mix((reserved === undefined ? harnessConcurrency : 0) + apiConcurrency + proxyConcurrency + (lambdaStreams ? 1 : 0), lambdaStreams ? 1 : 0),
    note: lambdaStreams ? 'every open event stream holds a stream-function invocation; the harness holds one through each model and tool call' : 'streams no longer hold a Lambda',
  });
  if (reserved !== undefined) {
    templateRow({ id: 'harnessReserved', name: 'harness reserved concurrency (harnessReservedConcurrency)', quota: reserved, unit: 'executions', perSession: mix(harnessConcurrency), note: 'what no burst of streams or API calls can take from the sessions\' progress' });
  }
  if (m.harnessMemory) {
    // What the harness holds in memory does not grow with the sessions (one wake an execution).
    const footprint = m.harnessMemory.rssAfterImportMb + m.harnessMemory.processHeapPeakMb;
    templateRow({
      id: 'harnessMemory',
      name: `harness memory (harnessMemoryMiB): bundle resident after import ${m.harnessMemory.rssAfterImportMb.toFixed(0)} MB + benchmark process heap peak ${m.harnessMemory.processHeapPeakMb.toFixed(0)} MB (an upper bound)`,
      quota: harness.memoryMiB,
      unit: 'MB',
      base: footprint,
      perSession: 0,
      note: `at ${harness.memoryMiB} MB Lambda gives the harness ${(harness.memoryMiB / 1769).toFixed(2)} vCPU, so its ${(m.harnessOverheadSecondsPerStep * 1000).toFixed(0)} ms of work a step takes about ${((m.harnessOverheadSecondsPerStep * 1769) / Math.min(harness.memoryMiB, 1769) * 1000).toFixed(0)} ms`,
    });
  }
  if (shape.wakeSource.maxConcurrency !== undefined) {
    templateRow({ id: 'wakeMaxConcurrency', name: 'wake queue maximum concurrency (harnessMaxConcurrency)', quota: shape.wakeSource.maxConcurrency, unit: 'executions', perSession: mix(harnessConcurrency) });
  }
  if (lambdaStreams && streamFn?.reservedConcurrency !== undefined) {
    templateRow({ id: 'streamReserved', name: 'open streams cap (streamMaxConcurrency)', quota: streamFn.reservedConcurrency, unit: 'streams', perSession: 1 });
  }
  if (tier) {
    templateRow({
      id: 'streamTierTasks',
      name: 'stream tier tasks (streamTierMaxTasks)',
      quota: tier.maxTasks,
      unit: 'tasks',
      perSession: streamTasksPerSession,
      note: `${c('streamConnectionsPerTask')} streams a ${tier.vcpu} vCPU / ${tier.memoryGb} GB task; every task reads every shard of the events stream, ${tier.maxTasks} x ${(1000 / tier.shardPollMs).toFixed(2)} GetRecords/s per shard in all (DynamoDB Streams serves 5)`,
    });
  }
  quotaRow('apiGatewayAccountRps', { perSession: mix(apiRps + reconnectsPerSecond, reconnectsPerSecond) });
  const stageRate = shape.stage.rateLimit;
  if (stageRate !== undefined) {
    templateRow({
      id: 'stageThrottle',
      name: 'API stage throttle (apiThrottleRate; burst ' + (shape.stage.burstLimit ?? '?') + ')',
      quota: stageRate,
      unit: 'requests/s',
      perSession: mix(apiRps + reconnectsPerSecond, reconnectsPerSecond),
      note: 'CDK context apiThrottleRate / apiThrottleBurst (infra/lib/constructs/api.ts DEFAULT_API_THROTTLING)',
    });
  }
  if (writeLimit > 0) {
    rows.push({
      id: 'tenantWriteRate',
      name: 'Corral rate limit, write requests per tenant (rateLimits write)',
      quota: writeLimit,
      unit: 'requests/min',
      base: 0,
      perSession: mix(apiRps * 60) / w.tenants,
      adjustable: true,
      source: 'the synthesized template (CORRAL_RATE_LIMITS of the API function; CDK context rateLimits)',
      status: 'deployed',
    });
    quotaRow('dynamodbPartitionWcu', {
      id: 'rateCounterPartition',
      name: `DynamoDB partition of one shard of a tenant's write rate-limit counter (${writeShards} shard${writeShards === 1 ? '' : 's'})`,
      perSession: (mix(apiRps) * wcu) / w.tenants / writeShards,
      note: `one increment per request on one of ${writeShards} shards (CORRAL_RATE_LIMIT_SHARDS ${shape.rateLimitShards}, rate-limits.ts shardPlan)`,
    });
  }
  quotaRow('dynamodbPartitionWcu', {
    id: 'sessionIndexPartition',
    name:
      s.sessionIndex === 'per-session'
        ? `DynamoDB gsi1 partition <tenant>#sessions (${indexWritesPerTurn} index writes a turn; a listing item written at creation and deleted with the session, a ${c('sessionLifetimeHours')} h lifetime)`
        : `DynamoDB gsi1 partition <tenant>#sessions (${indexWritesPerTurn} index writes a turn${shape.sessionIndexOnStatus || s.sessionIndex === 'per-turn' ? '' : ': gsi1 does not carry the status'})`,
    perSession: (mix(turnsPerSecond * indexWritesPerTurn) * wcu + indexWritesPerSessionSecond * wcu) / w.tenants,
    status: statusOf(false, former.sessionIndex),
  });
  quotaRow('dynamodbTableRru', { id: 'eventsTableRru', name: 'DynamoDB events table reads (on-demand table quota)', perSession: mix(eventsRru + streamReads, streamReads), status: statusOf(false, former.interrupts), note: `harness log reads, interrupt ${s.interrupts === 'poll' ? 'polls' : 'log reads per call'}${lambdaStreams ? ', stream polls' : ', stream reads on notification and every 30 s'}` });
  quotaRow('dynamodbTableRru', { id: 'stateTableRru', name: 'DynamoDB state table reads (on-demand table quota)', perSession: mix(stateRru), status: statusOf(taskStateProposed, former.interrupts), note: `harness steps, interrupt signal reads, preview chunk reads${taskEvents ? ', task state reads while a sandbox starts' : ''}` });
  quotaRow('dynamodbTableWru', { id: 'eventsTableWru', name: 'DynamoDB events table writes (on-demand table quota)', perSession: mix(eventsWru) });
  quotaRow('dynamodbTableWru', { id: 'stateTableWru', name: 'DynamoDB state table writes (on-demand table quota)', perSession: mix(stateWru) + stateWruPerSession, status: statusOf(taskStateProposed, former.sessionIndex), note: `harness steps, session index, lease renewals, preview chunks${taskEvents ? ', task state events' : ''}` });
  quotaRow(shape.wakeQueue.highThroughput ? 'sqsFifoHighThroughputTps' : 'sqsFifoTps', { id: 'sqsTps', perSession: mix(Math.max(sqsSend, sqsVisibility)) });
  quotaRow('sqsFifoInFlight', { perSession: mix(harnessConcurrency), note: 'a wake stays in flight while the harness runs it' });
  quotaRow('fargateLaunchRate', { perSession: mix(startsPerSecond * sandboxesPerActive) });
  quotaRow('ecsRunTaskRate', { perSession: mix(startsPerSecond * sandboxesPerActive) });
  quotaRow('ecsDescribeTasksRate', {
    perSession: !taskEvents
      ? mix(startsPerSecond * (c('sandboxStartSeconds') / c('describeTasksEverySeconds')))
      : mix(startsPerSecond * c('describeTasksFallbackPerStart')),
    status: statusOf(taskStateProposed, former.taskState),
    note: !taskEvents ? 'DescribeTasks every 2 s while a task starts' : 'task state from EventBridge, recorded in the state table; DescribeTasks only as a fallback',
  });
  quotaRow('ecsProvisioningPerCluster', {
    name: `${QUOTAS.ecsProvisioningPerCluster.name} (${clusters} sandbox cluster${clusters === 1 ? '' : 's'}, starts spread evenly)`,
    perSession: mix(startsPerSecond * c('sandboxStartSeconds')) / clusters,
    note: 'CDK context sandboxClusters: the template\'s AWS::ECS::Cluster resources but the stream tier\'s',
  });
  quotaRow(vcpuQuota, {
    id: 'fargateVcpu',
    base: pool * shape.sandboxTask.vcpu,
    perSession: mix(sandboxesPerActive * shape.sandboxTask.vcpu) + (tier ? streamTasksPerSession * tier.vcpu : 0),
    status: proposedIf(spotProposed),
  });
  quotaRow('eniPerRegion', { base: pool, perSession: mix(sandboxesPerActive) + streamTasksPerSession });
  if (subnetIps > 0) {
    templateRow({
      id: 'subnetIps',
      name: `sandbox subnet addresses (${shape.subnets.map((x) => x.cidr).join(', ') || 'an existing VPC\'s: subnetIps'})`,
      quota: subnetIps,
      unit: 'IPs',
      base: pool,
      perSession: mix(sandboxesPerActive) + streamTasksPerSession,
      note: 'one per sandbox task (awsvpc); usable = 2^(32-prefix) - 5; the subnets of CORRAL_SANDBOX_SUBNETS (CDK context sandboxCidrBlocks adds two /17s a block)',
    });
  }
  if (harness.inVpc && shape.natGateways > 0) {
    quotaRow('natConnectionsPerDestination', { perSession: mix(modelCallFraction), note: 'open model requests through one NAT gateway to the Messages API (per destination IP)' });
  }
  quotaRow('kmsSymmetric', { perSession: mix(turnsPerSecond * c('kmsCallsPerTurn') + startsPerSecond) });
  quotaRow('secretsManagerGetSecretValue', { perSession: mix(turnsPerSecond * c('credentialCallsPerTurn')) });

  const limits = rows.map((r) => limitRow(r, N));
  const first = firstToBreak(limits);

  // ---- cost --------------------------------------------------------------------------------
  const p = (id: PriceId) => PRICES[id].value;
  const gbSecond = (arch: 'arm64' | 'x86_64'): PriceId => (arch === 'arm64' ? 'lambdaGbSecondArm' : 'lambdaGbSecondX86');
  const harnessGb = harness.memoryMiB / 1024;
  const items: CostItem[] = [];
  const item = (x: CostItem) => items.push(x);
  item({
    item: `harness Lambda (${harnessGb * 1024} MB, ${harness.arch})`,
    active: harnessConcurrency * 3600 * harnessGb * p(gbSecond(harness.arch)) + turnsPerHour * c('wakesPerTurn') * p('lambdaRequest'),
    idle: 0,
    prices: [gbSecond(harness.arch), 'lambdaRequest'],
    how: `${harnessSecondsPerTurn.toFixed(1)} s busy per turn x ${turnsPerHour} turns (waits on the model and tools), one invocation per wake; memory from the template (harnessMemoryMiB)`,
    status: 'deployed',
  });
  if (lambdaStreams) {
    const gb = streamFn!.memoryMiB / 1024;
    const perHour = 3600 * gb * p(gbSecond(streamFn!.arch)) + (3600 / streamTimeout) * (p('lambdaRequest') + p('apiGatewayRestRequest'));
    item({
      item: `stream Lambda (${streamFn!.memoryMiB} MB, held while the stream is open)`,
      active: perHour,
      idle: perHour,
      prices: [gbSecond(streamFn!.arch), 'lambdaRequest', 'apiGatewayRestRequest'],
      how: `3,600 s x ${gb} GB; a reconnect every ${streamTimeout / 60} min`,
      status: 'deployed',
    });
  } else {
    const t = tier!;
    const taskHour = t.vcpu * p(t.arch === 'arm64' ? 'fargateVcpuHourArm' : 'fargateVcpuHourX86') + t.memoryGb * p(t.arch === 'arm64' ? 'fargateGbHourArm' : 'fargateGbHourX86');
    const getRecordsPerTaskHour = c('eventsStreamShards') * 3600 * (1000 / t.shardPollMs);
    const perHour =
      taskHour / c('streamConnectionsPerTask') +
      p('nlbLcuHour') / c('nlbActiveFlowsPerLcu') +
      (getRecordsPerTaskHour / c('streamConnectionsPerTask')) * p('dynamodbStreamsRead') +
      (3600 / streamTimeout) * p('apiGatewayRestRequest');
    item({
      item: `stream tier on Fargate (${t.vcpu} vCPU / ${t.memoryGb} GB ${t.arch} tasks behind an NLB)`,
      active: perHour,
      idle: perHour,
      prices: [t.arch === 'arm64' ? 'fargateVcpuHourArm' : 'fargateVcpuHourX86', t.arch === 'arm64' ? 'fargateGbHourArm' : 'fargateGbHourX86', 'nlbLcuHour', 'dynamodbStreamsRead', 'apiGatewayRestRequest'],
      how: `a task ($${taskHour.toFixed(4)}/h) per ${c('streamConnectionsPerTask')} streams, an NLCU per ${c('nlbActiveFlowsPerLcu')} connections, its share of ${getRecordsPerTaskHour.toFixed(0)} GetRecords a task-hour (${c('eventsStreamShards')} shards), a reconnect every ${streamTimeout / 60} min`,
      status: 'deployed',
    });
  }
  item({
    item: `API Lambda (${api.memoryMiB} MB) and API Gateway requests`,
    active: apiRps * 3600 * (c('apiRequestSeconds') * (api.memoryMiB / 1024) * p(gbSecond(api.arch)) + p('lambdaRequest') + p('apiGatewayRestRequest')),
    idle: 0,
    prices: [gbSecond(api.arch), 'lambdaRequest', 'apiGatewayRestRequest'],
    how: `${c('apiRequestsPerTurn')} request(s) a turn`,
    status: 'deployed',
  });
  const t = shape.sandboxTask;
  const vcpuPrice: PriceId = t.arch === 'arm64' ? 'fargateVcpuHourArm' : 'fargateVcpuHourX86';
  const gbPrice: PriceId = t.arch === 'arm64' ? 'fargateGbHourArm' : 'fargateGbHourX86';
  const spotFactor = spot ? 1 - p('fargateSpotDiscount') : 1;
  const sandboxHour = (t.vcpu * p(vcpuPrice) + t.memoryGb * p(gbPrice)) * spotFactor;
  item({
    item: `sandbox on Fargate${spot ? ` Spot${spotProposed ? ' (proposed, not built)' : ''}` : ''} (${t.vcpu} vCPU / ${t.memoryGb} GB ${t.arch})`,
    active: sandboxesPerActive * sandboxHour,
    idle: 0,
    prices: spot ? [vcpuPrice, gbPrice, 'fargateSpotDiscount'] : [vcpuPrice, gbPrice],
    how: `the session's task runs the whole active hour; an idle session's is stopped by the reaper${spot ? '; Spot prices float, a reclaimed task is a sandbox death (a tool error, then a fresh sandbox)' : ''}`,
    status: proposedIf(spotProposed),
  });
  item({
    item: 'DynamoDB reads (on-demand)',
    active: (eventsRru + streamReads + stateRru) * 3600 * p('dynamodbRru'),
    idle: idleStreamReads * 3600 * p('dynamodbRru'),
    prices: ['dynamodbRru'],
    how: `${((eventsRru + streamReads + stateRru) * 3600).toFixed(0)} RRU an active hour: steps ${(turnsPerSecond * stepsPerTurn * (m.logReadUnitsPerStep + m.stateReadsPerStep) * 3600).toFixed(0)}, interrupts ${((interruptLogReads + interruptSignalReads) * 3600).toFixed(0)} (${s.interrupts}), stream ${(streamReads * 3600).toFixed(0)}, previews ${(previewReads * 3600).toFixed(0)}`,
    status: statusOf(false, former.interrupts),
  });
  item({
    item: 'DynamoDB writes (on-demand)',
    active: (eventsWru + stateWru + stateWruPerSession) * 3600 * p('dynamodbWru'),
    idle: stateWruPerSession * 3600 * p('dynamodbWru'),
    prices: ['dynamodbWru'],
    how: `${((eventsWru + stateWru + stateWruPerSession) * 3600).toFixed(0)} WRU an active hour: steps, session index ${(turnsPerHour * indexWritesPerTurn * wcu).toFixed(0)} from turns, lease renewals, previews ${(previewWrites * wcu * 3600).toFixed(0)}; the listing item's put and delete (table and gsi1) ${(stateWruPerSession * 3600).toFixed(1)} a session-hour, idle or not`,
    status: statusOf(false, former.sessionIndex),
  });
  item({
    item: 'SQS FIFO (send, receive, delete, visibility heartbeats)',
    active: (3 * sqsSend + sqsVisibility) * 3600 * p('sqsFifoRequest'),
    idle: 0,
    prices: ['sqsFifoRequest'],
    how: 'three requests per wake plus a heartbeat a minute while the harness runs',
    status: 'deployed',
  });
  if (taskEvents) {
    const reaperFn = shape.functions.reaper;
    const gb = (reaperFn?.memoryMiB ?? 256) / 1024;
    const eventsPerHour = c('sandboxStartsPerActiveHour') * c('taskStateEventsPerStart');
    item({
      item: 'sandbox task state events (EventBridge to the reaper function)',
      active: eventsPerHour * (p('lambdaRequest') + c('taskStateEventSeconds') * gb * p(gbSecond(reaperFn?.arch ?? 'arm64'))),
      idle: 0,
      prices: ['lambdaRequest', gbSecond(reaperFn?.arch ?? 'arm64')],
      how: `${eventsPerHour} events an active hour, each an invocation of ${c('taskStateEventSeconds')} s (AWS service events on the default bus are free); their writes are in the DynamoDB row`,
      status: taskStateProposed ? 'proposed' : 'deployed',
    });
  }
  // Workspace snapshots (blob bucket): where the reaper snapshots a sandbox it stops idle, the
  // next sandbox of the session restores it: one upload and one download per sandbox start.
  const snapshotsPerHour = c('sandboxStartsPerActiveHour') * c('snapshotsPerSandboxStop');
  const snapshotGb = c('workspaceSnapshotGb');
  const s3Endpoint = shape.vpcEndpoints.some((e) => /\bs3\b/.test(e));
  const snapshotNatGb = harness.inVpc && !s3Endpoint ? 2 * snapshotsPerHour * snapshotGb : 0;
  const snapshotStorageHour = snapshotsPerHour > 0 ? (snapshotGb * p('s3GbMonth')) / HOURS_PER_MONTH : 0;
  item({
    item: 'S3 blob bucket (workspace snapshots: requests and storage)',
    active: snapshotsPerHour * (c('s3WritesPerSnapshot') * p('s3PutRequest') + p('s3GetRequest')) + snapshotStorageHour,
    idle: snapshotStorageHour,
    prices: ['s3PutRequest', 's3GetRequest', 's3GbMonth'],
    how:
      snapshotsPerHour > 0
        ? `${snapshotsPerHour} snapshot (${c('s3WritesPerSnapshot')} writes) and restore an active hour; a ${snapshotGb * 1000} MB snapshot kept while the session lives (files uploaded through the API are not in the workload)`
        : 'no workspace snapshots (snapshotsPerSandboxStop 0); files uploaded through the API are not in the workload',
    status: 'deployed',
  });
  // A sandbox start pulls the image: its layers from S3 (ECR answers a layer with a redirect to
  // S3), the token and manifest from ECR itself; the task's log stream goes to CloudWatch Logs.
  // Each crosses the NAT unless an endpoint the template has carries it: the S3 gateway endpoint
  // on the sandbox subnets' route tables (free), the ecr.api + ecr.dkr and logs interface
  // endpoints ($0.01 per GB besides their hourly price).
  const interfaceEndpoint = (service: string) => shape.vpcEndpoints.includes(`${service} (Interface)`);
  const ecrEndpoints = interfaceEndpoint('ecr.api') && interfaceEndpoint('ecr.dkr');
  const logsEndpoint = interfaceEndpoint('logs');
  const startsPerHour = c('sandboxStartsPerActiveHour');
  const layerGb = startsPerHour * c('sandboxImageGb');
  const ecrGb = (startsPerHour * c('ecrApiBytesPerPull')) / 1e9;
  const sandboxLogGb = (turnsPerHour * w.toolCallsPerTurn * c('sandboxLogBytesPerToolCall')) / 1e9;
  const imageNatGb = shape.s3GatewayOnSandboxSubnets ? 0 : layerGb;
  const endpointGbPerHour = (ecrEndpoints ? ecrGb : 0) + (logsEndpoint ? sandboxLogGb : 0);
  const modelNatGb = harness.inVpc ? (turnsPerHour * w.modelCallsPerTurn * (m.modelRequestBytes + c('modelResponseBytes'))) / 1e9 : 0;
  const natGbPerHour = modelNatGb + imageNatGb + (ecrEndpoints ? 0 : ecrGb) + (logsEndpoint ? 0 : sandboxLogGb) + snapshotNatGb;
  const via = (what: string, gb: number, endpoint: boolean, name: string) => `${what} ${(gb * 1e6).toFixed(0)} KB ${endpoint ? `through the ${name} endpoint${name.includes(' and ') ? 's' : ''}` : `(no ${name} interface endpoint${name.includes(' and ') ? 's' : ''})`}`;
  item({
    item: 'NAT gateway data (model requests, sandbox image pulls, sandbox logs, snapshots)',
    active: natGbPerHour * p('natGatewayGb'),
    idle: 0,
    prices: ['natGatewayGb'],
    how: `${natGbPerHour.toFixed(4)} GB an hour: model requests ${(modelNatGb * 1e6).toFixed(0)} KB; image layers ${shape.s3GatewayOnSandboxSubnets ? 'none (the S3 gateway endpoint is on the sandbox subnets\' route tables)' : `${layerGb} GB (${c('sandboxImageGb')} GB a start, not measured: no S3 gateway endpoint on the sandbox subnets' route tables)`}; ${via('ECR calls', ecrGb, ecrEndpoints, 'ecr.api and ecr.dkr')}; ${via('sandbox logs', sandboxLogGb, logsEndpoint, 'logs')}${snapshotNatGb ? `; snapshots ${snapshotNatGb.toFixed(3)} GB (no S3 endpoint)` : ''}`,
    status: 'deployed',
  });
  if (endpointGbPerHour > 0) {
    item({
      item: 'VPC interface endpoint data (ECR calls, sandbox logs)',
      active: endpointGbPerHour * p('vpcInterfaceEndpointGb'),
      idle: 0,
      prices: ['vpcInterfaceEndpointGb'],
      how: `${(endpointGbPerHour * 1e6).toFixed(0)} KB an hour at $${p('vpcInterfaceEndpointGb')} per GB; their hourly price is a fixed cost`,
      status: 'deployed',
    });
  }
  item({
    item: 'KMS requests and CloudWatch Logs ingestion',
    active: (turnsPerSecond * c('kmsCallsPerTurn') + startsPerSecond) * 3600 * p('kmsRequest') + (turnsPerHour * stepsPerTurn * c('logBytesPerStep') * p('logsIngestGb')) / 1e9,
    idle: 0,
    prices: ['kmsRequest', 'logsIngestGb'],
    how: `${c('logBytesPerStep')} B of logs a step (not measured)`,
    status: 'deployed',
  });

  const fixed: FixedItem[] = [
    { item: `NAT gateways (${shape.natGateways})`, perMonth: shape.natGateways * HOURS_PER_MONTH * p('natGatewayHour'), prices: ['natGatewayHour'], status: 'deployed' },
    { item: `KMS keys (${shape.kmsKeys})`, perMonth: shape.kmsKeys * p('kmsKeyMonth'), prices: ['kmsKeyMonth'], status: 'deployed' },
    { item: `CloudWatch alarms (${shape.alarms}) and dashboards (${shape.dashboards})`, perMonth: shape.alarms * p('alarmMonth') + shape.dashboards * p('dashboardMonth'), prices: ['alarmMonth', 'dashboardMonth'], status: 'deployed' },
  ];
  if (tier) {
    const taskHour = tier.vcpu * p(tier.arch === 'arm64' ? 'fargateVcpuHourArm' : 'fargateVcpuHourX86') + tier.memoryGb * p(tier.arch === 'arm64' ? 'fargateGbHourArm' : 'fargateGbHourX86');
    fixed.push({
      item: `stream tier floor: its NLB${tier.loadBalancers === 1 ? '' : 's'} and ${tier.minTasks} task${tier.minTasks === 1 ? '' : 's'} always running (streamTierMinTasks)`,
      perMonth: HOURS_PER_MONTH * (tier.loadBalancers * p('nlbHour') + tier.minTasks * taskHour),
      prices: ['nlbHour', tier.arch === 'arm64' ? 'fargateVcpuHourArm' : 'fargateVcpuHourX86', tier.arch === 'arm64' ? 'fargateGbHourArm' : 'fargateGbHourX86'],
      status: 'deployed',
    });
  }
  const proxy = shape.proxyService;
  if (proxy) {
    const arm = proxy.arch === 'arm64';
    const taskHour = proxy.vcpu * p(arm ? 'fargateVcpuHourArm' : 'fargateVcpuHourX86') + proxy.memoryGb * p(arm ? 'fargateGbHourArm' : 'fargateGbHourX86');
    fixed.push({
      item: `proxy service floor: its NLB and ${proxy.minTasks} task${proxy.minTasks === 1 ? '' : 's'} always running (proxyServiceMinTasks; sandboxes' egress)`,
      perMonth: HOURS_PER_MONTH * (proxy.loadBalancers * p('nlbHour') + proxy.minTasks * taskHour),
      prices: ['nlbHour', arm ? 'fargateVcpuHourArm' : 'fargateVcpuHourX86', arm ? 'fargateGbHourArm' : 'fargateGbHourX86'],
      status: 'deployed',
    });
  }
  if (shape.interfaceEndpointEnis > 0) {
    fixed.push({
      item: `VPC interface endpoints (${shape.vpcEndpoints.filter((e) => e.endsWith('(Interface)')).map((e) => e.replace(' (Interface)', '')).join(', ')}: ${shape.interfaceEndpointEnis} endpoint-AZs)`,
      perMonth: shape.interfaceEndpointEnis * HOURS_PER_MONTH * p('vpcInterfaceEndpointHour'),
      prices: ['vpcInterfaceEndpointHour'],
      status: 'deployed',
    });
  }
  const pooled = shape.warmPoolTasks ?? 0;
  if (pooled > 0) fixed.push({ item: `warm pool of ${pooled} sandbox task${pooled === 1 ? '' : 's'} (CDK context warmPool)`, perMonth: pooled * sandboxHour * HOURS_PER_MONTH, prices: [vcpuPrice, gbPrice], status: 'deployed' });
  // The interface endpoints pay for themselves where what they carry, at the NAT's price less
  // theirs, reaches their hourly price: the sessions at which it does.
  if (shape.interfaceEndpointEnis > 0) {
    const savedPerActiveHour = endpointGbPerHour * (p('natGatewayGb') - p('vpcInterfaceEndpointGb'));
    derived.interfaceEndpointsBreakEvenSessions =
      savedPerActiveHour > 0 && active > 0 ? (shape.interfaceEndpointEnis * p('vpcInterfaceEndpointHour')) / (active * savedPerActiveHour) : Infinity;
  }
  const activePerSessionHour = sum(items.map((i) => i.active));
  const idlePerSessionHour = sum(items.map((i) => i.idle));
  const fixedPerMonth = sum(fixed.map((f) => f.perMonth));
  const perSessionHourAtN = active * activePerSessionHour + idle * idlePerSessionHour + (N > 0 ? fixedPerMonth / HOURS_PER_MONTH / N : 0);

  // ---- other platforms -----------------------------------------------------------------------
  const acFrac = c('agentCoreActiveCpuFraction');
  const nodeHour = p('ec2M7g2xlargeHour');
  const comparisons: Comparison[] = [
    {
      platform: 'Amazon Bedrock AgentCore Runtime',
      active: t.vcpu * acFrac * p('agentCoreVcpuHour') + t.memoryGb * p('agentCoreGbHour'),
      idle: t.memoryGb * p('agentCoreGbHour'),
      fixedPerMonth: 0,
      how: `${t.vcpu} vCPU busy ${acFrac * 100}% of the time, ${t.memoryGb} GB peak memory; an idle session still holds its memory until the runtime's idle timeout ends it`,
      prices: ['agentCoreVcpuHour', 'agentCoreGbHour'],
    },
    {
      platform: 'Kubernetes (EKS), pods reserving 1 vCPU / 2 GB',
      active: nodeHour / c('k8sPodsPerNodeReserved'),
      idle: nodeHour / c('k8sPodsPerNodeReserved'),
      fixedPerMonth: HOURS_PER_MONTH * p('eksClusterHour'),
      how: `m7g.2xlarge On-Demand / ${c('k8sPodsPerNodeReserved')} pods; plus a cluster, its nodes' headroom and the people who run it`,
      prices: ['ec2M7g2xlargeHour', 'eksClusterHour'],
    },
    {
      platform: 'Kubernetes (EKS), pods packed at 0.25 vCPU / 2 GB requests',
      active: nodeHour / c('k8sPodsPerNodePacked'),
      idle: nodeHour / c('k8sPodsPerNodePacked'),
      fixedPerMonth: HOURS_PER_MONTH * p('eksClusterHour'),
      how: `m7g.2xlarge On-Demand / ${c('k8sPodsPerNodePacked')} pods (memory-bound); Spot nodes cut this by about two thirds`,
      prices: ['ec2M7g2xlargeHour', 'eksClusterHour'],
    },
  ];

  // ---- interrupts, signal against the former poll -------------------------------------------
  const rru = p('dynamodbRru');
  const perDesign = (d: 'signal' | 'poll') => {
    const perSecond = interruptReads[d].state + interruptReads[d].events; // per active session
    const rruPerRunningHour = watchedFraction > 0 ? (perSecond / watchedFraction) * 3600 : 0;
    return { rruPerRunningHour, dollarsPer1000RunningHours: 1000 * rruPerRunningHour * rru, rruPerActiveHour: perSecond * 3600, dollarsPerActiveHour: perSecond * 3600 * rru };
  };

  return {
    workload: w,
    settings: s,
    proposed: proposedSettings(s, shape),
    former: formerSettings(s, shape),
    interrupts: { signal: perDesign('signal'), poll: perDesign('poll') },
    derived,
    limits,
    firstToBreak: first ? { id: first.id, name: first.name, sessions: first.breaksAt } : null,
    cost: { items, activePerSessionHour, idlePerSessionHour, fixed, fixedPerMonth, perSessionHourAtN },
    comparisons,
  };
}

const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);

function validate(w: Workload, s: Settings): void {
  const need = (ok: boolean, what: string) => {
    if (!ok) throw new RangeError(what);
  };
  need(Number.isInteger(w.sessions) && w.sessions >= 0, `sessions: a whole number, not ${w.sessions}`);
  need(Number.isFinite(w.turnsPerMinute) && w.turnsPerMinute >= 0 && w.turnsPerMinute <= 60, `turns per minute: 0-60, not ${w.turnsPerMinute}`);
  need(w.idleFraction >= 0 && w.idleFraction <= 1, `idle fraction: 0-1, not ${w.idleFraction}`);
  need(Number.isInteger(w.tenants) && w.tenants >= 1, `tenants: 1 or more, not ${w.tenants}`);
  for (const k of ['modelCallsPerTurn', 'modelCallSeconds', 'toolCallsPerTurn', 'toolCallSeconds'] as const) need(Number.isFinite(w[k]) && w[k] >= 0, `${k}: 0 or more`);
  for (const [k, v] of Object.entries(s.quotas)) need(typeof v === 'number' && v > 0 && k in QUOTAS, `quota ${k}: unknown or not positive`);
  for (const [k, v] of Object.entries(s.constants)) need(typeof v === 'number' && v >= 0 && k in CONSTANTS, `constant ${k}: unknown or negative`);
}
