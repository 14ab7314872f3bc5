import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DynamoStateTable } from '../../lambdas/adapters/aws/dynamodb-state-table.js';
import { ensureTables } from '../../lambdas/adapters/aws/tables.js';
import { startDynalite, type EmbeddedDynamo } from '../../lambdas/adapters/local/dynalite.js';
import { PreviewFollower } from '../../lambdas/api/stream-previews.js';
import { PreviewPublisher } from '../../lambdas/core/harness/previews.js';
import { makeEvent } from '../../lambdas/core/session/events.js';
import { PREVIEW_LIMITS, TablePreviewChannel, type PreviewChunk } from '../../lambdas/core/session/previews.js';
import { keys } from '../../lambdas/core/storage/keys.js';
import type { Item, StateTable } from '../../lambdas/core/store.js';

/**
 * The AWS channel of previews (`event_deltas`): the harness function writes chunks to the state
 * table, the stream function (another process: here another client of the same store) reads them.
 */
describe('TablePreviewChannel (state table on dynalite)', () => {
  let db: EmbeddedDynamo;
  let harnessSide: DynamoStateTable;
  let streamSide: DynamoStateTable;
  let now = Date.UTC(2026, 0, 1);
  const clock = () => now;
  beforeAll(async () => {
    db = await startDynalite();
    await ensureTables(db.client, { events: 'events', state: 'state' });
    harnessSide = new DynamoStateTable(db.client, 'state');
    streamSide = new DynamoStateTable(db.client, 'state');
  });
  afterAll(() => db.close());

  const chunk = (request: string, seq: number, text: string): PreviewChunk => ({
    request,
    seq,
    frames: seq === 0 ? [{ kind: 'start', type: 'agent.message', id: `sevt_${request}` }, { kind: 'delta', event_id: `sevt_${request}`, index: 0, text }] : [{ kind: 'delta', event_id: `sevt_${request}`, index: 0, text }],
  });

  it('hands a request\'s chunks to a reader in order, after its cursor, and nothing of other requests or sessions', async () => {
    const writer = new TablePreviewChannel(harnessSide, { clock });
    const reader = new TablePreviewChannel(streamSide, { clock });
    // Sort keys of the chunk items run past 9 (zero-padded): 12 chunks read back in order.
    for (let seq = 0; seq < 12; seq++) await writer.publish('sesn_a', chunk('sevt_r1', seq, `t${seq} `));
    await writer.publish('sesn_a', chunk('sevt_r2', 0, 'other request'));
    await writer.publish('sesn_b', chunk('sevt_r1', 0, 'other session'));
    // A sandbox record after the chunks in the same partition is not taken for one.
    await harnessSide.put({ ...keys.sandbox('sesn_a', 'default'), record: { status: 'ready' } });

    const all = await reader.read('sesn_a', 'sevt_r1', -1);
    expect(all.map((c) => c.seq)).toEqual([...Array(12).keys()]);
    expect(all[0]).toEqual(chunk('sevt_r1', 0, 't0 '));
    expect((await reader.read('sesn_a', 'sevt_r1', 9)).map((c) => c.seq)).toEqual([10, 11]);
    expect(await reader.read('sesn_a', 'sevt_r1', 11)).toEqual([]);
    expect((await reader.read('sesn_a', 'sevt_r2', -1)).map((c) => c.frames)).toEqual([chunk('sevt_r2', 0, 'other request').frames]);
    expect(await reader.read('sesn_a', 'sevt_none', -1)).toEqual([]);
  });

  it('tells the harness whether a stream watches the session: after a watch, until it lapses', async () => {
    const harness = new TablePreviewChannel(harnessSide, { clock });
    const stream = new TablePreviewChannel(streamSide, { clock });
    expect(await harness.watched('sesn_w')).toBe(false);
    await stream.watch('sesn_w');
    expect(await harness.watched('sesn_w')).toBe(true);
    expect(await harness.watched('sesn_other')).toBe(false);
    const item = await harnessSide.get(keys.previewWatch('sesn_w').pk, keys.previewWatch('sesn_w').sk);
    expect(Number(item?.expiresAt)).toBe(Math.ceil((now + PREVIEW_LIMITS.watchTtlMs) / 1000));
    now += PREVIEW_LIMITS.watchRenewMs;
    await stream.watch('sesn_w'); // renewed: lasts from now
    now += PREVIEW_LIMITS.watchTtlMs - 1000;
    expect(await harness.watched('sesn_w')).toBe(true);
    now += 2000;
    expect(await harness.watched('sesn_w')).toBe(false); // lapsed (DynamoDB's TTL deletes it later)
  });

  it('writes each chunk with a TTL, and a reader skips expired chunks DynamoDB has not deleted yet', async () => {
    const writer = new TablePreviewChannel(harnessSide, { clock });
    await writer.publish('sesn_ttl', chunk('sevt_old', 0, 'old'));
    const k = keys.previewChunk('sesn_ttl', 'sevt_old', 0);
    const item = await harnessSide.get(k.pk, k.sk);
    expect(item?.expiresAt).toBe(Math.ceil((now + PREVIEW_LIMITS.ttlMs) / 1000));
    now += PREVIEW_LIMITS.ttlMs + 1000;
    expect(await new TablePreviewChannel(streamSide, { clock }).read('sesn_ttl', 'sevt_old', -1)).toEqual([]);
    expect(await harnessSide.get(k.pk, k.sk)).toBeDefined(); // still there: dynalite, like DynamoDB for a while, keeps it
  });

  it('carries a streamed answer from a harness-side publisher to a stream-side follower: every fragment, before the stored message', async () => {
    // Count the harness's writes: coalescing bounds them, whatever the number of fragments.
    const puts: Item[] = [];
    const counting: StateTable = Object.create(harnessSide, {
      put: { value: (i: Item, o?: object) => (puts.push(i), harnessSide.put(i, o)) },
    });
    const request = 'sevt_01REQUEST';
    const publisher = new PreviewPublisher(new TablePreviewChannel(counting, { clock }), 'sesn_flow', request, { flushMs: 60_000 });
    const follower = new PreviewFollower(new TablePreviewChannel(streamSide, { clock }), 'sesn_flow', new Set(['agent.message'] as const));
    const spanStart = { ...makeEvent({ type: 'span.model_request_start' }), id: request };
    expect(await follower.before(spanStart)).toEqual([]);
    follower.after(spanStart);
    expect(follower.active).toBe(true);

    const words = Array.from({ length: 200 }, (_, i) => `w${i} `);
    for (const w of words) publisher.onDelta({ type: 'text', block: 0, text: w });
    publisher.onDelta({ type: 'tool_input', block: 1, partial_json: '{"a":' }); // not previewed
    await new Promise((r) => setTimeout(r, 50)); // the first flush (immediate) is out
    const early = await follower.drain();
    expect(early[0]).toMatchObject({ event: 'event_start' });

    for (const w of words) publisher.onDelta({ type: 'text', block: 2, text: w }); // a second text block: index 1
    await publisher.finish();
    const { message } = publisher.ids();
    expect(puts.length).toBe(2); // 400 fragments, two writes (the first, then what `finish` had left)

    const stored = makeEvent(
      { type: 'agent.message', content: [{ type: 'text', text: words.join('') }, { type: 'text', text: words.join('') }] },
      new Date(now),
      message,
    );
    const rest = await follower.before(stored);
    follower.after(stored);
    const deltas = [...early, ...rest]
      .filter((m) => m.event === 'event_delta')
      .map((m) => JSON.parse(m.data) as { event_id: string; delta: { index: number; content: { text: string } } });
    expect(new Set(deltas.map((d) => d.event_id))).toEqual(new Set([stored.id]));
    for (const [index, block] of stored.content.entries()) {
      expect(deltas.filter((d) => d.delta.index === index).map((d) => d.delta.content.text).join('')).toBe(block.type === 'text' ? block.text : '');
    }
    // Anything the channel still had for the concluded message is not sent after it.
    await new TablePreviewChannel(harnessSide, { clock }).publish('sesn_flow', {
      request,
      seq: 99,
      frames: [{ kind: 'delta', event_id: stored.id, index: 0, text: 'late' }],
    });
    expect(await follower.drain()).toEqual([]);
  });
});
