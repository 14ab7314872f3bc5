/**
 * (3) Step cost against session length: DynamoDB reads and step latency of the next turn of a
 * session whose log holds 10, 1,000 or 10,000 events.
 *
 * The approach of `test/e2e/constant-cost.test.ts`: seed a session's log directly, let one turn
 * run (the harness builds its cursor and, past the view's budget, compacts), then measure the
 * following turns with every DynamoDB call the harness makes counted by command and table.
 * Background I/O (lease renewals, interrupt polls) is pushed outside the measured wakes, as in
 * the fault rig, so the counts are exact. Default context budgets (the ones a deployment uses).
 */
import { BatchWriteItemCommand, DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DynamoEventLog } from '../../lambdas/adapters/aws/dynamodb-event-log.js';
import { DynamoStateTable } from '../../lambdas/adapters/aws/dynamodb-state-table.js';
import { ensureTables } from '../../lambdas/adapters/aws/tables.js';
import { startDynalite } from '../../lambdas/adapters/local/dynalite.js';
import { ProcessSandboxProvider } from '../../lambdas/adapters/local/process-sandbox.js';
import { AnthropicModel, type ModelClient } from '../../lambdas/core/harness/model.js';
import { createServices } from '../../lambdas/core/services.js';
import { makeEvent, type SessionEvent } from '../../lambdas/core/session/events.js';
import { Recorder } from '../lib/instruments.js';
import { nowMs, round, summarize, type Summary } from '../lib/stats.js';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const TABLES = { events: 'corral-events', state: 'corral-state' };
const READ = /^(Query|GetItem|BatchGetItem|Scan)$/;

export interface LogReadsConfig {
  sizes: number[];
  /** Measured turns per size (after the first, unmeasured one). */
  turns: number;
}

export interface SizeResult {
  events: number;
  /** Steps the harness took per measured turn. */
  steps_per_turn: number;
  /** Every DynamoDB read of a measured turn (events and state table). */
  reads_per_turn: number;
  /** Of which on the event log (`Query` on the events table). */
  log_reads_per_turn: number;
  /** Reads per step (reads of the turn / its steps). */
  reads_per_step: number;
  log_reads_per_step: number;
  /** Items the log reads returned per turn: bounded by the view's budget, not by the log. */
  log_items_read_per_turn: number;
  writes_per_turn: number;
  /** The DynamoDB calls of one measured turn, in order (`Query:events`, ...; `model` marks the model request). */
  ops: string[];
  /** Which round trip each of `ops` went out in: calls issued while another was in flight share one. */
  op_rounds: number[];
  /** DynamoDB calls between the user message and the model request. */
  calls_before_model_request: number;
  /** Storage round trips one after another (parallel calls count once) before the model request. */
  round_trips_before_model_request: number;
  /** This machine's latency of one DynamoDB (dynalite) call during the measured turns. */
  dynamodb_call_ms: Summary;
  step_duration_ms: Summary;
  harness_overhead_ms: Summary;
  /** The whole measured wake, model included. */
  turn_ms: Summary;
  /** The model request of the measured turn, in bytes (bounded by the view's budget). */
  request_bytes: number;
}

export interface LogReadsResult {
  config: LogReadsConfig;
  sizes: SizeResult[];
  flat: boolean;
}

/** `count` events of ordinary turns: a message, a run, a model request, its answer(s), idle. */
function syntheticTurns(count: number): SessionEvent[] {
  const out: SessionEvent[] = [];
  const turns = Math.max(1, Math.floor(count / 6));
  let extra = count - turns * 6; // the first turn carries the remainder as more answer parts
  for (let turn = 0; turn < turns; turn++) {
    const start = makeEvent({ type: 'span.model_request_start' });
    out.push(
      makeEvent({ type: 'user.message', content: [{ type: 'text', text: `question ${turn}: ${'words '.repeat(30)}` }] }),
      makeEvent({ type: 'session.status_running' }),
      start,
    );
    for (let m = 0; m < 1 + Math.max(0, extra); m++) {
      out.push(makeEvent({ type: 'agent.message', content: [{ type: 'text', text: `answer ${turn}.${m}: ${'more words '.repeat(20)}` }] }));
    }
    extra = 0;
    out.push(
      makeEvent({
        type: 'span.model_request_end',
        model_request_start_id: start.id,
        is_error: false,
        model_usage: { input_tokens: 100, output_tokens: 50, cache_read_input_tokens: 0, cache_creation_input_tokens: 0 },
      }),
      makeEvent({ type: 'session.status_idle', stop_reason: { type: 'end_turn' }, stop_details: null }),
    );
  }
  return out;
}

