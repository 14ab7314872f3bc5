import { beforeAll, describe, expect, it } from 'vitest';
import { synthesizedTemplate } from '../rehearsal/synth.js';
import { parseContext, parseQuotas, renderText, runCapacity } from '../../scripts/capacity.js';
import { RECOMMENDED } from '../../scripts/capacity/recommended.js';
import { DEFAULT_WORKLOAD } from '../../scripts/capacity/model.js';
import { CORRAL_ENV } from '../../lambdas/core/config.js';
import { CONSTANTS, PRICES } from '../../scripts/capacity/sources.js';
import { DEFAULT_RATE_LIMIT_SHARDS, parseRateLimits, shardPlan } from '../../lambdas/core/resources/rate-limits.js';

/**
 * `npm run capacity` on the real synthesized template (offline, the rehearsal tests' cached
 * synthesis): what it reports of each function and of the stage is what the template says.
 */
describe('npm run capacity on the synthesized template', () => {
  let template: Awaited<ReturnType<typeof synthesizedTemplate>>;
  beforeAll(async () => {
    template = await synthesizedTemplate(); // a synthesis: tens of seconds when not cached
  });

  it('reports each function\'s memory, timeout and reserved concurrency, and the stage throttle, as the template has them', () => {
    const run = runCapacity(template, { ...DEFAULT_WORKLOAD, sessions: 1000 });
    const fns = Object.entries(template.Resources).filter(([, r]) => r.Type === 'AWS::Lambda::Function');
    for (const role of ['harness', 'api', 'stream'] as const) {
      const f = run.shape.functions[role];
      expect(f, role).toBeDefined();
      const p = fns.find(([id]) => id === f!.logicalId)![1].Properties as Record<string, unknown>;
      expect(f!.memoryMiB).toBe(p.MemorySize);
      expect(f!.timeoutSeconds).toBe(p.Timeout);
      expect(f!.reservedConcurrency).toBe(p.ReservedConcurrentExecutions);
    }
    const stage = Object.values(template.Resources).find((r) => r.Type === 'AWS::ApiGateway::Stage')!;
    const all = (stage.Properties!.MethodSettings as Array<Record<string, unknown>>).find((m) => m.ResourcePath === '/*')!;
    expect(run.shape.stage.rateLimit).toBe(all.ThrottlingRateLimit);
    const task = Object.values(template.Resources).find((r) => r.Type === 'AWS::ECS::TaskDefinition')!.Properties!;
    expect(run.shape.sandboxTask.vcpu * 1024).toBe(Number(task.Cpu));
    expect(run.shape.sandboxTask.memoryGb * 1024).toBe(Number(task.Memory));

    const text = renderText(run);
    const h = run.shape.functions.harness!;
    expect(text).toContain(`harness ${h.memoryMiB} MB / ${h.timeoutSeconds} s`);
    expect(text).toContain('First to break');
    expect(run.report.proposed).toEqual([]);
    expect(run.report.former).toEqual([]);
    // the VPC's endpoints by service: image layers and snapshots skip the NAT through the S3 gateway endpoint
    expect(run.shape.vpcEndpoints).toContain('dynamodb (Gateway)');
    // the task state rule is built: no DescribeTasks polling in the model
    expect(run.shape.taskStateEvents).toBe(true);
    expect(run.report.limits.find((l) => l.id === 'ecsDescribeTasksRate')!.perSession).toBe(0);
  });

  it('reads the rate limits and their shards from the API function\'s environment, as the API enforces them', () => {
    const run = runCapacity(template, { ...DEFAULT_WORKLOAD, sessions: 1000 });
    const api = template.Resources[run.shape.functions.api!.logicalId].Properties as { Environment: { Variables: Record<string, string> } };
    const env = api.Environment.Variables;
    expect(run.shape.rateLimitShards).toBe(Number(env[CORRAL_ENV.rateLimitShards]));
    expect(run.shape.rateLimitShards).toBe(DEFAULT_RATE_LIMIT_SHARDS);
    expect(run.shape.rateLimits).toEqual(parseRateLimits(env[CORRAL_ENV.rateLimits]));
    expect(run.report.derived.rateLimitWriteShards).toBe(shardPlan(run.shape.rateLimits.write, run.shape.rateLimitShards).shards);
    expect(renderText(run)).toContain(`up to ${run.shape.rateLimitShards} shards`);
  });

  it('with the settings docs/SCALE.md recommends, 100,000 sessions keep every limit under 80% and an idle session under half a cent; the harness\'s reservation is counted whole', async () => {
    const { cdk, settings } = parseContext(RECOMMENDED.context);
    const recommended = await synthesizedTemplate(cdk);
    const run = runCapacity(recommended, { ...DEFAULT_WORKLOAD, sessions: RECOMMENDED.sessions, tenants: RECOMMENDED.tenants }, { ...settings, quotas: parseQuotas(RECOMMENDED.quota) });
    const over = run.report.limits.filter((l) => l.utilisation > 0.8).map((l) => `${l.name}: ${(l.utilisation * 100).toFixed(1)}%`);
    expect(over).toEqual([]);
    expect(run.report.firstToBreak!.sessions).toBeGreaterThan(RECOMMENDED.sessions);
    expect(run.report.cost.idlePerSessionHour).toBeLessThanOrEqual(0.005);
    // the reservation: the account's row counts it whole, the harness's use is a row against it,
    // and above the event source's 1,000 the wake queue is left uncapped
    expect(run.shape.functions.harness!.reservedConcurrency).toBe(55_000);
    expect(run.shape.wakeSource.maxConcurrency).toBeUndefined();
    const row = (id: string) => run.report.limits.find((l) => l.id === id)!;
    expect(row('lambdaConcurrency').base).toBe(55_000);
    expect(row('harnessReserved').used).toBeCloseTo(RECOMMENDED.sessions * run.report.derived.harnessConcurrencyPerActiveSession, 6);
    expect(run.report.limits.some((l) => l.id === 'wakeMaxConcurrency')).toBe(false);
    // the harness's memory is the template's (harnessMemoryMiB, 256 by default), its footprint a row against it
    expect(run.shape.functions.harness!.memoryMiB).toBe(256);
    expect(row('harnessMemory').utilisation).toBeLessThan(0.8);
    // everything recommended is built: nothing proposed, and issue 20's cost goal holds
    expect(run.report.proposed).toEqual([]);
    expect(run.report.cost.activePerSessionHour).toBeLessThanOrEqual(0.03);
    // the interface endpoints are recommended because they pay for themselves at this size
    expect(run.report.derived.interfaceEndpointsBreakEvenSessions).toBeLessThan(RECOMMENDED.sessions);
  }, 600_000);

  it('reads the fleet\'s settings from the template: clusters, the sandbox subnets, and which endpoints keep the image off the NAT', async () => {
    const { cdk, settings } = parseContext(RECOMMENDED.context);
    const recommended = await synthesizedTemplate(cdk);
    const workload = { ...DEFAULT_WORKLOAD, sessions: 100_000 };
    const run = runCapacity(recommended, workload, settings);
    const base = runCapacity(template, workload);
    const row = (r: typeof run, id: string) => r.report.limits.find((l) => l.id === id)!;
    // clusters: the template's AWS::ECS::Cluster resources but the stream tier's; each takes 1/N of the starts
    const clusters = Object.entries(recommended.Resources).filter(([id, r]) => r.Type === 'AWS::ECS::Cluster' && !id.startsWith('StreamTier'));
    expect(clusters.length).toBe(Number(cdk.sandboxClusters));
    expect(run.shape.sandboxClusters).toBe(clusters.length);
    expect(base.shape.sandboxClusters).toBe(1);
    expect(row(run, 'ecsProvisioningPerCluster').used).toBeCloseTo(row(base, 'ecsProvisioningPerCluster').used / clusters.length, 9);
    // subnets: those CORRAL_SANDBOX_SUBNETS names, the two /20s and two /17s a CIDR block
    const harnessEnv = (recommended.Resources[run.shape.functions.harness!.logicalId].Properties as { Environment: { Variables: Record<string, unknown> } }).Environment.Variables;
    const named = JSON.stringify(harnessEnv[CORRAL_ENV.sandboxSubnets]);
    expect(run.shape.subnets.length).toBe(2 + 2 * Number(cdk.sandboxCidrBlocks));
    for (const s of run.shape.subnets) expect(named).toContain(`"${s.logicalId}"`);
    expect(run.shape.subnets.map((s) => s.cidr)).toEqual(expect.arrayContaining(['10.1.0.0/17', '10.1.128.0/17', '10.2.0.0/17', '10.2.128.0/17']));
    expect(row(run, 'subnetIps').quota).toBe(139_234);
    expect(row(base, 'subnetIps').quota).toBe(8182);
    // the S3 gateway endpoint is on every sandbox subnet's route table: no image layers through the NAT
    const nat = (r: typeof run) => r.report.cost.items.find((i) => i.item.startsWith('NAT gateway data'))!;
    expect(run.shape.s3GatewayOnSandboxSubnets).toBe(true);
    expect(base.shape.s3GatewayOnSandboxSubnets).toBe(true);
    expect(nat(run).how).toMatch(/image layers none/);
    // take the sandbox blocks' route tables off the S3 endpoint: their tasks pull the layers through the NAT again
    const cut = structuredClone(recommended);
    const s3 = Object.values(cut.Resources).find((r) => r.Type === 'AWS::EC2::VPCEndpoint' && JSON.stringify(r.Properties!.ServiceName).includes('.s3"'))!;
    s3.Properties!.RouteTableIds = (s3.Properties!.RouteTableIds as Array<{ Ref: string }>).filter((t) => !t.Ref.startsWith('NetworkSandboxSubnet'));
    const cutRun = runCapacity(cut, workload, settings);
    expect(cutRun.shape.s3GatewayOnSandboxSubnets).toBe(false);
    expect(nat(cutRun).active - nat(run).active).toBeCloseTo(CONSTANTS.sandboxImageGb.value * PRICES.natGatewayGb.value, 12);
    // the interface endpoints carry the ECR calls and the logs: without them, those bytes cross the NAT
    expect(run.shape.vpcEndpoints).toEqual(expect.arrayContaining(['ecr.api (Interface)', 'ecr.dkr (Interface)', 'logs (Interface)']));
    expect(run.shape.interfaceEndpointEnis).toBe(6);
    const bare = structuredClone(recommended);
    for (const [id, r] of Object.entries(bare.Resources)) if (r.Type === 'AWS::EC2::VPCEndpoint' && r.Properties!.VpcEndpointType === 'Interface') delete bare.Resources[id];
    const bareRun = runCapacity(bare, workload, settings);
    const moved = (CONSTANTS.ecrApiBytesPerPull.value + 60 * CONSTANTS.sandboxLogBytesPerToolCall.value) / 1e9;
    expect(nat(bareRun).active - nat(run).active).toBeCloseTo(moved * PRICES.natGatewayGb.value, 14);
    expect(run.report.cost.fixedPerMonth - bareRun.report.cost.fixedPerMonth).toBeCloseTo(6 * 730 * PRICES.vpcInterfaceEndpointHour.value, 9);
  }, 600_000);
});
