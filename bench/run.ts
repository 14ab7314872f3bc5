/**
 * Corral's benchmark suite: `npm run bench` (full), `npm run bench -- --quick` (CI, under two
 * minutes), `--smoke` (the smallest configuration, what `test/bench/bench.test.ts` runs).
 *
 * Writes `bench/results/latest.json`, the SVG plots next to it, and `docs/BENCHMARKS.md`.
 * Run `npm run bench -- --help` for the options.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { startFakeMessagesApi } from '../test/fixtures/fake-messages-api.js';
import { FARGATE_DISTRIBUTION, FARGATE_SOURCES, type DelayDistribution } from './lib/fargate.js';
import { startGitServer } from './lib/git-server.js';
import { ensurePeerPackage } from './lib/peer-package.js';
import { nowMs, round } from './lib/stats.js';
import { renderMarkdown, renderPlots } from './report.js';
import { runBundles, type BundlesResult } from './suites/bundles.js';
import { runLogReads, type LogReadsResult } from './suites/log-reads.js';
import { runManyBrains, type ManyBrainsResult } from './suites/many-brains.js';
import { runOverhead, type OverheadResult } from './suites/overhead.js';
import { runPeer, type PeerConfig, type PeerResult } from './suites/peer.js';
import { runTtftScenario, type TtftScenarioConfig, type TtftScenarioResult } from './suites/ttft.js';

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export type Mode = 'full' | 'quick' | 'smoke';
export const SUITES = ['ttft', 'overhead', 'reads', 'brains', 'bundles', 'peer'] as const;
export type SuiteName = (typeof SUITES)[number];

export interface BenchOptions {
  mode: Mode;
  /** The fake model's time to first byte for the TTFT and many-brains runs. */
  modelLatencyMs: number;
  /** The fixed model latency of the overhead run. */
  overheadModelLatencyMs: number;
  /** Scale of the simulated Fargate waits (1 = as the cited reports). */
  fargateScale: number;
  fargateMedianMs: number;
  fargateP95Ms: number;
  /** Concurrent sessions of the many-brains run. */
  brains: number;
  sandboxShare: number;
  seed: number;
  /** Sample where the CPU goes during the many-brains run. */
  cpuProfile: boolean;
  only: SuiteName[];
  outDir: string;
  /** Where the Markdown report goes (null: none). */
  docPath: string | null;
  quiet: boolean;
  /**
   * Keep the other suites' results from the `latest.json` already in `outDir` and replace only
   * those this run measured (for a run of some suites with `--only`).
   */
  merge: boolean;
}

interface Profile {
  real: Pick<TtftScenarioConfig, 'sessions' | 'warmup' | 'concurrency'>;
  simulated: Pick<TtftScenarioConfig, 'sessions' | 'warmup' | 'concurrency' | 'arrivalIntervalMs'>;
  fargateScale: number;
  overhead: { sessions: number; turnsPerSession: number; warmupTurns: number };
  reads: { sizes: number[]; turns: number };
  brains: { sessions: number; turns: number };
  bundles: { imports: number };
  peer: PeerConfig;
}

