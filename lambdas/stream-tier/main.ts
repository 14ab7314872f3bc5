import { DynamoDBStreamsClient } from '@aws-sdk/client-dynamodb-streams';
import { Logger } from '@aws-lambda-powertools/logger';
import { coreLogger, createAwsServices } from '../adapters/aws/services.js';
import { DynamoStreamConsumer } from '../adapters/aws/dynamodb-stream-consumer.js';
import { FanoutNotifier } from '../core/session/notifier.js';
import { OidcVerifier } from '../core/auth/oidc.js';
import { readOidcIssuers } from '../core/config.js';
import { STREAM_TIER_ENV } from './env.js';
import { NO_SANDBOXES, startStreamTier, STREAM_TIER_DEFAULTS } from './server.js';

/**
 * The stream tier's entry (a Fargate service behind an internal NLB, reached from API Gateway
 * through a VPC link: infra/lib/constructs/stream-tier.ts). Its environment is the stream
 * function's (the tables, the wake queue's URL) plus those of ./env.ts.
 */

function intEnv(name: string, fallback: number, min = 1): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min) throw new Error(`${name}: expected an integer of at least ${min}, got ${JSON.stringify(raw)}`);
  return n;
}

async function main() {
  const logger = new Logger({ serviceName: process.env.POWERTOOLS_SERVICE_NAME ?? 'corral-stream-tier' });
  const streamArn = process.env[STREAM_TIER_ENV.streamArn];
  if (!streamArn) throw new Error(`${STREAM_TIER_ENV.streamArn} is required`);
  const { services } = await createAwsServices({ sandboxProvider: NO_SANDBOXES });
  const notifier = new FanoutNotifier();
  const issuers = readOidcIssuers();
  const consumer = new DynamoStreamConsumer({
    client: new DynamoDBStreamsClient({}),
    streamArn,
    pollMs: intEnv(STREAM_TIER_ENV.shardPollMs, 1000, 200),
    onAppend: (sessionId) => notifier.notify(sessionId),
    onGap: (reason) => {
      logger.warn('stream: records may have been missed; every stream rereads its log', { reason });
      notifier.notifyAll();
    },
    logger: coreLogger(logger),
  });
  let ready = false;
  const tier = await startStreamTier({
    services,
    notifier,
    host: '0.0.0.0',
    port: intEnv(STREAM_TIER_ENV.port, 8080),
    maxStreamMs: intEnv(STREAM_TIER_ENV.maxStreamMs, STREAM_TIER_DEFAULTS.maxStreamMs),
    stream: { pollMs: intEnv(STREAM_TIER_ENV.logPollMs, STREAM_TIER_DEFAULTS.pollMs, 100) },
    clientAddressHeader: process.env[STREAM_TIER_ENV.clientAddressHeader] || undefined,
    ready: () => ready,
    logger: coreLogger(logger),
    oidc: issuers.length ? new OidcVerifier(issuers) : undefined,
  });
  await consumer.start();
  ready = true;
  logger.info('stream tier listening', { port: tier.port });
  // Open streams, once a minute, on the log (the service scales on memory and CPU).
  // `iteratorAgeMs` feeds the stack's consumer-lag alarm (a metric filter on these lines).
  const report = setInterval(
    () => logger.info('stream tier', { openStreams: tier.openStreams(), iteratorAgeMs: consumer.takeIteratorAgeMs(), shards: consumer.status() }),
    60_000,
  );
  // ECS stops a task with SIGTERM: end every stream cleanly (clients reconnect to another task
  // with Last-Event-ID), then leave.
  process.once('SIGTERM', () => {
    clearInterval(report);
    void Promise.allSettled([tier.close(), consumer.stop()]).then(() => process.exit(0));
  });
}

main().catch((err) => {
  console.error(JSON.stringify({ level: 'ERROR', message: 'stream tier failed to start', error: String((err as Error)?.message ?? err) }));
  process.exit(1);
});
