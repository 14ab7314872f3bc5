/**
 * The stream tier's own environment variables, besides the stream function's (the tables, the wake
 * queue's URL: lambdas/core/config.ts), which it reads the same way. A module of its own so the
 * stack (infra/lib/constructs/stream-tier.ts) can name them without loading the entry.
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