export const PROFILES: Record<Mode, Profile> = {
  full: {
    real: { sessions: 60, warmup: 4, concurrency: 4 },
    simulated: { sessions: 40, warmup: 4, concurrency: 0, arrivalIntervalMs: 1_000 },
    fargateScale: 1,
    overhead: { sessions: 12, turnsPerSession: 15, warmupTurns: 5 },
    reads: { sizes: [10, 1_000, 10_000], turns: 3 },
    brains: { sessions: 500, turns: 3 },
    bundles: { imports: 10 },
    peer: { sessions: 8, turnsPerSession: 30, warmupTurns: 5 },
  },
  quick: {
    real: { sessions: 12, warmup: 2, concurrency: 2 },
    simulated: { sessions: 12, warmup: 2, concurrency: 0, arrivalIntervalMs: 500 },
    fargateScale: 0.1,
    overhead: { sessions: 4, turnsPerSession: 8, warmupTurns: 3 },
    reads: { sizes: [10, 1_000, 10_000], turns: 2 },
    brains: { sessions: 50, turns: 2 },
    bundles: { imports: 2 },
    peer: { sessions: 2, turnsPerSession: 10, warmupTurns: 3 },
  },
  smoke: {
    real: { sessions: 2, warmup: 0, concurrency: 2 },
    simulated: { sessions: 2, warmup: 0, concurrency: 0, arrivalIntervalMs: 100 },
    fargateScale: 0.02,
    overhead: { sessions: 1, turnsPerSession: 3, warmupTurns: 1 },
    reads: { sizes: [10, 1_000, 10_000], turns: 1 },
    brains: { sessions: 10, turns: 1 },
    bundles: { imports: 1 },
    peer: { sessions: 2, turnsPerSession: 2, warmupTurns: 1 },
  },
};

export interface Goal {
  goal: string;
  target: string;
  actual: string;
  met: boolean;
}

export interface BenchResults {
  schema: 1;
  generated_at: string;
  mode: Mode;
  duration_s: number;
  machine: Record<string, unknown>;
  settings: Record<string, unknown>;
  // The headline figures (the issue's keys, then more of the same kind).
  [key: string]: unknown;
  goals: Goal[];
  /** Suites merged in from later runs (`--merge`): when, at which commit, under what load. */
  suites: {
    ttft?: { real: TtftScenarioResult; simulated_fargate: TtftScenarioResult; isolation: string; repository: { files: number; bytes: number } };
    overhead?: OverheadResult;
    log_reads?: LogReadsResult;
    many_brains?: ManyBrainsResult;
    bundles?: BundlesResult;
    peer?: PeerResult;
  };
  /** Runs whose suites replaced those of the run above (`--merge`), oldest first. */
  merged?: MergedRun[];
}

export interface MergedRun {
  suites: string[];
  generated_at: string;
  mode: Mode;
  duration_s: number;
  commit: unknown;
  uncommitted_changes: unknown;
  load_at_start: unknown;
  load_at_end: unknown;
}

function machine() {
  const git = (args: string[]) => spawnSync('git', args, { cwd: ROOT, encoding: 'utf8' }).stdout?.trim() ?? '';
  const cpus = os.cpus();
  return {
    cpu: cpus[0]?.model ?? 'unknown',
    cores: cpus.length,
    memory_gb: round(os.totalmem() / 1024 ** 3, 1),
    os: `${os.type()} ${os.release()} ${os.arch()}`,
    node: process.version,
    commit: git(['rev-parse', '--short', 'HEAD']),
    uncommitted_changes: git(['status', '--porcelain']).split('\n').filter(Boolean).length,
    load_at_start: os.loadavg().map((l) => round(l)),
  };
}

