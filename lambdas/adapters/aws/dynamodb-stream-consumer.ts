import {
  DescribeStreamCommand,
  DynamoDBStreamsClient,
  GetRecordsCommand,
  GetShardIteratorCommand,
  type Shard,
  type ShardIteratorType,
} from '@aws-sdk/client-dynamodb-streams';
import type { Logger } from '../../core/logger.js';

/**
 * Reads the events table's DynamoDB stream and tells, for each new item, which session's log grew.
 * It is a notification source only: the stream tier's readers still read the log itself (their
 * backlog, a `Last-Event-ID` resume, and after any gap), so a record this consumer never sees costs
 * latency, not an event. Hence it starts at the tip of the stream (`LATEST`) rather than replaying
 * history, and when it may have lost records it says so (`onGap`), and every reader rereads.
 *
 * Shards: every open shard is read; a shard's children are read from their start
 * (`TRIM_HORIZON`) once the parent is read to its end, which keeps a session's appends in order
 * across DynamoDB's shard rollovers and splits. Shards already closed when the consumer starts are
 * history and are skipped.
 *
 * Only the item's keys are read (`dynamodb.Keys.sessionId`), so any view type works (the stack
 * asks for KEYS_ONLY: events, which may be 400 KB each, never travel through the stream). A chunk of
 * a large event is stored under a partition named after the event (core/storage/event-items.ts),
 * which no reader subscribes to, so its records wake no one.
 */
export interface StreamConsumerOptions {
  client: DynamoDBStreamsClient;
  streamArn: string;
  /** A session's log grew. */
  onAppend(sessionId: string): void;
  /** Records may have been missed: every reader should reread its log. */
  onGap(reason: string): void;
  /**
   * Wait between two GetRecords calls on one shard, ms. DynamoDB Streams allows 5 calls a second
   * per shard across all its readers, and every task of the tier reads every shard: the stack
   * sets this from the most tasks it may run. @default 1000
   */
  pollMs?: number;
  /** How often the shard list is read for new shards, ms (also read whenever a shard ends). @default 60000 */
  describeMs?: number;
  /** Wait after a failed call before trying again, ms. @default 2000 */
  retryMs?: number;
  logger?: Logger;
}

type ShardState =
  | { state: 'waiting'; parent: string } // for its parent to be read to its end
  | { state: 'reading'; iterator?: string; from: ShardIteratorType; lastSequence?: string }
  | { state: 'done' };

export class DynamoStreamConsumer {
  private readonly shards = new Map<string, ShardState>();
  private stopped = false;
  private started = false;
  private readonly sleepers = new Set<() => void>();
  private readonly loops = new Set<Promise<void>>();
  private discovery: Promise<void> | undefined;
  private rediscover = false;
  private lastDescribe = 0;
  private discoverLoop: Promise<void> | undefined;
  private maxAgeMs = 0;

  constructor(private readonly opts: StreamConsumerOptions) {}

  /** Lists the shards and starts reading the open ones at their tip. Resolves once every open shard has an iterator. */
  async start(): Promise<void> {
    if (this.started) throw new Error('the stream consumer is already started');
    this.started = true;
    await this.discover();
    // Each open shard's iterator is taken before start resolves, so an append made after start
    // resolves is seen.
    await Promise.all([...this.shards.entries()].map(([id, s]) => (s.state === 'reading' ? this.ensureIterator(id, s) : undefined)));
    for (const [id, s] of this.shards) if (s.state === 'reading') this.spawn(id);
    this.discoverLoop = this.runDiscovery();
  }

  /** Stops every loop; resolves when they have ended. */
  async stop(): Promise<void> {
    this.stopped = true;
    for (const wake of [...this.sleepers]) wake();
    await Promise.allSettled([...this.loops, this.discoverLoop]);
  }

  /**
   * The oldest record read since the last call, as its age when read (now less its
   * `ApproximateCreationDateTime`), ms; 0 when none was read. What Lambda reports as
   * `IteratorAge` for its own stream consumers: how far behind the tip the tier reads.
   */
  takeIteratorAgeMs(): number {
    const age = this.maxAgeMs;
    this.maxAgeMs = 0;
    return age;
  }

  /** The shards known and what is done with each (for tests and the tier's health). */
  status(): Record<string, ShardState['state']> {
    return Object.fromEntries([...this.shards].map(([id, s]) => [id, s.state]));
  }

  private async describeAll(): Promise<Shard[]> {
    const shards: Shard[] = [];
    let exclusiveStartShardId: string | undefined;
    do {
      const out = await this.opts.client.send(
        new DescribeStreamCommand({ StreamArn: this.opts.streamArn, ExclusiveStartShardId: exclusiveStartShardId }),
      );
      shards.push(...(out.StreamDescription?.Shards ?? []));
      exclusiveStartShardId = out.StreamDescription?.LastEvaluatedShardId;
    } while (exclusiveStartShardId);
    return shards;
  }

