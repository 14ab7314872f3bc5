import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DynamoEventLog } from '../../lambdas/adapters/aws/dynamodb-event-log.js';
import { DynamoStateTable } from '../../lambdas/adapters/aws/dynamodb-state-table.js';
import { ensureTables } from '../../lambdas/adapters/aws/tables.js';
import { startDynalite, type EmbeddedDynamo } from '../../lambdas/adapters/local/dynalite.js';
import { ProcessSandboxProvider } from '../../lambdas/adapters/local/process-sandbox.js';
import type { HarnessOptions, WakeResult } from '../../lambdas/core/harness/harness.js';
import { AnthropicModel, type ModelClient } from '../../lambdas/core/harness/model.js';
import type { WakeQueue } from '../../lambdas/core/harness/queue.js';
import type { SandboxProvider } from '../../lambdas/core/sandbox/types.js';
import { createServices, type CorralServices } from '../../lambdas/core/services.js';
import type { SessionEvent } from '../../lambdas/core/session/events.js';
import { startFakeMessagesApi, type FakeMessagesApi } from '../fixtures/fake-messages-api.js';

const TABLES = { events: 'corral-events', state: 'corral-state' };

/** Thrown at an injected crash: the harness that meets it is dead from then on. */
export class Crash extends Error {
  constructor(readonly at: string) {
    super(`injected crash after ${at}`);
  }
}

/**
 * Where a harness dies: after its `crashAt`-th I/O operation completes (1-based). Every I/O the
 * harness does goes through `tick`: DynamoDB calls, model calls, tool dispatches and results.
 * Once dead, every further I/O throws, so the dead harness never writes again, as if killed.
 */
export class CrashPlan {
  ops: string[] = [];
  dead = false;
  constructor(readonly crashAt: number | null) {}

  guard() {
    if (this.dead) throw new Crash('death');
  }

  tick(label: string) {
    this.guard();
    this.ops.push(label);
    if (this.crashAt !== null && this.ops.length === this.crashAt) {
      this.dead = true;
      throw new Crash(label);
    }
  }
}

/** A DynamoDB client whose every call is an I/O point of the plan. */
function crashingDynamo(client: DynamoDBClient, plan: CrashPlan): DynamoDBClient {
  return new Proxy(client, {
    get(target, prop, receiver) {
      if (prop !== 'send') return Reflect.get(target, prop, receiver);
      return async (command: { constructor: { name: string } }) => {
        plan.guard();
        const out = await target.send(command as never);
        plan.tick(`dynamodb:${command.constructor.name.replace('Command', '')}`);
        return out;
      };
    },
  });
}

function crashingModel(model: ModelClient, plan: CrashPlan): ModelClient {
  return {
    async complete(request, opts) {
      plan.guard();
      const out = await model.complete(request, opts);
      plan.tick('model:answered');
      return out;
    },
  };
}

/** Queue that records wakes instead of delivering them; the test drives the harness itself. */
export class RecordingQueue implements WakeQueue {
  wakes: string[] = [];
  async wake(sessionId: string) {
    this.wakes.push(sessionId);
  }
}

export interface Rig {
  db: EmbeddedDynamo;
  fake: FakeMessagesApi;
  provider: ProcessSandboxProvider;
  /** Services with clean adapters: the API side, and the fresh harness after a crash. */
  services: CorralServices;
  /** Services on the same tables and model with other harness options or another sandbox provider. */
  servicesWith(opts: { harness?: HarnessOptions; sandboxProvider?: SandboxProvider }): CorralServices;
  /** Services whose harness dies after the given I/O operation (null: never). */
  dyingServices(plan: CrashPlan): CorralServices;
  /** Wake with a fresh harness until the session has nothing left to do. */
  settle(sessionId: string, services?: CorralServices): Promise<void>;
  close(): Promise<void>;
}

