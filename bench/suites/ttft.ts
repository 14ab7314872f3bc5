/**
 * (1) Coupled versus decoupled time to first token.
 *
 * The same mix of sessions, each with a repository to clone, runs on two runtimes side by side:
 * one with `eagerSandbox` (the coupled, single-container design, bench/lib/eager-sandbox.ts: the
 * sandbox is provisioned and the repository cloned before the first model call) and one with
 * Corral's lazy provisioning (the sandbox starts on the first tool call that needs it). A share of the sessions needs the sandbox
 * in its first step (the model's first answer is a bash call); the others answer in text. Time to
 * first token is client-side: from `events.send` of the user message to the first event the model
 * produced for that turn (`agent.message`, `agent.tool_use`, ...) on the session's event stream.
 *
 * Two scenarios: provisioning as it is here (a bubblewrapped sandbox agent plus a real clone from
 * a local git server), and the same with a simulated Fargate start-up wait in front of it.
 */
import type Anthropic from '@anthropic-ai/sdk';
import type { ProcessSandboxProvider } from '../../lambdas/adapters/local/process-sandbox.js';
import { DelayedProvider, delaySampler, type DelayDistribution } from '../lib/fargate.js';
import type { GitServer } from '../lib/git-server.js';
import { pool, runTurn, SessionStream, startBenchRuntime, type BenchRuntime } from '../lib/runtime.js';
import { reductionPct, rng, round, sleep, summarize, type Summary } from '../lib/stats.js';

export interface TtftScenarioConfig {
  name: 'real' | 'simulated_fargate';
  /** Sessions measured per mode. */
  sessions: number;
  /** Sessions run (and discarded) per mode before measuring. */
  warmup: number;
  /** Sessions in flight at once (closed loop). */
  concurrency: number;
  /**
   * Open loop instead: a new session every this many milliseconds, however many are still
   * waiting (for the simulated waits, so that sessions sleeping on a "Fargate task" do not hold
   * the machine's few cores, nor the run's clock, hostage).
   */
  arrivalIntervalMs?: number;
  /** Share of sessions whose first step needs the sandbox. */
  sandboxShare: number;
  /** A simulated provisioning wait in front of the real one. */
  delay?: DelayDistribution;
  seed: number;
}

export interface TtftModeResult {
  ttft_ms: Summary;
  /** TTFT of sessions that needed a sandbox in the first step / of those that did not. */
  ttft_needs_sandbox_ms: Summary;
  ttft_no_sandbox_ms: Summary;
  /** Provisioning as the provider saw it (real plus any simulated wait). */
  provisioning_ms: Summary;
  sandboxes_provisioned: number;
  /** The harness's own TimeToFirstToken metric (model-side). */
  model_ttft_ms: Summary;
  /** Client-side time to the end of the turn. */
  turn_ms: Summary;
  samples_ms: number[];
}

export interface TtftScenarioResult {
  name: string;
  label: string;
  config: Omit<TtftScenarioConfig, 'delay'> & { delay?: DelayDistribution };
  coupled: TtftModeResult;
  decoupled: TtftModeResult;
  p50_reduction_pct: number;
  p95_reduction_pct: number;
  p99_reduction_pct: number;
}

interface SessionPlan {
  needsSandbox: boolean;
}

const NEEDS_SANDBOX_TEXT = 'Look around the repository first: `ls -R | wc -l`';
const TEXT_ONLY_TEXT = 'Think about the plan for this repository and tell me the first step.';

async function runSession(
  bench: BenchRuntime,
  ids: { agent: string; environment: string },
  repoUrl: string,
  repoToken: string,
  plan: SessionPlan,
  tag: string,
) {
  const { client } = bench;
  const session = await client.beta.sessions.create({
    agent: ids.agent,
    environment_id: ids.environment,
    resources: [{ type: 'github_repository', url: repoUrl, authorization_token: repoToken }],
  } as unknown as Anthropic.Beta.Sessions.SessionCreateParams);
  const stream = await SessionStream.open(client, session.id);
  try {
    const turn = await runTurn(client, session.id, stream, `[bench:${tag}] ${plan.needsSandbox ? NEEDS_SANDBOX_TEXT : TEXT_ONLY_TEXT}`);
    if (turn.stopReason !== 'end_turn') throw new Error(`session ${session.id} ended its turn with ${turn.stopReason}`);
    const toolError = turn.events.find((e) => e.type === 'agent.tool_result' && e.event.is_error === true);
    if (toolError) throw new Error(`session ${session.id}: the tool call failed: ${JSON.stringify(toolError.event.content).slice(0, 300)}`);
    if (plan.needsSandbox && !turn.events.some((e) => e.type === 'agent.tool_result')) throw new Error(`session ${session.id} made no tool call`);
    return { ttftMs: turn.firstModelEventAt - turn.sentAt, turnMs: turn.idleAt - turn.sentAt, needsSandbox: plan.needsSandbox, sessionId: session.id };
  } finally {
    stream.close();
    // Deleting releases the session's sandboxes: the coupled runtime would otherwise keep one per session.
    await client.beta.sessions.delete(session.id).catch(() => undefined);
  }
}

