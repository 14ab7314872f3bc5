import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { collectUntil, createAgentAndEnvironment, isIdle, listAll, startTestRuntime, waitFor, type TestRuntime } from '../helpers/runtime.js';

const text = (t: string) => [{ type: 'text' as const, text: t }];

describe('a session end to end (official SDK -> local runtime -> fake model -> sandbox)', () => {
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

  const newSession = () => t.client.beta.sessions.create({ agent: agentId, environment_id: envId });

  it('streams tool_use -> tool_result -> message -> idle, and history agrees with the stream', async () => {
    const session = await newSession();
    const stream = await t.client.beta.sessions.events.stream(session.id);
    await t.client.beta.sessions.events.send(session.id, {
      events: [{ type: 'user.message', content: text('Please run `echo corral-$((6*7))`') }],
    });
    const seen = await collectUntil(stream, isIdle);
    const types = seen.map((e) => e.type);
    expect(types).toEqual([
      'user.message',
      'session.status_running',
      'span.model_request_start',
      'agent.message',
      'agent.tool_use',
      'span.model_request_end',
      'agent.tool_result',
      'span.model_request_start',
      'agent.message',
      'span.model_request_end',
      'session.status_idle',
    ]);
    const toolUse = seen.find((e) => e.type === 'agent.tool_use')!;
    expect(toolUse).toMatchObject({ name: 'bash', input: { command: 'echo corral-$((6*7))' }, evaluated_permission: 'allow' });
    const result = seen.find((e) => e.type === 'agent.tool_result')!;
    expect(result).toMatchObject({
      tool_use_id: toolUse.id,
      is_error: false,
      content: [{ type: 'text', text: 'corral-42\n' }],
      sandbox: 'default',
    });
    expect(seen.at(-2)).toMatchObject({ type: 'span.model_request_end', is_error: false });
    expect(seen.at(-1)).toMatchObject({ stop_reason: { type: 'end_turn' } });
    // the model saw the tool's output
    const lastRequest = t.fake.requests.at(-1)!.body as { messages: Array<{ role: string; content: unknown }> };
    expect(JSON.stringify(lastRequest.messages.at(-1))).toContain('corral-42');

    // History (paginated, small pages), positional slices and the stream agree.
    const history = await listAll(t.client, session.id, { limit: 3 });
    expect(history.map((e) => e.id)).toEqual(seen.map((e) => e.id));
    expect(history).toEqual(seen);
    const log = await t.runtime.services.events.getEvents(session.id);
    expect(log.map((s) => s.position)).toEqual(seen.map((_, i) => i + 1));
    expect(log.map((s) => s.event)).toEqual(seen);
    const slice = await t.runtime.services.events.getEvents(session.id, { from: 4, to: 8 });
    expect(slice.map((s) => s.event.id)).toEqual(seen.slice(3, 7).map((e) => e.id));
    const desc = await listAll(t.client, session.id, { order: 'desc', limit: 4 });
    expect(desc.map((e) => e.id)).toEqual([...seen].reverse().map((e) => e.id));
    const onlyTools = await listAll(t.client, session.id, { types: ['agent.tool_use', 'agent.tool_result'], limit: 1 });
    expect(onlyTools.map((e) => e.type)).toEqual(['agent.tool_use', 'agent.tool_result']);

    const after = await t.client.beta.sessions.retrieve(session.id);
    expect(after.status).toBe('idle');
    expect(after.usage.output_tokens).toBeGreaterThan(0);
    expect(await t.runtime.services.sandboxes.list(session.id)).toHaveLength(1);
  });

  it('starts no sandbox for a session that answers without tools', async () => {
    const session = await newSession();
    const stream = await t.client.beta.sessions.events.stream(session.id);
    await t.client.beta.sessions.events.send(session.id, { events: [{ type: 'user.message', content: text('just talk') }] });
    const seen = await collectUntil(stream, isIdle);
    expect(seen.find((e) => e.type === 'agent.message')).toMatchObject({ content: [{ type: 'text', text: 'You said: just talk' }] });
    expect(seen.some((e) => e.type === 'agent.tool_use')).toBe(false);
    expect(await t.runtime.services.sandboxes.list(session.id)).toEqual([]);
  });

  it('resumes a stream exactly after Last-Event-ID', async () => {
    const session = await newSession();
    await t.client.beta.sessions.events.send(session.id, { events: [{ type: 'user.message', content: text('run `echo a`') }] });
    await waitFor(async () => (await t.client.beta.sessions.retrieve(session.id)).status === 'idle' && (await listAll(t.client, session.id)).length > 5, 'idle');
    const all = await listAll(t.client, session.id);
    const res = await fetch(`${t.runtime.url}/v1/sessions/${session.id}/events/stream`, {
      headers: { 'x-api-key': t.runtime.apiKey, 'last-event-id': '3' },
    });
    expect(res.headers.get('content-type')).toMatch(/text\/event-stream/);
    const reader = res.body!.getReader();
    let buf = '';
    const decoder = new TextDecoder();
    while ((buf.match(/\n\n/g) ?? []).length < all.length - 3) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += decoder.decode(value);
    }
    await reader.cancel();
    const frames = buf.split('\n\n').filter((f) => f.includes('data:'));
    const parsed = frames.map((f) => ({
      id: f.match(/^id: (.*)$/m)?.[1],
      event: f.match(/^event: (.*)$/m)?.[1],
      data: JSON.parse(f.match(/^data: (.*)$/m)![1]),
    }));
    expect(parsed.map((p) => Number(p.id))).toEqual(all.slice(3).map((_, i) => i + 4));
    expect(parsed.map((p) => p.data.id)).toEqual(all.slice(3).map((e) => e.id));
    expect(parsed.every((p) => p.event === p.data.type)).toBe(true);
  });

  it('processes messages sent while running in order', async () => {
    const session = await newSession();
    t.fake.push({ kind: 'text', text: 'first answer', delayMs: 1000 });
    const stream = await t.client.beta.sessions.events.stream(session.id);
    await t.client.beta.sessions.events.send(session.id, { events: [{ type: 'user.message', content: text('one') }] });
    // The model is answering 'one' (seen on the stream, so no poll can miss the window): send 'two'.
    const head = await collectUntil(stream, (e) => e.type === 'span.model_request_start');
    await t.client.beta.sessions.events.send(session.id, { events: [{ type: 'user.message', content: text('two') }] });
    const tail = await collectUntil(stream, (e, all) => isIdle(e) && all.filter((x) => x.type === 'agent.message').length >= 2);
    const seen = [...head, ...tail];
    const messages = seen.filter((e) => e.type === 'agent.message').map((e) => (e.content as Array<{ text: string }>)[0].text);
    expect(messages).toEqual(['first answer', 'You said: two']);
    const users = seen.filter((e) => e.type === 'user.message').map((e) => (e.content as Array<{ text: string }>)[0].text);
    expect(users).toEqual(['one', 'two']);
  });

  it('interrupts a running turn: no partial answer is recorded and the session idles', async () => {
    const session = await newSession();
    t.fake.push({ kind: 'hang' });
    const stream = await t.client.beta.sessions.events.stream(session.id);
    await t.client.beta.sessions.events.send(session.id, { events: [{ type: 'user.message', content: text('think forever') }] });
    await collectUntil(stream, (e) => e.type === 'span.model_request_start');
    await t.client.beta.sessions.events.send(session.id, { events: [{ type: 'user.interrupt' }] });
    const rest = await collectUntil(stream, isIdle);
    expect(rest.map((e) => e.type)).toEqual(['user.interrupt', 'span.model_request_end', 'session.status_idle']);
    expect(rest[1]).toMatchObject({ is_error: true });
    expect(rest[2]).toMatchObject({ stop_reason: { type: 'end_turn' } });
    const history = await listAll(t.client, session.id);
    expect(history.some((e) => e.type === 'agent.message')).toBe(false);
    // the session takes new work afterwards
    await t.client.beta.sessions.events.send(session.id, { events: [{ type: 'user.message', content: text('still there?') }] });
    const next = await collectUntil(stream, isIdle);
    // the interrupted message stays in the conversation; the new one follows it
    const answer = (next.find((e) => e.type === 'agent.message')!.content as Array<{ text: string }>)[0].text;
    expect(answer).toBe('You said: think forever\nstill there?');
  });

  it('retries model failures with announced errors, then gives up with retries_exhausted', async () => {
    const session = await newSession();
    t.fake.push({ kind: 'error', status: 529 }, { kind: 'error', status: 429 }, { kind: 'text', text: 'made it' });
    const stream = await t.client.beta.sessions.events.stream(session.id);
    await t.client.beta.sessions.events.send(session.id, { events: [{ type: 'user.message', content: text('hello') }] });
    const seen = await collectUntil(stream, isIdle);
    const errors = seen.filter((e) => e.type === 'session.error');
    expect(errors.map((e) => e.error)).toEqual([
      expect.objectContaining({ type: 'model_overloaded_error', retry_status: { type: 'retrying' } }),
      expect.objectContaining({ type: 'model_rate_limited_error', retry_status: { type: 'retrying' } }),
    ]);
    expect(seen.filter((e) => e.type === 'agent.message')).toHaveLength(1);
    expect(seen.at(-1)).toMatchObject({ stop_reason: { type: 'end_turn' } });

    const failing = await newSession();
    t.fake.push(...Array.from({ length: 4 }, () => ({ kind: 'error' as const, status: 500 })));
    const s2 = await t.client.beta.sessions.events.stream(failing.id);
    await t.client.beta.sessions.events.send(failing.id, { events: [{ type: 'user.message', content: text('hello') }] });
    const seen2 = await collectUntil(s2, isIdle);
    const statuses = seen2.filter((e) => e.type === 'session.error').map((e) => (e.error as { retry_status: { type: string } }).retry_status.type);
    expect(statuses).toEqual(['retrying', 'retrying', 'retrying', 'exhausted']);
    expect(seen2.at(-1)).toMatchObject({ stop_reason: { type: 'retries_exhausted' } });
    expect(seen2.some((e) => e.type === 'agent.message')).toBe(false);
  });

  it('reports a tool that fails as an error result the model sees', async () => {
    const session = await newSession();
    const stream = await t.client.beta.sessions.events.stream(session.id);
    await t.client.beta.sessions.events.send(session.id, { events: [{ type: 'user.message', content: text('run `exit 3`') }] });
    const seen = await collectUntil(stream, isIdle);
    const result = seen.find((e) => e.type === 'agent.tool_result')!;
    expect(result.is_error).toBe(true);
    expect(JSON.stringify(result.content)).toContain('exit code 3');
  });
});
