import { CreateTableCommand, DescribeTableCommand, PutItemCommand, QueryCommand } from '@aws-sdk/client-dynamodb';
import { rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { localDynamoClient } from '../../lambdas/adapters/local/dynamo-client.js';
import { startDynalite } from '../../lambdas/adapters/local/dynalite.js';

/**
 * Closing the embedded store while requests are still being served must not close the database
 * under them: dynalite would throw LEVEL_DATABASE_NOT_OPEN from a query it had already begun, an
 * uncaught error that ends the process (and fails a test run whose tests all passed).
 */
describe('embedded dynalite close', () => {
  it('answers or refuses every request it had begun before it closes the database', async () => {
    const uncaught: unknown[] = [];
    const onError = (err: unknown) => uncaught.push(err);
    process.on('uncaughtException', onError);
    const socketPath = join(tmpdir(), `corral-close-${process.pid}.sock`);
    try {
      // Each round closes the store at a different moment under a steady stream of queries, as the
      // local runtime's close does while a step, the proxy or a stream still reads.
      for (let round = 0; round < 40; round++) {
        const db = await startDynalite({ socketPath });
        await db.client.send(new CreateTableCommand({
          TableName: 'items',
          BillingMode: 'PAY_PER_REQUEST',
          AttributeDefinitions: [{ AttributeName: 'pk', AttributeType: 'S' }, { AttributeName: 'sk', AttributeType: 'S' }],
          KeySchema: [{ AttributeName: 'pk', KeyType: 'HASH' }, { AttributeName: 'sk', KeyType: 'RANGE' }],
        }));
        // A new table is CREATING until dynalite's timer makes it ACTIVE, as on DynamoDB.
        while ((await db.client.send(new DescribeTableCommand({ TableName: 'items' }))).Table?.TableStatus !== 'ACTIVE') {
          await new Promise((r) => setTimeout(r, 1));
        }
        for (let i = 0; i < 5; i++) {
          await db.client.send(new PutItemCommand({ TableName: 'items', Item: { pk: { S: 'p' }, sk: { S: String(i) } } }));
        }
        let closing = false;
        // Half read through this process's in-process client, half over the socket (as the
        // credential proxy's process does).
        const overSocket = localDynamoClient(db.endpoint);
        const readers = Array.from({ length: 20 }, async (_, n) => {
          const client = n % 2 ? overSocket : db.client;
          while (!closing) {
            try {
              await client.send(new QueryCommand({ TableName: 'items', KeyConditionExpression: 'pk = :p', ExpressionAttributeValues: { ':p': { S: 'p' } } }));
            } catch {
              return; // refused or cut off by the close: expected
            }
          }
        });
        await new Promise((r) => setTimeout(r, 5 + (round % 7)));
        closing = true;
        await db.close();
        await Promise.all(readers);
        overSocket.destroy();
        await new Promise((r) => setTimeout(r, 5)); // let anything the closed database would throw surface
      }
    } finally {
      process.off('uncaughtException', onError);
      rmSync(socketPath, { force: true });
    }
    expect(uncaught.map(String)).toEqual([]);
  }, 60_000);
});
