/**
 * Lambda entry of the webhook deliverer (docs/WEBHOOKS.md): invoked by its SQS queue (a kick after
 * each publish; the message carries nothing but "run") and by a schedule every minute (retries,
 * and any kick that was lost). Each invocation attempts every delivery that is due, until none is
 * or its time is nearly up.
 *
 * Environment (`readWebhookConfig`, lambdas/core/config.ts):
 *   CORRAL_STATE_TABLE                    the state table (outbox items, endpoints)
 *   CORRAL_WEBHOOK_SECRET_PREFIX          the Secrets Manager prefix of signing secrets
 *   CORRAL_WEBHOOK_DEAD_LETTER_QUEUE_URL  where deliveries past their horizon go
 *   CORRAL_WEBHOOK_URL_ALLOW, CORRAL_WEBHOOK_BACKOFF  optional
 * Permissions: dynamodb:Query (gsi1), GetItem, PutItem on the state table; secretsmanager:
 * GetSecretValue on the webhook prefix only (the one role that reads signing secrets);
 * sqs:SendMessage to the dead-letter queue. It runs outside the VPC: receivers are on the internet.
 */
import { Logger } from '@aws-lambda-powertools/logger';
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { SQSClient } from '@aws-sdk/client-sqs';
import type { Context } from 'aws-lambda';
import { createDynamoClient } from '../adapters/aws/dynamodb-client.js';
import { DynamoStateTable } from '../adapters/aws/dynamodb-state-table.js';
import { coreLogger } from '../adapters/aws/services.js';
import { sqsDeadLetter, webhookSecretStore } from '../adapters/aws/webhooks.js';
import { CORRAL_ENV, readWebhookConfig } from '../core/config.js';
import { WebhookDeliverer } from '../core/webhooks/deliver.js';

let deliverer: WebhookDeliverer | undefined;

function build(env: Record<string, string | undefined> = process.env): WebhookDeliverer {
  const config = readWebhookConfig(env);
  const stateTable = env[CORRAL_ENV.stateTable];
  if (!stateTable) throw new Error(`Corral configuration is invalid: ${CORRAL_ENV.stateTable} is required`);
  const sqs = new SQSClient({});
  const logger = coreLogger(new Logger({ serviceName: 'corral-webhook-delivery' }));
  return new WebhookDeliverer({
    table: new DynamoStateTable(createDynamoClient(), stateTable),
    secrets: webhookSecretStore(new SecretsManagerClient({}), config.secretPrefix),
    urlRule: { allow: config.urlAllow },
    backoff: config.backoff,
    ...(config.deadLetterQueueUrl ? { deadLetter: sqsDeadLetter(sqs, config.deadLetterQueueUrl) } : {}),
    logger,
  });
}

export async function handler(_event: unknown, context?: Pick<Context, 'getRemainingTimeInMillis'>): Promise<{ attempted: number; delivered: number }> {
  deliverer ??= build();
  const total = { attempted: 0, delivered: 0 };
  // Runs until a pass finds nothing due, leaving 15 s for the last pass's attempts (10 s each at most).
  while (!context || context.getRemainingTimeInMillis() > 15_000) {
    const r = await deliverer.runDue();
    total.attempted += r.attempted;
    total.delivered += r.delivered;
    if (r.attempted === 0) break;
  }
  return total;
}
