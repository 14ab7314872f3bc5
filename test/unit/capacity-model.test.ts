import { describe, expect, it } from 'vitest';
import { capacity, firstToBreak, limitRow, type Workload } from '../../scripts/capacity/model.js';
import type { Measured } from '../../scripts/capacity/measured.js';
import { FALLBACK, measuredFrom } from '../../scripts/capacity/measured.js';
import { usableIps, warmPoolTasks, type DeployedShape } from '../../scripts/capacity/shape.js';
import { parseContext, parseQuotas } from '../../scripts/capacity.js';
import { CONSTANTS, PRICES } from '../../scripts/capacity/sources.js';
import { DEFAULT_RATE_LIMITS } from '../../lambdas/core/resources/rate-limits.js';

/** A deployed shape with round numbers, so every expectation below can be checked by hand. */
const shape: DeployedShape = {
  functions: {
    harness: { logicalId: 'H', memoryMiB: 1024, timeoutSeconds: 900, arch: 'arm64', inVpc: true },
    api: { logicalId: 'A', memoryMiB: 1024, timeoutSeconds: 29, arch: 'arm64', inVpc: true },
    stream: { logicalId: 'S', memoryMiB: 512, timeoutSeconds: 900, arch: 'arm64', inVpc: false },
  },
  wakeSource: { batchSize: 1 },
  wakeQueue: { fifo: true, highThroughput: true, visibilityTimeoutSeconds: 5400 },
  stage: { rateLimit: 100, burstLimit: 200 },
  rateLimits: DEFAULT_RATE_LIMITS,
  rateLimitShards: 10,
  subnets: [{ logicalId: 'P1', cidr: '10.0.16.0/20', usableIps: 4091 }],
  // no S3 gateway endpoint on the sandbox subnet: image layers through the NAT, unless a test says otherwise
  s3GatewayOnSandboxSubnets: false,
  natGateways: 1,
  vpcEndpoints: [],
  interfaceEndpointEnis: 0,
  sandboxClusters: 1,
  sessionIndexOnStatus: true,
  sandboxTask: { vcpu: 1, memoryGb: 2, arch: 'arm64', ephemeralStorageGiB: 20 },
  // a template without the task state rule (DescribeTasks polling), unless a test says otherwise
  taskStateEvents: false,
  tables: [],
  kmsKeys: 1,
  alarms: 10,
  dashboards: 1,
};
/** The same with the stream tier deployed (streamTier=fargate): two to four 1 vCPU / 2 GB tasks behind an NLB. */
const tierShape: DeployedShape = { ...shape, streamTier: { vcpu: 1, memoryGb: 2, arch: 'arm64', minTasks: 2, maxTasks: 4, shardPollMs: 1000, loadBalancers: 1 } };

/** Measured counts chosen for easy arithmetic: no harness overhead, 1 read and 1 write of each kind a step. */
const measured: Measured = {
  stepsPerMeasuredTurn: 2,
  stateReadsPerStep: 1,
  logQueriesPerStep: 1,
  logReadUnitsPerStep: 1,
  stateWritesPerStep: 1,
  eventWritesPerStep: 1,
  harnessOverheadSecondsPerStep: 0,
  modelRequestBytes: 0,
  source: 'test',
};

/** One turn a minute: 2 model calls of 10 s, 1 tool call of 5 s; one sandbox start an hour of 30 s. */
const workload: Workload = { sessions: 600, turnsPerMinute: 1, idleFraction: 0, tenants: 1, modelCallsPerTurn: 2, modelCallSeconds: 10, toolCallsPerTurn: 1, toolCallSeconds: 5 };
const row = (r: ReturnType<typeof capacity>, id: string) => {
  const found = r.limits.find((l) => l.id === id);
  if (!found) throw new Error(`no row ${id}`);
  return found;
};

