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

function toStored(raw: Record<string, AttributeValue>): StoredEvent {
  const stored: StoredEvent = { position: Number(raw.position.N), event: JSON.parse(raw.event.S!) };
  if (raw.rest?.S) stored.rest = JSON.parse(raw.rest.S);
  return stored;
}

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
      event: { S: JSON.stringify(event) },
    };
    if (rest && rest.length) item.rest = { S: JSON.stringify(rest) };
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
      for (const raw of res.Items ?? []) out.push(toStored(raw));
      startKey = res.LastEvaluatedKey;
    } while (startKey && (opts.limit === undefined || out.length < opts.limit));
    return out;
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
          ProjectionExpression: 'sessionId, #p',
          ExpressionAttributeNames: { '#p': 'position' },
          ConsistentRead: true,
          Limit: 100,
        }),
      );
      const keys = res.Items ?? [];
      if (keys.length === 0) return;
      for (let i = 0; i < keys.length; i += 25) {
        let requests = keys.slice(i, i + 25).map((Key) => ({ DeleteRequest: { Key } }));
        while (requests.length) {
          const out = await this.client.send(
            new BatchWriteItemCommand({ RequestItems: { [this.tableName]: requests } }),
          );
          requests = (out.UnprocessedItems?.[this.tableName] ?? []) as typeof requests;
        }
      }
    }
  }
}
