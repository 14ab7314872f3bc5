import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { Agent } from 'node:http';
import { connect } from 'node:net';
import type { InProcessDynaliteHandler } from './in-process-handler.js';

/** The form of a local DynamoDB endpoint on a unix socket: `unix:<absolute path>`. */
export const UNIX_ENDPOINT_PREFIX = 'unix:';

/**
 * The embedded store's "signature". dynalite checks that a request is signed in the SigV4 form
 * (an `AWS4-` Authorization header naming a credential, signed headers and a signature, and a
 * date) but never verifies the signature: there is no secret to check it against. So the local
 * clients write that form without computing it, which saves a body hash and two HMACs per call.
 * The AWS clients sign for real (adapters/aws/dynamodb-client.ts).
 */
const localSigner = {
  async sign<R extends { headers: Record<string, string> }>(request: R, opts: { signingDate?: Date } = {}): Promise<R> {
    const date = (opts.signingDate ?? new Date()).toISOString().replace(/[-:]|\.\d{3}/g, '');
    request.headers['x-amz-date'] = date;
    request.headers.authorization = `AWS4-HMAC-SHA256 Credential=local/${date.slice(0, 8)}/local/dynamodb/aws4_request, SignedHeaders=host;x-amz-date, Signature=local`;
    return request;
  },
};

/**
 * A DynamoDB client for the embedded store: `http://host:port`, or `unix:/path/to.sock` for
 * dynalite listening on a unix socket (the local runtime's, so that only this user reaches it).
 * For a socket, every connection the SDK's HTTP handler opens goes to the socket; the URL the
 * SDK signs and sends is a placeholder. With `inProcess`, requests go straight to dynalite in
 * this process (see InProcessDynaliteHandler) and the endpoint is only the URL the SDK builds.
 */
export function localDynamoClient(endpoint: string, opts: { maxSockets?: number; inProcess?: InProcessDynaliteHandler } = {}): DynamoDBClient {
  let url = endpoint;
  let requestHandler: DynamoDBClient['config']['requestHandler'] | { httpAgent: Agent };
  if (opts.inProcess) {
    url = 'http://localhost';
    requestHandler = opts.inProcess as unknown as DynamoDBClient['config']['requestHandler'];
  } else {
    const agent = new Agent({ keepAlive: true, maxSockets: opts.maxSockets ?? 1024 });
    if (endpoint.startsWith(UNIX_ENDPOINT_PREFIX)) {
      const socketPath = endpoint.slice(UNIX_ENDPOINT_PREFIX.length);
      (agent as unknown as { createConnection: () => ReturnType<typeof connect> }).createConnection = () => connect(socketPath);
      url = 'http://localhost';
    }
    // Hundreds of sessions share this one client: let their requests through, not queue at 50.
    requestHandler = { httpAgent: agent };
  }
  return new DynamoDBClient({
    endpoint: url,
    region: 'local',
    credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
    maxAttempts: 3,
    signer: localSigner as unknown as DynamoDBClient['config']['signer'],
    // The handler chain is built once per command type, not on every call (no middleware is
    // added per call here).
    cacheMiddleware: true,
    requestHandler,
  });
}
