import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DynamoEventLog } from '../../lambdas/adapters/aws/dynamodb-event-log.js';
import { DynamoStateTable } from '../../lambdas/adapters/aws/dynamodb-state-table.js';
import { AnthropicModel, type ModelClient } from '../../lambdas/core/harness/model.js';
import { createServices, type CorralServices } from '../../lambdas/core/services.js';
import { RecordingQueue, startRig, type Rig } from '../faults/harness-rig.js';

/**
 * The critical path from a user message to its model request, in storage round trips: calls
 * issued while another is in flight go out together and count once (the bench's step-cost suite
 * measures the same way). Counted, not timed: the count is what sets the harness's latency before
 * the model on DynamoDB, whatever the machine.
 */
interface Trace {
  /** `Command:table` per call, `model` where the request went out, in the order they ended. */
  ops: string[];
  /** The round trip each of `ops` went out in. */
  rounds: number[];
}

function tracing(client: DynamoDBClient, trace: Trace, state: { inflight: number; round: number }): DynamoDBClient {
  return new Proxy(client, {
    get(target, prop, receiver) {
      if (prop !== 'send') return Reflect.get(target, prop, receiver);
      return async (command: { constructor: { name: string }; input?: { TableName?: string; RequestItems?: Record<string, unknown> } }) => {
        if (state.inflight === 0) state.round++;
        const round = state.round;
        state.inflight++;
        try {
          return await target.send(command as never);
        } finally {
          state.inflight--;
          const name = command.input?.TableName ?? Object.keys(command.input?.RequestItems ?? {})[0];
          trace.ops.push(`${command.constructor.name.replace(/Command$/, '')}:${name === 'corral-events' ? 'events' : 'state'}`);
          trace.rounds.push(round);
        }
      };
    },
  });
}

function marking(model: ModelClient, trace: Trace, state: { inflight: number; round: number }): ModelClient {
  return {
    complete(request, opts) {
      if (state.inflight === 0) state.round++;
      trace.ops.push('model');
      trace.rounds.push(state.round);
      return model.complete(request, opts);
    },
  };
}

/** The round trips that ended before the model request went out, and their calls. */
function beforeModel(trace: Trace): { roundTrips: number; calls: string[][] } {
  const m = trace.ops.indexOf('model');
  expect(m).toBeGreaterThan(0);
  const groups = new Map<number, string[]>();
  trace.ops.slice(0, m).forEach((op, i) => {
    if (trace.rounds[i] < trace.rounds[m]) groups.set(trace.rounds[i], [...(groups.get(trace.rounds[i]) ?? []), op]);
  });
  return { roundTrips: groups.size, calls: [...groups.values()].map((g) => g.sort()) };
}

describe('the critical path from a user message to the model request', () => {
  let rig: Rig;
  const tenant = 'critpath';
  let agentId: string;
  let envId: string;
  beforeAll(async () => {
    rig = await startRig();
    agentId = (await rig.services.agents.create(tenant, { name: 'a', model: 'claude-sonnet-4-6' })).id;
    envId = (await rig.services.environments.create(tenant, { name: 'e' })).id;
  });
  afterAll(() => rig.close());

  /** A harness whose DynamoDB calls and model requests are traced (one harness: it keeps its folds across wakes). */
  function tracedServices() {
    const trace: Trace = { ops: [], rounds: [] };
    const state = { inflight: 0, round: 0 };
    const client = tracing(rig.db.client, trace, state);
    const services: CorralServices = createServices({
      table: new DynamoStateTable(client, 'corral-state'),
      events: new DynamoEventLog(client, 'corral-events'),
      queue: new RecordingQueue(),
      sandboxProvider: rig.provider,
      model: marking(new AnthropicModel({ apiKey: 'test', baseURL: rig.fake.url }), trace, state),
      harness: { interruptPollMs: 600_000 },
    });
    const reset = () => {
      trace.ops.length = 0;
      trace.rounds.length = 0;
      state.round = 0;
    };
    return { services, trace, reset };
  }

  async function turn(services: CorralServices, sessionId: string, text: string) {
    await rig.services.sessions.send(tenant, sessionId, [{ type: 'user.message', content: [{ type: 'text', text }] }]);
    expect(await services.harness.wake(sessionId)).toEqual({ status: 'done' });
  }

  it('is 3 round trips on the harness that ran the session last: the lease, the session and the new events at once; the status; the turn\'s first events', async () => {
    const { services, trace, reset } = tracedServices();
    const session = await rig.services.sessions.create(tenant, { agent: agentId, environment_id: envId });
    await turn(services, session.id, 'first');
    reset();
    await turn(services, session.id, 'second');
    const { roundTrips, calls } = beforeModel(trace);
    expect(calls).toEqual([
      ['BatchGetItem:state', 'Query:events', 'UpdateItem:state'], // the session (and lease), the events after the fold, the lease's conditional write
      ['PutItem:state'], // the session record goes running
      ['PutItem:events'], // session.status_running, carrying span.model_request_start: one item
    ]);
    expect(roundTrips).toBe(3);
    // The turn's start and the request's start are both in the log, in that order.
    const types = (await rig.services.events.getEvents(session.id)).map((e) => e.event.type);
    expect(types.slice(-6)).toEqual(['user.message', 'session.status_running', 'span.model_request_start', 'agent.message', 'span.model_request_end', 'session.status_idle']);
  });

  it('is 4 round trips on a harness that starts from the cursor: the view is read once, after it', async () => {
    const first = tracedServices();
    const session = await rig.services.sessions.create(tenant, { agent: agentId, environment_id: envId });
    await turn(first.services, session.id, 'first');
    const { services, trace } = tracedServices(); // a fresh harness: nothing kept
    await turn(services, session.id, 'second');
    const { roundTrips, calls } = beforeModel(trace);
    expect(calls).toEqual([['BatchGetItem:state', 'UpdateItem:state'], ['Query:events'], ['PutItem:state'], ['PutItem:events']]);
    expect(roundTrips).toBe(4);
    // The model saw the whole conversation, built from that one read.
    const request = JSON.stringify(rig.fake.requests.at(-1)!.body);
    expect(request).toContain('first');
    expect(request).toContain('second');
  });
});
