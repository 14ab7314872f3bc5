import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isEventType } from '../../lambdas/core/session/events.js';
import { createAgentAndEnvironment, listAll, startTestRuntime, waitFor, type TestRuntime } from '../helpers/runtime.js';

type Streamed = { type: string; [k: string]: unknown };
type Delta = { type: 'event_delta'; event_id: string; delta: { type: string; index: number; content: { type: string; text: string } } };

/** Reads a stream in the background, keeping everything it yields, until it ends or is aborted. */
function record(stream: AsyncIterable<unknown>) {
  const seen: Streamed[] = [];
  const done = (async () => {
    try {
      for await (const e of stream) seen.push(e as Streamed);
    } catch {
      // aborted by the test
    }
  })();
  return { seen, done };
}

const deltaText = (seen: Streamed[], eventId: string) =>
  seen
    .filter((e): e is Streamed & Delta => e.type === 'event_delta' && e.event_id === eventId)
    .map((e) => e.delta.content.text)
    .join('');

/** `event_deltas` through the official SDK: previews while the (scripted, held) model streams. */
describe('event_deltas (official SDK -> local runtime -> streaming fake model)', () => {
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

  it('previews agent.message while the model generates it, only on streams that ask, and stores none of it', async () => {
    const text = 'Corral previews text as the model writes it; the stored message stays the authority. '.repeat(2);
    let release!: () => void;
    // The model sends two fragments, then waits for the test: whatever the stream shows by then
    // was shown while the model was still generating.
    t.fake.push({ kind: 'text', text, chunkDelayMs: 20, hold: { afterDeltas: 2, until: new Promise<void>((r) => (release = r)) } });
    const session = await newSession();
    const ac = new AbortController();
    const withDeltas = record(await t.client.beta.sessions.events.stream(session.id, { event_deltas: ['agent.message'] }, { signal: ac.signal }));
    const plain = record(await t.client.beta.sessions.events.stream(session.id, {}, { signal: ac.signal }));
    const thinkingOnly = record(
      await t.client.beta.sessions.events.stream(session.id, { event_deltas: ['agent.thinking'] }, { signal: ac.signal }),
    );
    await t.client.beta.sessions.events.send(session.id, { events: [{ type: 'user.message', content: [{ type: 'text', text: 'talk' }] }] });

    // While the model is held: an event_start, then the first fragments' text.
    const start = await waitFor(async () => withDeltas.seen.find((e) => e.type === 'event_start'), 'an event_start');
    const previewed = (start as unknown as { event: { type: string; id: string } }).event;
    expect(previewed.type).toBe('agent.message');
    const firstTwo = text.slice(0, 2 * Math.min(24, Math.ceil(text.length / 3)));
    await waitFor(async () => deltaText(withDeltas.seen, previewed.id) === firstTwo, 'the held fragments as deltas');
    expect(withDeltas.seen.some((e) => e.type === 'agent.message')).toBe(false);

    // A stream that attaches mid-request catches up on the preview so far.
    const late = record(await t.client.beta.sessions.events.stream(session.id, { event_deltas: ['agent.message'] }, { signal: ac.signal }));
    await waitFor(async () => deltaText(late.seen, previewed.id) === firstTwo, 'the late stream to catch up');

    release();
    for (const s of [withDeltas, plain, thinkingOnly, late]) {
      await waitFor(async () => s.seen.some((e) => e.type === 'session.status_idle'), 'idle on every stream');
    }
    ac.abort();

    // The stored message carries the preview's id and the whole text; every delta came before it,
    // and together they are its text.
    const storedAt = withDeltas.seen.findIndex((e) => e.type === 'agent.message');
    const stored = withDeltas.seen[storedAt] as unknown as { id: string; content: Array<{ type: string; text: string }> };
    expect(stored.id).toBe(previewed.id);
    expect(stored.content).toEqual([{ type: 'text', text }]);
    const deltas = withDeltas.seen.filter((e) => e.type === 'event_delta') as unknown as Delta[];
    expect(deltas.length).toBeGreaterThan(0);
    expect(withDeltas.seen.findLastIndex((e) => e.type === 'event_delta')).toBeLessThan(storedAt);
    expect(withDeltas.seen.findIndex((e) => e.type === 'event_start')).toBeLessThan(withDeltas.seen.findIndex((e) => e.type === 'event_delta'));
    for (const d of deltas) expect(d.delta).toMatchObject({ type: 'content_delta', index: 0, content: { type: 'text' } });
    expect(deltaText(withDeltas.seen, stored.id)).toBe(text);
    expect(deltaText(late.seen, stored.id)).toBe(text);

    // The stored events are the same on every stream; previews only where asked for.
    const storedOnly = (seen: Streamed[]) => seen.filter((e) => e.type !== 'event_start' && e.type !== 'event_delta');
    expect(storedOnly(withDeltas.seen)).toEqual(plain.seen);
    expect(thinkingOnly.seen).toEqual(plain.seen);
    expect(plain.seen.every((e) => isEventType(e.type))).toBe(true);

    // Neither the history nor the log holds a preview.
    const history = await listAll(t.client, session.id);
    expect(history.map((e) => e.type)).not.toContain('event_start');
    expect(history.map((e) => e.type)).not.toContain('event_delta');
    const log = await t.runtime.services.events.getEvents(session.id);
    expect(log.map((s) => s.event)).toEqual(history);
    expect(log.filter((s) => s.event.id === stored.id)).toHaveLength(1);
  });

  it('refuses event_deltas values it cannot preview, naming them', async () => {
    const session = await newSession();
    const err = await t.client.beta.sessions.events.stream(session.id, { event_deltas: ['agent.tool_use', 'agent.message'] as never }).then(
      () => null,
      (e: unknown) => e as { status: number; error: { error: { type: string; message: string } } },
    );
    expect(err?.status).toBe(400);
    expect(err?.error.error.type).toBe('invalid_request_error');
    expect(err?.error.error.message).toMatch(/^event_deltas: "agent\.tool_use" cannot be previewed/);
    expect(err?.error.error.message).not.toContain('"agent.message"');
  });
});
