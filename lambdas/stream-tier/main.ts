import { DynamoDBStreamsClient } from '@aws-sdk/client-dynamodb-streams';
import { Logger } from '@aws-lambda-powertools/logger';
import { coreLogger, createAwsServices } from '../adapters/aws/services.js';
import { DynamoStreamConsumer } from '../adapters/aws/dynamodb-stream-consumer.js';
import { FanoutNotifier } from '../core/session/notifier.js';
import { NO_SANDBOXES, startStreamTier, STREAM_TIER_DEFAULTS } from './server.js';

/**
 * The stream tier's entry (a Fargate service behind an internal NLB, reached from API Gateway
 * through a VPC link: infra/lib/constructs/stream-tier.ts). Its environment is the stream
 * function's (the tables, the wake queue's URL) plus the variables below.
 */
export const STREAM_TIER_ENV = {
  /** The events table's stream (its `LatestStreamArn`). Required. */
  streamArn: 'CORRAL_EVENTS_STREAM_ARN',
  /** Port to listen on. @default 8080 */
  port: 'CORRAL_STREAM_TIER_PORT',
  /** Wait between two GetRecords calls on one shard, ms (see `StreamConsumerOptions.pollMs`). @default 1000 */
  shardPollMs: 'CORRAL_STREAM_SHARD_POLL_MS',
  /** How often a stream reads the log without a notification, ms. @default 30000 */
  logPollMs: 'CORRAL_STREAM_LOG_POLL_MS',
  /** Longest a stream stays open, ms. @default 890000 */
  maxStreamMs: 'CORRAL_STREAM_MAX_MS',
  /** Header API Gateway writes the client's address into (unset: the socket's peer). */
  clientAddressHeader: 'CORRAL_STREAM_CLIENT_ADDRESS_HEADER',
} as const;

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
  });
  await consumer.start();
  ready = true;
  logger.info('stream tier listening', { port: tier.port });
  // Open streams, once a minute, in CloudWatch's embedded metric format (the service scales on it).
  const metrics = setInterval(() => {
    process.stdout.write(
      JSON.stringify({
        _aws: { Timestamp: Date.now(), CloudWatchMetrics: [{ Namespace: process.env.POWERTOOLS_METRICS_NAMESPACE ?? 'Corral', Dimensions: [['service']], Metrics: [{ Name: 'OpenStreams', Unit: 'Count' }] }] },
        service: 'stream-tier',
        OpenStreams: tier.openStreams(),
      }) + '\n',
    );
  }, 60_000);
  // ECS stops a task with SIGTERM: end every stream cleanly (clients reconnect to another task
  // with Last-Event-ID), then leave.
  process.once('SIGTERM', () => {
    clearInterval(metrics);
    void Promise.allSettled([tier.close(), consumer.stop()]).then(() => process.exit(0));
  });
}

main().catch((err) => {
  console.error(JSON.stringify({ level: 'ERROR', message: 'stream tier failed to start', error: String((err as Error)?.message ?? err) }));
  process.exit(1);
});