interface Counter {
  on: boolean;
  ops: string[];
  items: number;
  /** Latency of each counted DynamoDB call (this machine's dynalite). */
  callMs: number[];
  /** Calls in flight, and the round trip a call issued now belongs to (a new one when none is in flight). */
  inflight: number;
  round: number;
  /** The round trip of each of `ops`. */
  rounds: number[];
}

/** The round trip a call issued now goes out in: the current one while another call is in flight. */
function roundOf(counter: Counter): number {
  if (counter.inflight === 0) counter.round++;
  return counter.round;
}


/** Puts `model` among the counted calls where the harness sends a model request. */
function markingModel(inner: ModelClient, counter: Counter): ModelClient {
  return {
    complete(request, opts) {
      if (counter.on) {
        counter.rounds.push(roundOf(counter));
        counter.ops.push('model');
      }
      return inner.complete(request, opts);
    },
  };
}

function counting(client: DynamoDBClient, counter: Counter): DynamoDBClient {
  return new Proxy(client, {
    get(target, prop, receiver) {
      if (prop !== 'send') return Reflect.get(target, prop, receiver);
      return async (command: { constructor: { name: string }; input?: { TableName?: string; RequestItems?: Record<string, unknown> } }) => {
        const t0 = nowMs();
        const round = roundOf(counter);
        counter.inflight++;
        let out: { Count?: number };
        try {
          out = (await target.send(command as never)) as { Count?: number };
        } finally {
          counter.inflight--;
        }
        if (counter.on) {
          counter.rounds.push(round);
          counter.callMs.push(nowMs() - t0);
          const op = command.constructor.name.replace(/Command$/, '');
          // A batch names its table in RequestItems (the session's head and usage: one table).
          const name = command.input?.TableName ?? Object.keys(command.input?.RequestItems ?? {})[0];
          const table = name === TABLES.events ? 'events' : name === TABLES.state ? 'state' : String(name);
          counter.ops.push(`${op}:${table}`);
          if (op === 'Query' && table === 'events') counter.items += out.Count ?? 0;
        }
        return out;
      };
    },
  });
}

/** Round trips of storage calls that ended before the model request went out in a later one. */
function roundTripsBefore(ops: string[], rounds: number[]): number {
  const m = ops.indexOf('model');
  return new Set(rounds.slice(0, m).filter((r, i) => ops[i] !== 'model' && r < rounds[m])).size;
}

