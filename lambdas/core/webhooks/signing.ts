import { createHmac, randomBytes } from 'node:crypto';

/**
 * Standard Webhooks signatures (https://www.standardwebhooks.com/), the scheme the SDK's
 * `client.beta.webhooks.unwrap` verifies: the secret is `whsec_<base64 of the key bytes>`, and each
 * delivery carries `webhook-id`, `webhook-timestamp` (Unix seconds) and `webhook-signature`
 * `v1,<base64 HMAC-SHA256 over "<id>.<timestamp>.<body>">`. The same id goes out on every attempt
 * of one event, so a receiver dedupes on it; the timestamp is the attempt's (receivers reject
 * old timestamps to stop replays).
 */
export const SECRET_PREFIX = 'whsec_';

/** A new signing secret: 32 random bytes. */
export function newSigningSecret(): string {
  return SECRET_PREFIX + randomBytes(32).toString('base64');
}

export interface SignedHeaders {
  'webhook-id': string;
  'webhook-timestamp': string;
  'webhook-signature': string;
}

export function signPayload(secret: string, id: string, body: string, now: Date = new Date()): SignedHeaders {
  if (!secret.startsWith(SECRET_PREFIX)) throw new Error('a webhook signing secret starts with whsec_');
  const key = Buffer.from(secret.slice(SECRET_PREFIX.length), 'base64');
  const timestamp = String(Math.floor(now.getTime() / 1000));
  const mac = createHmac('sha256', key).update(`${id}.${timestamp}.${body}`).digest('base64');
  return { 'webhook-id': id, 'webhook-timestamp': timestamp, 'webhook-signature': `v1,${mac}` };
}