/** Runs the suites and returns the results (writes nothing). */
export async function runBench(o: BenchOptions): Promise<BenchResults> {
  const p = PROFILES[o.mode];
  const log = (msg: string) => {
    if (!o.quiet) console.error(msg);
  };
  // The peer's packages are not the root's (see bench/lib/peer-package.ts): install them before
  // any suite runs, so that a failed install ends the run at once, and outside its duration.
  if (o.only.includes('peer')) await ensurePeerPackage({ log, quiet: o.quiet });
  const started = nowMs();
  const results: BenchResults = {
    schema: 1,
    generated_at: new Date().toISOString(),
    mode: o.mode,
    duration_s: 0,
    machine: machine(),
    settings: { ...o, profile: p, outDir: undefined, docPath: undefined, quiet: undefined },
    goals: [],
    suites: {},
  };
  const load: Record<string, number[]> = {};
  const suite = async <T>(name: SuiteName, fn: () => Promise<T>): Promise<T | undefined> => {
    if (!o.only.includes(name)) return undefined;
    log(`${name}...`);
    const t0 = nowMs();
    const before = os.loadavg()[0];
    const out = await fn();
    load[name] = [round(before), round(os.loadavg()[0])];
    log(`${name}: ${round((nowMs() - t0) / 1000, 1)} s`);
    return out;
  };

  const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'corral-bench-'));
  try {
    results.suites.ttft = await suite('ttft', async () => {
      const fake = await startFakeMessagesApi({ latencyMs: o.modelLatencyMs });
      const git = await startGitServer(path.join(scratch, 'git'));
      try {
        const ctx = { modelUrl: fake.url, git, log };
        const real = await runTtftScenario({ name: 'real', ...p.real, sandboxShare: o.sandboxShare, seed: o.seed }, ctx);
        const delay: DelayDistribution = { ...FARGATE_DISTRIBUTION, medianMs: o.fargateMedianMs, p95Ms: o.fargateP95Ms, scale: o.fargateScale };
        const simulated = await runTtftScenario({ name: 'simulated_fargate', ...p.simulated, sandboxShare: o.sandboxShare, seed: o.seed + 1, delay }, ctx);
        return { real, simulated_fargate: simulated, isolation: real.isolation, repository: { files: git.files, bytes: git.bytes } };
      } finally {
        await git.close();
        await fake.close();
      }
    });
    results.suites.overhead = await suite('overhead', async () => {
      const fake = await startFakeMessagesApi({ latencyMs: o.overheadModelLatencyMs });
      try {
        return await runOverhead(p.overhead, { modelUrl: fake.url, modelLatencyMs: o.overheadModelLatencyMs, log });
      } finally {
        await fake.close();
      }
    });
    results.suites.log_reads = await suite('reads', async () => {
      const fake = await startFakeMessagesApi({ latencyMs: 0 });
      try {
        return await runLogReads(p.reads, { modelUrl: fake.url, log, fakeRequests: () => fake.requests });
      } finally {
        await fake.close();
      }
    });
    results.suites.many_brains = await suite('brains', async () => {
      const fake = await startFakeMessagesApi({ latencyMs: o.modelLatencyMs });
      try {
        return await runManyBrains({ sessions: o.brains, turns: p.brains.turns, cpuProfile: o.cpuProfile }, { modelUrl: fake.url, modelLatencyMs: o.modelLatencyMs, log });
      } finally {
        await fake.close();
      }
    });
    results.suites.bundles = await suite('bundles', () => runBundles(p.bundles, { log }));
    results.suites.peer = await suite('peer', async () => {
      // The model answers at once: the turn is what each side costs around it. Each side's model
      // client sits idle while the other side runs its session (seconds): the server keeps idle
      // connections open, so that it never closes one just as a client reuses it (ECONNRESET,
      // which ended a run at a load average of 14 on 2 cores); the clients close their own.
      const fake = await startFakeMessagesApi({ latencyMs: 0, keepAliveTimeoutMs: 10 * 60_000 });
      try {
        return await runPeer(p.peer, { modelUrl: fake.url, fakeRequests: () => fake.requests, log });
      } finally {
        await fake.close();
      }
    });
  } finally {
    fs.rmSync(scratch, { recursive: true, force: true });
  }
  results.machine.load_per_suite = load;
  results.machine.load_at_end = os.loadavg().map((l) => round(l));
  results.duration_s = round((nowMs() - started) / 1000, 1);
  Object.assign(results, headline(results), { goals: goals(results) });
  return results;
}

