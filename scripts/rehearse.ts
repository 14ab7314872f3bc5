/**
 * The deploy rehearsal (`npm run rehearse`): synthesize the CDK app, run the stack as the
 * template describes it on this machine (infra/rehearsal/rehearsal.ts), and drive it with the
 * official SDK through every scenario (the smoke scenarios plus the rehearsal's own). Prints a
 * table and what each function called, and exits non-zero when anything failed.
 *
 *   npm run rehearse [-- --only name,... --dynamodb dynalite|dynamodb-local --keep --json]
 *
 * The rehearsal synthesizes with `harnessTimeoutMinutes=1` (so a step that would outlive the
 * function is rehearsed in a minute, not fifteen), `sandboxLimits=file_size=16m` (so the
 * `sandbox-boundary` scenario hits a limit of the stack's setting without writing a gigabyte),
 * `sandboxIdleMinutes=1` (so `workspace-after-idle` waits a minute for the reaper, not fifteen)
 * and the scripted model as the Messages API.
 */
import { parseArgs } from 'node:util';
import { WEBHOOK_CONTEXT } from '../infra/rehearsal/webhook-scenarios.js';
import { pathToFileURL } from 'node:url';
import { startRehearsal, type Rehearsal } from '../infra/rehearsal/rehearsal.js';
import { EGRESS_STANDIN_HOSTS, REHEARSAL_SCENARIOS, rehearsalHooks } from '../infra/rehearsal/rehearsal-scenarios.js';
import { CANARY_HOST, canaryOriginCa } from '../infra/rehearsal/credential-scenarios.js';
import { runScenarios, selectScenarios, timeToFirstTokenSummary, type ScenarioResult } from '../infra/rehearsal/scenarios.js';
import { startFakeMessagesApi, type FakeMessagesApi } from '../test/fixtures/fake-messages-api.js';

// The rehearsal runs AWS SDK clients on this machine's Node.js; Lambda runs 22.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

export const REHEARSAL_CONTEXT = { harnessTimeoutMinutes: '1', sandboxLimits: 'file_size=16m', sandboxIdleMinutes: '1', ...WEBHOOK_CONTEXT } as const;

export interface RehearseOptions {
  only?: string[];
  /** Stand-in names the proxy service resolves to loopback (`RehearsalOptions.egressHosts`). */
  egressHosts?: string[];
  /** CA certificates (PEM) the proxy service trusts upstream (`RehearsalOptions.upstreamCa`). @default the canary API's, with `egress-credentials` */
  upstreamCa?: string;
  /** More CDK context for the synthesis (`--context k=v,...`). */
  context?: Record<string, string>;
  /** The account's Lambda concurrency. @default 50 */
  accountConcurrency?: number;
  /** The scripted model to use; its URL must be the one the assembly was synthesized with. */
  fake?: FakeMessagesApi;
  /** A cloud assembly synthesized with {@link REHEARSAL_CONTEXT} and the fake's URL. */
  cloudAssembly?: string;
  dynamodb?: 'dynalite' | 'dynamodb-local';
  keepWorkDir?: boolean;
  log?: (line: string) => void;
  onResult?: (r: ScenarioResult) => void;
}

export interface RehearseReport {
  results: ScenarioResult[];
  /** Calls each function made, by `function service:Operation`. */
  calls: Array<[string, number]>;
  /** Secrets Manager and SSM calls by the secret or parameter they name (`AwsGateway.named`). */
  named: Rehearsal['gateway']['named'];
  denials: Rehearsal['gateway']['denials'];
  refusals: Rehearsal['network']['refusals'];
  functionStats: Record<string, Rehearsal['functions'] extends Map<string, infer F> ? F extends { stats: infer S } ? S : never : never>;
  workDir: string;
}

/** The canary API's stand-in name added to the proxy service's, and its CA trusted upstream. */
function canaryStandIn(opts: RehearseOptions): { egressHosts: string[]; upstreamCa: string } {
  const hosts = opts.egressHosts ?? (opts.only?.includes('egress') ? EGRESS_STANDIN_HOSTS : []);
  return { egressHosts: [...hosts, CANARY_HOST], upstreamCa: opts.upstreamCa ?? canaryOriginCa().certPem };
}

