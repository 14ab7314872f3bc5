/**
 * The capacity and cost model (`npm run capacity`): reads the synthesized template and the
 * benchmark's per-step counts, and prints for each AWS limit its use at N sessions, the first
 * limit to break, and the cost of a session-hour with every price used. See docs/SCALE.md.
 *
 *   npm run capacity -- --sessions N [--turns-per-minute T] [--idle-fraction F] [--tenants K]
 *                       [--context key=value,...] [--quota id=value,...] [--template file] [--json]
 *
 * `--context` takes CDK context keys (infra/lib/context.ts; the template is synthesized with them,
 * e.g. apiThrottleRate=N, rateLimits=write=N, rateLimitShards=N, streamTier=fargate,
 * streamTierMaxTasks=N, harnessMemoryMiB=N, harnessReservedConcurrency=N, fargateSpot=true,
 * sandboxClusters=N, sandboxCidrBlocks=N, vpcInterfaceEndpoints=true, warmPool=N for N tasks started
 * ahead in all) and the
 * model's settings the template cannot show: the former designs Corral
 * replaced, for comparison (interrupts=poll, sessionIndex=per-status|per-turn), subnetIps=N for an existing
 * VPC, and constant.<id>=N for a workload constant (scripts/capacity/sources.ts). `--quota` sets applied
 * quota values (ids in sources.ts), e.g. after increases. Offline: nothing touches AWS.
 */