/** The flat figures: the issue's keys first. */
function headline(r: BenchResults): Record<string, number | boolean | null> {
  const t = r.suites.ttft;
  const ov = r.suites.overhead;
  const lr = r.suites.log_reads;
  const mb = r.suites.many_brains;
  const bu = r.suites.bundles;
  const pe = r.suites.peer;
  const size = (n: number) => lr?.sizes.find((s) => s.events === n);
  const bundle = (name: string) => bu?.bundles.find((b) => b.name === name);
  const v = (x: number | undefined) => (x === undefined || Number.isNaN(x) ? null : x);
  return {
    ttft_coupled_p50_ms: v(t?.real.coupled.ttft_ms.p50),
    ttft_coupled_p95_ms: v(t?.real.coupled.ttft_ms.p95),
    ttft_decoupled_p50_ms: v(t?.real.decoupled.ttft_ms.p50),
    ttft_decoupled_p95_ms: v(t?.real.decoupled.ttft_ms.p95),
    overhead_p50_ms: v(ov?.harness_overhead_ms.p50),
    overhead_p95_ms: v(ov?.harness_overhead_ms.p95),
    step_reads_10: v(size(10)?.reads_per_step),
    step_reads_10000: v(size(10_000)?.reads_per_step),
    concurrent_sessions: v(mb?.concurrent_sessions),
    steps_per_second: v(mb?.steps_per_second),
    harness_bundle_bytes: v(bundle('harness-step')?.bytes),
    peer_turn_ratio_p50: v(pe?.ratio_p50),
    peer_turn_ratio_p95: v(pe?.ratio_p95),
    // More of the same.
    ttft_coupled_p99_ms: v(t?.real.coupled.ttft_ms.p99),
    ttft_decoupled_p99_ms: v(t?.real.decoupled.ttft_ms.p99),
    ttft_p50_reduction_pct: v(t?.real.p50_reduction_pct),
    ttft_p95_reduction_pct: v(t?.real.p95_reduction_pct),
    ttft_sim_fargate_coupled_p50_ms: v(t?.simulated_fargate.coupled.ttft_ms.p50),
    ttft_sim_fargate_coupled_p95_ms: v(t?.simulated_fargate.coupled.ttft_ms.p95),
    ttft_sim_fargate_decoupled_p50_ms: v(t?.simulated_fargate.decoupled.ttft_ms.p50),
    ttft_sim_fargate_decoupled_p95_ms: v(t?.simulated_fargate.decoupled.ttft_ms.p95),
    ttft_sim_fargate_p50_reduction_pct: v(t?.simulated_fargate.p50_reduction_pct),
    ttft_sim_fargate_p95_reduction_pct: v(t?.simulated_fargate.p95_reduction_pct),
    overhead_p99_ms: v(ov?.harness_overhead_ms.p99),
    sandbox_tool_call_p50_ms: v(ov?.sandbox_tool_calls?.tool_latency_ms.p50),
    sandbox_tool_call_p95_ms: v(ov?.sandbox_tool_calls?.tool_latency_ms.p95),
    sandbox_round_trip_p50_ms: v(ov?.sandbox_tool_calls?.agent_round_trip_ms.p50),
    sandbox_round_trip_p95_ms: v(ov?.sandbox_tool_calls?.agent_round_trip_ms.p95),
    accepted_to_model_request_p50_ms: v(ov?.accepted_to_model_request_ms.p50),
    accepted_to_model_request_p95_ms: v(ov?.accepted_to_model_request_ms.p95),
    model_done_to_readable_p50_ms: v(ov?.model_done_to_readable_ms.p50),
    model_done_to_readable_p95_ms: v(ov?.model_done_to_readable_ms.p95),
    step_reads_1000: v(size(1_000)?.reads_per_step),
    step_log_reads_10: v(size(10)?.log_reads_per_step),
    step_log_reads_10000: v(size(10_000)?.log_reads_per_step),
    step_reads_flat: lr ? lr.flat : null,
    concurrent_sessions_completed: v(mb?.sessions_completed),
    concurrent_overhead_p95_ms: v(mb?.harness_overhead_ms.p95),
    api_bundle_bytes: v(bundle('api')?.bytes),
    harness_import_p50_ms: v(bundle('harness-step')?.import_ms?.p50),
    api_import_p50_ms: v(bundle('api')?.import_ms?.p50),
    credential_proxy_bundle_bytes: v(bundle('credential-proxy')?.bytes),
    credential_proxy_import_p50_ms: v(bundle('credential-proxy')?.import_ms?.p50),
    sandbox_reaper_bundle_bytes: v(bundle('sandbox-reaper')?.bytes),
    sandbox_reaper_import_p50_ms: v(bundle('sandbox-reaper')?.import_ms?.p50),
    peer_corral_turn_p50_ms: v(pe?.corral.turn_ms.p50),
    peer_corral_turn_p95_ms: v(pe?.corral.turn_ms.p95),
    peer_langgraph_turn_p50_ms: v(pe?.peer.turn_ms.p50),
    peer_langgraph_turn_p95_ms: v(pe?.peer.turn_ms.p95),
  };
}