describe('capacity model: utilisation', () => {
  it('a row is base + perSession x N against its quota, and breaks at (quota - base) / perSession', () => {
    const r = limitRow({ id: 'x', name: 'x', quota: 1000, unit: 'u', base: 100, perSession: 0.5, adjustable: true, source: 's', status: 'deployed' }, 600);
    expect(r.used).toBe(400);
    expect(r.utilisation).toBe(0.4);
    expect(r.breaksAt).toBe(1800);
    const none = limitRow({ id: 'y', name: 'y', quota: 10, unit: 'u', base: 0, perSession: 0, adjustable: true, source: 's', status: 'deployed' }, 600);
    expect(none.breaksAt).toBe(Infinity);
  });

  it('Lambda concurrency: one stream per session plus the harness busy 25.5 s of every 60 (30 s start / 60 turns)', () => {
    const r = capacity({ shape, measured, workload });
    // harness: (20 model + 5 tool + 0.5 sandbox start) s a turn / 60 s = 0.425; stream 1; API 1/60 x 0.05
    const perSession = 25.5 / 60 + 1 + 0.05 / 60;
    const lambda = row(r, 'lambdaConcurrency');
    expect(lambda.perSession).toBeCloseTo(perSession, 10);
    expect(lambda.used).toBeCloseTo(600 * perSession, 8);
    expect(lambda.breaksAt).toBeCloseTo(1000 / perSession, 6); // about 701
    expect(Math.floor(lambda.breaksAt)).toBe(701);
  });

  it('an idle session holds only its stream; the stream tier off Lambda frees both', () => {
    const idle = capacity({ shape, measured, workload: { ...workload, idleFraction: 1 } });
    expect(row(idle, 'lambdaConcurrency').perSession).toBe(1);
    const fargate = capacity({ shape: tierShape, measured, workload: { ...workload, idleFraction: 1 }, settings: { streamTier: 'fargate' } });
    expect(row(fargate, 'lambdaConcurrency').perSession).toBe(0);
    expect(row(fargate, 'lambdaConcurrency').status).toBe('deployed');
    expect(fargate.proposed).toEqual([]);
    // A template without the tier cannot be priced as if it had one.
    expect(() => capacity({ shape, measured, workload, settings: { streamTier: 'fargate' } })).toThrow(/streamTier=fargate/);
  });

  it('the stream tier: its tasks are a limit of the template (streamTierMaxTasks), its floor a fixed cost', () => {
    const r = capacity({ shape: tierShape, measured, workload: { ...workload, sessions: 30_000, idleFraction: 1 }, settings: { streamTier: 'fargate' } });
    const tasks = row(r, 'streamTierTasks');
    // 30,000 streams at 10,000 a task: 3 of the 4 tasks.
    expect(tasks.quota).toBe(4);
    expect(tasks.perSession).toBeCloseTo(1 / CONSTANTS.streamConnectionsPerTask.value, 12);
    expect(tasks.used).toBeCloseTo(3, 9);
    const floor = r.cost.fixed.find((f) => f.item.startsWith('stream tier floor'))!;
    const taskHour = PRICES.fargateVcpuHourArm.value + 2 * PRICES.fargateGbHourArm.value;
    expect(floor.perMonth).toBeCloseTo(730 * (PRICES.nlbHour.value + 2 * taskHour), 6);
  });

  it('table reads as deployed: the interrupt signal once a second through 25 s of calls, a log read per call, preview polls through 20 s of model calls', () => {
    const r = capacity({ shape, measured, workload });
    expect(r.former).toEqual([]);
    // events, per second: 3 steps x 1 RRU a turn (the turn's start rides on its first model call) + 3 calls a turn x 1 log read + 1 stream poll
    expect(row(r, 'eventsTableRru').perSession).toBeCloseTo(3 / 60 + 3 / 60 + 1, 10);
    expect(row(r, 'eventsTableRru').status).toBe('deployed');
    // state: 3 steps + a signal read a second through 25 s + one per call + 4 preview polls a second through 20 s
    expect(row(r, 'stateTableRru').perSession).toBeCloseTo(3 / 60 + 25 / 60 + 3 / 60 + (20 / 60) * 4, 10);
  });

  it('the former interrupt poll: the log every 250 ms through every call, marked former design', () => {
    const poll = capacity({ shape, measured, workload, settings: { interrupts: 'poll' } });
    expect(row(poll, 'eventsTableRru').perSession).toBeCloseTo(3 / 60 + (25 / 60) * 4 + 1, 10);
    expect(row(poll, 'stateTableRru').perSession).toBeCloseTo(3 / 60 + (20 / 60) * 4, 10);
    expect(row(poll, 'eventsTableRru').status).toBe('former');
    expect(poll.former).toEqual(['interrupts=poll']);
    expect(poll.proposed).toEqual([]);
  });

  it('task state: DescribeTasks every 2 s through a 30 s start when polling; none, and a record read a second, with the events rule', () => {
    const poll = capacity({ shape, measured, workload });
    // one start an hour: 15 DescribeTasks per start
    expect(row(poll, 'ecsDescribeTasksRate').perSession).toBeCloseTo(15 / 3600, 12);
    const proposed = capacity({ shape, measured, workload, settings: { taskState: 'events' } });
    expect(proposed.proposed).toEqual(['taskState=events']);
    expect(row(proposed, 'ecsDescribeTasksRate').status).toBe('proposed');
    const built = capacity({ shape: { ...shape, taskStateEvents: true }, measured, workload });
    expect(built.proposed).toEqual([]);
    expect(row(built, 'ecsDescribeTasksRate').perSession).toBe(0);
    expect(row(built, 'ecsDescribeTasksRate').status).toBe('deployed');
    expect(Number.isFinite(row(built, 'ecsDescribeTasksRate').breaksAt)).toBe(false);
    // the record read once a second for 30 s, and 6 events written, per start (one an hour)
    expect(row(built, 'stateTableRru').perSession - row(poll, 'stateTableRru').perSession).toBeCloseTo(30 / 3600, 12);
    expect(row(built, 'stateTableWru').perSession - row(poll, 'stateTableWru').perSession).toBeCloseTo(6 / 3600, 12);
    expect(built.cost.items.some((i) => /task state events/.test(i.item) && i.active > 0)).toBe(true);
    // polling again on a template with the rule: the former design
    const former = capacity({ shape: { ...shape, taskStateEvents: true }, measured, workload, settings: { taskState: 'poll' } });
    expect(former.former).toEqual(['taskState=poll']);
    expect(row(former, 'ecsDescribeTasksRate').status).toBe('former');
  });

  it('interrupts per running session-hour: 14,400 RRU polling, 3,600 + 2 per call with the signal', () => {
    const r = capacity({ shape, measured, workload });
    expect(r.interrupts.poll.rruPerRunningHour).toBeCloseTo(14_400, 8);
    // 3 calls in 25 s of calls: 0.12 calls a running second, 432 an hour, 2 reads each
    expect(r.interrupts.signal.rruPerRunningHour).toBeCloseTo(3600 + 432 * 2, 8);
    expect(r.interrupts.poll.dollarsPer1000RunningHours).toBeCloseTo(14_400_000 * PRICES.dynamodbRru.value, 10);
    expect(r.interrupts.signal.rruPerActiveHour).toBeCloseTo(((3600 + 864) * 25) / 60, 8);
  });

  it('preview chunks: the harness writes up to 4 a second through the previewed share of model calls', () => {
    const base = capacity({ shape, measured, workload, settings: { constants: { previewedShareOfModelTime: 0 } } });
    const r = capacity({ shape, measured, workload });
    const share = CONSTANTS.previewedShareOfModelTime.value;
    expect(row(r, 'stateTableWru').perSession - row(base, 'stateTableWru').perSession).toBeCloseTo((20 / 60) * share * 4, 10);
  });

  it('per-tenant rows divide by the tenants; the session index takes a write at creation and one at deletion, none a turn; two and four a turn in the former designs', () => {
    const one = capacity({ shape, measured, workload });
    // a listing item put and deleted once in a session's 1 h life, 1 WCU each; nothing a turn
    expect(CONSTANTS.sessionIndexWritesPerTurn.value).toBe(0);
    expect(row(one, 'sessionIndexPartition').perSession).toBeCloseTo(2 / 3600, 12);
    expect(row(one, 'sessionIndexPartition').breaksAt).toBeCloseTo(1_800_000, 4);
    expect(row(one, 'sessionIndexPartition').status).toBe('deployed');
    // idle sessions are created and deleted too
    expect(row(capacity({ shape, measured, workload: { ...workload, idleFraction: 1 } }), 'sessionIndexPartition').perSession).toBeCloseTo(2 / 3600, 12);
    expect(row(one, 'tenantWriteRate').breaksAt).toBeCloseTo(1200, 6);
    const ten = capacity({ shape, measured, workload: { ...workload, tenants: 10 } });
    expect(row(ten, 'tenantWriteRate').breaksAt).toBeCloseTo(12_000, 6);
    expect(row(ten, 'sessionIndexPartition').perSession).toBeCloseTo(2 / 3600 / 10, 12);
    // the head in the index, written on status changes: running and idle, a turn a minute
    const perStatus = capacity({ shape, measured, workload, settings: { sessionIndex: 'per-status' } });
    expect(row(perStatus, 'sessionIndexPartition').breaksAt).toBeCloseTo(30_000, 6);
    expect(row(perStatus, 'sessionIndexPartition').status).toBe('former');
    expect(perStatus.former).toEqual(['sessionIndex=per-status']);
    const perTurn = capacity({ shape, measured, workload, settings: { sessionIndex: 'per-turn' } });
    expect(row(perTurn, 'sessionIndexPartition').breaksAt).toBeCloseTo(15_000, 6);
    expect(row(perTurn, 'sessionIndexPartition').status).toBe('former');
    // the state table: the listing item's put and delete, each on the table and on gsi1
    expect(row(perStatus, 'stateTableWru').perSession - row(one, 'stateTableWru').perSession).toBeCloseTo(2 / 60 - 4 / 3600, 12);
  });

  it('the rate-limit counter is spread over the shards the template sets, as shardPlan counts them', () => {
    // write 1,200 a minute on up to 10 shards: 10 shards, one request a minute per session
    const r = capacity({ shape, measured, workload });
    expect(r.derived.rateLimitWriteShards).toBe(10);
    expect(row(r, 'rateCounterPartition').breaksAt).toBeCloseTo(1000 * 60 * 10, 4);
    // a limit of 150 is one exact counter whatever the shards allowed
    const small = capacity({ shape: { ...shape, rateLimits: { ...DEFAULT_RATE_LIMITS, write: 150 } }, measured, workload });
    expect(small.derived.rateLimitWriteShards).toBe(1);
    expect(row(small, 'tenantWriteRate').quota).toBe(150);
    const one = capacity({ shape: { ...shape, rateLimitShards: 1 }, measured, workload });
    expect(row(one, 'rateCounterPartition').breaksAt).toBeCloseTo(60_000, 4);
  });

  it('sandboxes: one task, one IP and one vCPU per active session, plus the warm pool as a base', () => {
    const r = capacity({ shape: { ...shape, warmPoolTasks: 91 }, measured, workload, settings: { quotas: { fargateOnDemandVcpu: 5000 } } });
    const ips = row(r, 'subnetIps');
    expect(ips.quota).toBe(4091);
    expect(ips.breaksAt).toBe(4000);
    expect(row(r, 'fargateVcpu').used).toBe(691);
    expect(row(r, 'fargateVcpu').quota).toBe(5000);
    expect(row(r, 'fargateVcpu').defaultQuota).toBe(6);
    expect(r.cost.fixed.some((f) => f.item.startsWith('warm pool of 91') && f.status === 'deployed')).toBe(true);
  });

  it('reads the warm pool from the harness\'s CORRAL_WARM_POOL', () => {
    expect(warmPoolTasks('env_a=2,env_b=1')).toBe(3);
    expect(warmPoolTasks(undefined)).toBe(0);
  });
});

