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

/** How many times an append "at the tail" retries when another writer took the position. */
const TAIL_APPEND_ATTEMPTS = 50;

/**
 * Events whose JSON is larger than this (in UTF-8 bytes) do not fit one DynamoDB item (400 KB)
 * comfortably; they are stored in chunks beside the log.
 */
export const INLINE_LIMIT_BYTES = 350_000;
/** UTF-16 units per chunk: at most 3 UTF-8 bytes each, so a chunk stays under 300 KB. */
const CHUNK_UNITS = 100_000;

/**
 * Chunks of a large event live in their own partition, named after the event id (unique per
 * writer), so two writers racing for one position can never overwrite each other's chunks.
 * `~` never occurs in a session id.
 */
const chunkPartition = (sessionId: string, eventId: string) => `${sessionId}~${eventId}`;

/**
 * The session log on DynamoDB: partition key `sessionId` (S), sort key `position` (N), the event
 * as a JSON string. Appends are `PutItem` with `attribute_not_exists(position)`, so two writers
 * can never both own a position. Only single-item conditional writes and queries are used: no
 * transactions, no PartiQL, so the same code runs against dynalite.
 */
export class DynamoEventLog implements EventLog {
  constructor(
    private readonly client: DynamoDBClient,
    private readonly tableName: string,
    /** Called after each successful append (the local runtime uses it to wake SSE readers). */
    private readonly onAppend?: (sessionId: string, stored: StoredEvent) => void,
  ) {}

  private async putAt(sessionId: string, position: number, event: SessionEvent, rest?: SessionEvent[]) {
    const item: Record<string, AttributeValue> = {
      sessionId: { S: sessionId },
      position: { N: String(position) },
    };
    const eventJson = JSON.stringify(event);
    const restJson = rest && rest.length ? JSON.stringify(rest) : undefined;
    if (Buffer.byteLength(eventJson) + (restJson ? Buffer.byteLength(restJson) : 0) <= INLINE_LIMIT_BYTES) {
      item.event = { S: eventJson };
      if (restJson) item.rest = { S: restJson };
    } else {
      // Chunks first (idempotent: the same event id always writes the same chunks), then the
      // conditional head that makes them part of the log.
      const payload = JSON.stringify({ event, rest: rest && rest.length ? rest : undefined });
      const partition = chunkPartition(sessionId, event.id);
      const count = Math.ceil(payload.length / CHUNK_UNITS);
      for (let i = 0; i < count; i++) {
        await this.client.send(
          new PutItemCommand({
            TableName: this.tableName,
            Item: {
              sessionId: { S: partition },
              position: { N: String(i) },
              data: { S: payload.slice(i * CHUNK_UNITS, (i + 1) * CHUNK_UNITS) },
            },
          }),
        );
      }
      item.chunks = { N: String(count) };
      item.chunkKey = { S: partition };
      item.eventType = { S: event.type };
    }
    try {
      await this.client.send(
        new PutItemCommand({
          TableName: this.tableName,
          Item: item,
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
    opts: { position: number; mayFollow?: (interloper: SessionEvent) => boolean },
  ): Promise<StoredEvent[]> {
    if (events.length === 0) return [];
    const mayFollow = opts.mayFollow ?? (() => false);
    const [head, ...rest] = events;
    const out = [await this.putAt(sessionId, opts.position, head, rest)];
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

  private async toStored(raw: Record<string, AttributeValue>): Promise<StoredEvent> {
    const position = Number(raw.position.N);
    if (raw.chunkKey?.S) {
      const parts = await this.queryAll(raw.chunkKey.S, '#p, #d', { '#p': 'position', '#d': 'data' });
      const payload = JSON.parse(parts.map((p) => p.data.S!).join('')) as { event: SessionEvent; rest?: SessionEvent[] };
      const stored: StoredEvent = { position, event: payload.event };
      if (payload.rest) stored.rest = payload.rest;
      return stored;
    }
    const stored: StoredEvent = { position, event: JSON.parse(raw.event.S!) };
    if (raw.rest?.S) stored.rest = JSON.parse(raw.rest.S);
    return stored;
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
