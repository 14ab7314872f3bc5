import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { Agent } from 'node:http';
import { connect } from 'node:net';

/** The form of a local DynamoDB endpoint on a unix socket: `unix:<absolute path>`. */
export const UNIX_ENDPOINT_PREFIX = 'unix:';

/**
 * A DynamoDB client for the embedded store: `http://host:port`, or `unix:/path/to.sock` for
 * dynalite listening on a unix socket (the local runtime's, so that only this user reaches it).
 * For a socket, every connection the SDK's HTTP handler opens goes to the socket; the URL the
 * SDK signs and sends is a placeholder.
 */
export function localDynamoClient(endpoint: string, opts: { maxSockets?: number } = {}): DynamoDBClient {
  const agent = new Agent({ keepAlive: true, maxSockets: opts.maxSockets ?? 1024 });
  let url = endpoint;
  if (endpoint.startsWith(UNIX_ENDPOINT_PREFIX)) {
    const socketPath = endpoint.slice(UNIX_ENDPOINT_PREFIX.length);
    (agent as unknown as { createConnection: () => ReturnType<typeof connect> }).createConnection = () => connect(socketPath);
    url = 'http://localhost';
  }
  return new DynamoDBClient({
    endpoint: url,
    region: 'local',
    credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
    maxAttempts: 3,
    // Hundreds of sessions share this one client: let their requests through, not queue at 50.
    requestHandler: { httpAgent: agent },
  });
}
