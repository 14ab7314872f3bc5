import { SendMessageCommand, type SQSClient } from '@aws-sdk/client-sqs';
import type { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import type { WebhookConfig } from '../../core/config.js';
import type { Logger } from '../../core/logger.js';
import type { SecretStore } from '../../core/vault/secret-store.js';
import type { WebhookDelivery } from '../../core/webhooks/types.js';
import { SecretsManagerStore } from './secrets-manager-store.js';

/** Default Secrets Manager name prefix of webhook signing secrets (`corral/webhook/<endpoint id>`). */
export const DEFAULT_WEBHOOK_SECRET_PREFIX = 'corral/';

/**
 * Webhook signing secrets in Secrets Manager under `<prefix>webhook/<endpoint id>`. The API's role
 * may create, write and delete names under the prefix but not read them; the delivery function's
 * may only read them (infra/lib/constructs/webhooks.ts).
 */
export function webhookSecretStore(client: SecretsManagerClient, prefix = DEFAULT_WEBHOOK_SECRET_PREFIX): SecretStore {
  const store = new SecretsManagerStore(client, { tags: { 'corral:secret': 'webhook-signing' } });
  return {
    get: (ref) => store.get(prefix + ref),
    put: (ref, value) => store.put(prefix + ref, value),
    delete: (ref) => store.delete(prefix + ref),
  };
}

/**
 * The API's and the harness's side of webhooks on AWS: secrets written to Secrets Manager, and a
 * kick (an SQS message) that runs the delivery function now. The kick is best effort: a lost one
 * costs the delivery function's next scheduled sweep (a minute), never the event (the outbox
 * item is in the state table before the kick is sent).
 */
export function awsWebhookPublishing(config: WebhookConfig & { queueUrl: string }, clients: { sqs: SQSClient; secrets: SecretsManagerClient }, logger?: Logger) {
  return {
    secrets: webhookSecretStore(clients.secrets, config.secretPrefix),
    urlAllow: config.urlAllow,
    kick: () => {
      clients.sqs
        .send(new SendMessageCommand({ QueueUrl: config.queueUrl, MessageBody: '{"run":"due"}' }))
        .catch((err: unknown) => logger?.warn('webhook kick failed; the next sweep delivers', { error: (err as Error)?.name ?? String(err) }));
    },
  };
}

/** Deliveries past their horizon go to the dead-letter queue, one message each (no payload: ids only). */
export function sqsDeadLetter(sqs: SQSClient, queueUrl: string) {
  return async (d: WebhookDelivery, tenant: string) => {
    await sqs.send(
      new SendMessageCommand({
        QueueUrl: queueUrl,
        MessageBody: JSON.stringify({ tenant, endpoint_id: d.endpoint_id, event_id: d.event_id, event_type: d.event_type, created_at: d.created_at, attempts: d.attempts, last_status_code: d.last_status_code, last_error: d.last_error }),
      }),
    );
  };
}
