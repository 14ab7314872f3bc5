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
 */
import type Anthropic from '@anthropic-ai/sdk';
import { runTurn, SessionStream, startBenchRuntime } from '../lib/runtime.js';
import { round, summarize, type Summary } from '../lib/stats.js';

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
  /** Samples for the plot. */
  samples: { harness_overhead_ms: number[]; accepted_to_model_request_ms: number[]; model_done_to_readable_ms: number[] };
}

export async function runOverhead(cfg: OverheadConfig, ctx: { modelUrl: string; modelLatencyMs: number; log: (msg: string) => void }): Promise<OverheadResult> {
  const bench = await startBenchRuntime({ modelUrl: ctx.modelUrl });
  try {
    const { client } = bench;
    const agent = await client.beta.agents.create({ name: 'bench', model: 'claude-sonnet-4-6', tools: [{ type: 'agent_toolset_20260401' }] } as Anthropic.Beta.AgentCreateParams);
    const environment = await client.beta.environments.create({ name: 'bench', config: { type: 'cloud' } } as Anthropic.Beta.EnvironmentCreateParams);
    const toModel: number[] = [];
    const toReadable: number[] = [];
    const clientExtra: number[] = [];
    let turns = 0;
    for (let s = -1; s < cfg.sessions; s++) {
      const warm = s < 0;
      const session = await client.beta.sessions.create({ agent: agent.id, environment_id: environment.id });
      const stream = await SessionStream.open(client, session.id);
      bench.recorder.recording = !warm;
      try {
        for (let t = 0; t < (warm ? cfg.warmupTurns : cfg.turnsPerSession); t++) {
          const tag = `ovh-${s}-${t}`;
          const turn = await runTurn(client, session.id, stream, `[bench:${tag}] Say something short about turn ${t}.`);
          if (warm) continue;
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
    const steps = bench.recorder.steps;
    const byAction: Record<string, number[]> = {};
    for (const st of steps) (byAction[st.action] ??= []).push(st.overheadMs);
    const overhead = bench.recorder.values('HarnessOverhead');
    return {
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
      samples: { harness_overhead_ms: overhead, accepted_to_model_request_ms: toModel.map((x) => round(x)), model_done_to_readable_ms: toReadable.map((x) => round(x)) },
    };
  } finally {
    await bench.close();
  }
}