describe('capacity model: what the template says of reservations, clusters, the index and endpoints', () => {
  it('a harness reservation is counted whole against the account and the harness\'s use against it', () => {
    const reservedShape: DeployedShape = { ...shape, functions: { ...shape.functions, harness: { ...shape.functions.harness!, reservedConcurrency: 300 } } };
    const r = capacity({ shape: reservedShape, measured, workload });
    const account = row(r, 'lambdaConcurrency');
    expect(account.base).toBe(300);
    // the others: stream 1 + API 0.05 / 60 a session; the harness is inside its reservation
    expect(account.perSession).toBeCloseTo(1 + 0.05 / 60, 10);
    const harness = row(r, 'harnessReserved');
    expect(harness.quota).toBe(300);
    expect(harness.perSession).toBeCloseTo(25.5 / 60, 10);
    expect(harness.breaksAt).toBeCloseTo(300 / (25.5 / 60), 6);
  });

  it('sandbox starts are spread over the clusters the template has: 500 PROVISIONING a cluster', () => {
    // one start an active hour of 30 s: 30 / 3600 tasks provisioning a session
    const one = capacity({ shape, measured, workload });
    expect(row(one, 'ecsProvisioningPerCluster').breaksAt).toBeCloseTo(500 * 120, 6);
    const two = capacity({ shape: { ...shape, sandboxClusters: 2 }, measured, workload });
    expect(row(two, 'ecsProvisioningPerCluster').used).toBeCloseTo(row(one, 'ecsProvisioningPerCluster').used / 2, 10);
    expect(row(two, 'ecsProvisioningPerCluster').breaksAt).toBeCloseTo(2 * 500 * 120, 6);
    expect(row(two, 'ecsProvisioningPerCluster').status).toBe('deployed');
    // CDK context now: the key goes to the synthesis, not the model
    expect(parseContext('sandboxClusters=3')).toEqual({ cdk: { sandboxClusters: '3' }, settings: {} });
    expect(parseContext('sandboxCidrBlocks=2,vpcInterfaceEndpoints=true').cdk).toEqual({ sandboxCidrBlocks: '2', vpcInterfaceEndpoints: 'true' });
  });

  it('subnet addresses are the template\'s sandbox subnets; subnetIps stands only for an existing VPC\'s', () => {
    const blocks = { ...shape, subnets: [...shape.subnets, { logicalId: 'S1A', cidr: '10.1.0.0/17', usableIps: usableIps('10.1.0.0/17') }] };
    expect(row(capacity({ shape: blocks, measured, workload }), 'subnetIps').quota).toBe(4091 + 32_763);
    expect(() => capacity({ shape, measured, workload, settings: { subnetIps: 130_000 } })).toThrow(/sandboxCidrBlocks/);
    const existing = capacity({ shape: { ...shape, subnets: [] }, measured, workload, settings: { subnetIps: 130_000 } });
    expect(row(existing, 'subnetIps').quota).toBe(130_000);
    expect(row(existing, 'subnetIps').status).toBe('deployed');
    expect(existing.proposed).toEqual([]);
  });

  it('the former per-status index: no write on a status change where gsi1 does not carry the status', () => {
    const r = capacity({ shape: { ...shape, sessionIndexOnStatus: false }, measured, workload, settings: { sessionIndex: 'per-status' } });
    expect(row(r, 'sessionIndexPartition').perSession).toBe(0);
    expect(row(r, 'sessionIndexPartition').breaksAt).toBe(Infinity);
    const base = capacity({ shape, measured, workload, settings: { sessionIndex: 'per-status' } });
    expect(row(base, 'stateTableWru').perSession - row(r, 'stateTableWru').perSession).toBeCloseTo(2 / 60, 10);
  });

  it('image layers cross the NAT only without an S3 gateway endpoint on the sandbox subnets; ECR calls and sandbox logs unless interface endpoints carry them', () => {
    const natItem = (r: ReturnType<typeof capacity>) => r.cost.items.find((i) => i.item.startsWith('NAT gateway data'))!;
    const nat = (r: ReturnType<typeof capacity>) => natItem(r).active;
    const endpointData = (r: ReturnType<typeof capacity>) => r.cost.items.find((i) => i.item.startsWith('VPC interface endpoint data'))?.active ?? 0;
    const gateway = { ...shape, vpcEndpoints: ['s3 (Gateway)'], s3GatewayOnSandboxSubnets: true };
    // an S3 endpoint the functions use (snapshots skip the NAT), but not on the sandbox subnets' route tables
    const noGateway = capacity({ shape: { ...shape, vpcEndpoints: ['s3 (Gateway)'] }, measured, workload });
    const withGateway = capacity({ shape: gateway, measured, workload });
    // the layers: one 0.5 GB pull an active hour, at the NAT's price, only without the gateway endpoint
    expect(nat(noGateway) - nat(withGateway)).toBeCloseTo(CONSTANTS.sandboxImageGb.value * PRICES.natGatewayGb.value, 12);
    expect(natItem(withGateway).how).toMatch(/image layers none/);
    // ECR and logs interface endpoints: their bytes leave the NAT ($0.045/GB) for the endpoints ($0.01/GB)
    const ecrGb = CONSTANTS.ecrApiBytesPerPull.value / 1e9;
    const logGb = (60 * CONSTANTS.sandboxLogBytesPerToolCall.value) / 1e9; // a tool call a turn, 60 turns
    const interfaces = { ...gateway, vpcEndpoints: ['s3 (Gateway)', 'ecr.api (Interface)', 'ecr.dkr (Interface)', 'logs (Interface)'], interfaceEndpointEnis: 6 };
    const r = capacity({ shape: interfaces, measured, workload });
    expect(nat(withGateway) - nat(r)).toBeCloseTo((ecrGb + logGb) * PRICES.natGatewayGb.value, 14);
    expect(endpointData(r)).toBeCloseTo((ecrGb + logGb) * PRICES.vpcInterfaceEndpointGb.value, 14);
    expect(endpointData(withGateway)).toBe(0);
    // ecr.dkr without ecr.api moves nothing: a pull needs both
    const dkrOnly = capacity({ shape: { ...gateway, vpcEndpoints: ['s3 (Gateway)', 'ecr.dkr (Interface)'], interfaceEndpointEnis: 2 }, measured, workload });
    expect(nat(dkrOnly)).toBeCloseTo(nat(withGateway), 14);
    // their hourly price per endpoint-AZ, and the sessions from which what they save covers it
    expect(r.cost.fixedPerMonth - withGateway.cost.fixedPerMonth).toBeCloseTo(6 * 730 * PRICES.vpcInterfaceEndpointHour.value, 10);
    const breakEven = (6 * PRICES.vpcInterfaceEndpointHour.value) / ((ecrGb + logGb) * (PRICES.natGatewayGb.value - PRICES.vpcInterfaceEndpointGb.value));
    expect(r.derived.interfaceEndpointsBreakEvenSessions).toBeCloseTo(breakEven, 6);
    expect(withGateway.derived.interfaceEndpointsBreakEvenSessions).toBeUndefined();
  });

  it('the harness\'s measured footprint is a row against its memory, not a cost setting', () => {
    const withMemory: Measured = { ...measured, harnessOverheadSecondsPerStep: 0.017, harnessMemory: { rssAfterImportMb: 68, processHeapPeakMb: 58 } };
    const r = capacity({ shape: { ...shape, functions: { ...shape.functions, harness: { ...shape.functions.harness!, memoryMiB: 256 } } }, measured: withMemory, workload });
    const mem = row(r, 'harnessMemory');
    expect(mem.quota).toBe(256);
    expect(mem.used).toBe(126);
    expect(mem.breaksAt).toBe(Infinity);
    // the cost follows the template's memory: (25.5 s + 3 steps x 17 ms) / 60 x 3600 s x 0.25 GB
    expect(r.cost.items.find((i) => i.item.startsWith('harness Lambda'))!.active).toBeCloseTo(((25.5 + 3 * 0.017) / 60) * 3600 * 0.25 * PRICES.lambdaGbSecondArm.value + 60 * 0.2e-6, 12);
    expect(() => parseContext('harnessMemoryMiB=256')).not.toThrow();
    expect(parseContext('harnessMemoryMiB=256').cdk).toEqual({ harnessMemoryMiB: '256' });
  });
});

