import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { collectUntil, createAgentAndEnvironment, isIdle, listAll, startTestRuntime, type TestRuntime } from '../helpers/runtime.js';

const text = (t: string) => [{ type: 'text' as const, text: t }];

describe('model faults and sizes, through the official SDK', () => {
  let t: TestRuntime;
  let agentId: string;
  let envId: string;
  beforeAll(async () => {
    t = await startTestRuntime();
    const { agent, environment } = await createAgentAndEnvironment(t.client);
    agentId = agent.id;
    envId = environment.id;
  });
  afterAll(() => t.close());

  it('retries a stream dropped mid-answer without recording the partial answer', async () => {
    const session = await t.client.beta.sessions.create({ agent: agentId, environment_id: envId });
    t.fake.push({ kind: 'drop', afterText: 'half an ans' }, { kind: 'error', status: 529, midStream: true }, { kind: 'text', text: 'whole answer' });
    const stream = await t.client.beta.sessions.events.stream(session.id);
    await t.client.beta.sessions.events.send(session.id, { events: [{ type: 'user.message', content: text('hello') }] });
    const seen = await collectUntil(stream, isIdle);
    const errors = seen.filter((e) => e.type === 'session.error').map((e) => e.error as { type: string; retry_status: { type: string } });
    expect(errors.map((e) => e.retry_status.type)).toEqual(['retrying', 'retrying']);
    const messages = seen.filter((e) => e.type === 'agent.message').map((e) => JSON.stringify(e.content));
    expect(messages).toEqual([JSON.stringify(text('whole answer'))]);
    expect(JSON.stringify(await listAll(t.client, session.id))).not.toContain('half an ans');
    const ends = seen.filter((e) => e.type === 'span.model_request_end').map((e) => e.is_error);
    expect(ends).toEqual([true, true, false]);
  });

  it('stores messages larger than a DynamoDB item whole, and shows the model a view that fits', async () => {
    const session = await t.client.beta.sessions.create({ agent: agentId, environment_id: envId });
    const huge = 'ünïcödé line of a very long paste\n'.repeat(30_000); // ~1 MB of UTF-8
    expect(Buffer.byteLength(huge)).toBeGreaterThan(400_000);
    const hugeAnswer = 'answer 🐄\n'.repeat(50_000);
    t.fake.push({ kind: 'text', text: hugeAnswer });
    const stream = await t.client.beta.sessions.events.stream(session.id);
    await t.client.beta.sessions.events.send(session.id, { events: [{ type: 'user.message', content: text(huge) }] });
    const seen = await collectUntil(stream, isIdle);
    const history = await listAll(t.client, session.id);
    const user = history.find((e) => e.type === 'user.message')!;
    expect((user.content as Array<{ text: string }>)[0].text).toBe(huge);
    const answer = history.find((e) => e.type === 'agent.message')!;
    expect((answer.content as Array<{ text: string }>)[0].text).toBe(hugeAnswer);
    expect(history).toEqual(seen);
    // the model was sent a clipped view with a pointer back into the log
    const sent = JSON.stringify(t.fake.requests.at(-1)!.body);
    expect(sent.length).toBeLessThan(200_000);
    expect(sent).toMatch(/characters not shown; the full text is event 1 of this session's log/);
  });
});
