/**
 * (2) Harness overhead, with a model whose time to first token is fixed (the fake Messages API
 * answers after exactly `modelLatencyMs`). Text-only turns, one session at a time, so that the
 * figures are the harness's own and not queueing behind other sessions.
 *
 * Three views of the same turns:
 *  - `HarnessOverhead` per step, as the CloudWatch metric defines it (a step's duration minus its
 *    model and tool time), computed by the same `HarnessMetrics` class the Lambda uses;
 *  - accepted -> model request: from the user.message being accepted (its `processed_at`) to the
 *    harness handing the request to the model client;
 *  - model done -> readable: from the model client returning (its last byte read) to the model's
 *    first event arriving on the client's event stream.
 *
 * Then sandbox tool calls, with those turns kept out of the figures above: one session whose
 * every turn is one `bash` call of `echo` on its warm sandbox (provisioned in the warm-up), so
 * that a call's time is the cost of going to the sandbox and back:
 *  - `ToolLatency` (the CloudWatch metric: the harness's tool call, provisioning excluded; it
 *    includes the sandbox registry's reads and writes in the state table);
 *  - the agent's round trip alone: `SandboxClient.execute` of the same command from this
 *    process to a sandbox of the same provider (request, the agent, the shell, the answer).
 */
import type Anthropic from '@anthropic-ai/sdk';
import { SandboxClient } from '../../lambdas/core/sandbox/client.js';
import { runTurn, SessionStream, startBenchRuntime, type BenchRuntime } from '../lib/runtime.js';
import { nowMs, round, summarize, type Summary } from '../lib/stats.js';
import { fitRecipe, planRecipe } from '../../lambdas/core/sandbox/recipe.js';

const MB = 1024 * 1024;

export interface OverheadConfig {
  sessions: number;
  turnsPerSession: number;
  warmupTurns: number;
}

export interface OverheadResult {
  config: OverheadConfig & { modelLatencyMs: number };
  turns: number;
  steps: number;
  /** CloudWatch `HarnessOverhead`, every step. */
  harness_overhead_ms: Summary;
  /** By the step's action (`start_turn`, `call_model`, ...). */
  harness_overhead_by_action_ms: Record<string, Summary>;
  /** CloudWatch `StepDuration`. */
  step_duration_ms: Summary;
  /** CloudWatch `ModelLatency` and `TimeToFirstToken` (what the harness saw of the model). */
  model_latency_ms: Summary;
  model_ttft_ms: Summary;
  /** Accepted user.message -> model request handed to the model client. */
  accepted_to_model_request_ms: Summary;
  /** Model client returned -> the model's first event on the client's stream. */
  model_done_to_readable_ms: Summary;
  /** Client-side: events.send -> first model event, minus the model's own latency. */
  client_ttft_minus_model_ms: Summary;
  /** Sandbox tool calls (`bash` running `echo` on a warm sandbox). */
  sandbox_tool_calls: {
    calls: number;
    isolation: string;
    /** CloudWatch `ToolLatency`: the harness's call, registry included, provisioning excluded. */
    tool_latency_ms: Summary;
    /** `SandboxClient.execute` alone, from this process to the agent and back. */
    agent_round_trip_ms: Summary;
  };
  /**
   * Memory and CPU of the benchmark's one process while it runs the measured turns: the API, the
   * harness, the in-memory log (dynalite) and the fake model share it, so these are upper bounds on
   * what the harness function alone needs (on Lambda the API and the store are elsewhere).
   * `rss_mb` and `heap_used_mb` are sampled after every measured turn; `cpu_ms_per_step` is the
   * process's user + system CPU over those turns divided by their steps (Lambda gives a function
   * CPU in proportion to its memory, a full vCPU at 1,769 MB, so this sizes the harness's CPU).
   */
  process: {
    /** Before the runtime started (Node, the benchmark's modules). */
    baseline_rss_mb: number;
    rss_mb: Summary;
    heap_used_mb: Summary;
    rss_peak_mb: number;
    heap_used_peak_mb: number;
    cpu_ms_per_step: number;
    /** What shares the process: the figures above are upper bounds for the harness alone. */
    shares: string;
  };
  /** Samples for the plot. */
  samples: { harness_overhead_ms: number[]; accepted_to_model_request_ms: number[]; model_done_to_readable_ms: number[] };
}

