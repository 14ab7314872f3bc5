import { DescribeStreamCommand, GetRecordsCommand, GetShardIteratorCommand, type DynamoDBStreamsClient } from '@aws-sdk/client-dynamodb-streams';
import { afterEach, describe, expect, it } from 'vitest';
import { DynamoStreamConsumer } from '../../lambdas/adapters/aws/dynamodb-stream-consumer.js';

/**
 * Shard lineage of the stream consumer. DynamoDB Local keeps one shard and never rolls it over, so
 * the lineage is played here by a scripted stream that answers DescribeStream, GetShardIterator and
 * GetRecords as DynamoDB Streams documents them: a closed shard returns no NextShardIterator once
 * read to its end; its children are listed with ParentShardId; an iterator may expire or point at
 * trimmed records. (The consumer's reading of a real stream is tested on DynamoDB Local in
 * test/api/stream-tier.test.ts.)
 */
interface ScriptShard {
  id: string;
  parent?: string;
  closed: boolean;
  records: string[]; // session ids, one record each
}

class ScriptedStream {
  shards: ScriptShard[] = [];
  iteratorTypes: Array<{ shard: string; type: string; after?: string }> = [];
  failNext: Array<{ shard: string; name: string }> = [];
  listed = true;

  send = async (command: unknown): Promise<unknown> => {
    if (command instanceof DescribeStreamCommand) {
      const visible = this.shards;
      return {
        StreamDescription: {
          Shards: visible.map((s) => ({
            ShardId: s.id,
            ParentShardId: s.parent,
            SequenceNumberRange: { StartingSequenceNumber: '0', EndingSequenceNumber: s.closed ? String(s.records.length) : undefined },
          })),
        },
      };
    }
    if (command instanceof GetShardIteratorCommand) {
      const { ShardId, ShardIteratorType, SequenceNumber } = command.input;
      this.iteratorTypes.push({ shard: ShardId!, type: ShardIteratorType!, after: SequenceNumber });
      const shard = this.shards.find((s) => s.id === ShardId)!;
      const start = ShardIteratorType === 'LATEST' ? shard.records.length : ShardIteratorType === 'AFTER_SEQUENCE_NUMBER' ? Number(SequenceNumber) : 0;
      return { ShardIterator: `${ShardId}@${start}` };
    }
    if (command instanceof GetRecordsCommand) {
      const [id, at] = command.input.ShardIterator!.split('@');
      const fail = this.failNext.findIndex((f) => f.shard === id);
      if (fail >= 0) {
        const [{ name }] = this.failNext.splice(fail, 1);
        throw Object.assign(new Error(name), { name });
      }
      const shard = this.shards.find((s) => s.id === id)!;
      const from = Number(at);
      const records = shard.records.slice(from).map((sessionId, i) => ({
        eventName: 'INSERT',
        dynamodb: { SequenceNumber: String(from + i + 1), Keys: { sessionId: { S: sessionId }, position: { N: '1' } } },
      }));
      const end = shard.records.length;
      return { Records: records, NextShardIterator: shard.closed && from + records.length >= end ? undefined : `${id}@${end}` };
    }
    throw new Error(`unexpected command ${(command as object).constructor.name}`);
  };

  get client(): DynamoDBStreamsClient {
    return { send: this.send } as unknown as DynamoDBStreamsClient;
  }
}

async function until(check: () => boolean) {
  for (let i = 0; i < 500 && !check(); i++) await new Promise((r) => setTimeout(r, 10));
  expect(check()).toBe(true);
}