export async function rehearse(opts: RehearseOptions = {}): Promise<RehearseReport> {
  const log = opts.log ?? (() => undefined);
  const fake = opts.fake ?? (await startFakeMessagesApi());
  let r: Rehearsal | undefined;
  try {
    r = await startRehearsal({
      context: { ...REHEARSAL_CONTEXT, ...opts.context, anthropicBaseUrl: fake.url },
      cloudAssembly: opts.cloudAssembly,
      accountConcurrency: opts.accountConcurrency,
      dynamodb: opts.dynamodb,
      keepWorkDir: opts.keepWorkDir,
      log,
      // The egress scenario's stand-in internet names (loopback), for the proxy service's tasks.
      egressHosts: opts.egressHosts ?? (opts.only?.includes('egress') ? EGRESS_STANDIN_HOSTS : undefined),
      // The environment-variable canary's API: its stand-in name and its CA (egress-credentials).
      ...(opts.only?.includes('egress-credentials') ? canaryStandIn(opts) : { upstreamCa: opts.upstreamCa }),
    });
    log(`rehearsed API at ${r.apiUrl} (work directory ${r.workDir})`);
    const hooks = rehearsalHooks(r, fake, opts.only);
    const results = await runScenarios({
      baseURL: r.apiUrl,
      apiKey: r.apiKey,
      only: opts.only,
      hooks,
      clientOptions: { maxRetries: 2 },
      onResult: opts.onResult,
    });
    return {
      results,
      calls: [...r.gateway.calls.entries()].sort(([a], [b]) => a.localeCompare(b)),
      named: [...r.gateway.named],
      denials: [...r.gateway.denials],
      refusals: [...r.network.refusals],
      functionStats: Object.fromEntries([...r.functions.entries()].map(([id, f]) => [id, { ...f.stats }])),
      workDir: r.workDir,
    };
  } finally {
    await r?.stop();
    if (!opts.fake) await fake.close();
  }
}

async function main() {
  const { values } = parseArgs({
    options: {
      only: { type: 'string' },
      dynamodb: { type: 'string' },
      context: { type: 'string' },
      'account-concurrency': { type: 'string' },
      keep: { type: 'boolean' },
      json: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help) {
    console.log('usage: npm run rehearse [-- --only name,... --dynamodb dynalite|dynamodb-local --context key=value,... --account-concurrency N --keep --json]');
    return;
  }
  if (values.dynamodb && values.dynamodb !== 'dynalite' && values.dynamodb !== 'dynamodb-local') {
    console.error(`--dynamodb: dynalite or dynamodb-local, not ${values.dynamodb}`);
    process.exit(2);
  }
  const only = values.only?.split(',').map((s) => s.trim()).filter(Boolean);
  const context: Record<string, string> = {};
  for (const pair of (values.context ?? '').split(',').map((s) => s.trim()).filter(Boolean)) {
    const m = pair.match(/^([A-Za-z][A-Za-z0-9]*)=(.*)$/);
    if (!m) {
      console.error(`--context: expected key=value, got ${JSON.stringify(pair)}`);
      process.exit(2);
    }
    context[m[1]] = m[2];
  }
  const accountConcurrency = values['account-concurrency'] === undefined ? undefined : Number(values['account-concurrency']);
  if (accountConcurrency !== undefined && (!Number.isInteger(accountConcurrency) || accountConcurrency < 1 || accountConcurrency > 10_000)) {
    console.error('--account-concurrency: an integer from 1 to 10000');
    process.exit(2);
  }
  // Unknown names fail before anything starts.
  try {
    selectScenarios(only, REHEARSAL_SCENARIOS.map((name) => ({ name, proves: '', timeoutMs: 0, run: async () => '' })));
  } catch (err) {
    console.error((err as Error).message);
    process.exit(2);
  }
  const started = Date.now();
  const report = await rehearse({
    only,
    context,
    accountConcurrency,
    dynamodb: values.dynamodb as RehearseOptions['dynamodb'],
    keepWorkDir: values.keep,
    log: values.json ? undefined : (l) => console.error(`[rehearsal] ${l}`),
    onResult: values.json ? undefined : (res) => console.error(`${res.ok ? 'pass' : 'FAIL'}  ${res.name}  ${(res.durationMs / 1000).toFixed(1)} s  ${res.detail}`),
  });
  const failed = report.results.filter((x) => !x.ok);
  if (values.json) {
    console.log(JSON.stringify(report, null, 2));
  } else {
    const rows = report.results.map((x) => [x.ok ? 'pass' : 'FAIL', x.name, `${(x.durationMs / 1000).toFixed(1)} s`, x.detail]);
    const width = (i: number) => Math.max(...rows.map((row) => row[i].length), 4);
    console.log('\nscenario results');
    for (const row of rows) console.log(`  ${row[0].padEnd(4)}  ${row[1].padEnd(width(1))}  ${row[2].padStart(width(2))}  ${row[3]}`);
    const ttft = timeToFirstTokenSummary(report.results);
    console.log(`\ntime to first token: ${ttft.count} model calls, p50 ${ttft.p50 ?? '-'} ms, p95 ${ttft.p95 ?? '-'} ms`);
    console.log('\nAWS calls by function (each checked against its role from the template)');
    for (const [k, n] of report.calls) console.log(`  ${String(n).padStart(5)}  ${k}`);
    console.log(`\nIAM denials: ${report.denials.length}`);
    for (const d of report.denials) console.log(`  ${d.function}: ${d.action} on ${d.resource}`);
    console.log(`connections refused by security groups: ${report.refusals.length}`);
    for (const x of report.refusals) console.log(`  ${x.from} -> ${x.to}:${x.port}: ${x.reason}`);
    console.log(`\n${report.results.length - failed.length} passed, ${failed.length} failed in ${((Date.now() - started) / 1000).toFixed(0)} s${values.keep ? ` (logs in ${report.workDir}/logs)` : ''}`);
  }
  process.exit(failed.length ? 1 : 0);
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  main().catch((err) => {
    console.error(err);
    process.exit(1);
  });
}