export async function runOverhead(cfg: OverheadConfig, ctx: { modelUrl: string; modelLatencyMs: number; log: (msg: string) => void }): Promise<OverheadResult> {
  const baselineRss = process.memoryUsage().rss;
  const bench = await startBenchRuntime({ modelUrl: ctx.modelUrl });
  try {
    const { client } = bench;
    const agent = await client.beta.agents.create({ name: 'bench', model: 'claude-sonnet-4-6', tools: [{ type: 'agent_toolset_20260401' }] } as Anthropic.Beta.AgentCreateParams);
    const environment = await client.beta.environments.create({ name: 'bench', config: { type: 'cloud' } } as Anthropic.Beta.EnvironmentCreateParams);
    const toModel: number[] = [];
    const toReadable: number[] = [];
    const clientExtra: number[] = [];
    let turns = 0;
    const rss: number[] = [];
    const heap: number[] = [];
    let cpuMicros = 0;
    for (let s = -1; s < cfg.sessions; s++) {
      const warm = s < 0;
      const session = await client.beta.sessions.create({ agent: agent.id, environment_id: environment.id });
      const stream = await SessionStream.open(client, session.id);
      bench.recorder.recording = !warm;
      try {
        for (let t = 0; t < (warm ? cfg.warmupTurns : cfg.turnsPerSession); t++) {
          const tag = `ovh-${s}-${t}`;
          const cpu0 = process.cpuUsage();
          const turn = await runTurn(client, session.id, stream, `[bench:${tag}] Say something short about turn ${t}.`);
          if (warm) continue;
          const cpu = process.cpuUsage(cpu0);
          cpuMicros += cpu.user + cpu.system;
          const mem = process.memoryUsage();
          rss.push(mem.rss / MB);
          heap.push(mem.heapUsed / MB);
          const call = bench.model.calls.find((c) => c.tag === tag && c.ok);
          if (!call) throw new Error(`no model call recorded for ${tag}`);
          toModel.push(call.calledAt - turn.processedAt);
          toReadable.push(turn.firstModelEventAt - call.returnedAt);
          clientExtra.push(turn.firstModelEventAt - turn.sentAt - (call.returnedAt - call.calledAt));
          turns++;
        }
      } finally {
        stream.close();
      }
      if (!warm) ctx.log(`  overhead: session ${s + 1}/${cfg.sessions}`);
    }
    await bench.recorder.settled(turns); // a text turn is one step; the last one may still be ending
    const steps = bench.recorder.steps;
    const byAction: Record<string, number[]> = {};
    for (const st of steps) (byAction[st.action] ??= []).push(st.overheadMs);
    const overhead = bench.recorder.values('HarnessOverhead');
    const result: Omit<OverheadResult, 'sandbox_tool_calls'> = {
      config: { ...cfg, modelLatencyMs: ctx.modelLatencyMs },
      turns,
      steps: steps.length,
      harness_overhead_ms: summarize(overhead),
      harness_overhead_by_action_ms: Object.fromEntries(Object.entries(byAction).map(([k, v]) => [k, summarize(v)])),
      step_duration_ms: summarize(bench.recorder.values('StepDuration')),
      model_latency_ms: summarize(bench.recorder.values('ModelLatency')),
      model_ttft_ms: summarize(bench.recorder.values('TimeToFirstToken')),
      accepted_to_model_request_ms: summarize(toModel),
      model_done_to_readable_ms: summarize(toReadable),
      client_ttft_minus_model_ms: summarize(clientExtra),
      process: {
        baseline_rss_mb: round(baselineRss / MB),
        rss_mb: summarize(rss),
        heap_used_mb: summarize(heap),
        rss_peak_mb: round(Math.max(...rss)),
        heap_used_peak_mb: round(Math.max(...heap)),
        cpu_ms_per_step: steps.length ? round(cpuMicros / 1000 / steps.length) : 0,
        shares: 'API, harness, in-memory log (dynalite), fake Messages API and the benchmark client in one Node process',
      },
      samples: { harness_overhead_ms: overhead, accepted_to_model_request_ms: toModel.map((x) => round(x)), model_done_to_readable_ms: toReadable.map((x) => round(x)) },
    };
    // Computed from what was recorded so far: the tool turns below do not change the figures above.
    const sandbox_tool_calls = await runToolCalls(bench, agent.id, environment.id, cfg.sessions * cfg.turnsPerSession, cfg.warmupTurns, ctx.log);
    return { ...result, sandbox_tool_calls };
  } finally {
    await bench.close();
  }
}

async function runToolCalls(bench: BenchRuntime, agentId: string, environmentId: string, calls: number, warmup: number, log: (msg: string) => void): Promise<OverheadResult['sandbox_tool_calls']> {
  const { client, recorder } = bench;
  const before = recorder.values('ToolLatency').length;
  const session = await client.beta.sessions.create({ agent: agentId, environment_id: environmentId });
  const stream = await SessionStream.open(client, session.id);
  try {
    for (let t = -warmup; t < calls; t++) {
      recorder.recording = t >= 0;
      const turn = await runTurn(client, session.id, stream, `[bench:ovh-tool-${t}] Run \`echo tool-${t}\` please.`);
      const result = turn.events.find((e) => e.type === 'agent.tool_result');
      const content = JSON.stringify(result?.event.content ?? '');
      if (!content.includes(`tool-${t}`) || result?.event.is_error) throw new Error(`bench tool turn ${t} did not run its command: ${content.slice(0, 200)}`);
    }
  } finally {
    recorder.recording = false;
    stream.close();
  }
  log(`  overhead: ${calls} sandbox tool calls`);
  // The agent alone: a sandbox of the same provider, called from here.
  const plan = planRecipe({ session: { environment_id: environmentId, resources: [] }, environment: { config: { type: 'cloud' } }, credentials: [] });
  const { recipe } = fitRecipe(plan, bench.provider.recipeSupport);
  const sb = await bench.provider.provision({ sessionId: 'sesn_bench_round_trip', name: 'default', recipe });
  const direct: number[] = [];
  try {
    const c = new SandboxClient(sb.endpoint);
    for (let i = -warmup; i < calls; i++) {
      const t0 = nowMs();
      const out = await c.execute('bash', { command: `echo rt-${i}` }, { idempotencyKey: `toolu_bench_rt_${i}` });
      if (i >= 0) direct.push(nowMs() - t0);
      if (out.output !== `rt-${i}\n`) throw new Error(`bench round trip ${i}: unexpected output ${JSON.stringify(out.output.slice(0, 200))}`);
    }
  } finally {
    await bench.provider.release('sesn_bench_round_trip', 'default', sb.ref).catch(() => undefined);
  }
  return {
    calls,
    isolation: bench.isolation,
    tool_latency_ms: summarize(recorder.values('ToolLatency').slice(before)),
    agent_round_trip_ms: summarize(direct),
  };
}
