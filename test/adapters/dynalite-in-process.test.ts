import { ConditionalCheckFailedException, GetItemCommand, PutItemCommand } from '@aws-sdk/client-dynamodb';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureTables } from '../../lambdas/adapters/aws/tables.js';
import { localDynamoClient } from '../../lambdas/adapters/local/dynamo-client.js';
import { startDynalite, type EmbeddedDynamo } from '../../lambdas/adapters/local/dynalite.js';

/**
 * The embedded store's own client reaches dynalite in the same process without a socket, through
 * the same SDK client and the same answers (items, conditional failures, validation errors) as a
 * client on its endpoint, which other processes (the credential proxy) still use.
 */
describe('embedded dynalite, in-process client', () => {
  let dir: string;
  let db: EmbeddedDynamo;
  const tables = { events: 'events', state: 'state' };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'corral-inproc-'));
    db = await startDynalite({ socketPath: join(dir, 'db.sock') });
    await ensureTables(db.client, tables);
  });
  afterAll(async () => {
    await db?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('answers as the endpoint does: the same item, the same conditional failure, the same validation error', async () => {
    const overSocket = localDynamoClient(db.endpoint);
    try {
      const item = { pk: { S: 'p' }, sk: { S: 'in-process' }, n: { N: '7' }, s: { S: 'héllo ✓' } };
      await db.client.send(new PutItemCommand({ TableName: tables.state, Item: item }));
      const read = async (client: typeof db.client) => (await client.send(new GetItemCommand({ TableName: tables.state, Key: { pk: item.pk, sk: item.sk }, ConsistentRead: true }))).Item;
      expect(await read(db.client)).toEqual(item);
      expect(await read(overSocket)).toEqual(item);

      const conditional = (client: typeof db.client) =>
        client.send(new PutItemCommand({ TableName: tables.state, Item: item, ConditionExpression: 'attribute_not_exists(pk)' }));
      await expect(conditional(db.client)).rejects.toBeInstanceOf(ConditionalCheckFailedException);
      await expect(conditional(overSocket)).rejects.toBeInstanceOf(ConditionalCheckFailedException);

      const invalid = async (client: typeof db.client) => {
        const err = await client.send(new PutItemCommand({ TableName: tables.state, Item: { pk: { S: 'p' } } })).catch((e: Error) => e);
        return { name: (err as Error).name, message: (err as Error).message };
      };
      const inProcessError = await invalid(db.client);
      expect(inProcessError.name).toBe('ValidationException');
      expect(inProcessError).toEqual(await invalid(overSocket));
    } finally {
      overSocket.destroy();
    }
  });

  it('needs no socket: with the socket file gone, the in-process client still works and an endpoint client cannot connect', async () => {
    rmSync(join(dir, 'db.sock'), { force: true });
    await db.client.send(new PutItemCommand({ TableName: tables.state, Item: { pk: { S: 'p' }, sk: { S: 'no-socket' } } }));
    const got = await db.client.send(new GetItemCommand({ TableName: tables.state, Key: { pk: { S: 'p' }, sk: { S: 'no-socket' } }, ConsistentRead: true }));
    expect(got.Item?.sk?.S).toBe('no-socket');
    const overSocket = localDynamoClient(db.endpoint);
    try {
      await expect(overSocket.send(new GetItemCommand({ TableName: tables.state, Key: { pk: { S: 'p' }, sk: { S: 'no-socket' } } }))).rejects.toThrow();
    } finally {
      overSocket.destroy();
    }
  });

  it('fails a call whose signal is already aborted, without sending it', async () => {
    const controller = new AbortController();
    controller.abort();
    await expect(
      db.client.send(new PutItemCommand({ TableName: tables.state, Item: { pk: { S: 'p' }, sk: { S: 'aborted' } } }), { abortSignal: controller.signal }),
    ).rejects.toThrow();
    const got = await db.client.send(new GetItemCommand({ TableName: tables.state, Key: { pk: { S: 'p' }, sk: { S: 'aborted' } }, ConsistentRead: true }));
    expect(got.Item).toBeUndefined();
  });
});
