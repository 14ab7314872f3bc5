import {
  BatchWriteItemCommand,
  ConditionalCheckFailedException,
  DynamoDBClient,
  PutItemCommand,
  QueryCommand,
  type AttributeValue,
} from '@aws-sdk/client-dynamodb';
import { PositionConflictError } from '../../core/errors.js';
import type { SessionEvent, StoredEvent } from '../../core/session/events.js';
import type { EventLog, GetEventsOptions } from '../../core/session/log.js';
import { decodeEvent, encodeEvent, type ChunkItem, type EventItem } from '../../core/storage/event-items.js';

/** How many times an append "at the tail" retries when another writer took the position. */
const TAIL_APPEND_ATTEMPTS = 50;

export { INLINE_LIMIT_BYTES } from '../../core/storage/event-items.js';

/** An events-table item (core/storage/event-items.ts) as DynamoDB attributes. */
function toAttributes(item: EventItem | ChunkItem): Record<string, AttributeValue> {
  const out: Record<string, AttributeValue> = {};
  for (const [name, value] of Object.entries(item)) {
    if (typeof value === 'number') out[name] = { N: String(value) };
    else if (typeof value === 'string') out[name] = { S: value };
  }
  return out;
}

function fromAttributes(raw: Record<string, AttributeValue>): EventItem {
  const item: EventItem = { sessionId: raw.sessionId?.S ?? '', position: Number(raw.position.N) };
  if (raw.event?.S !== undefined) item.event = raw.event.S;
  if (raw.rest?.S !== undefined) item.rest = raw.rest.S;
  if (raw.chunks?.N !== undefined) item.chunks = Number(raw.chunks.N);
  if (raw.chunkKey?.S) item.chunkKey = raw.chunkKey.S;
  if (raw.eventType?.S !== undefined) item.eventType = raw.eventType.S;
  return item;
}

/**
 * The session log on DynamoDB, in the layout of core/storage/event-items.ts: partition key
 * `sessionId` (S), sort key `position` (N). Appends are `PutItem` with
 * `attribute_not_exists(position)`, so two writers can never both own a position. Only
 * single-item conditional writes and queries are used: no transactions, no PartiQL, so the same
 * code runs against dynalite.
 */
export class DynamoEventLog implements EventLog {
  constructor(
    private readonly client: DynamoDBClient,
    private readonly tableName: string,
    /** Called after each successful append (the local runtime uses it to wake SSE readers). */
    private readonly onAppend?: (sessionId: string, stored: StoredEvent) => void,
  ) {}

  private async putAt(sessionId: string, position: number, event: SessionEvent, rest?: SessionEvent[]) {
    const { item, chunks } = encodeEvent(sessionId, position, event, rest);
    // Chunks first (idempotent: the same event id always writes the same chunks), then the
    // conditional head that makes them part of the log.
    for (const chunk of chunks) {
      await this.client.send(new PutItemCommand({ TableName: this.tableName, Item: toAttributes(chunk) }));
    }
    try {
      await this.client.send(
        new PutItemCommand({
          TableName: this.tableName,
          Item: toAttributes(item),
          ConditionExpression: 'attribute_not_exists(#p)',
          ExpressionAttributeNames: { '#p': 'position' },
        }),
      );
    } catch (err) {
      if (err instanceof ConditionalCheckFailedException || (err as Error).name === 'ConditionalCheckFailedException') {
        throw new PositionConflictError(sessionId, position);
      }
      throw err;
    }
    const stored: StoredEvent = { position, event };
    if (rest && rest.length) stored.rest = rest;
    this.onAppend?.(sessionId, stored);
    return stored;
  }