describe('DynamoStreamConsumer shard lineage', () => {
  let consumer: DynamoStreamConsumer | undefined;
  afterEach(() => consumer?.stop());

  const start = async (stream: ScriptedStream, seen: string[], gaps: string[] = []) => {
    consumer = new DynamoStreamConsumer({
      client: stream.client,
      streamArn: 'arn:aws:dynamodb:local:000000000000:table/events/stream/x',
      pollMs: 5,
      describeMs: 20,
      retryMs: 5,
      onAppend: (id) => seen.push(id),
      onGap: (reason) => gaps.push(reason),
    });
    await consumer.start();
    return consumer;
  };

  it('starts open shards at their tip and skips shards already closed', async () => {
    const stream = new ScriptedStream();
    stream.shards = [
      { id: 'old', closed: true, records: ['s-history'] },
      { id: 'open', parent: 'old', closed: false, records: ['s-before'] },
    ];
    const seen: string[] = [];
    const c = await start(stream, seen);
    expect(stream.iteratorTypes).toEqual([{ shard: 'open', type: 'LATEST', after: undefined }]);
    stream.shards[1].records.push('s-new');
    await until(() => seen.includes('s-new'));
    expect(seen).toEqual(['s-new']);
    expect(c.status()).toEqual({ old: 'done', open: 'reading' });
  });

  it('reads a child from its start only after its parent is read to the end, keeping a session in order', async () => {
    const stream = new ScriptedStream();
    stream.shards = [{ id: 'p', closed: false, records: [] }];
    const seen: string[] = [];
    await start(stream, seen);
    // The child appears, already written to, while the parent is still open: it waits.
    stream.shards.push({ id: 'c', parent: 'p', closed: false, records: ['s#2', 's#3'] });
    await until(() => consumer!.status().c === 'waiting');
    expect(seen).toEqual([]);
    // The parent gets its last record and closes: then, and only then, the child is read.
    stream.shards[0].records.push('s#1');
    stream.shards[0].closed = true;
    await until(() => seen.length === 3);
    expect(seen).toEqual(['s#1', 's#2', 's#3']);
    expect(stream.iteratorTypes).toContainEqual({ shard: 'c', type: 'TRIM_HORIZON', after: undefined });
    // Grandchildren follow the same way.
    stream.shards.push({ id: 'g', parent: 'c', closed: false, records: ['s#4'] });
    stream.shards[1].closed = true;
    await until(() => seen.length === 4);
    expect(seen).toEqual(['s#1', 's#2', 's#3', 's#4']);
    expect(consumer!.status()).toEqual({ p: 'done', c: 'done', g: 'reading' });
  });

  it('takes an expired iterator again after the last record seen, losing nothing', async () => {
    const stream = new ScriptedStream();
    stream.shards = [{ id: 'a', closed: false, records: [] }];
    const seen: string[] = [];
    const gaps: string[] = [];
    await start(stream, seen, gaps);
    stream.shards[0].records.push('s1');
    await until(() => seen.length === 1);
    stream.failNext.push({ shard: 'a', name: 'ExpiredIteratorException' });
    stream.shards[0].records.push('s2');
    await until(() => seen.length === 2);
    expect(seen).toEqual(['s1', 's2']);
    expect(stream.iteratorTypes).toContainEqual({ shard: 'a', type: 'AFTER_SEQUENCE_NUMBER', after: '1' });
    expect(gaps).toEqual([]);
  });

  it('reports a gap when records were trimmed before it read them, then reads on from the oldest kept', async () => {
    const stream = new ScriptedStream();
    stream.shards = [{ id: 'a', closed: false, records: [] }];
    const seen: string[] = [];
    const gaps: string[] = [];
    await start(stream, seen, gaps);
    stream.failNext.push({ shard: 'a', name: 'TrimmedDataAccessException' });
    await until(() => gaps.length === 1);
    expect(gaps[0]).toMatch(/trimmed/);
    stream.shards[0].records.push('s-after');
    await until(() => seen.includes('s-after'));
  });

  it('retries the same iterator after a throttle, without a gap', async () => {
    const stream = new ScriptedStream();
    stream.shards = [{ id: 'a', closed: false, records: [] }];
    const seen: string[] = [];
    const gaps: string[] = [];
    await start(stream, seen, gaps);
    stream.failNext.push({ shard: 'a', name: 'LimitExceededException' });
    stream.shards[0].records.push('s1');
    await until(() => seen.length === 1);
    expect(gaps).toEqual([]);
    expect(stream.iteratorTypes).toHaveLength(1);
  });
});

describe('iterator age (the tier logs it each minute for the lag alarm)', () => {
  it('is the age of the oldest record read since it was last taken, then 0', async () => {
    const written = new Date(Date.now() - 90_000);
    let reads = 0;
    const client = {
      send: async (command: unknown) => {
        if (command instanceof DescribeStreamCommand) return { StreamDescription: { Shards: [{ ShardId: 's0', SequenceNumberRange: { StartingSequenceNumber: '0' } }] } };
        if (command instanceof GetShardIteratorCommand) return { ShardIterator: 'it' };
        reads++;
        const Records = reads === 1 ? [{ eventName: 'INSERT', dynamodb: { SequenceNumber: '1', ApproximateCreationDateTime: written, Keys: { sessionId: { S: 'old' } } } }] : [];
        return { Records, NextShardIterator: 'it' };
      },
    } as unknown as DynamoDBStreamsClient;
    let appended!: () => void;
    const seen = new Promise<void>((r) => (appended = r));
    const consumer = new DynamoStreamConsumer({ client, streamArn: 'arn:stream', pollMs: 10, onAppend: () => appended(), onGap: () => undefined });
    await consumer.start();
    await seen;
    expect(consumer.takeIteratorAgeMs()).toBeGreaterThanOrEqual(90_000);
    expect(consumer.takeIteratorAgeMs()).toBe(0);
    await consumer.stop();
  });
});