async function setup(bench: BenchRuntime) {
  const agent = await bench.client.beta.agents.create({ name: 'bench', model: 'claude-sonnet-4-6', tools: [{ type: 'agent_toolset_20260401' }] } as Anthropic.Beta.AgentCreateParams);
  const environment = await bench.client.beta.environments.create({ name: 'bench', config: { type: 'cloud' } } as Anthropic.Beta.EnvironmentCreateParams);
  return { agent: agent.id, environment: environment.id };
}

export async function runTtftScenario(
  cfg: TtftScenarioConfig,
  ctx: { modelUrl: string; git: GitServer; log: (msg: string) => void },
): Promise<TtftScenarioResult & { isolation: string }> {
  const wrap = (seed: number) => (cfg.delay ? { wrapProvider: (p: ProcessSandboxProvider) => new DelayedProvider(p, delaySampler(cfg.delay!, seed)) } : {});
  // Both runtimes draw the same sequence of simulated waits.
  const coupled = await startBenchRuntime({ modelUrl: ctx.modelUrl, eagerSandbox: true, ...wrap(cfg.seed) });
  const decoupled = await startBenchRuntime({ modelUrl: ctx.modelUrl, ...wrap(cfg.seed) });
  try {
    const ids = { coupled: await setup(coupled), decoupled: await setup(decoupled) };
    const random = rng(cfg.seed);
    const plans: SessionPlan[] = Array.from({ length: cfg.warmup + cfg.sessions }, () => ({ needsSandbox: random() < cfg.sandboxShare }));
    // At least one session of each kind is measured.
    if (cfg.sessions >= 2) {
      plans[cfg.warmup].needsSandbox = true;
      plans[cfg.warmup + 1].needsSandbox = false;
    }
    const results = { coupled: [] as Awaited<ReturnType<typeof runSession>>[], decoupled: [] as Awaited<ReturnType<typeof runSession>>[] };
    const runtimes = { coupled, decoupled };
    // Alternate the two designs block by block, so that a change in the machine's load falls on both.
    const open = cfg.arrivalIntervalMs !== undefined;
    const block = open ? plans.length : Math.max(1, cfg.concurrency * 2);
    let index = 0;
    let flip = false;
    for (let start = 0; start < plans.length; start += block, flip = !flip) {
      const slice = plans.slice(start, start + block);
      const warm = start < cfg.warmup;
      for (const mode of flip ? (['decoupled', 'coupled'] as const) : (['coupled', 'decoupled'] as const)) {
        const bench = runtimes[mode];
        bench.recorder.recording = open || !warm;
        const job = (plan: SessionPlan, i: number) => () => runSession(bench, ids[mode], ctx.git.url, ctx.git.token, plan, `${cfg.name}-${mode}-${start + i}`);
        const done = open
          ? await Promise.all(slice.map((plan, i) => sleep(i * cfg.arrivalIntervalMs!).then(job(plan, i))))
          : await pool(cfg.concurrency, slice.map(job));
        // Sessions of a block that straddles the warm-up boundary: keep only the measured ones.
        done.forEach((r, i) => {
          if (start + i >= cfg.warmup) results[mode].push(r);
        });
      }
      index += slice.length;
      ctx.log(`  ttft ${cfg.name}: ${Math.min(index, plans.length)}/${plans.length} sessions per design`);
    }
    const mode = (bench: BenchRuntime, rs: typeof results.coupled): TtftModeResult => {
      const measured = new Set(rs.map((r) => r.sessionId));
      const provisions = bench.provider.provisions.filter((p) => measured.has(p.sessionId));
      return {
        ttft_ms: summarize(rs.map((r) => r.ttftMs)),
        ttft_needs_sandbox_ms: summarize(rs.filter((r) => r.needsSandbox).map((r) => r.ttftMs)),
        ttft_no_sandbox_ms: summarize(rs.filter((r) => !r.needsSandbox).map((r) => r.ttftMs)),
        provisioning_ms: summarize(provisions.map((p) => p.ms)),
        sandboxes_provisioned: provisions.length,
        model_ttft_ms: summarize(bench.recorder.values('TimeToFirstToken')),
        turn_ms: summarize(rs.map((r) => r.turnMs)),
        samples_ms: rs.map((r) => round(r.ttftMs)),
      };
    };
    const c = mode(coupled, results.coupled);
    const d = mode(decoupled, results.decoupled);
    const { delay, ...rest } = cfg;
    return {
      name: cfg.name,
      label:
        cfg.name === 'real'
          ? 'real provisioning: bubblewrapped sandbox agent + git clone from a local git server'
          : `SIMULATED Fargate start-up (log-normal, median ${round(delay!.medianMs * delay!.scale / 1000, 2)} s, p95 ${round(delay!.p95Ms * delay!.scale / 1000, 2)} s${delay!.scale !== 1 ? `, time-scaled x${delay!.scale}` : ''}), the real local sandbox and clone started within it`,
      config: { ...rest, ...(delay ? { delay } : {}) },
      coupled: c,
      decoupled: d,
      p50_reduction_pct: reductionPct(c.ttft_ms.p50, d.ttft_ms.p50),
      p95_reduction_pct: reductionPct(c.ttft_ms.p95, d.ttft_ms.p95),
      p99_reduction_pct: reductionPct(c.ttft_ms.p99, d.ttft_ms.p99),
      isolation: coupled.isolation,
    };
  } finally {
    await coupled.close();
    await decoupled.close();
  }
}