  /** Reads the shard list once (concurrent calls share one read) and starts readers for new shards. */
  private discover(): Promise<void> {
    if (this.discovery) {
      this.rediscover = true;
      return this.discovery;
    }
    this.discovery = (async () => {
      try {
        do {
          this.rediscover = false;
          this.lastDescribe = Date.now();
          const first = this.shards.size === 0 && !this.lastDescribeSucceeded;
          const listed = await this.describeAll();
          this.lastDescribeSucceeded = true;
          for (const shard of listed) {
            const id = shard.ShardId!;
            if (this.shards.has(id)) continue;
            const closed = shard.SequenceNumberRange?.EndingSequenceNumber !== undefined;
            if (first) {
              // History: the readers read the log for whatever came before.
              this.shards.set(id, closed ? { state: 'done' } : { state: 'reading', from: 'LATEST' });
              continue;
            }
            const parent = shard.ParentShardId ? this.shards.get(shard.ParentShardId) : undefined;
            if (parent && parent.state !== 'done') {
              this.shards.set(id, { state: 'waiting', parent: shard.ParentShardId! });
            } else {
              this.shards.set(id, { state: 'reading', from: 'TRIM_HORIZON' });
              if (this.started && this.discoverLoop) this.spawn(id);
            }
          }
        } while (this.rediscover && !this.stopped);
      } finally {
        this.discovery = undefined;
      }
    })();
    return this.discovery;
  }

  private lastDescribeSucceeded = false;

  private async runDiscovery(): Promise<void> {
    const every = this.opts.describeMs ?? 60_000;
    while (!this.stopped) {
      await this.sleep(Math.max(0, this.lastDescribe + every - Date.now()));
      if (this.stopped) break;
      await this.discover().catch((err) => {
        this.opts.logger?.warn('stream: describing the stream failed', { error: String(err) });
        this.lastDescribe = Date.now() - every + (this.opts.retryMs ?? 2000);
      });
    }
  }

  private spawn(id: string) {
    const loop = this.read(id).finally(() => this.loops.delete(loop));
    this.loops.add(loop);
  }

  private async ensureIterator(id: string, s: Extract<ShardState, { state: 'reading' }>) {
    if (s.iterator) return;
    const out = await this.opts.client.send(
      new GetShardIteratorCommand({
        StreamArn: this.opts.streamArn,
        ShardId: id,
        ShardIteratorType: s.lastSequence ? 'AFTER_SEQUENCE_NUMBER' : s.from,
        SequenceNumber: s.lastSequence,
      }),
    );
    s.iterator = out.ShardIterator;
  }

  /** One shard's loop: GetRecords until the shard ends, then its children. */
  private async read(id: string): Promise<void> {
    const pollMs = this.opts.pollMs ?? 1000;
    const retryMs = this.opts.retryMs ?? 2000;
    while (!this.stopped) {
      const s = this.shards.get(id);
      if (!s || s.state !== 'reading') return;
      try {
        await this.ensureIterator(id, s);
        if (!s.iterator) {
          this.finish(id);
          return;
        }
        const out = await this.opts.client.send(new GetRecordsCommand({ ShardIterator: s.iterator }));
        for (const record of out.Records ?? []) {
          s.lastSequence = record.dynamodb?.SequenceNumber ?? s.lastSequence;
          const created = record.dynamodb?.ApproximateCreationDateTime;
          if (created) this.maxAgeMs = Math.max(this.maxAgeMs, Date.now() - new Date(created).getTime());
          const sessionId = record.dynamodb?.Keys?.sessionId?.S;
          if (sessionId && record.eventName !== 'REMOVE') this.opts.onAppend(sessionId);
        }
        s.iterator = out.NextShardIterator;
        if (!s.iterator) {
          this.finish(id);
          return;
        }
        await this.sleep(pollMs);
      } catch (err) {
        if (this.stopped) return;
        const name = (err as Error).name;
        if (name === 'ExpiredIteratorException') {
          // Taken again after the last record seen: nothing is lost.
          s.iterator = undefined;
          if (!s.lastSequence && s.from === 'LATEST') this.opts.onGap(`shard ${id}: iterator expired before any record`);
          continue;
        }
        if (name === 'TrimmedDataAccessException') {
          s.iterator = undefined;
          s.lastSequence = undefined;
          s.from = 'TRIM_HORIZON';
          this.opts.onGap(`shard ${id}: records were trimmed before they were read`);
          continue;
        }
        if (name === 'ResourceNotFoundException') {
          this.opts.onGap(`shard ${id}: no longer found`);
          this.finish(id);
          return;
        }
        // Throttling, the network: the same iterator again later (it lives 15 minutes).
        this.opts.logger?.warn('stream: reading a shard failed', { shard: id, error: String(err) });
        await this.sleep(retryMs);
      }
    }
  }

  /** A shard is read to its end: its children start from their beginning. */
  private finish(id: string) {
    this.shards.set(id, { state: 'done' });
    for (const [child, s] of this.shards) {
      if (s.state === 'waiting' && s.parent === id) {
        this.shards.set(child, { state: 'reading', from: 'TRIM_HORIZON' });
        this.spawn(child);
      }
    }
    // Its children may not be listed yet.
    if (!this.stopped) void this.discover().catch(() => undefined);
  }

  private sleep(ms: number): Promise<void> {
    if (this.stopped) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      const sleepers = this.sleepers;
      function done() {
        clearTimeout(timer);
        sleepers.delete(done);
        resolve();
      }
      sleepers.add(done);
    });
  }
}
