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
 * `proposed`; a row whose number depends on one says so (`status: 'proposed'`).
 */
import { DEFAULT_RATE_LIMITS } from '../../lambdas/core/resources/rate-limits.js';
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
  /** `fargate`: the proposed stream service (many SSE connections per task, fed by DynamoDB Streams). */
  readonly streamTier: 'lambda' | 'fargate';
  /** `signal`: the proposed interrupt signal item read once a second instead of polling the log. */
  readonly interrupts: 'poll' | 'signal';
  /** `per-status`: the proposed tenant session index written on status changes, not per turn. */
  readonly sessionIndex: 'per-turn' | 'per-status';
  /** Shards of each tenant's rate-limit counter (proposed when above 1). */
  readonly rateLimitShards: number;
  /** Harness memory instead of the template's (proposed: right-sized from measurement). */
  readonly harnessMemoryMiB?: number;
  /** Sandboxes on Fargate Spot (proposed). */
  readonly fargateSpot: boolean;
  /** `events`: the proposed task state from EventBridge instead of DescribeTasks polling. */
  readonly taskState: 'poll' | 'events';
  /** API stage rate limit instead of the template's (proposed: a deploy setting). */
  readonly stageRateLimit?: number;
  /** Sandbox tasks kept started ahead, in all (proposed warm pool). */
  readonly warmPool: number;
  /** Applied quota values where the account's differ from AWS's defaults (e.g. after increases). */
  readonly quotas: Partial<Record<QuotaId, number>>;
  /** Usable addresses for sandboxes when the template does not create the subnets (an existing VPC). */
  readonly subnetIps?: number;
  /** Overrides of workload constants. */
  readonly constants: Partial<Record<ConstantId, number>>;
}

export const DEFAULT_SETTINGS: Settings = {
  streamTier: 'lambda',
  interrupts: 'poll',
  sessionIndex: 'per-turn',
  rateLimitShards: 1,
  taskState: 'poll',
  fargateSpot: false,
  warmPool: 0,
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

/** Which settings differ from what the template deploys: the "proposed, not built" list. */
export function proposedSettings(s: Settings, shape: DeployedShape): string[] {
  const out: string[] = [];
  if (s.streamTier !== 'lambda') out.push(`streamTier=${s.streamTier}`);
  if (s.interrupts !== 'poll') out.push(`interrupts=${s.interrupts}`);
  if (s.sessionIndex !== 'per-turn') out.push(`sessionIndex=${s.sessionIndex}`);
  if (s.rateLimitShards !== 1) out.push(`rateLimitShards=${s.rateLimitShards}`);
  if (s.harnessMemoryMiB !== undefined && s.harnessMemoryMiB !== shape.functions.harness!.memoryMiB) out.push(`harnessMemoryMiB=${s.harnessMemoryMiB}`);
  if (s.taskState !== 'poll') out.push(`taskState=${s.taskState}`);
  if (s.stageRateLimit !== undefined && s.stageRateLimit !== shape.stage.rateLimit) out.push(`stageRateLimit=${s.stageRateLimit}`);
  if (s.fargateSpot) out.push('fargateSpot');
  if (s.warmPool > 0) out.push(`warmPool=${s.warmPool}`);
  return out;
}

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
  readonly status: 'deployed' | 'proposed';
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
  readonly status: 'deployed' | 'proposed';
}

export interface FixedItem {
  readonly item: string;
  readonly perMonth: number;
  readonly prices: PriceId[];
  readonly status: 'deployed' | 'proposed';
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
  const c = (id: ConstantId) => s.constants[id] ?? CONSTANTS[id].value;
  const q = (id: QuotaId) => s.quotas[id] ?? QUOTAS[id].value;
  const N = w.sessions;
  const active = 1 - w.idleFraction;
  const idle = w.idleFraction;
  /** Per-session use from a rate per active session and a rate per idle session. */
  const mix = (perActive: number, perIdle = 0) => active * perActive + idle * perIdle;
  const proposedIf = (cond: boolean): 'deployed' | 'proposed' => (cond ? 'proposed' : 'deployed');
  const lambdaStreams = s.streamTier === 'lambda';
  const harness = shape.functions.harness!;
  const api = shape.functions.api!;
  const streamFn = shape.functions.stream;
  if (lambdaStreams && !streamFn) throw new Error('the template has no stream function: use streamTier=fargate');