  async emitEvent(sessionId: string, event: SessionEvent, opts: { position?: number } = {}): Promise<StoredEvent> {
    if (opts.position !== undefined) return this.putAt(sessionId, opts.position, event);
    let position = (await this.lastPosition(sessionId)) + 1;
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.putAt(sessionId, position, event);
      } catch (err) {
        if (!(err instanceof PositionConflictError) || attempt >= TAIL_APPEND_ATTEMPTS) throw err;
        position = (await this.lastPosition(sessionId)) + 1;
      }
    }
  }

  async appendBatch(
    sessionId: string,
    events: SessionEvent[],
    opts: { position: number; mayFollow?: (interloper: SessionEvent) => boolean; onHead?: (head: StoredEvent) => void },
  ): Promise<StoredEvent[]> {
    if (events.length === 0) return [];
    const mayFollow = opts.mayFollow ?? (() => false);
    const [head, ...rest] = events;
    const out = [await this.putAt(sessionId, opts.position, head, rest)];
    opts.onHead?.(out[0]);
    let position = opts.position + 1;
    for (const event of rest) {
      // The head is ours; the rest follow it in order, after what another writer may append.
      for (let attempt = 0; ; attempt++) {
        try {
          out.push(await this.putAt(sessionId, position, event));
          position++;
          break;
        } catch (err) {
          if (!(err instanceof PositionConflictError) || attempt >= TAIL_APPEND_ATTEMPTS) throw err;
          const taken = await this.getEvents(sessionId, { from: position });
          if (!taken.every((t) => mayFollow(t.event))) throw err;
          position = taken[taken.length - 1].position + 1;
        }
      }
    }
    return out;
  }

  async getEvents(sessionId: string, opts: GetEventsOptions = {}): Promise<StoredEvent[]> {
    const from = Math.max(1, opts.from ?? 1);
    const to = opts.to ?? Number.MAX_SAFE_INTEGER;
    if (to <= from || (opts.limit !== undefined && opts.limit <= 0)) return [];
    const out: StoredEvent[] = [];
    let startKey: Record<string, AttributeValue> | undefined;
    do {
      const res = await this.client.send(
        new QueryCommand({
          TableName: this.tableName,
          KeyConditionExpression: 'sessionId = :s AND #p BETWEEN :from AND :to',
          ExpressionAttributeNames: { '#p': 'position' },
          ExpressionAttributeValues: {
            ':s': { S: sessionId },
            ':from': { N: String(from) },
            ':to': { N: String(to - 1) },
          },
          ScanIndexForward: opts.order !== 'desc',
          ConsistentRead: true,
          Limit: opts.limit !== undefined ? opts.limit - out.length : undefined,
          ExclusiveStartKey: startKey,
        }),
      );
      for (const raw of res.Items ?? []) out.push(await this.toStored(raw));
      startKey = res.LastEvaluatedKey;
    } while (startKey && (opts.limit === undefined || out.length < opts.limit));
    return out;
  }

  private toStored(raw: Record<string, AttributeValue>): Promise<StoredEvent> {
    return decodeEvent(fromAttributes(raw), async (chunkKey) =>
      (await this.queryAll(chunkKey, '#p, #d', { '#p': 'position', '#d': 'data' })).map((p) => p.data.S!),
    );
  }

  private async queryAll(partition: string, projection: string, names: Record<string, string> = {}) {
    const items: Array<Record<string, AttributeValue>> = [];
    let startKey: Record<string, AttributeValue> | undefined;
    do {
      const res = await this.client.send(
        new QueryCommand({
          TableName: this.tableName,
          KeyConditionExpression: 'sessionId = :s',
          ExpressionAttributeValues: { ':s': { S: partition } },
          ProjectionExpression: projection,
          ExpressionAttributeNames: Object.keys(names).length ? names : undefined,
          ConsistentRead: true,
          ExclusiveStartKey: startKey,
        }),
      );
      items.push(...(res.Items ?? []));
      startKey = res.LastEvaluatedKey;
    } while (startKey);
    return items;
  }

  async lastPosition(sessionId: string): Promise<number> {
    const res = await this.client.send(
      new QueryCommand({
        TableName: this.tableName,
        KeyConditionExpression: 'sessionId = :s',
        ExpressionAttributeValues: { ':s': { S: sessionId } },
        ProjectionExpression: '#p',
        ExpressionAttributeNames: { '#p': 'position' },
        ScanIndexForward: false,
        ConsistentRead: true,
        Limit: 1,
      }),
    );
    const item = res.Items?.[0];
    return item ? Number(item.position.N) : 0;
  }

  async deleteAll(sessionId: string): Promise<void> {
    for (;;) {
      const res = await this.client.send(
        new QueryCommand({
          TableName: this.tableName,
          KeyConditionExpression: 'sessionId = :s',
          ExpressionAttributeValues: { ':s': { S: sessionId } },
          ProjectionExpression: 'sessionId, #p, chunkKey',
          ExpressionAttributeNames: { '#p': 'position' },
          ConsistentRead: true,
          Limit: 100,
        }),
      );
      const items = res.Items ?? [];
      if (items.length === 0) return;
      // chunks first, so a head is never left pointing at nothing
      for (const item of items) {
        if (item.chunkKey?.S) await this.deleteKeys(await this.queryAll(item.chunkKey.S, 'sessionId, #p', { '#p': 'position' }));
      }
      await this.deleteKeys(items.map((i) => ({ sessionId: i.sessionId, position: i.position })));
    }
  }

  private async deleteKeys(keys: Array<Record<string, AttributeValue>>): Promise<void> {
    for (let i = 0; i < keys.length; i += 25) {
      let requests = keys.slice(i, i + 25).map((Key) => ({ DeleteRequest: { Key } }));
      while (requests.length) {
        const out = await this.client.send(new BatchWriteItemCommand({ RequestItems: { [this.tableName]: requests } }));
        requests = (out.UnprocessedItems?.[this.tableName] ?? []) as typeof requests;
      }
    }
  }
}