function goals(r: BenchResults): Goal[] {
  const out: Goal[] = [];
  const t = r.suites.ttft;
  if (t) {
    out.push({ goal: 'Decoupled TTFT p50 below coupled (real provisioning)', target: '>= 60% lower', actual: `${t.real.p50_reduction_pct}% lower`, met: t.real.p50_reduction_pct >= 60 });
    out.push({ goal: 'Decoupled TTFT p95 below coupled (real provisioning)', target: '>= 90% lower', actual: `${t.real.p95_reduction_pct}% lower`, met: t.real.p95_reduction_pct >= 90 });
  }
  const ov = r.suites.overhead;
  if (ov) {
    out.push({ goal: 'Harness overhead p50 (`HarnessOverhead`, per step)', target: '< 10 ms', actual: `${ov.harness_overhead_ms.p50} ms`, met: ov.harness_overhead_ms.p50 < 10 });
    out.push({ goal: 'Harness overhead p95 (`HarnessOverhead`, per step)', target: '< 30 ms', actual: `${ov.harness_overhead_ms.p95} ms`, met: ov.harness_overhead_ms.p95 < 30 });
    out.push({ goal: 'user.message accepted -> model request, p50', target: '< 10 ms', actual: `${ov.accepted_to_model_request_ms.p50} ms`, met: ov.accepted_to_model_request_ms.p50 < 10 });
    out.push({ goal: 'user.message accepted -> model request, p95', target: '< 30 ms', actual: `${ov.accepted_to_model_request_ms.p95} ms`, met: ov.accepted_to_model_request_ms.p95 < 30 });
    out.push({ goal: "model's last byte -> event readable, p50", target: '< 10 ms', actual: `${ov.model_done_to_readable_ms.p50} ms`, met: ov.model_done_to_readable_ms.p50 < 10 });
    out.push({ goal: "model's last byte -> event readable, p95", target: '< 30 ms', actual: `${ov.model_done_to_readable_ms.p95} ms`, met: ov.model_done_to_readable_ms.p95 < 30 });
    const st = ov.sandbox_tool_calls;
    if (st) out.push({ goal: 'Sandbox tool call overhead (`ToolLatency` of `bash` `echo`), p50', target: '< 10 ms', actual: `${st.tool_latency_ms.p50} ms`, met: st.tool_latency_ms.p50 < 10 });
  }
  const lr = r.suites.log_reads;
  if (lr) {
    const a = lr.sizes.find((s) => s.events === 10);
    const b = lr.sizes.find((s) => s.events === 10_000);
    if (a && b) out.push({ goal: 'Reads per step at 10,000 events equal those at 10', target: `= ${a.reads_per_step}`, actual: `${b.reads_per_step}`, met: a.reads_per_step === b.reads_per_step && lr.flat });
  }
  const rt = lr?.sizes.find((s) => s.events === 10_000)?.round_trips_before_model_request;
  if (rt !== undefined) {
    out.push({ goal: 'Storage round trips, one after another, from a user message to its model request (warm harness)', target: '<= 3', actual: `${rt}`, met: rt <= 3 });
  }
  const mb = r.suites.many_brains;
  if (mb) {
    // The goals were set when a text turn took two harness steps (start_turn, call_model): 75 ms of
    // CPU a step, 14.7 steps/s = 7.35 turns/s. A text turn is one step now, so they are held per
    // turn: < 15 ms a step is < 30 ms a text turn, and 5x the throughput is 36.75 turns/s.
    const perTurn = mb.cpu_ms_per_turn ?? mb.cpu_ms_per_step * 2;
    out.push({ goal: 'CPU of the process per text turn (client, API, harness, dynalite; < 15 ms a step at the 2 steps a text turn took)', target: '< 30 ms', actual: `${perTurn} ms`, met: perTurn < 30 });
    if (r.mode === 'full') {
      out.push({ goal: 'Many brains throughput, 500 sessions: 5x the 7.35 turns/s (14.7 steps/s) of the issue', target: '>= 36.75 turns/s', actual: `${mb.turns_per_second} turns/s`, met: mb.turns_per_second >= 36.75 });
      out.push({ goal: 'Many brains client time to first token p95 (500 ms model)', target: '< 5 s', actual: `${mb.ttft_ms.p95} ms`, met: mb.ttft_ms.p95 < 5000 });
    }
    out.push({
      goal: 'Many brains: every concurrent session makes progress',
      target: r.mode === 'full' ? '>= 500 sessions, all finish' : 'all finish',
      actual: `${mb.sessions_completed}/${mb.concurrent_sessions} finished all ${mb.config.turns} turns`,
      met: mb.sessions_completed === mb.concurrent_sessions && (r.mode !== 'full' || mb.concurrent_sessions >= 500),
    });
  }
  for (const b of r.suites.bundles?.bundles ?? []) {
    if (b.bytes !== undefined) {
      out.push({ goal: `Bundle of ${b.name} (minified)`, target: '< 1 MB (1,000,000 bytes)', actual: `${b.bytes.toLocaleString('en-US')} bytes`, met: b.bytes < 1_000_000 });
    }
    if (b.import_ms) out.push({ goal: `Import of the ${b.name} bundle, p50`, target: '< 150 ms', actual: `${b.import_ms.p50} ms`, met: b.import_ms.p50 < 150 });
  }
  const pe = r.suites.peer;
  if (pe) {
    // A ratio only counts if both sides did the whole workload.
    const sound = [pe.corral.checks, pe.peer.checks].every((c) => c.turns > 0 && c.answered_with_tool_output === c.turns && c.tool_ran === c.turns && c.model_calls_per_turn.min === 2 && c.model_calls_per_turn.max === 2);
    for (const q of ['p50', 'p95'] as const) {
      const ratio = q === 'p50' ? pe.ratio_p50 : pe.ratio_p95;
      out.push({
        goal: `Bash turn, Corral ÷ LangGraph.js + SQLite checkpointer, ${q}`,
        target: '<= 1.0x',
        actual: `${ratio}x (${pe.corral.turn_ms[q]} ms vs ${pe.peer.turn_ms[q]} ms)${sound ? '' : '; a side failed turns'}`,
        met: sound && ratio <= 1,
      });
    }
  }
  return out;
}