export async function startRig(opts: { harness?: HarnessOptions; leaseTtlMs?: number } = {}): Promise<Rig> {
  const db = await startDynalite();
  await ensureTables(db.client, TABLES);
  const fake = await startFakeMessagesApi();
  const dataDir = mkdtempSync(join(tmpdir(), 'corral-faults-'));
  const provider = new ProcessSandboxProvider({ dataDir, isolation: 'auto' });
  const harness: HarnessOptions = { retryDelayMs: () => 5, interruptPollMs: 20, ...opts.harness };
  const build = (
    client: DynamoDBClient,
    model: ModelClient,
    extra: { harness?: HarnessOptions; clock?: () => number; sandboxProvider?: SandboxProvider } = {},
  ) =>
    createServices({
      table: new DynamoStateTable(client, TABLES.state),
      events: new DynamoEventLog(client, TABLES.events),
      queue: new RecordingQueue(),
      sandboxProvider: extra.sandboxProvider ?? provider,
      model,
      harness: { ...harness, ...extra.harness },
      leaseTtlMs: opts.leaseTtlMs ?? 60_000,
      clock: extra.clock,
    });
  const model = new AnthropicModel({ apiKey: 'test', baseURL: fake.url });
  // The fresh harness lives an hour later: a dead holder's lease has expired by then.
  const services = build(db.client, model, { clock: () => Date.now() + 3_600_000 });
  const rig: Rig = {
    db,
    fake,
    provider,
    services,
    servicesWith(extra) {
      return build(db.client, model, { ...extra, clock: () => Date.now() + 3_600_000 });
    },
    dyingServices(plan) {
      // No background I/O (lease renewals, interrupt polls) during a run, so that the I/O
      // operations, and with them the crash points, are the same in every run.
      const dying = build(crashingDynamo(db.client, plan), crashingModel(model, plan), {
        harness: { interruptPollMs: 600_000 },
      });
      const execute = dying.sandboxes.execute.bind(dying.sandboxes);
      dying.sandboxes.execute = async (...args) => {
        plan.guard();
        const call = execute(...args);
        try {
          plan.tick('tool:dispatched'); // dies while the command runs in the sandbox
        } catch (err) {
          call.catch(() => undefined);
          throw err;
        }
        const out = await call;
        plan.tick('tool:returned');
        return out;
      };
      return dying;
    },
    async settle(sessionId, svc = services) {
      for (let i = 0; i < 200; i++) {
        const result: WakeResult = await svc.harness.wake(sessionId);
        if (result.status === 'busy') {
          await new Promise((r) => setTimeout(r, Math.min(result.retryAfterMs, 1000)));
          continue;
        }
        if (result.status === 'done' || result.status === 'gone') return;
      }
      throw new Error(`session ${sessionId} did not settle`);
    },
    async close() {
      await provider.close();
      await fake.close();
      await db.close();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
  return rig;
}

/**
 * The logical transcript: what was said and done, without the bookkeeping a crash may add
 * (a failed model request span, a retry's error, the rescheduling marker) and without ids and
 * times. Tool results are matched to their tool use by order of the tool uses.
 */
export function logicalTranscript(events: SessionEvent[]) {
  const toolIndex = new Map<string, number>();
  const out: unknown[] = [];
  for (const e of events) {
    switch (e.type) {
      case 'user.message':
      case 'agent.message':
        out.push({ type: e.type, content: e.content });
        break;
      case 'agent.tool_use':
        toolIndex.set(e.id, toolIndex.size);
        out.push({ type: e.type, name: e.name, input: e.input });
        break;
      case 'agent.tool_result':
        out.push({ type: e.type, tool: toolIndex.get(String(e.tool_use_id)), content: e.content, is_error: e.is_error });
        break;
      case 'session.status_running':
        out.push({ type: e.type, stop_reason: undefined });
        break;
      case 'session.status_idle':
        out.push({ type: e.type, stop_reason: e.stop_reason });
        break;
      default:
        break;
    }
  }
  return out;
}

/** Structural invariants of any log, crashed or not. */
export function checkInvariants(positions: number[], events: SessionEvent[]): string[] {
  const problems: string[] = [];
  positions.forEach((p, i) => {
    if (p !== i + 1) problems.push(`position ${p} at index ${i}`);
  });
  if (new Set(events.map((e) => e.id)).size !== events.length) problems.push('duplicate event id');
  const uses = events.filter((e) => e.type === 'agent.tool_use');
  for (const use of uses) {
    const results = events.filter((e) => e.type === 'agent.tool_result' && e.tool_use_id === use.id);
    if (results.length !== 1) problems.push(`tool use ${use.id} has ${results.length} results`);
    else if (events.indexOf(results[0]) < events.indexOf(use)) problems.push(`result before tool use ${use.id}`);
  }
  const starts = events.filter((e) => e.type === 'span.model_request_start');
  for (const start of starts) {
    const ends = events.filter((e) => e.type === 'span.model_request_end' && e.model_request_start_id === start.id);
    if (ends.length !== 1) problems.push(`model request ${start.id} has ${ends.length} ends`);
  }
  return problems;
}