describe('capacity model: first to break', () => {
  it('is the row with the fewest sessions, whatever its order', () => {
    const mk = (id: string, perSession: number) => limitRow({ id, name: id, quota: 100, unit: 'u', base: 0, perSession, adjustable: true, source: 's', status: 'deployed' }, 1);
    expect(firstToBreak([mk('a', 1), mk('b', 4), mk('c', 2)])!.id).toBe('b');
    expect(firstToBreak([mk('z', 0)])).toBeNull();
  });

  it('with the Fargate vCPU quota raised, Lambda concurrency breaks first, at about 701 sessions', () => {
    const r = capacity({ shape, measured, workload, settings: { quotas: { fargateOnDemandVcpu: 100_000 } } });
    expect(r.firstToBreak!.id).toBe('lambdaConcurrency');
    expect(Math.floor(r.firstToBreak!.sessions)).toBe(701);
  });
});

describe('capacity model: cost', () => {
  it('sums the items; each is hand-checkable from the prices', () => {
    const r = capacity({ shape, measured, workload });
    const item = (start: string) => r.cost.items.find((i) => i.item.startsWith(start))!;
    // harness: 0.425 x 3600 s x 1 GB x arm price + 60 wakes x request price
    expect(item('harness Lambda').active).toBeCloseTo(0.425 * 3600 * PRICES.lambdaGbSecondArm.value + 60 * 0.2e-6, 12);
    // stream: 3600 s x 0.5 GB + 4 reconnects (a Lambda request and an API Gateway request each)
    const stream = 3600 * 0.5 * PRICES.lambdaGbSecondArm.value + 4 * (0.2e-6 + 3.5e-6);
    expect(item('stream Lambda').active).toBeCloseTo(stream, 12);
    expect(item('stream Lambda').idle).toBeCloseTo(stream, 12);
    // Fargate ARM: 1 vCPU x 0.03238 + 2 GB x 0.00356 = 0.0395
    expect(item('sandbox on Fargate').active).toBeCloseTo(0.0395, 10);
    const spot = capacity({ shape, measured, workload, settings: { fargateSpot: true } });
    expect(spot.cost.items.find((i) => i.item.startsWith('sandbox'))!.active).toBeCloseTo(0.0395 * 0.3, 10);
    expect(r.cost.activePerSessionHour).toBeCloseTo(r.cost.items.reduce((a, i) => a + i.active, 0), 12);
    expect(r.cost.idlePerSessionHour).toBeCloseTo(r.cost.items.reduce((a, i) => a + i.idle, 0), 12);
    // fixed: one NAT gateway 730 h x 0.045, one key $1, 10 alarms x $0.10, one dashboard $3
    expect(r.cost.fixedPerMonth).toBeCloseTo(32.85 + 1 + 1 + 3, 10);
    expect(r.cost.perSessionHourAtN).toBeCloseTo(r.cost.activePerSessionHour + r.cost.fixedPerMonth / 730 / 600, 12);
  });

  it('workspace snapshots cost S3 requests and storage, and NAT data unless the VPC has an S3 endpoint', () => {
    const s3 = (r: ReturnType<typeof capacity>) => r.cost.items.find((i) => i.item.startsWith('S3 blob bucket'))!;
    const nat = (r: ReturnType<typeof capacity>) => r.cost.items.find((i) => i.item.startsWith('NAT gateway data'))!;
    const none = capacity({ shape, measured, workload, settings: { constants: { snapshotsPerSandboxStop: 0 } } });
    expect(s3(none).active).toBe(0);
    expect(s3(none).idle).toBe(0);
    const noEndpoint = { ...shape, vpcEndpoints: shape.vpcEndpoints.filter((e) => !/\bs3\b/.test(e)) };
    const today = capacity({ shape: noEndpoint, measured, workload });
    const gb = CONSTANTS.workspaceSnapshotGb.value;
    const storage = (gb * PRICES.s3GbMonth.value) / 730;
    expect(s3(today).active).toBeCloseTo(3 * PRICES.s3PutRequest.value + PRICES.s3GetRequest.value + storage, 12);
    expect(s3(today).idle).toBeCloseTo(storage, 12);
    // up and back down through the NAT gateway: 2 x the snapshot an active hour
    const noneNoEndpoint = capacity({ shape: noEndpoint, measured, workload, settings: { constants: { snapshotsPerSandboxStop: 0 } } });
    expect(nat(today).active - nat(noneNoEndpoint).active).toBeCloseTo(2 * gb * PRICES.natGatewayGb.value, 12);
    const endpoint = capacity({ shape: { ...shape, vpcEndpoints: ['s3 (Gateway)'] }, measured, workload });
    expect(nat(endpoint).active).toBeCloseTo(nat(noneNoEndpoint).active, 12);
  });

  it('the stream tier brings an idle session under half a cent an hour', () => {
    const r = capacity({ shape: tierShape, measured, workload, settings: { streamTier: 'fargate' } });
    expect(r.cost.idlePerSessionHour).toBeLessThan(0.005);
    const today = capacity({ shape, measured, workload });
    expect(today.cost.idlePerSessionHour).toBeGreaterThan(0.02);
  });
});

