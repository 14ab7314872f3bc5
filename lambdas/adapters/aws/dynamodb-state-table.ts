import {
  BatchGetItemCommand,
  ConditionalCheckFailedException,
  DeleteItemCommand,
  DynamoDBClient,
  GetItemCommand,
  PutItemCommand,
  QueryCommand,
  ScanCommand,
  UpdateItemCommand,
  type AttributeValue,
  type QueryCommandInput,
} from '@aws-sdk/client-dynamodb';
import { marshall, unmarshall } from '@aws-sdk/util-dynamodb';
import {
  ConditionFailedError,
  type Item,
  type Page,
  type PutOptions,
  type QueryOptions,
  type StateTable,
  type UpdateWhen,
} from '../../core/store.js';

export const STATE_INDEX = 'gsi1';

/** The core's state table on DynamoDB: partition key `pk`, sort key `sk`, index `gsi1`. */
export class DynamoStateTable implements StateTable {
  constructor(
    private readonly client: DynamoDBClient,
    private readonly tableName: string,
  ) {}

  async get(pk: string, sk: string): Promise<Item | undefined> {
    const out = await this.client.send(
      new GetItemCommand({ TableName: this.tableName, Key: marshall({ pk, sk }), ConsistentRead: true }),
    );
    return out.Item ? (unmarshall(out.Item) as Item) : undefined;
  }

  async getMany(keys: ReadonlyArray<{ pk: string; sk: string }>): Promise<Array<Item | undefined>> {
    if (keys.length > 100) throw new Error(`getMany: at most 100 keys (${keys.length} given)`);
    const found = new Map<string, Item>();
    let pending: Array<Record<string, AttributeValue>> = [...new Map(keys.map((k) => [`${k.pk}\u0000${k.sk}`, marshall({ pk: k.pk, sk: k.sk })])).values()];
    // DynamoDB may leave keys unprocessed under load: ask again for those, with a short backoff.
    for (let attempt = 0; pending.length; attempt++) {
      if (attempt > 0) {
        if (attempt > 8) throw new Error(`getMany: ${pending.length} key(s) still unprocessed after ${attempt} attempts`);
        await new Promise((r) => setTimeout(r, Math.min(1000, 25 * 2 ** attempt)));
      }
      const out = await this.client.send(
        new BatchGetItemCommand({ RequestItems: { [this.tableName]: { Keys: pending, ConsistentRead: true } } }),
      );
      for (const raw of out.Responses?.[this.tableName] ?? []) {
        const item = unmarshall(raw) as Item;
        found.set(`${item.pk}\u0000${item.sk}`, item);
      }
      pending = out.UnprocessedKeys?.[this.tableName]?.Keys ?? [];
    }
    return keys.map((k) => found.get(`${k.pk}\u0000${k.sk}`));
  }

  async put(item: Item, opts: PutOptions = {}): Promise<void> {
    const conditions: string[] = [];
    const names: Record<string, string> = {};
    const values: Record<string, unknown> = {};
    if (opts.ifNotExists) conditions.push('attribute_not_exists(pk)');
    Object.entries(opts.ifEquals ?? {}).forEach(([name, value], i) => {
      names[`#e${i}`] = name;
      values[`:e${i}`] = value;
      conditions.push(`#e${i} = :e${i}`);
    });
    if (opts.ifBelow) {
      names['#b'] = opts.ifBelow.name;
      values[':b'] = opts.ifBelow.value;
      conditions.push('(attribute_not_exists(#b) OR #b < :b)');
    }
    try {
      await this.client.send(
        new PutItemCommand({
          TableName: this.tableName,
          Item: marshall(item, { removeUndefinedValues: true, convertClassInstanceToMap: true }),
          ConditionExpression: conditions.length ? conditions.join(' AND ') : undefined,
          ExpressionAttributeNames: Object.keys(names).length ? names : undefined,
          ExpressionAttributeValues: Object.keys(values).length ? marshall(values) : undefined,
        }),
      );
    } catch (err) {
      if (err instanceof ConditionalCheckFailedException || (err as Error).name === 'ConditionalCheckFailedException') {
        throw new ConditionFailedError(`conditional write on ${item.pk}/${item.sk} failed`);
      }
      throw err;
    }
  }

  async increment(pk: string, sk: string, attribute: string, by: number, extra: Record<string, unknown> = {}): Promise<number> {
    const { names, values, update } = addAndSet(attribute, by, extra);
    const out = await this.client.send(
      new UpdateItemCommand({
        TableName: this.tableName,
        Key: marshall({ pk, sk }),
        UpdateExpression: update,
        ExpressionAttributeNames: names,
        ExpressionAttributeValues: marshall(values),
        ReturnValues: 'UPDATED_NEW',
      }),
    );
    return Number(out.Attributes?.[attribute]?.N ?? by);
  }