  // ---- per active session ------------------------------------------------------------------
  const turnsPerSecond = w.turnsPerMinute / 60;
  const turnsPerHour = w.turnsPerMinute * 60;
  // start_turn, one step per model call and one per tool call (the benchmark's text-only turn is 2)
  const stepsPerTurn = 1 + w.modelCallsPerTurn + w.toolCallsPerTurn;
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
  const reconnectsPerSecond = lambdaStreams ? 1 / streamTimeout : 0;
  const modelCallFraction = turnsPerSecond * modelSecondsPerTurn; // share of time in a model call
  const interruptLogReads = s.interrupts === 'poll' ? modelCallFraction * c('interruptPollsPerSecond') : 0;
  const interruptSignalReads = s.interrupts === 'signal' ? modelCallFraction * c('signalReadsPerSecond') : 0;
  const streamReads = lambdaStreams ? c('streamPollsPerSecond') : 0;
  const wcu = c('writeUnitsPerItem');
  const indexWritesPerTurn = s.sessionIndex === 'per-turn' ? c('sessionHeadWritesPerTurn') : 0;
  const eventsRru = turnsPerSecond * stepsPerTurn * m.logReadUnitsPerStep + interruptLogReads;
  const stateRru = turnsPerSecond * stepsPerTurn * m.stateReadsPerStep + interruptSignalReads;
  const eventsWru = turnsPerSecond * stepsPerTurn * m.eventWritesPerStep * wcu;
  const leaseRenewals = turnsPerSecond * (harnessSecondsPerTurn / c('leaseRenewEverySeconds'));
  const stateWru = (turnsPerSecond * (stepsPerTurn * m.stateWritesPerStep + indexWritesPerTurn) + leaseRenewals) * wcu;
  const sqsSend = turnsPerSecond * c('wakesPerTurn');
  const sqsVisibility = turnsPerSecond * (harnessSecondsPerTurn / c('visibilityHeartbeatEverySeconds'));
  const sandboxesPerActive = 1; // a session taking a tool call every turn keeps its sandbox (idle reaping never fires)
  const streamTasksPerSession = lambdaStreams ? 0 : 1 / c('streamConnectionsPerTask');
  const spot = s.fargateSpot;
  const vcpuQuota: QuotaId = spot ? 'fargateSpotVcpu' : 'fargateOnDemandVcpu';
  const subnetIps = s.subnetIps ?? shape.subnets.reduce((sum, x) => sum + x.usableIps, 0);

  const derived = {
    stepsPerTurn,
    harnessSecondsPerTurn,
    harnessConcurrencyPerActiveSession: harnessConcurrency,
    eventsRruPerActiveSessionSecond: eventsRru + streamReads,
    stateRruPerActiveSessionSecond: stateRru,
    stateWruPerActiveSessionSecond: stateWru,
    eventsWruPerActiveSessionSecond: eventsWru,
    subnetIps,
  };