describe('capacity inputs', () => {
  it('usable subnet addresses leave AWS\'s five out', () => {
    expect(usableIps('10.0.16.0/20')).toBe(4091);
    expect(usableIps('10.0.0.0/24')).toBe(251);
    expect(() => usableIps('10.0.0.0/8')).toThrow(/16 to \/28/);
  });

  it('reads the per-step counts from the benchmark\'s ops, at the largest log', () => {
    const m = measuredFrom({
      generated_at: 't',
      suites: {
        overhead: { harness_overhead_ms: { mean: 20 }, process: { heap_used_peak_mb: 50 } },
        bundles: { bundles: [{ name: 'api', rss_after_import_mb: { p50: 90 } }, { name: 'harness-step', rss_after_import_mb: { p50: 70 } }] },
        log_reads: {
          sizes: [
            { events: 10, steps_per_turn: 1, ops: [] },
            { events: 1000, steps_per_turn: 2, ops: ['GetItem:state', 'GetItem:state', 'Query:events', 'PutItem:state', 'PutItem:events', 'model', 'PutItem:events'], request_bytes: 20_000 },
          ],
        },
      },
    });
    expect(m).toMatchObject({ stateReadsPerStep: 1, logQueriesPerStep: 0.5, logReadUnitsPerStep: 2.5, stateWritesPerStep: 0.5, eventWritesPerStep: 1, harnessOverheadSecondsPerStep: 0.02 });
    expect(m.harnessMemory).toEqual({ rssAfterImportMb: 70, processHeapPeakMb: 50 });
    // a results file without the memory figures: the documented run's, named in the source
    const older = measuredFrom({ suites: { log_reads: { sizes: [{ events: 10, steps_per_turn: 1, ops: [] }] } } });
    expect(older.harnessMemory).toEqual(FALLBACK.harnessMemory);
    expect(older.source).toContain('harness memory from the bench run');
  });

  it('rejects an unknown setting, quota or value', () => {
    expect(parseContext('harnessTimeoutMinutes=5,streamTier=fargate,constant.modelCallSeconds=3')).toEqual({
      cdk: { harnessTimeoutMinutes: '5', streamTier: 'fargate' },
      settings: { streamTier: 'fargate', constants: { modelCallSeconds: 3 } },
    });
    expect(() => parseContext('streamTier=ec2')).toThrow(/lambda or fargate/);
    expect(() => parseContext('warp=9')).toThrow(/unknown key "warp"/);
    // deploy settings go to the synthesis, not the model
    expect(parseContext('rateLimitShards=4,apiThrottleRate=500')).toEqual({ cdk: { rateLimitShards: '4', apiThrottleRate: '500' }, settings: {} });
    expect(() => parseContext('stageRateLimit=500')).toThrow(/apiThrottleRate/);
    expect(parseQuotas('lambdaConcurrency=20000')).toEqual({ lambdaConcurrency: 20000 });
    expect(() => parseQuotas('lambdaConcurrency=-1')).toThrow(/--quota/);
    expect(() => capacity({ shape, measured, workload: { ...workload, idleFraction: 2 } })).toThrow(/idle fraction/);
  });
});
