import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { collectUntil, createAgentAndEnvironment, isIdle, listAll, startTestRuntime, waitFor, type TestRuntime } from '../helpers/runtime.js';

describe('fork (Corral extension)', () => {
  let t: TestRuntime;
  beforeAll(async () => {
    t = await startTestRuntime();
  });
  afterAll(() => t.close());

  it('continues a copy of the log from a chosen position, sharing nothing with the original', async () => {
    const { agent, environment } = await createAgentAndEnvironment(t.client);
    const original = await t.client.beta.sessions.create({ agent: agent.id, environment_id: environment.id });
    const stream = await t.client.beta.sessions.events.stream(original.id);
    await t.client.beta.sessions.events.send(original.id, {
      events: [{ type: 'user.message', content: [{ type: 'text', text: 'run `echo $$ > pid; echo forked`' }] }],
    });
    const seen = await collectUntil(stream, isIdle);
    const toolResultAt = seen.findIndex((e) => e.type === 'agent.tool_result'); // 0-based index = position - 1

    // Fork right before the tool ran: the fork runs the tool itself, in its own sandbox.
    const res = await fetch(`${t.runtime.url}/v1/sessions/${original.id}/fork`, {
      method: 'POST',
      headers: { 'x-api-key': t.runtime.apiKey, 'content-type': 'application/json' },
      body: JSON.stringify({ up_to_position: toolResultAt, title: 'alternative' }),
    });
    expect(res.status).toBe(200);
    const fork = (await res.json()) as { id: string; title: string; forked_from: unknown };
    expect(fork).toMatchObject({ title: 'alternative', forked_from: { session_id: original.id, position: toolResultAt } });
    await waitFor(async () => (await t.client.beta.sessions.retrieve(fork.id)).status === 'idle' && (await listAll(t.client, fork.id)).at(-1)?.type === 'session.status_idle', 'fork to finish');

    const forked = await listAll(t.client, fork.id);
    expect(forked.slice(0, toolResultAt).map((e) => e.type)).toEqual(seen.slice(0, toolResultAt).map((e) => e.type));
    // fresh ids, references rewritten to them
    const originalIds = new Set(seen.map((e) => e.id));
    expect(forked.some((e) => originalIds.has(e.id))).toBe(false);
    const use = forked.find((e) => e.type === 'agent.tool_use')!;
    const result = forked.find((e) => e.type === 'agent.tool_result')!;
    expect(result.tool_use_id).toBe(use.id);
    expect(result).toMatchObject({ is_error: false });
    // The fork's sandbox was seeded from a copy of the original's workspace before the fork was
    // first woken, so its first call runs there and the model is told so.
    const text = (result.content as Array<{ text: string }>)[0].text;
    expect(text).toContain(`this session was forked from session ${original.id}; this call runs in a new sandbox whose workspace was restored from a copy of that session's workspace`);
    expect(text.endsWith('\nforked\n')).toBe(true);
    for (const end of forked.filter((e) => e.type === 'span.model_request_end')) {
      expect(forked.some((e) => e.id === end.model_request_start_id)).toBe(true);
    }
    // the original is untouched, and each has its own sandbox
    expect(await listAll(t.client, original.id)).toEqual(seen);
    const [a] = await t.runtime.services.sandboxes.list(original.id);
    const [b] = await t.runtime.services.sandboxes.list(fork.id);
    expect(a.ref).not.toBe(b.ref);

    // bad positions are refused
    const bad = await fetch(`${t.runtime.url}/v1/sessions/${original.id}/fork`, {
      method: 'POST',
      headers: { 'x-api-key': t.runtime.apiKey, 'content-type': 'application/json' },
      body: JSON.stringify({ up_to_position: 10_000 }),
    });
    expect(bad.status).toBe(400);
    // Two sessions, each with a sandbox started and a workspace copied: over 30 s on a loaded machine.
  }, 90_000);
});
