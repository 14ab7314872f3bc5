/**
 * (6) A bash turn on Corral against a durable peer: a LangGraph.js ReAct agent with a SQLite
 * checkpointer (`bench/peers/langgraph.ts`), the same workload on both, in the same run.
 *
 * The workload, one turn: a user message asking to run `echo <token>` -> the model answers with
 * a `bash` tool call -> the tool runs -> the model answers with the tool's output. Both sides
 * talk to the same fake Messages API over HTTP (its echo model, answering at once: the first
 * request of a turn gets the tool call, the second the final text), so each turn costs each side
 * two HTTP model calls, and the suite checks that it did. A turn is timed from sending the user
 * message to having the final answer:
 *  - Corral: `events.send` through the official SDK, then the session's event stream until
 *    `session.status_idle` (the local runtime, its log on disk as `npm start` keeps it, the tool
 *    in the session's sandbox: bubblewrap when available);
 *  - the peer: `agent.invoke` on a thread until it returns its final state (checkpoints in a
 *    SQLite file; the tool runs with `child_process`, no sandbox).
 *
 * Sessions (threads) alternate between the two sides, and which side goes first flips every
 * session, so that a change of the machine's load falls on both. The first `warmupTurns` turns of
 * every session are dropped (they include Corral's sandbox start-up, and JIT warm-up on both).
 */
import type Anthropic from '@anthropic-ai/sdk';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadLangGraphPeer } from '../lib/peer-package.js';
import { runTurn, SessionStream, startBenchRuntime } from '../lib/runtime.js';
import { round, summarize, type Summary } from '../lib/stats.js';

export interface PeerConfig {
  /** Sessions (Corral) and threads (the peer) per side. */
  sessions: number;
  /** Measured turns per session. */
  turnsPerSession: number;
  /** Turns run first in every session and dropped. */
  warmupTurns: number;
}

/** What every turn must have done, on either side, warm-up included. */
export interface PeerChecks {
  /** Turns run (warm-up included). */
  turns: number;
  /** Turns whose final answer contained the tool's output (the turn's unique token). */
  answered_with_tool_output: number;
  /** Turns in which the tool ran once and printed the token. */
  tool_ran: number;
  /** Model requests the fake received per turn. */
  model_calls_per_turn: { min: number; max: number };
  /** The first failure seen, if any. */
  first_failure?: string;
}

export interface PeerSideResult {
  /** From sending the user message to the final answer, measured turns. */
  turn_ms: Summary;
  samples_ms: number[];
  /** Time inside the tool (Corral: `ToolLatency`, the harness's call to the sandbox agent; the peer: spawn to exit). */
  tool_ms: Summary;
  checks: PeerChecks;
}

export interface PeerResult {
  config: PeerConfig;
  corral: PeerSideResult & {
    isolation: 'bwrap' | 'none';
    log: string;
    /** The harness's model client per turn, both calls (`ModelLatency` summed). */
    model_ms: Summary;
    /** `HarnessOverhead` of the turn's steps, summed. */
    step_overhead_ms: Summary;
    /** The turn minus model, tool and in-step overhead: the API, waking and leasing, log reads before the steps, delivery on the stream. */
    outside_steps_ms: Summary;
    /** Harness steps per turn. */
    steps_per_turn: number;
    /** Events appended to the session's log per turn (each a durable write; user.message to session.status_idle). */
    events_per_turn: number;
  };
  peer: PeerSideResult & {
    /** The peer's packages as installed in `bench/peers/node_modules` (its package.json pins them). */
    packages: Record<string, string>;
    /** The SQLite file's settings as the checkpointer left them. */
    sqlite: { journal_mode: string; synchronous: string };
    /** Checkpoints written per turn (each a row in the SQLite file, besides the pending writes). */
    checkpoints_per_turn: number;
    /** The turn minus the tool: the graph, the checkpointer and both model calls. */
    outside_tool_ms: Summary;
  };
  /** Corral ÷ the peer. */
  ratio_p50: number;
  ratio_p95: number;
}