/**
 * `prev` (a `latest.json`) with the suites that `cur` measured replaced by `cur`'s, the headline
 * and the goals computed again from the result, and `cur` listed under `merged` (so the report
 * says which run each section comes from). Both must be runs of the same profile.
 */
export function mergeResults(prev: BenchResults, cur: BenchResults): BenchResults {
  if (prev.schema !== 1) throw new Error(`--merge: the previous results have schema ${String(prev.schema)}, not 1`);
  if (prev.mode !== cur.mode) throw new Error(`--merge: the previous results are a ${prev.mode} run and this one is ${cur.mode}: run the same profile`);
  const ran = (Object.keys(cur.suites) as Array<keyof BenchResults['suites']>).filter((k) => cur.suites[k] !== undefined);
  const suites: BenchResults['suites'] = { ...prev.suites };
  for (const k of ran) (suites as Record<string, unknown>)[k] = cur.suites[k];
  const loads = (m: Record<string, unknown>) => (m.load_per_suite ?? {}) as Record<string, number[]>;
  const run: MergedRun = {
    suites: ran,
    generated_at: cur.generated_at,
    mode: cur.mode,
    duration_s: cur.duration_s,
    commit: cur.machine.commit,
    uncommitted_changes: cur.machine.uncommitted_changes,
    load_at_start: cur.machine.load_at_start,
    load_at_end: cur.machine.load_at_end,
  };
  const out: BenchResults = {
    ...prev,
    suites,
    machine: { ...prev.machine, load_per_suite: { ...loads(prev.machine), ...loads(cur.machine) } },
    // A later run of the same suites supersedes an earlier merged one.
    merged: [...(prev.merged ?? []).filter((m) => !m.suites.every((x) => ran.includes(x as (typeof ran)[number]))), run],
  };
  Object.assign(out, headline(out), { goals: goals(out) });
  return out;
}

