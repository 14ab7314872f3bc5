import { DynamoDBClient, GetItemCommand } from '@aws-sdk/client-dynamodb';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { createDynamoClient, reuseSigner } from '../../lambdas/adapters/aws/dynamodb-client.js';

/**
 * The AWS adapters' DynamoDB client builds its signer once instead of per call: the requests it
 * sends must be signed exactly as the SDK's default client signs them, with credentials read on
 * every call (so rotated ones are used).
 */
describe('createDynamoClient', () => {
  let server: Server;
  let endpoint: string;
  const seen: IncomingHttpHeaders[] = [];

  beforeAll(async () => {
    // A stand-in DynamoDB on loopback that records each request's headers and answers "no item".
    server = createServer((req, res) => {
      seen.push(req.headers);
      req.resume();
      req.on('end', () => {
        res.setHeader('content-type', 'application/x-amz-json-1.0');
        // The signing time's clock (faked in the signing test): a server clock hours away would have
        // each client correct its clock offset from this header, to the second it happened to see.
        res.setHeader('date', new Date().toUTCString());
        res.end('{}');
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));
  afterEach(() => vi.useRealTimers());

  const get = (client: DynamoDBClient) => client.send(new GetItemCommand({ TableName: 'state', Key: { pk: { S: 'p' }, sk: { S: 's' } } }));

  it('signs every call as the default client does, and reads the credentials on every call', async () => {
    // One signing time for both clients, so their signatures can be compared.
    vi.useFakeTimers({ toFake: ['Date'], now: new Date('2026-11-29T12:00:00Z') });
    let secret = 'first-secret';
    // Credentials about to expire (as a role's are, near their end): both clients read them again
    // on every call, so a rotated secret signs the next call.
    const credentials = async () => ({ accessKeyId: 'AKIDEXAMPLE', secretAccessKey: secret, expiration: new Date(Date.now() + 60_000) });
    const config = { endpoint, region: 'eu-west-1', credentials, maxAttempts: 1 };
    const tuned = createDynamoClient(config);
    const plain = new DynamoDBClient(config);
    // Each call carries a random invocation id among its signed headers: leave it out, so that the
    // same call signed at the same time has the same signature.
    for (const client of [tuned, plain]) {
      type Next = (args: { request: unknown }) => Promise<unknown>;
      client.middlewareStack.addRelativeTo(
        ((next: Next) => async (args: { request: unknown }) => {
          delete (args.request as { headers: Record<string, string> }).headers['amz-sdk-invocation-id'];
          return next(args);
        }) as unknown as Parameters<typeof client.middlewareStack.addRelativeTo>[0],
        { relation: 'before', toMiddleware: 'httpSigningMiddleware', name: 'sameInvocationId' },
      );
    }
    try {
      const authorizations = async (client: DynamoDBClient) => {
        seen.length = 0;
        await get(client);
        await get(client);
        return seen.map((h) => h.authorization);
      };
      const tunedFirst = await authorizations(tuned);
      expect(tunedFirst[0]).toMatch(/^AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE\/20261129\/eu-west-1\/dynamodb\/aws4_request/);
      expect(tunedFirst).toEqual(await authorizations(plain));

      secret = 'rotated-secret';
      const tunedRotated = await authorizations(tuned);
      expect(tunedRotated).toEqual(await authorizations(plain));
      expect(tunedRotated[0]).not.toEqual(tunedFirst[0]);
    } finally {
      tuned.destroy();
      plain.destroy();
    }
  });

  it('builds its signer once, not once per call', async () => {
    const client = new DynamoDBClient({ endpoint, region: 'eu-west-1', credentials: { accessKeyId: 'a', secretAccessKey: 'b' }, maxAttempts: 1 });
    const config = client.config as unknown as { signer: (...args: unknown[]) => Promise<unknown> };
    const build = vi.fn(config.signer);
    config.signer = build;
    reuseSigner(client);
    try {
      for (let i = 0; i < 5; i++) await get(client);
      expect(build).toHaveBeenCalledTimes(1);
    } finally {
      client.destroy();
    }
  });
});