export async function runLogReads(cfg: LogReadsConfig, ctx: { modelUrl: string; log: (msg: string) => void; fakeRequests: () => Array<{ raw: string }> }): Promise<LogReadsResult> {
  const db = await startDynalite();
  const dataDir = mkdtempSync(join(tmpdir(), 'corral-bench-reads-'));
  const provider = new ProcessSandboxProvider({ dataDir, isolation: 'auto', logger: { warn: () => undefined } });
  try {
    await ensureTables(db.client, TABLES);
    const counter: Counter = { on: false, ops: [], items: 0, callMs: [], inflight: 0, round: 0, rounds: [] };
    const recorder = new Recorder();
    const client = counting(db.client, counter);
    const wakes: string[] = [];
    const services = createServices({
      table: new DynamoStateTable(client, TABLES.state),
      events: new DynamoEventLog(client, TABLES.events),
      queue: { wake: async (id: string) => void wakes.push(id) },
      sandboxProvider: provider,
      model: markingModel(new AnthropicModel({ apiKey: 'bench', baseURL: ctx.modelUrl }), counter),
      // No background I/O during a measured wake (as in the fault rig).
      harness: { interruptPollMs: 600_000, observer: recorder.observer },
      leaseTtlMs: 600_000,
    });
    const tenant = 'bench';
    const agent = await services.agents.create(tenant, { name: 'a', model: 'claude-sonnet-4-6' });
    const env = await services.environments.create(tenant, { name: 'e' });

    const turn = async (sessionId: string, text: string) => {
      await services.sessions.send(tenant, sessionId, [{ type: 'user.message', content: [{ type: 'text', text }] }]);
      for (let i = 0; i < 20; i++) {
        const r = await services.harness.wake(sessionId);
        if (r.status === 'done') return;
        if (r.status === 'gone') throw new Error('session gone');
      }
      throw new Error(`session ${sessionId} did not settle`);
    };

    const sizes: SizeResult[] = [];
    for (const size of cfg.sizes) {
      const session = await services.sessions.create(tenant, { agent: agent.id, environment_id: env.id });
      const events = syntheticTurns(size);
      for (let i = 0; i < events.length; i += 25) {
        await db.client.send(
          new BatchWriteItemCommand({
            RequestItems: {
              [TABLES.events]: events.slice(i, i + 25).map((e, j) => ({
                PutRequest: { Item: { sessionId: { S: session.id }, position: { N: String(i + j + 1) }, event: { S: JSON.stringify(e) } } },
              })),
            },
          }),
        );
      }
      recorder.recording = false;
      await turn(session.id, 'first'); // builds the cursor (and compacts a long log)
      const perTurn: Array<{ ops: string[]; rounds: number[]; items: number; steps: number; ms: number; request: number; callMs: number[] }> = [];
      for (let t = 0; t < cfg.turns; t++) {
        recorder.recording = true;
        const before = recorder.steps.length;
        await services.sessions.send(tenant, session.id, [{ type: 'user.message', content: [{ type: 'text', text: `next ${t}` }] }]);
        counter.ops = [];
        counter.items = 0;
        counter.callMs = [];
        counter.rounds = [];
        counter.round = 0;
        counter.on = true;
        const t0 = nowMs();
        const r = await services.harness.wake(session.id);
        const ms = nowMs() - t0;
        counter.on = false;
        if (r.status !== 'done') throw new Error(`measured wake ended ${r.status}`);
        perTurn.push({ ops: counter.ops, rounds: counter.rounds, items: counter.items, steps: recorder.steps.length - before, ms, request: ctx.fakeRequests().at(-1)?.raw.length ?? 0, callMs: counter.callMs });
      }
      const steps = recorder.steps;
      const last = perTurn[perTurn.length - 1];
      const reads = (ops: string[]) => ops.filter((o) => READ.test(o.split(':')[0])).length;
      const logReads = (ops: string[]) => ops.filter((o) => o === 'Query:events').length;
      const avg = (f: (p: (typeof perTurn)[number]) => number) => round(perTurn.reduce((a, p) => a + f(p), 0) / perTurn.length);
      const stepsPerTurn = avg((p) => p.steps);
      sizes.push({
        events: size,
        steps_per_turn: stepsPerTurn,
        reads_per_turn: avg((p) => reads(p.ops)),
        log_reads_per_turn: avg((p) => logReads(p.ops)),
        reads_per_step: round(avg((p) => reads(p.ops)) / stepsPerTurn),
        log_reads_per_step: round(avg((p) => logReads(p.ops)) / stepsPerTurn),
        log_items_read_per_turn: avg((p) => p.items),
        writes_per_turn: avg((p) => p.ops.filter((o) => /^(PutItem|UpdateItem|DeleteItem|BatchWriteItem|TransactWriteItems)$/.test(o.split(':')[0])).length),
        ops: last.ops,
        op_rounds: last.rounds,
        calls_before_model_request: last.ops.indexOf('model'),
        round_trips_before_model_request: roundTripsBefore(last.ops, last.rounds),
        dynamodb_call_ms: summarize(perTurn.flatMap((p) => p.callMs)),
        step_duration_ms: summarize(steps.map((s) => s.durationMs)),
        harness_overhead_ms: summarize(steps.map((s) => s.overheadMs)),
        turn_ms: summarize(perTurn.map((p) => p.ms)),
        request_bytes: last.request,
      });
      recorder.reset();
      ctx.log(`  log reads: ${size} events -> ${sizes.at(-1)!.reads_per_turn} reads/turn, ${sizes.at(-1)!.reads_per_step} per step`);
    }
    const first = sizes[0];
    const flat = sizes.every((s) => s.reads_per_turn === first.reads_per_turn && s.steps_per_turn === first.steps_per_turn && s.ops.join() === first.ops.join());
    return { config: cfg, sizes, flat };
  } finally {
    await provider.close();
    await db.close();
    rmSync(dataDir, { recursive: true, force: true });
  }
}