interface Checker {
  checks: PeerChecks;
  record(ok: { answered: boolean; toolRan: boolean; modelCalls: number; what: string }): void;
}

function checker(): Checker {
  const checks: PeerChecks = { turns: 0, answered_with_tool_output: 0, tool_ran: 0, model_calls_per_turn: { min: Infinity, max: 0 } };
  return {
    checks,
    record({ answered, toolRan, modelCalls, what }) {
      checks.turns++;
      if (answered) checks.answered_with_tool_output++;
      if (toolRan) checks.tool_ran++;
      checks.model_calls_per_turn.min = Math.min(checks.model_calls_per_turn.min, modelCalls);
      checks.model_calls_per_turn.max = Math.max(checks.model_calls_per_turn.max, modelCalls);
      if ((!answered || !toolRan || modelCalls !== 2) && !checks.first_failure) {
        checks.first_failure = `${what}: answered with the tool output ${answered}, tool ran ${toolRan}, model calls ${modelCalls}`;
      }
    },
  };
}

const textOf = (content: unknown): string =>
  Array.isArray(content) ? content.map((b) => (b && typeof b === 'object' && typeof (b as { text?: unknown }).text === 'string' ? (b as { text: string }).text : '')).join('') : typeof content === 'string' ? content : '';

const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);

