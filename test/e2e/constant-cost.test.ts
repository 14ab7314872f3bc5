import { BatchWriteItemCommand } from '@aws-sdk/client-dynamodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeEvent, type SessionEvent } from '../../lambdas/core/session/events.js';
import { CrashPlan, startRig, type Rig } from '../faults/harness-rig.js';

const BUDGET_TOKENS = 20_000;
const BUDGET_EVENTS = 400;

/** `count` events of ordinary turns: a message, a run, a model request, an answer, idle. */
function syntheticTurns(count: number): SessionEvent[] {
  const out: SessionEvent[] = [];
  for (let turn = 0; out.length < count; turn++) {
    const start = makeEvent({ type: 'span.model_request_start' });
    out.push(
      makeEvent({ type: 'user.message', content: [{ type: 'text', text: `question ${turn}: ${'words '.repeat(30)}` }] }),
      makeEvent({ type: 'session.status_running' }),
      start,
      makeEvent({ type: 'agent.message', content: [{ type: 'text', text: `answer ${turn}: ${'more words '.repeat(20)}` }] }),
      makeEvent({
        type: 'span.model_request_end',
        model_request_start_id: start.id,
        is_error: false,
        model_usage: { input_tokens: 100, output_tokens: 50, cache_read_input_tokens: 0, cache_creation_input_tokens: 0 },
      }),
      makeEvent({ type: 'session.status_idle', stop_reason: { type: 'end_turn' }, stop_details: null }),
    );
  }
  return out.slice(0, count - (count % 6)); // whole turns only
}

describe('constant cost per step', () => {
  let rig: Rig;
  const tenant = 'cost';
  beforeAll(async () => {
    rig = await startRig({ harness: { contextBudgetTokens: BUDGET_TOKENS, contextBudgetEvents: BUDGET_EVENTS } });
  });
  afterAll(() => rig.close());

  async function sessionWith(count: number) {
    const agent = await rig.services.agents.create(tenant, { name: 'a', model: 'claude-sonnet-4-6' });
    const env = await rig.services.environments.create(tenant, { name: 'e' });
    const session = await rig.services.sessions.create(tenant, { agent: agent.id, environment_id: env.id });
    const events = syntheticTurns(count);
    for (let i = 0; i < events.length; i += 25) {
      await rig.db.client.send(
        new BatchWriteItemCommand({
          RequestItems: {
            'corral-events': events.slice(i, i + 25).map((e, j) => ({
              PutRequest: { Item: { sessionId: { S: session.id }, position: { N: String(i + j + 1) }, event: { S: JSON.stringify(e) } } },
            })),
          },
        }),
      );
    }
    return session.id;
  }

  /** One turn (a user message, the wake that answers it), with the harness's DynamoDB calls counted. */
  async function measuredTurn(sessionId: string, text: string) {
    await rig.services.sessions.send(tenant, sessionId, [{ type: 'user.message', content: [{ type: 'text', text }] }]);
    const plan = new CrashPlan(null);
    const result = await rig.dyingServices(plan).harness.wake(sessionId);
    expect(result.status).toBe('done');
    const reads = plan.ops.filter((op) => /Query|GetItem|Scan|BatchGet/.test(op));
    return { reads: reads.length, ops: plan.ops, request: JSON.stringify(rig.fake.requests.at(-1)!.body) };
  }

  it('reads the same for the next step of a 10,000-event session as of a 100-event one, and keeps the request in budget', async () => {
    const small = await sessionWith(100);
    const large = await sessionWith(10_000);
    // A first turn on each: the harness builds its cursor (and the large session's view is
    // compacted, since 10,000 events are far over the view's budget).
    await measuredTurn(small, 'first');
    await measuredTurn(large, 'first');
    const largeLog = await rig.services.events.getEvents(large);
    expect(largeLog.filter((e) => e.event.type === 'agent.thread_context_compacted')).toHaveLength(1);
    expect(largeLog.length).toBeGreaterThan(10_000); // nothing was removed from the log

    const a = await measuredTurn(small, 'second');
    const b = await measuredTurn(large, 'second');
    console.info(`constant cost: next step reads ${a.reads} (100 events) vs ${b.reads} (10,000 events); request ${a.request.length} vs ${b.request.length} bytes`);
    expect(b.reads).toBe(a.reads);
    expect(b.ops).toEqual(a.ops);
    expect(b.request.length).toBeLessThan(BUDGET_TOKENS * 4 * 1.25);
    // The model still sees the summary of what it no longer sees, and can read it back.
    expect(b.request).toContain('Summary of events 1 to');
    expect(b.request).toContain('read_session_log');
  }, 240_000);
});
