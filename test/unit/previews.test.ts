import { describe, expect, it } from 'vitest';
import { PreviewPublisher } from '../../lambdas/core/harness/previews.js';
import { MemoryPreviewChannel, type PreviewChannel, type PreviewChunk, type PreviewFrame } from '../../lambdas/core/session/previews.js';

const textOf = (chunks: PreviewChunk[]) =>
  chunks
    .flatMap((c) => c.frames)
    .filter((f): f is Extract<PreviewFrame, { kind: 'delta' }> => f.kind === 'delta')
    .map((f) => f.text)
    .join('');

describe('PreviewPublisher: the bounds of a preview', () => {
  it('cuts chunks at maxChunkChars and the request at maxRequestChars; the ids are kept for the stored events', async () => {
    const channel = new MemoryPreviewChannel();
    const p = new PreviewPublisher(channel, 's', 'req', { flushMs: 60_000, maxChunkChars: 100, maxRequestChars: 250 });
    for (let i = 0; i < 40; i++) p.onDelta({ type: 'text', block: 0, text: 'abcdefghij' }); // 400 characters
    await p.finish();
    const chunks = await channel.read('s', 'req', -1);
    expect(chunks.map((c) => c.seq)).toEqual([0, 1, 2]);
    for (const c of chunks) expect(textOf([c]).length).toBeLessThanOrEqual(100);
    expect(textOf(chunks)).toBe('abcdefghij'.repeat(25)); // 250: the rest is the stored message's alone
    expect(chunks[0].frames[0]).toEqual({ kind: 'start', type: 'agent.message', id: p.ids().message });
    expect(p.ids().message).toMatch(/^sevt_/);
  });

  it('announces thinking once (start-only) and gives text blocks the indexes of the stored content', async () => {
    const channel = new MemoryPreviewChannel();
    const p = new PreviewPublisher(channel, 's', 'req', { flushMs: 60_000 });
    p.onDelta({ type: 'thinking', block: 0 });
    p.onDelta({ type: 'thinking', block: 1 });
    p.onDelta({ type: 'text', block: 2, text: '' }); // an empty fragment opens nothing
    p.onDelta({ type: 'text', block: 3, text: 'one' });
    p.onDelta({ type: 'tool_input', block: 4, partial_json: '{}' });
    p.onDelta({ type: 'text', block: 5, text: 'two' });
    await p.finish();
    const frames = (await channel.read('s', 'req', -1)).flatMap((c) => c.frames);
    const { message, thinking } = p.ids();
    expect(frames).toEqual([
      { kind: 'start', type: 'agent.thinking', id: thinking },
      { kind: 'start', type: 'agent.message', id: message },
      { kind: 'delta', event_id: message, index: 0, text: 'one' },
      { kind: 'delta', event_id: message, index: 1, text: 'two' },
    ]);
  });

  it('stops previewing after a failed publish, and after abandon, without throwing', async () => {
    let calls = 0;
    const failing: PreviewChannel = {
      publish: async () => {
        calls++;
        throw new Error('throttled');
      },
      read: async () => [],
    };
    const errors: unknown[] = [];
    const p = new PreviewPublisher(failing, 's', 'req', { flushMs: 0, onError: (e) => errors.push(e) });
    p.onDelta({ type: 'text', block: 0, text: 'a' });
    await new Promise((r) => setTimeout(r, 20));
    p.onDelta({ type: 'text', block: 0, text: 'b' });
    await p.finish();
    expect(calls).toBe(1);
    expect(errors).toHaveLength(1);
    expect(p.ids().message).toBeDefined(); // the stored message still takes the announced id

    const channel = new MemoryPreviewChannel();
    const q = new PreviewPublisher(channel, 's', 'req2', { flushMs: 60_000 });
    q.onDelta({ type: 'text', block: 0, text: 'x' });
    q.abandon();
    await new Promise((r) => setTimeout(r, 20));
    expect(await channel.read('s', 'req2', -1)).toEqual([]);
  });

  it('the in-memory channel keeps a few requests per session, each until its TTL', async () => {
    let now = 0;
    const channel = new MemoryPreviewChannel({ ttlMs: 1000, requestsPerSession: 2, clock: () => now });
    const c = (request: string): PreviewChunk => ({ request, seq: 0, frames: [] });
    await channel.publish('s', c('r1'));
    await channel.publish('s', c('r2'));
    await channel.publish('s', c('r3'));
    expect(await channel.read('s', 'r1', -1)).toEqual([]);
    expect(await channel.read('s', 'r3', -1)).toHaveLength(1);
    now = 1001;
    expect(await channel.read('s', 'r3', -1)).toEqual([]);
  });
});