export async function runPeer(cfg: PeerConfig, ctx: { modelUrl: string; fakeRequests: () => unknown[]; log: (msg: string) => void }): Promise<PeerResult> {
  const langgraph = await loadLangGraphPeer();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'corral-bench-peer-'));
  const bench = await startBenchRuntime({ modelUrl: ctx.modelUrl, inMemory: false });
  const peer = await langgraph.startLangGraphPeer({ modelUrl: ctx.modelUrl, dir: path.join(dir, 'langgraph') });
  try {
    const { client } = bench;
    const agent = await client.beta.agents.create({ name: 'bench-peer', model: 'claude-sonnet-4-6', tools: [{ type: 'agent_toolset_20260401' }] } as Anthropic.Beta.AgentCreateParams);
    const environment = await client.beta.environments.create({ name: 'bench-peer', config: { type: 'cloud' } } as Anthropic.Beta.EnvironmentCreateParams);
    bench.recorder.recording = true;
    const metric = (name: Parameters<typeof bench.recorder.values>[0]) => bench.recorder.values(name);

    const corral = { ms: [] as number[], tool: [] as number[], model: [] as number[], overhead: [] as number[], outside: [] as number[], steps: [] as number[], events: [] as number[], check: checker() };
    const lg = { ms: [] as number[], tool: [] as number[], outside: [] as number[], checkpoints: [] as number[], check: checker() };
    const turns = cfg.warmupTurns + cfg.turnsPerSession;
    const turnText = (tag: string, token: string) => `[bench:${tag}] Run \`echo ${token}\` and tell me what it printed.`;
    const token = (tag: string) => `${tag}-${randomBytes(4).toString('hex')}`;

    const corralSession = async (s: number) => {
      const session = await client.beta.sessions.create({ agent: agent.id, environment_id: environment.id });
      const stream = await SessionStream.open(client, session.id);
      try {
        for (let t = 0; t < turns; t++) {
          const tag = `peer-corral-${s}-${t}`;
          const tok = token(tag);
          const calls0 = ctx.fakeRequests().length;
          const mark = { model: metric('ModelLatency').length, tool: metric('ToolLatency').length, overhead: metric('HarnessOverhead').length, steps: bench.recorder.steps.length };
          const turn = await runTurn(client, session.id, stream, turnText(tag, tok));
          const ms = turn.idleAt - turn.sentAt;
          const results = turn.events.filter((e) => e.type === 'agent.tool_result');
          const answer = turn.events.filter((e) => e.type === 'agent.message').at(-1);
          corral.check.record({
            answered: turn.stopReason === 'end_turn' && !!answer && textOf(answer.event.content).includes(tok),
            toolRan: results.length === 1 && results[0].event.is_error !== true && textOf(results[0].event.content).includes(tok),
            modelCalls: ctx.fakeRequests().length - calls0,
            what: `Corral session ${session.id}, turn ${t}`,
          });
          if (t < cfg.warmupTurns) continue;
          const model = sum(metric('ModelLatency').slice(mark.model));
          const tool = sum(metric('ToolLatency').slice(mark.tool));
          const overhead = sum(metric('HarnessOverhead').slice(mark.overhead));
          corral.ms.push(ms);
          corral.model.push(model);
          corral.tool.push(tool);
          corral.overhead.push(overhead);
          corral.outside.push(ms - model - tool - overhead);
          corral.steps.push(bench.recorder.steps.length - mark.steps);
          corral.events.push(turn.events.length);
        }
      } finally {
        stream.close();
        await client.beta.sessions.delete(session.id).catch(() => undefined);
      }
    };

    const peerThread = async (s: number) => {
      const thread = `bench-thread-${s}`;
      let checkpoints = 0;
      for (let t = 0; t < turns; t++) {
        const tag = `peer-langgraph-${s}-${t}`;
        const tok = token(tag);
        const calls0 = ctx.fakeRequests().length;
        const turn = await peer.runTurn(thread, turnText(tag, tok));
        lg.check.record({
          answered: turn.finalText.includes(tok),
          toolRan: turn.toolOutputs.length === 1 && turn.toolOutputs[0].includes(tok),
          modelCalls: ctx.fakeRequests().length - calls0,
          what: `LangGraph thread ${thread}, turn ${t}`,
        });
        // Counting checkpoints reads the SQLite file: outside the timed turn.
        const now = await peer.checkpointCount(thread);
        if (t >= cfg.warmupTurns) {
          lg.ms.push(turn.ms);
          lg.tool.push(turn.toolMs);
          lg.outside.push(turn.ms - turn.toolMs);
          lg.checkpoints.push(now - checkpoints);
        }
        checkpoints = now;
      }
    };

    for (let s = 0; s < cfg.sessions; s++) {
      if (s % 2 === 0) {
        await corralSession(s);
        await peerThread(s);
      } else {
        await peerThread(s);
        await corralSession(s);
      }
      ctx.log(`  peer: session ${s + 1}/${cfg.sessions} on both sides`);
    }

    const fixChecks = (c: PeerChecks): PeerChecks => (c.turns === 0 ? { ...c, model_calls_per_turn: { min: 0, max: 0 } } : c);
    const mean = (xs: number[]) => (xs.length ? round(sum(xs) / xs.length) : NaN);
    const c = summarize(corral.ms);
    const p = summarize(lg.ms);
    return {
      config: cfg,
      corral: {
        turn_ms: c,
        samples_ms: corral.ms.map((x) => round(x)),
        tool_ms: summarize(corral.tool),
        checks: fixChecks(corral.check.checks),
        isolation: bench.isolation,
        log: 'dynalite on disk (LevelDB in the data directory, as `npm start` keeps it)',
        model_ms: summarize(corral.model),
        step_overhead_ms: summarize(corral.overhead),
        outside_steps_ms: summarize(corral.outside),
        steps_per_turn: mean(corral.steps),
        events_per_turn: mean(corral.events),
      },
      peer: {
        turn_ms: p,
        samples_ms: lg.ms.map((x) => round(x)),
        tool_ms: summarize(lg.tool),
        checks: fixChecks(lg.check.checks),
        packages: langgraph.versions,
        sqlite: peer.sqliteSettings(),
        checkpoints_per_turn: mean(lg.checkpoints),
        outside_tool_ms: summarize(lg.outside),
      },
      ratio_p50: p.p50 > 0 ? round(c.p50 / p.p50) : NaN,
      ratio_p95: p.p95 > 0 ? round(c.p95 / p.p95) : NaN,
    };
  } finally {
    await peer.close();
    await bench.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