/** Writes the JSON, the plots and (unless `docPath` is null) the Markdown. */
export function writeResults(r: BenchResults, o: Pick<BenchOptions, 'outDir' | 'docPath'>) {
  fs.mkdirSync(o.outDir, { recursive: true });
  fs.writeFileSync(path.join(o.outDir, 'latest.json'), JSON.stringify(r, null, 2) + '\n');
  const plots = renderPlots(r);
  for (const [name, svg] of Object.entries(plots)) fs.writeFileSync(path.join(o.outDir, name), svg);
  if (o.docPath) {
    const rel = path.relative(path.dirname(o.docPath), o.outDir).split(path.sep).join('/') || '.';
    fs.mkdirSync(path.dirname(o.docPath), { recursive: true });
    fs.writeFileSync(o.docPath, renderMarkdown(r, { plotsDir: rel, sources: FARGATE_SOURCES }));
  }
}

const HELP = `npm run bench [-- options]

  --quick                      CI profile (under two minutes on 2 cores)
  --smoke                      the smallest profile (what test/bench/bench.test.ts runs)
  --model-latency-ms N         the fake model's time to first byte (default 500)
  --overhead-model-latency-ms N  the fixed model latency of the overhead run (default 100)
  --fargate-scale X            scale the simulated Fargate waits (default 1; --quick 0.1)
  --fargate-median-ms N        median of the simulated Fargate start-up (default 30000)
  --fargate-p95-ms N           its 95th percentile (default 60000)
  --brains N                   concurrent sessions of the many-brains run (default 500; --quick 50)
  --cpu-profile                sample where the CPU goes during the many-brains run
  --sandbox-share X            share of sessions needing a sandbox in the first step (default 0.25)
  --only a,b                   run some suites: ${SUITES.join(', ')}
                               (peer installs its own packages on first use: npm ci --prefix bench/peers)
  --merge                      keep the other suites' results from the latest.json in --out and
                               replace only those of this run (e.g. --only peer --merge)
  --out DIR                    results directory (default bench/results)
  --doc PATH | --no-doc        the Markdown report (default docs/BENCHMARKS.md)
  --seed N                     the session mix and simulated waits (default 8)
  --quiet                      no progress on stderr
  --render FILE                only rewrite the plots and the Markdown from a results file`;

