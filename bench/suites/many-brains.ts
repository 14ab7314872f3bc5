/**
 * (4) Many brains: N sessions at once on one machine (one local runtime, its worker running all
 * N), each taking `turns` turns through the public API (send, then wait on its event stream for
 * the turn to end). Turns are text-only, so no sandbox is started: the subject is the harness and
 * the log, not N containers. Reports throughput in harness steps per second, the CloudWatch
 * `HarnessOverhead` p95 under that load, the most model calls that were in flight at once, and
 * whether every session made progress (finished all its turns).
 */
import type Anthropic from '@anthropic-ai/sdk';
import { startCpuProfile, type CpuBreakdown } from '../lib/profile.js';
import { pool, runTurn, SessionStream, startBenchRuntime } from '../lib/runtime.js';
import { nowMs, round, summarize, type Summary } from '../lib/stats.js';

export interface ManyBrainsConfig {
  sessions: number;
  turns: number;
  /** Sample where the CPU goes during the run (the profiler costs a few percent of throughput). */
  cpuProfile?: boolean;
}

export interface ManyBrainsResult {
  config: ManyBrainsConfig & { modelLatencyMs: number };
  concurrent_sessions: number;
  /** Sessions that finished every turn. */
  sessions_completed: number;
  /** The fewest and most turns any session finished. */
  turns_per_session_min: number;
  turns_per_session_max: number;
  steps: number;
  wall_s: number;
  steps_per_second: number;
  turns_per_second: number;
  peak_model_calls_in_flight: number;
  harness_overhead_ms: Summary;
  step_duration_ms: Summary;
  /** Client-side, send -> idle. */
  turn_ms: Summary;
  /** Client-side, send -> first model event. */
  ttft_ms: Summary;
  /** CPU time of this one process (client, API, harness, dynalite) per harness step, and its share of one core. */
  cpu_ms_per_step: number;
  /** The same CPU per turn (a text turn took 2 harness steps when the goals were set; it takes 1 now). */
  cpu_ms_per_turn: number;
  cpu_utilisation_pct: number;
  cpu_profile?: CpuBreakdown;
}

export async function runManyBrains(cfg: ManyBrainsConfig, ctx: { modelUrl: string; modelLatencyMs: number; log: (msg: string) => void }): Promise<ManyBrainsResult> {
  const bench = await startBenchRuntime({ modelUrl: ctx.modelUrl, concurrency: cfg.sessions });
  try {
    const { client } = bench;
    const agent = await client.beta.agents.create({ name: 'bench', model: 'claude-sonnet-4-6', tools: [{ type: 'agent_toolset_20260401' }] } as Anthropic.Beta.AgentCreateParams);
    const environment = await client.beta.environments.create({ name: 'bench', config: { type: 'cloud' } } as Anthropic.Beta.EnvironmentCreateParams);
    // Set up every session and its stream first; only then start the clock.
    const sessions = await pool(
      32,
      Array.from({ length: cfg.sessions }, () => async () => {
        const s = await client.beta.sessions.create({ agent: agent.id, environment_id: environment.id });
        return { id: s.id, stream: await SessionStream.open(client, s.id) };
      }),
    );
    ctx.log(`  many brains: ${sessions.length} sessions and streams open`);
    bench.recorder.reset();
    bench.model.resetPeak();
    const turnMs: number[] = [];
    const ttft: number[] = [];
    const done = new Array<number>(sessions.length).fill(0);
    const stopProfile = cfg.cpuProfile ? await startCpuProfile() : null;
    const cpu0 = process.cpuUsage();
    const t0 = nowMs();
    let failures = 0;
    await Promise.all(
      sessions.map(async (s, i) => {
        try {
          for (let t = 0; t < cfg.turns; t++) {
            const turn = await runTurn(client, s.id, s.stream, `[bench:mb-${i}-${t}] A short text answer for turn ${t}, please.`);
            if (turn.stopReason !== 'end_turn') throw new Error(`turn ended with ${turn.stopReason}`);
            turnMs.push(turn.idleAt - turn.sentAt);
            ttft.push(turn.firstModelEventAt - turn.sentAt);
            done[i]++;
          }
        } catch (err) {
          failures++;
          if (failures <= 3) ctx.log(`  many brains: session ${s.id} failed: ${(err as Error).message}`);
        }
      }),
    );
    const wall = (nowMs() - t0) / 1000;
    const cpu = process.cpuUsage(cpu0);
    const cpuProfile = stopProfile ? await stopProfile() : undefined;
    for (const s of sessions) s.stream.close();
    await bench.recorder.settled(done.reduce((a, b) => a + b, 0)); // the last turns' steps may still be ending
    const steps = bench.recorder.steps.length;
    return {
      config: { ...cfg, modelLatencyMs: ctx.modelLatencyMs },
      concurrent_sessions: cfg.sessions,
      sessions_completed: done.filter((d) => d === cfg.turns).length,
      turns_per_session_min: Math.min(...done),
      turns_per_session_max: Math.max(...done),
      steps,
      wall_s: round(wall),
      steps_per_second: round(steps / wall, 1),
      turns_per_second: round(turnMs.length / wall, 1),
      peak_model_calls_in_flight: bench.model.peakInFlight,
      harness_overhead_ms: summarize(bench.recorder.values('HarnessOverhead')),
      step_duration_ms: summarize(bench.recorder.values('StepDuration')),
      turn_ms: summarize(turnMs),
      ttft_ms: summarize(ttft),
      cpu_ms_per_step: round((cpu.user + cpu.system) / 1000 / Math.max(1, steps), 1),
      cpu_ms_per_turn: round((cpu.user + cpu.system) / 1000 / Math.max(1, turnMs.length), 1),
      cpu_utilisation_pct: round(((cpu.user + cpu.system) / 1e6 / wall) * 100, 1),
      ...(cpuProfile ? { cpu_profile: cpuProfile } : {}),
    };
  } finally {
    await bench.close();
  }
}
