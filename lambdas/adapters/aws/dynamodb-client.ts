import { DynamoDBClient, type DynamoDBClientConfig } from '@aws-sdk/client-dynamodb';

/**
 * A DynamoDB client set up for many small calls, the way Corral uses it (a dozen per harness
 * step). The SDK's defaults spend CPU on every call on work whose result never changes for one
 * client:
 * - it resolves the whole middleware chain again per call: `cacheMiddleware` builds it once per
 *   command type (nothing here adds middleware per call; the tracer's is added at construction);
 * - it builds a new SigV4 signer per call (copying the client's whole configuration), whose
 *   signing-key cache therefore never hits, so every call derives the key again (four HMACs): the
 *   signer is built once per auth scheme and kept. It still asks the client's credential provider
 *   on every call, so rotated credentials are used as before.
 * Keep-alive needs nothing: the SDK's Node handler keeps connections alive by default.
 */
export function createDynamoClient(config: DynamoDBClientConfig = {}): DynamoDBClient {
  return reuseSigner(new DynamoDBClient({ cacheMiddleware: true, ...config }));
}

/** Make `client` build its signer once per auth scheme instead of once per call (see above). */
export function reuseSigner(client: DynamoDBClient): DynamoDBClient {
  const config = client.config as unknown as { signer: (authScheme?: AuthScheme) => Promise<unknown> };
  const build = config.signer;
  const signers = new Map<string, Promise<unknown>>();
  config.signer = (authScheme?: AuthScheme) => {
    const key = `${authScheme?.name ?? ''}\u0000${authScheme?.signingRegion ?? ''}\u0000${authScheme?.signingName ?? ''}`;
    let signer = signers.get(key);
    if (!signer) {
      signer = build(authScheme);
      signers.set(key, signer);
      signer.catch(() => signers.delete(key)); // a failed build is tried again on the next call
    }
    return signer;
  };
  return client;
}

interface AuthScheme {
  name?: string;
  signingRegion?: string;
  signingName?: string;
}
