import type Anthropic from '@anthropic-ai/sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { collectUntil, isIdle, startTestRuntime, type TestRuntime } from '../helpers/runtime.js';
import { SDK_RESOURCES } from '../helpers/sdk-resources.js';
import { SdkTypes } from '../helpers/sdk-types.js';

/**
 * Outcomes through the official SDK against the local runtime, with the scripted fake Messages
 * API as both the worker and the grader: the first answer fails the rubric, the worker revises
 * from the grader's feedback, the second passes. Every streamed event and the session with its
 * `outcome_evaluations` are checked against the SDK's declared types; fields Corral does not
 * implement are 400s naming them.
 */
const sdk = new SdkTypes([SDK_RESOURCES.sessions.file, SDK_RESOURCES['sessions.events'].file]);
const method = (resource: 'sessions' | 'sessions.events', name: string) => sdk.methods(SDK_RESOURCES[resource]).find((m) => m.name === name)!;

describe('outcomes', () => {
  let t: TestRuntime;
  let c: Anthropic;
  let agentId: string;
  let environmentId: string;
  beforeAll(async () => {
    t = await startTestRuntime();
    c = t.client;
    agentId = (await c.beta.agents.create({ name: 'worker', model: 'claude-sonnet-4-6', tools: [] })).id;
    environmentId = (await c.beta.environments.create({ name: 'env', config: { type: 'cloud' } })).id;
  });
  afterAll(() => t?.close());

  const outcome: Anthropic.Beta.Sessions.BetaManagedAgentsUserDefineOutcomeEventParams = {
    type: 'user.define_outcome',
    description: 'Write a haiku about the sea.',
    rubric: { type: 'text', content: 'Three lines; the word "salt" appears.' },
    max_iterations: 3,
  };

  it('revises an answer the grader fails, then passes, with the events and the session the SDK declares', async () => {
    const session = await c.beta.sessions.create({ agent: agentId, environment_id: environmentId });
    t.fake.push(
      { kind: 'text', text: 'Waves fold on the shore\nthe tide forgets its name\nthe gull keeps the time' },
      { kind: 'text', text: '{"result": "needs_revision", "explanation": "The word salt does not appear."}' },
      { kind: 'text', text: 'Salt on the west wind\nthe tide forgets its name\nthe gull keeps the time' },
      { kind: 'text', text: '{"result": "satisfied", "explanation": "Three lines, and salt appears."}' },
    );
    const stream = await c.beta.sessions.events.stream(session.id);
    await c.beta.sessions.events.send(session.id, { events: [outcome] });
    const streamed = await collectUntil(stream, isIdle);
    stream.controller.abort();

    const kinds = streamed.filter((e) => e.type.includes('outcome') || e.type === 'agent.message' || isIdle(e)).map((e) => [e.type, e.result ?? null]);
    expect(kinds).toEqual([
      ['user.define_outcome', null],
      ['agent.message', null],
      ['span.outcome_evaluation_start', null],
      ['span.outcome_evaluation_end', 'needs_revision'],
      ['agent.message', null],
      ['span.outcome_evaluation_start', null],
      ['span.outcome_evaluation_end', 'satisfied'],
      ['session.status_idle', null],
    ]);
    const streamType = method('sessions.events', 'stream').result;
    expect(streamed.flatMap((e, i) => sdk.conforms(e, streamType, `$[${i}]`))).toEqual([]);
    // The grader's call came from the same provider, with the rubric; the worker's revision saw its feedback.
    const graderCalls = t.fake.requests.filter((r) => JSON.stringify(r.body.system ?? '').includes('strict grader'));
    expect(graderCalls).toHaveLength(2);
    expect(JSON.stringify(graderCalls[0].body.messages)).toContain('the word \\"salt\\" appears');
    expect(JSON.stringify(t.fake.requests.at(-2)!.body.messages?.at(-1))).toContain('The word salt does not appear.');

    const raw = (await c.beta.sessions.retrieve(session.id).asResponse().then((r) => r.json())) as Record<string, unknown>;
    expect(sdk.conforms(raw, method('sessions', 'retrieve').result)).toEqual([]);
    const defined = streamed.find((e) => e.type === 'user.define_outcome')!;
    expect(raw.outcome_evaluations).toEqual([
      {
        type: 'outcome_evaluation',
        outcome_id: defined.outcome_id,
        description: outcome.description,
        iteration: 1,
        result: 'satisfied',
        explanation: 'Three lines, and salt appears.',
        completed_at: expect.any(String),
      },
    ]);
  }, 60_000);

  it('is refused with a 400 naming a field or a rubric Corral does not implement', async () => {
    const session = await c.beta.sessions.create({ agent: agentId, environment_id: environmentId });
    for (const [event, why] of [
      [{ ...outcome, grader_model: 'claude-opus-4-1' }, /grader_model/],
      [{ ...outcome, rubric: { type: 'file', file_id: 'file_011' } }, /events\.0\.rubric: a file rubric .*not supported by Corral/],
      [{ ...outcome, max_iterations: 21 }, /events\.0\.max_iterations/],
    ] as const) {
      await expect(c.beta.sessions.events.send(session.id, { events: [event as never] })).rejects.toMatchObject({ status: 400, message: expect.stringMatching(why) });
    }
    await expect(
      c.beta.sessions.create({ agent: agentId, environment_id: environmentId, initial_events: [{ ...outcome, rubric: { type: 'text', content: '' } }] }),
    ).rejects.toMatchObject({ status: 400, message: expect.stringMatching(/initial_events\.0\.rubric\.content/) });
  });
});
