import { describe, expect, it } from 'vitest';
import { parseSse } from '../../cli/sse.js';

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