export function parseOptions(argv: string[]): (BenchOptions & { render?: string; merge?: boolean }) | 'help' {
  const { values } = parseArgs({
    args: argv,
    options: {
      quick: { type: 'boolean' },
      smoke: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
      'model-latency-ms': { type: 'string' },
      'overhead-model-latency-ms': { type: 'string' },
      'fargate-scale': { type: 'string' },
      'fargate-median-ms': { type: 'string' },
      'fargate-p95-ms': { type: 'string' },
      brains: { type: 'string' },
      'cpu-profile': { type: 'boolean' },
      'sandbox-share': { type: 'string' },
      only: { type: 'string' },
      out: { type: 'string' },
      doc: { type: 'string' },
      'no-doc': { type: 'boolean' },
      seed: { type: 'string' },
      quiet: { type: 'boolean' },
      render: { type: 'string' },
      merge: { type: 'boolean' },
    },
    strict: true,
  });
  if (values.help) return 'help';
  const mode: Mode = values.smoke ? 'smoke' : values.quick ? 'quick' : 'full';
  const p = PROFILES[mode];
  const num = (name: string, v: string | undefined, dflt: number, min = 0) => {
    if (v === undefined) return dflt;
    const n = Number(v);
    if (!Number.isFinite(n) || n < min) throw new Error(`--${name}: expected a number >= ${min}, got ${JSON.stringify(v)}`);
    return n;
  };
  const only = values.only ? values.only.split(',').map((s) => s.trim()) : [...SUITES];
  for (const s of only) if (!(SUITES as readonly string[]).includes(s)) throw new Error(`--only: unknown suite ${JSON.stringify(s)} (use ${SUITES.join(', ')})`);
  return {
    mode,
    modelLatencyMs: num('model-latency-ms', values['model-latency-ms'], 500),
    overheadModelLatencyMs: num('overhead-model-latency-ms', values['overhead-model-latency-ms'], 100),
    fargateScale: num('fargate-scale', values['fargate-scale'], p.fargateScale),
    fargateMedianMs: num('fargate-median-ms', values['fargate-median-ms'], FARGATE_DISTRIBUTION.medianMs, 1),
    fargateP95Ms: num('fargate-p95-ms', values['fargate-p95-ms'], FARGATE_DISTRIBUTION.p95Ms, 1),
    brains: Math.round(num('brains', values.brains, p.brains.sessions, 1)),
    sandboxShare: num('sandbox-share', values['sandbox-share'], 0.25),
    seed: Math.round(num('seed', values.seed, 8)),
    cpuProfile: !!values['cpu-profile'],
    only: only as SuiteName[],
    outDir: path.resolve(values.out ?? path.join(ROOT, 'bench', 'results')),
    docPath: values['no-doc'] ? null : path.resolve(values.doc ?? path.join(ROOT, 'docs', 'BENCHMARKS.md')),
    quiet: !!values.quiet,
    merge: !!values.merge,
    ...(values.render ? { render: path.resolve(values.render) } : {}),
  };
}

async function main() {
  let o: ReturnType<typeof parseOptions>;
  try {
    o = parseOptions(process.argv.slice(2));
  } catch (err) {
    console.error(`${(err as Error).message}\n\n${HELP}`);
    process.exit(2);
  }
  if (o === 'help') {
    console.log(HELP);
    return;
  }
  if (o.render) {
    const r = JSON.parse(fs.readFileSync(o.render, 'utf8')) as BenchResults;
    writeResults(r, { ...o, outDir: path.dirname(o.render) });
    console.log(`rewrote the plots${o.docPath ? ` and ${path.relative(process.cwd(), o.docPath)}` : ''} from ${path.relative(process.cwd(), o.render)}`);
    return;
  }
  const previous = path.join(o.outDir, 'latest.json');
  if (o.merge && !fs.existsSync(previous)) throw new Error(`--merge: there is no ${path.relative(process.cwd(), previous)} to merge into`);
  let r = await runBench(o);
  if (o.merge) r = mergeResults(JSON.parse(fs.readFileSync(previous, 'utf8')) as BenchResults, r);
  writeResults(r, o);
  console.log(`\nCorral benchmarks (${r.mode}, ${r.duration_s} s) -> ${path.relative(process.cwd(), path.join(o.outDir, 'latest.json'))}`);
  for (const g of r.goals) console.log(`  ${g.met ? 'met    ' : 'NOT MET'}  ${g.goal}: ${g.actual} (goal ${g.target})`);
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().then(
    () => process.exit(0),
    (err) => {
      console.error(err);
      process.exit(1);
    },
  );
}