import { existsSync, readFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { CONTEXT_KEYS } from '../infra/lib/context.js';
import type { CfnTemplate } from '../infra/rehearsal/template.js';
import { formatRateLimits } from '../lambdas/core/resources/rate-limits.js';
import { capacity, DEFAULT_WORKLOAD, type CapacityReport, type Settings, type Status, type Workload } from './capacity/model.js';
import { FALLBACK, measuredFrom, type Measured } from './capacity/measured.js';
import { deployedShape, type DeployedShape } from './capacity/shape.js';
import { CONSTANTS, PRICES, PRICES_AS_OF, QUOTAS, type ConstantId, type QuotaId } from './capacity/sources.js';

export interface CapacityRun {
  readonly report: CapacityReport;
  readonly shape: DeployedShape;
  readonly measured: Measured;
}

/** Splits `k=v,...` into CDK context and model settings; throws on an unknown key or value. */
export function parseContext(spec: string | undefined): { cdk: Record<string, string>; settings: Partial<Settings> } {
  const cdk: Record<string, string> = {};
  const settings: { -readonly [K in keyof Settings]?: Settings[K] } = {};
  const constants: Partial<Record<ConstantId, number>> = {};
  for (const pair of (spec ?? '').split(',').map((x) => x.trim()).filter(Boolean)) {
    const m = /^([A-Za-z][A-Za-z0-9.]*)=(.*)$/.exec(pair);
    if (!m) throw new Error(`--context: expected key=value, got ${JSON.stringify(pair)}`);
    const [, key, value] = m;
    const int = () => {
      const n = Number(value);
      if (!Number.isInteger(n) || n < 0) throw new Error(`--context ${key}: a whole number, not ${JSON.stringify(value)}`);
      return n;
    };
    const oneOf = <T extends string>(...allowed: T[]): T => {
      if (!(allowed as string[]).includes(value)) throw new Error(`--context ${key}: ${allowed.join(' or ')}, not ${JSON.stringify(value)}`);
      return value as T;
    };
    // The stream tier is built: the synthesis deploys it, and the model prices what it deploys.
    if (key === 'streamTier') settings.streamTier = cdk[key] = oneOf('lambda', 'fargate');
    // A warm pool is built (CDK context `warmPool`, env=N pairs); here N tasks in all, synthesized
    // as pools of at most 10 (the per-environment maximum) of placeholder environments.
    else if (key === 'warmPool' && /^[0-9]+$/.test(value)) {
      const n = int();
      cdk[key] = Array.from({ length: Math.ceil(n / 10) }, (_, i) => `env_capacity${i}=${Math.min(10, n - 10 * i)}`).join(',');
    }
    else if (key in CONTEXT_KEYS) cdk[key] = value;
    else if (key === 'interrupts') settings.interrupts = oneOf('poll', 'signal');
    else if (key === 'sessionIndex') settings.sessionIndex = oneOf('per-turn', 'per-status', 'per-session');
    else if (key === 'taskState') settings.taskState = oneOf('poll', 'events');
    else if (key === 'stageRateLimit') throw new Error('--context stageRateLimit: the stage throttle is a deploy setting now; use apiThrottleRate (CDK context)');
    else if (key === 'fargateSpot') settings.fargateSpot = oneOf('true', 'false') === 'true';
    else if (key === 'subnetIps') settings.subnetIps = int();
    else if (key.startsWith('constant.') && key.slice(9) in CONSTANTS) {
      const n = Number(value);
      if (!Number.isFinite(n) || n < 0) throw new Error(`--context ${key}: a number, not ${JSON.stringify(value)}`);
      constants[key.slice(9) as ConstantId] = n;
    } else throw new Error(`--context: unknown key ${JSON.stringify(key)}`);
  }
  if (Object.keys(constants).length) settings.constants = constants;
  return { cdk, settings };
}

export function parseQuotas(spec: string | undefined): Partial<Record<QuotaId, number>> {
  const out: Partial<Record<QuotaId, number>> = {};
  for (const pair of (spec ?? '').split(',').map((x) => x.trim()).filter(Boolean)) {
    const m = /^([A-Za-z0-9]+)=([0-9]+)$/.exec(pair);
    if (!m || !(m[1] in QUOTAS) || Number(m[2]) <= 0) throw new Error(`--quota: expected <quota id>=<positive integer> with an id of ${Object.keys(QUOTAS).join(', ')}; got ${JSON.stringify(pair)}`);
    out[m[1] as QuotaId] = Number(m[2]);
  }
  return out;
}

/** The benchmark's counts from `file`, or the documented fallback if it is absent. */
export function loadMeasured(file = 'bench/results/latest.json'): Measured {
  if (!existsSync(file)) return FALLBACK;
  return measuredFrom(JSON.parse(readFileSync(file, 'utf8')), file);
}

/** The model on a template: what `npm run capacity` prints. */
export function runCapacity(template: CfnTemplate, workload: Workload, settings: Partial<Settings> = {}, measured = loadMeasured()): CapacityRun {
  const shape = deployedShape(template);
  return { report: capacity({ shape, measured, workload, settings }), shape, measured };
}

const statusLabel = (s: Status) => (s === 'proposed' ? 'proposed, not built' : s === 'former' ? 'former design' : 'deployed');
const money = (x: number) => (x === 0 ? '$0' : x < 0.0001 ? `$${x.toExponential(1)}` : `$${x.toFixed(x < 0.01 ? 5 : 4)}`);
const count = (x: number) => (!Number.isFinite(x) ? 'never' : x >= 100 ? Math.round(x).toLocaleString('en-US') : x >= 1 ? x.toFixed(1) : x.toPrecision(2));
const pct = (x: number) => (!Number.isFinite(x) ? 'inf' : `${(x * 100).toFixed(x < 0.01 ? 2 : 1)}%`);

/** The report as Markdown (what docs/SCALE.md quotes). */
export function renderText(run: CapacityRun): string {
  const { report: r, shape, measured } = run;
  const w = r.workload;
  const out: string[] = [];
  const line = (s = '') => out.push(s);
  line(`# Corral capacity at ${w.sessions.toLocaleString('en-US')} sessions`);
  line();
  line(`Workload: ${w.turnsPerMinute} turn(s)/min per active session, ${w.idleFraction * 100}% idle, ${w.tenants} tenant(s); a turn = ${w.modelCallsPerTurn} model call(s) of ${w.modelCallSeconds} s + ${w.toolCallsPerTurn} tool call(s) of ${w.toolCallSeconds} s.`);
  const settingsParts = [
    ...(r.proposed.length ? [`**proposed, not built: ${r.proposed.join(', ')}**`] : []),
    ...(r.former.length ? [`**former design, replaced: ${r.former.join(', ')}**`] : []),
  ];
  line(`Settings: ${settingsParts.length ? settingsParts.join('; ') : 'the template and code as they deploy (nothing proposed)'}.`);
  const f = shape.functions;
  line(
    `Template: ${Object.entries(f)
      .map(([role, x]) => `${role} ${x!.memoryMiB} MB / ${x!.timeoutSeconds} s${x!.reservedConcurrency !== undefined ? ` / reserved ${x!.reservedConcurrency}` : ''}`)
      .join('; ')}; stage ${shape.stage.rateLimit ?? '-'} rps (burst ${shape.stage.burstLimit ?? '-'}); rate limits ${formatRateLimits(shape.rateLimits)} a minute per tenant, up to ${shape.rateLimitShards} shards; wake queue ${shape.wakeQueue.fifo ? 'FIFO' : 'standard'}${shape.wakeQueue.highThroughput ? ' high-throughput' : ''}, visibility ${shape.wakeQueue.visibilityTimeoutSeconds} s; sandbox ${shape.sandboxTask.vcpu} vCPU / ${shape.sandboxTask.memoryGb} GB ${shape.sandboxTask.arch}; sandbox subnets ${shape.subnets.map((s) => s.cidr).join(', ') || 'none (existing VPC)'}${shape.s3GatewayOnSandboxSubnets ? ' (on the S3 gateway endpoint)' : ''}; sandbox clusters ${shape.sandboxClusters}; VPC endpoints ${shape.vpcEndpoints.join(', ') || 'none'}; gsi1 ${shape.sessionIndexOnStatus ? 'carries the status' : 'does not carry the status'} (the session index: a listing item per session); tables ${shape.tables.map((t) => t.billingMode).join(', ')}; NAT gateways ${shape.natGateways}.`,
  );
  line(`Measured: ${measured.source}.`);
  line(`Derived: ${r.derived.stepsPerTurn} steps a turn, harness busy ${r.derived.harnessSecondsPerTurn.toFixed(2)} s a turn; the write limit counted on ${r.derived.rateLimitWriteShards} shard(s).`);
  const breakEven = r.derived.interfaceEndpointsBreakEvenSessions;
  if (breakEven !== undefined) {
    line(`Interface endpoints: they pay for themselves (what they carry off the NAT, at $${PRICES.natGatewayGb.value} - $${PRICES.vpcInterfaceEndpointGb.value} a GB, against their hourly price) from ${count(breakEven)} sessions${Number.isFinite(breakEven) ? `: ${w.sessions >= breakEven ? 'they do' : 'they do not'} at ${w.sessions.toLocaleString('en-US')}` : ''}.`);
  }
  line();
  line('## Limits');
  line();
  line('| limit | quota | used | utilisation | breaks at (sessions) | status |');
  line('| --- | ---: | ---: | ---: | ---: | --- |');
  for (const l of r.limits) {
    const quota = `${count(l.quota)} ${l.unit}${l.quota !== l.defaultQuota ? ` (default ${count(l.defaultQuota)})` : ''}`;
    const flag = l.utilisation >= 1 ? ' **over**' : l.utilisation >= 0.8 ? ' **>80%**' : '';
    line(`| ${l.name} | ${quota} | ${count(l.used)} | ${pct(l.utilisation)}${flag} | ${count(l.breaksAt)} | ${statusLabel(l.status)} |`);
  }
  line();
  line(r.firstToBreak ? `**First to break: ${r.firstToBreak.name}, at ${count(r.firstToBreak.sessions)} sessions.**` : '**No limit depends on the number of sessions.**');
  const over = r.limits.filter((l) => l.utilisation > 0.8);
  if (over.length) {
    line();
    line(`Above 80% at ${w.sessions.toLocaleString('en-US')} sessions (the quota each would need for 80%):`);
    for (const l of over) line(`- ${l.name}: ${count(Math.ceil(l.used / 0.8))} ${l.unit}${l.adjustable ? '' : ' — **not adjustable**: needs a design change'}`);
  }
  line();
  line('## Cost per session-hour (excluding the model)');
  line();
  line('| item | active | idle, stream open | how | status |');
  line('| --- | ---: | ---: | --- | --- |');
  for (const i of r.cost.items) line(`| ${i.item} | ${money(i.active)} | ${money(i.idle)} | ${i.how} | ${statusLabel(i.status)} |`);
  line(`| **total** | **${money(r.cost.activePerSessionHour)}** | **${money(r.cost.idlePerSessionHour)}** | | |`);
  line();
  line(`Fixed: ${r.cost.fixed.map((x) => `${x.item} $${x.perMonth.toFixed(2)}/month`).join('; ')}; in all $${r.cost.fixedPerMonth.toFixed(2)}/month.`);
  line(`At ${w.sessions.toLocaleString('en-US')} sessions with ${w.idleFraction * 100}% idle: ${money(r.cost.perSessionHourAtN)} per session-hour, fixed costs included.`);
  line();
  line('## Interrupts (the watch through model and tool calls)');
  line();
  line('| design | RRU per running session-hour | $ per 1,000 running session-hours | RRU per active session-hour | $ per active session-hour |');
  line('| --- | ---: | ---: | ---: | ---: |');
  for (const [d, label] of [['poll', 'former: log query every 250 ms'], ['signal', 'deployed: signal read every second + signal and log read per call']] as const) {
    const x = r.interrupts[d];
    line(`| ${label} | ${count(x.rruPerRunningHour)} | $${x.dollarsPer1000RunningHours.toFixed(3)} | ${count(x.rruPerActiveHour)} | ${money(x.dollarsPerActiveHour)} |`);
  }
  line();
  line('## Other platforms (same sandbox size)');
  line();
  line('| platform | active | idle | fixed / month | how |');
  line('| --- | ---: | ---: | ---: | --- |');
  for (const c of r.comparisons) line(`| ${c.platform} | ${money(c.active)} | ${money(c.idle)} | $${c.fixedPerMonth.toFixed(0)} | ${c.how} |`);
  line();
  line(`## Prices used (${PRICES_AS_OF})`);
  line();
  const used = new Set([...r.cost.items.flatMap((i) => i.prices), ...r.cost.fixed.flatMap((x) => x.prices), ...r.comparisons.flatMap((c) => c.prices)]);
  for (const id of [...used].sort()) {
    const p = PRICES[id];
    line(`- ${id}: ${p.value} ${p.unit} — ${p.source}${'note' in p ? ` (${p.note})` : ''}`);
  }
  return out.join('\n');
}

async function main() {
  const { values } = parseArgs({
    options: {
      sessions: { type: 'string' },
      'turns-per-minute': { type: 'string' },
      'idle-fraction': { type: 'string' },
      tenants: { type: 'string' },
      context: { type: 'string' },
      quota: { type: 'string' },
      template: { type: 'string' },
      bench: { type: 'string' },
      json: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help || values.sessions === undefined) {
    console.log('usage: npm run capacity -- --sessions N [--turns-per-minute T] [--idle-fraction F] [--tenants K] [--context key=value,...] [--quota id=value,...] [--template file] [--bench latest.json] [--json]');
    if (!values.help) process.exit(2);
    return;
  }
  const number = (name: string, v: string | undefined, dflt: number) => {
    if (v === undefined) return dflt;
    const n = Number(v);
    if (v.trim() === '' || !Number.isFinite(n)) throw new Error(`--${name}: a number, not ${JSON.stringify(v)}`);
    return n;
  };
  const workload: Workload = {
    ...DEFAULT_WORKLOAD,
    sessions: number('sessions', values.sessions, 0),
    turnsPerMinute: number('turns-per-minute', values['turns-per-minute'], DEFAULT_WORKLOAD.turnsPerMinute),
    idleFraction: number('idle-fraction', values['idle-fraction'], DEFAULT_WORKLOAD.idleFraction),
    tenants: number('tenants', values.tenants, DEFAULT_WORKLOAD.tenants),
  };
  const { cdk, settings } = parseContext(values.context);
  const quotas = parseQuotas(values.quota);
  const { templateFor } = await import('./capacity/synth.js');
  const template = values.template ? (JSON.parse(readFileSync(values.template, 'utf8')) as CfnTemplate) : await templateFor(cdk);
  const run = runCapacity(template, workload, { ...settings, quotas }, loadMeasured(values.bench));
  if (values.json) console.log(JSON.stringify({ ...run, quotas: QUOTAS, prices: PRICES, pricesAsOf: PRICES_AS_OF }, (_k, v) => (v === Infinity ? null : v), 2));
  else console.log(renderText(run));
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  main().catch((err) => {
    console.error((err as Error).message);
    process.exit(2);
  });
}
