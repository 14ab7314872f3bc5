import { describe, expect, it } from 'vitest';
import { RawClient } from '../../cli/client.js';
import { LivePreview } from '../../cli/format.js';
import { followEvents, parseSse, type StreamPreview } from '../../cli/sse.js';

/** A body delivered in the given chunks. */
function body(chunks: string[]): ReadableStream<Uint8Array> {
  const enc = new TextEncoder();
  return new ReadableStream({
    start(c) {
      for (const ch of chunks) c.enqueue(enc.encode(ch));
      c.close();
    },
  });
}

async function all(chunks: string[]) {
  const out = [];
  for await (const m of parseSse(body(chunks))) out.push(m);
  return out;
}

describe('parseSse (the CLI reader of the event stream)', () => {
  it('reads id, event and data, whatever the line ends and wherever the chunks split', async () => {
    const text = 'id: 1\nevent: a\ndata: {"x":1}\n\n: comment\r\nid: 2\r\nevent: b\r\ndata: l1\r\ndata: l2\r\n\r\nevent: ping\rdata: {}\r\r';
    const expected = [
      { id: '1', event: 'a', data: '{"x":1}' },
      { id: '2', event: 'b', data: 'l1\nl2' },
      { id: null, event: 'ping', data: '{}' },
    ];
    expect(await all([text])).toEqual(expected);
    // one byte at a time: a CRLF split between chunks is still one line end
    expect(await all([...text])).toEqual(expected);
  });

  it('drops a message cut off before its blank line', async () => {
    expect(await all(['id: 1\nevent: a\ndata: {"x":1}\n\nid: 2\nevent: b\ndata: {"tru'])).toEqual([{ id: '1', event: 'a', data: '{"x":1}' }]);
    expect(await all(['id: 3\ndata: x\n'])).toEqual([]);
  });
});

describe('previews in `corral sessions tail`', () => {
  const stream = [
    'id: 5\nevent: span.model_request_start\ndata: {"id":"sevt_s","type":"span.model_request_start","processed_at":"2026-01-01T00:00:00Z"}\n\n',
    'event: event_start\ndata: {"type":"event_start","event":{"type":"agent.message","id":"sevt_m"}}\n\n',
    'event: event_delta\ndata: {"type":"event_delta","event_id":"sevt_m","delta":{"type":"content_delta","index":0,"content":{"type":"text","text":"Hel"}}}\n\n',
    'event: event_delta\ndata: {"type":"event_delta","event_id":"sevt_m","delta":{"type":"content_delta","index":0,"content":{"type":"text","text":"lo\\nthere"}}}\n\n',
    'id: 6\nevent: agent.message\ndata: {"id":"sevt_m","type":"agent.message","content":[{"type":"text","text":"Hello\\nthere"}],"processed_at":"2026-01-01T00:00:01Z"}\n\n',
  ];
  /** A client whose every stream request answers `stream` once and records its URL. */
  const client = (urls: string[]) =>
    new RawClient({ url: 'http://corral.invalid', apiKey: 'k' } as never, (async (url: string) => {
      urls.push(url);
      return new Response(body(stream), { status: 200, headers: { 'content-type': 'text/event-stream' } });
    }) as typeof fetch);

  it('asks for agent.message previews only with onPreview, hands them over, and yields only stored events', async () => {
    const urls: string[] = [];
    const previews: StreamPreview[] = [];
    const ac = new AbortController();
    const seen: number[] = [];
    for await (const e of followEvents(client(urls), { sessionId: 's1', after: 4, signal: ac.signal, onPreview: (p) => previews.push(p) })) {
      seen.push(e.position);
      if (e.position === 6) ac.abort();
    }
    expect(urls[0]).toBe('http://corral.invalid/v1/sessions/s1/events/stream?event_deltas[]=agent.message');
    expect(seen).toEqual([5, 6]);
    expect(previews.map((p) => p.type)).toEqual(['event_start', 'event_delta', 'event_delta']);

    const plain: string[] = [];
    const ac2 = new AbortController();
    for await (const e of followEvents(client(plain), { sessionId: 's1', after: 4, signal: ac2.signal })) if (e.position === 6) ac2.abort();
    expect(plain[0]).toBe('http://corral.invalid/v1/sessions/s1/events/stream');
  });

  it('shows the text so far on one line until the stored message (or the request\'s end) arrives', () => {
    const live = new LivePreview();
    expect(live.line()).toBeNull();
    expect(live.apply({ type: 'event_start', event: { type: 'agent.thinking', id: 'sevt_t' } })).toBe(false);
    expect(live.apply({ type: 'event_start', event: { type: 'agent.message', id: 'sevt_m' } })).toBe(true);
    live.apply({ type: 'event_delta', event_id: 'sevt_m', delta: { type: 'content_delta', index: 0, content: { type: 'text', text: 'Hello\nthere ' } } });
    expect(live.apply({ type: 'event_delta', event_id: 'sevt_x', delta: { type: 'content_delta', content: { type: 'text', text: '!' } } })).toBe(false);
    expect(live.line()).toBe('agent: Hello there ');
    live.apply({ type: 'event_delta', event_id: 'sevt_m', delta: { type: 'content_delta', index: 0, content: { type: 'text', text: 'x'.repeat(100) } } });
    expect(live.line(10)).toBe('agent: …' + 'x'.repeat(10));
    expect(live.conclude({ id: 'sevt_other', type: 'agent.tool_use' })).toBe(false);
    expect(live.conclude({ id: 'sevt_m', type: 'agent.message' })).toBe(true);
    expect(live.line()).toBeNull();
    live.apply({ type: 'event_start', event: { type: 'agent.message', id: 'sevt_n' } });
    expect(live.conclude({ id: 'sevt_end', type: 'span.model_request_end' })).toBe(true);
  });
});