  // ---- limits ------------------------------------------------------------------------------
  const rows: Array<Parameters<typeof limitRow>[0]> = [];
  const quotaRow = (id: QuotaId, rest: { id?: string; base?: number; perSession: number; status?: 'deployed' | 'proposed'; note?: string; name?: string }) => {
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
  const templateRow = (r: { id: string; name: string; quota: number; unit: string; perSession: number; base?: number; note?: string; status?: 'deployed' | 'proposed' }) =>
    rows.push({ base: 0, adjustable: true, source: 'the synthesized template', status: 'deployed', ...r });

  quotaRow('lambdaConcurrency', {
    perSession: mix(harnessConcurrency + apiConcurrency + proxyConcurrency + (lambdaStreams ? 1 : 0), lambdaStreams ? 1 : 0),
    status: proposedIf(!lambdaStreams),
    note: lambdaStreams ? 'every open event stream holds a stream-function invocation; the harness holds one through each model and tool call' : 'streams no longer hold a Lambda',
  });
  if (harness.reservedConcurrency !== undefined) {
    templateRow({ id: 'harnessReserved', name: 'harness reserved concurrency (harnessReservedConcurrency)', quota: harness.reservedConcurrency, unit: 'executions', perSession: mix(harnessConcurrency) });
  }
  if (shape.wakeSource.maxConcurrency !== undefined) {
    templateRow({ id: 'wakeMaxConcurrency', name: 'wake queue maximum concurrency (harnessMaxConcurrency)', quota: shape.wakeSource.maxConcurrency, unit: 'executions', perSession: mix(harnessConcurrency) });
  }
  if (lambdaStreams && streamFn?.reservedConcurrency !== undefined) {
    templateRow({ id: 'streamReserved', name: 'open streams cap (streamMaxConcurrency)', quota: streamFn.reservedConcurrency, unit: 'streams', perSession: 1 });
  }
  quotaRow('apiGatewayAccountRps', { perSession: mix(apiRps + reconnectsPerSecond, reconnectsPerSecond) });
  const stageRate = s.stageRateLimit ?? shape.stage.rateLimit;
  if (stageRate !== undefined) {
    templateRow({
      id: 'stageThrottle',
      name: 'API stage throttle (rate; burst ' + (shape.stage.burstLimit ?? '?') + ')',
      quota: stageRate,
      status: proposedIf(stageRate !== shape.stage.rateLimit),
      unit: 'requests/s',
      perSession: mix(apiRps + reconnectsPerSecond, reconnectsPerSecond),
      note: 'set in infra/lib/constructs/api.ts',
    });
  }
  rows.push({
    id: 'tenantWriteRate',
    name: 'Corral rate limit, write requests per tenant (DEFAULT_RATE_LIMITS.write)',
    quota: DEFAULT_RATE_LIMITS.write,
    unit: 'requests/min',
    base: 0,
    perSession: mix(apiRps * 60) / w.tenants,
    adjustable: true,
    source: 'lambdas/core/resources/rate-limits.ts (not a deploy setting today)',
    status: 'deployed',
  });
  quotaRow('dynamodbPartitionWcu', {
    id: 'rateCounterPartition',
    name: 'DynamoDB partition of a tenant\'s write rate-limit counter',
    perSession: (mix(apiRps) * wcu) / w.tenants / s.rateLimitShards,
    status: proposedIf(s.rateLimitShards !== 1),
    note: 'one increment per request on rate#<tenant>#write',
  });
  quotaRow('dynamodbPartitionWcu', {
    id: 'sessionIndexPartition',
    name: 'DynamoDB gsi1 partition <tenant>#sessions (session record rewrites)',
    perSession: (mix(turnsPerSecond * indexWritesPerTurn) * wcu) / w.tenants,
    status: proposedIf(s.sessionIndex !== 'per-turn'),
  });
  quotaRow('dynamodbTableRru', { id: 'eventsTableRru', name: 'DynamoDB events table reads (on-demand table quota)', perSession: mix(eventsRru + streamReads, streamReads), status: proposedIf(!lambdaStreams || s.interrupts !== 'poll'), note: `harness log reads, interrupt polls${lambdaStreams ? ', stream polls' : ''}` });
  quotaRow('dynamodbTableRru', { id: 'stateTableRru', name: 'DynamoDB state table reads (on-demand table quota)', perSession: mix(stateRru), status: proposedIf(s.interrupts !== 'poll') });
  quotaRow('dynamodbTableWru', { id: 'eventsTableWru', name: 'DynamoDB events table writes (on-demand table quota)', perSession: mix(eventsWru) });
  quotaRow('dynamodbTableWru', { id: 'stateTableWru', name: 'DynamoDB state table writes (on-demand table quota)', perSession: mix(stateWru), status: proposedIf(s.sessionIndex !== 'per-turn') });
  quotaRow(shape.wakeQueue.highThroughput ? 'sqsFifoHighThroughputTps' : 'sqsFifoTps', { id: 'sqsTps', perSession: mix(Math.max(sqsSend, sqsVisibility)) });
  quotaRow('sqsFifoInFlight', { perSession: mix(harnessConcurrency), note: 'a wake stays in flight while the harness runs it' });
  quotaRow('fargateLaunchRate', { perSession: mix(startsPerSecond * sandboxesPerActive) });
  quotaRow('ecsRunTaskRate', { perSession: mix(startsPerSecond * sandboxesPerActive) });
  quotaRow('ecsDescribeTasksRate', {
    perSession: s.taskState === 'poll' ? mix(startsPerSecond * (c('sandboxStartSeconds') / c('describeTasksEverySeconds'))) : 0,
    status: proposedIf(s.taskState !== 'poll'),
    note: s.taskState === 'poll' ? 'DescribeTasks every 2 s while a task starts' : 'task state from EventBridge',
  });
  quotaRow('ecsProvisioningPerCluster', { perSession: mix(startsPerSecond * c('sandboxStartSeconds')) });
  quotaRow(vcpuQuota, {
    id: 'fargateVcpu',
    base: s.warmPool * shape.sandboxTask.vcpu,
    perSession: mix(sandboxesPerActive * shape.sandboxTask.vcpu) + (lambdaStreams ? 0 : streamTasksPerSession * c('streamTaskVcpu')),
    status: proposedIf(spot || s.warmPool > 0 || !lambdaStreams),
  });
  quotaRow('eniPerRegion', { base: s.warmPool, perSession: mix(sandboxesPerActive) + streamTasksPerSession, status: proposedIf(s.warmPool > 0 || !lambdaStreams) });
  if (subnetIps > 0) {
    templateRow({
      id: 'subnetIps',
      name: `private subnet addresses (${shape.subnets.map((x) => x.cidr).join(', ') || 'given with --subnet-ips'})`,
      quota: subnetIps,
      unit: 'IPs',
      base: s.warmPool,
      perSession: mix(sandboxesPerActive) + streamTasksPerSession,
      status: proposedIf(s.warmPool > 0 || !lambdaStreams),
      note: 'one per sandbox task (awsvpc); usable = 2^(32-prefix) - 5',
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
  const harnessGb = (s.harnessMemoryMiB ?? harness.memoryMiB) / 1024;
  const items: CostItem[] = [];
  const item = (x: CostItem) => items.push(x);
  item({
    item: `harness Lambda (${harnessGb * 1024} MB, ${harness.arch})`,
    active: harnessConcurrency * 3600 * harnessGb * p(gbSecond(harness.arch)) + turnsPerHour * c('wakesPerTurn') * p('lambdaRequest'),
    idle: 0,
    prices: [gbSecond(harness.arch), 'lambdaRequest'],
    how: `${harnessSecondsPerTurn.toFixed(1)} s busy per turn x ${turnsPerHour} turns (waits on the model and tools), one invocation per wake`,
    status: proposedIf(s.harnessMemoryMiB !== undefined && s.harnessMemoryMiB !== harness.memoryMiB),
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
    const taskHour = c('streamTaskVcpu') * p('fargateVcpuHourArm') + c('streamTaskGb') * p('fargateGbHourArm');
    const perHour = taskHour / c('streamConnectionsPerTask') + p('albLcuHour') / 3000;
    item({
      item: 'stream service on Fargate behind an ALB (proposed, not built)',
      active: perHour,
      idle: perHour,
      prices: ['fargateVcpuHourArm', 'fargateGbHourArm', 'albLcuHour'],
      how: `a ${c('streamTaskVcpu')} vCPU / ${c('streamTaskGb')} GB task per ${c('streamConnectionsPerTask')} connections, an LCU per 3,000`,
      status: 'proposed',
    });
    item({
      item: 'DynamoDB Streams reads for the stream service (proposed, not built)',
      active: turnsPerHour * stepsPerTurn * m.eventWritesPerStep * p('dynamodbStreamsRead'),
      idle: 0,
      prices: ['dynamodbStreamsRead'],
      how: 'one streams read unit per event written (an upper bound: GetRecords returns many per read)',
      status: 'proposed',
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
    item: `sandbox on Fargate${spot ? ' Spot (proposed, not built)' : ''} (${t.vcpu} vCPU / ${t.memoryGb} GB ${t.arch})`,
    active: sandboxesPerActive * sandboxHour,
    idle: 0,
    prices: spot ? [vcpuPrice, gbPrice, 'fargateSpotDiscount'] : [vcpuPrice, gbPrice],
    how: 'the session\'s task runs the whole active hour; an idle session\'s is stopped by the reaper',
    status: proposedIf(spot),
  });
  item({
    item: 'DynamoDB reads (on-demand)',
    active: (eventsRru + streamReads + stateRru) * 3600 * p('dynamodbRru'),
    idle: streamReads * 3600 * p('dynamodbRru'),
    prices: ['dynamodbRru'],
    how: `${((eventsRru + streamReads + stateRru) * 3600).toFixed(0)} RRU an active hour: steps ${(turnsPerSecond * stepsPerTurn * (m.logReadUnitsPerStep + m.stateReadsPerStep) * 3600).toFixed(0)}, interrupts ${((interruptLogReads + interruptSignalReads) * 3600).toFixed(0)}, stream ${(streamReads * 3600).toFixed(0)}`,
    status: proposedIf(!lambdaStreams || s.interrupts !== 'poll'),
  });
  item({
    item: 'DynamoDB writes (on-demand)',
    active: (eventsWru + stateWru) * 3600 * p('dynamodbWru'),
    idle: 0,
    prices: ['dynamodbWru'],
    how: `${((eventsWru + stateWru) * 3600).toFixed(0)} WRU an active hour (steps, session index, lease renewals)`,
    status: proposedIf(s.sessionIndex !== 'per-turn'),
  });
  item({
    item: 'SQS FIFO (send, receive, delete, visibility heartbeats)',
    active: (3 * sqsSend + sqsVisibility) * 3600 * p('sqsFifoRequest'),
    idle: 0,
    prices: ['sqsFifoRequest'],
    how: 'three requests per wake plus a heartbeat a minute while the harness runs',
    status: 'deployed',
  });
  const natGbPerHour = harness.inVpc
    ? (turnsPerHour * w.modelCallsPerTurn * (m.modelRequestBytes + c('modelResponseBytes'))) / 1e9 + c('sandboxStartsPerActiveHour') * c('sandboxImageGb')
    : 0;
  item({
    item: 'NAT gateway data (model requests, sandbox image pulls)',
    active: natGbPerHour * p('natGatewayGb'),
    idle: 0,
    prices: ['natGatewayGb'],
    how: `${natGbPerHour.toFixed(3)} GB an hour; the image (${c('sandboxImageGb')} GB, not measured) dominates while no ECR endpoint exists`,
    status: 'deployed',
  });
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
  if (!lambdaStreams) fixed.push({ item: 'stream service ALB (proposed, not built)', perMonth: HOURS_PER_MONTH * p('albHour'), prices: ['albHour'], status: 'proposed' });
  if (s.warmPool > 0) fixed.push({ item: `warm pool of ${s.warmPool} sandboxes (proposed, not built)`, perMonth: s.warmPool * sandboxHour * HOURS_PER_MONTH, prices: [vcpuPrice, gbPrice], status: 'proposed' });
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

  return {
    workload: w,
    settings: s,
    proposed: proposedSettings(s, shape),
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
  need(Number.isInteger(s.rateLimitShards) && s.rateLimitShards >= 1, 'rateLimitShards: 1 or more');
  need(Number.isInteger(s.warmPool) && s.warmPool >= 0, 'warmPool: 0 or more');
  for (const [k, v] of Object.entries(s.quotas)) need(typeof v === 'number' && v > 0 && k in QUOTAS, `quota ${k}: unknown or not positive`);
  for (const [k, v] of Object.entries(s.constants)) need(typeof v === 'number' && v >= 0 && k in CONSTANTS, `constant ${k}: unknown or negative`);
}