  async incrementIf(pk: string, sk: string, attribute: string, by: number, extra: Record<string, unknown>, when: UpdateWhen): Promise<Item | undefined> {
    const { names, values, update } = addAndSet(attribute, by, extra);
    const any: string[] = [];
    if (when.absent) any.push('attribute_not_exists(pk)');
    if (when.atMost) {
      names['#m'] = when.atMost.name;
      values[':m'] = when.atMost.value;
      any.push('#m <= :m');
    }
    const equal: string[] = [];
    Object.entries(when.equals ?? {}).forEach(([name, value], i) => {
      names[`#e${i}`] = name;
      values[`:e${i}`] = value;
      equal.push(`#e${i} = :e${i}`);
    });
    if (equal.length) any.push(`(${equal.join(' AND ')})`);
    try {
      const out = await this.client.send(
        new UpdateItemCommand({
          TableName: this.tableName,
          Key: marshall({ pk, sk }),
          UpdateExpression: update,
          ConditionExpression: any.length ? any.join(' OR ') : undefined,
          ExpressionAttributeNames: names,
          ExpressionAttributeValues: marshall(values),
          ReturnValues: 'ALL_OLD',
        }),
      );
      return out.Attributes ? (unmarshall(out.Attributes) as Item) : undefined;
    } catch (err) {
      if (err instanceof ConditionalCheckFailedException || (err as Error).name === 'ConditionalCheckFailedException') {
        throw new ConditionFailedError(`conditional update of ${pk}/${sk} failed`);
      }
      throw err;
    }
  }

  async delete(pk: string, sk: string): Promise<void> {
    await this.client.send(new DeleteItemCommand({ TableName: this.tableName, Key: marshall({ pk, sk }) }));
  }

  query(pk: string, opts: QueryOptions = {}): Promise<Page<Item>> {
    return this.runQuery('pk', 'sk', pk, opts);
  }

  queryIndex(gsi1pk: string, opts: QueryOptions = {}): Promise<Page<Item>> {
    return this.runQuery('gsi1pk', 'gsi1sk', gsi1pk, opts, STATE_INDEX);
  }

  private async runQuery(
    hashName: string,
    rangeName: string,
    hash: string,
    opts: QueryOptions,
    indexName?: string,
  ): Promise<Page<Item>> {
    const limit = opts.limit ?? 1000;
    const values: Record<string, unknown> = { ':h': hash };
    let condition = `${hashName} = :h`;
    if (opts.prefix !== undefined) {
      condition += ` AND begins_with(${rangeName}, :p)`;
      values[':p'] = opts.prefix;
    }
    const items: Item[] = [];
    let startKey: Record<string, AttributeValue> | undefined;
    if (opts.after !== undefined) {
      // Resuming after a sort key: the index needs the table keys of that item too, so for the
      // index the cursor is resolved by a range condition instead of an ExclusiveStartKey.
      condition = `${hashName} = :h AND ${rangeName} ${opts.reverse ? '<' : '>'} :a`;
      values[':a'] = opts.after;
      if (opts.prefix !== undefined) {
        // begins_with cannot be combined with another range condition; filter afterwards.
        delete values[':p'];
      }
    }
    for (;;) {
      const input: QueryCommandInput = {
        TableName: this.tableName,
        IndexName: indexName,
        KeyConditionExpression: condition,
        ExpressionAttributeValues: marshall(values),
        ScanIndexForward: !opts.reverse,
        Limit: limit + 1 - items.length,
        ExclusiveStartKey: startKey,
        ConsistentRead: indexName ? undefined : true,
      };
      const out = await this.client.send(new QueryCommand(input));
      for (const raw of out.Items ?? []) {
        const item = unmarshall(raw) as Item;
        if (opts.prefix !== undefined && !String(item[rangeName]).startsWith(opts.prefix)) continue;
        items.push(item);
      }
      startKey = out.LastEvaluatedKey;
      if (!startKey || items.length > limit) break;
    }
    const more = items.length > limit;
    const page = items.slice(0, limit);
    return { items: page, last: more ? String(page[page.length - 1][rangeName]) : null };
  }

  async scanPrefix(pkPrefix: string): Promise<Item[]> {
    const items: Item[] = [];
    let startKey: Record<string, AttributeValue> | undefined;
    do {
      const out = await this.client.send(
        new ScanCommand({
          TableName: this.tableName,
          FilterExpression: 'begins_with(pk, :p)',
          ExpressionAttributeValues: marshall({ ':p': pkPrefix }),
          ExclusiveStartKey: startKey,
        }),
      );
      for (const raw of out.Items ?? []) items.push(unmarshall(raw) as Item);
      startKey = out.LastEvaluatedKey;
    } while (startKey);
    return items;
  }
}

/**
 * The update of `increment` and `incrementIf`: add `by` to `attribute` and set each of `extra`, with
 * the names and values the expression refers to.
 */
function addAndSet(attribute: string, by: number, extra: Record<string, unknown>): { names: Record<string, string>; values: Record<string, unknown>; update: string } {
  const names: Record<string, string> = { '#n': attribute };
  const values: Record<string, unknown> = { ':by': by };
  const sets: string[] = [];
  Object.entries(extra).forEach(([k, v], i) => {
    names[`#x${i}`] = k;
    values[`:x${i}`] = v;
    sets.push(`#x${i} = :x${i}`);
  });
  return { names, values, update: `ADD #n :by${sets.length ? ` SET ${sets.join(', ')}` : ''}` };
}
