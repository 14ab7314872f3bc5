/**
 * The proxy service's own environment variables, besides `CORRAL_STATE_TABLE` (where the egress
 * grants are: lambdas/core/config.ts). A module of its own so the stack
 * (infra/lib/constructs/proxy-service.ts) can name them without loading the entry.
 */
export const PROXY_SERVICE_ENV = {
  /** The sandbox-facing port: egress (CONNECT, absolute URIs), origin-form routes (`/git/…`), `/healthz`. @default 3128 */
  sandboxPort: 'CORRAL_PROXY_SANDBOX_PORT',
  /** The harness-facing port (model forwarding); unset or 0: not opened. @default 8081 */
  harnessPort: 'CORRAL_PROXY_HARNESS_PORT',
  /** Client connections one sandbox (one grant) may hold open at once. @default 64 */
  maxConnectionsPerGrant: 'CORRAL_PROXY_MAX_CONNECTIONS_PER_GRANT',
  /** Client connections one task holds open at once, all sandboxes together. @default 4096 */
  maxConnections: 'CORRAL_PROXY_MAX_CONNECTIONS',
  /** A connection with no traffic this long is closed, ms. @default 300000 */
  idleTimeoutMs: 'CORRAL_PROXY_IDLE_TIMEOUT_MS',
  /**
   * Comma-separated addresses or CIDR blocks reachable although private. Only the deploy
   * rehearsal sets it (its "internet" is loopback), through the CDK context `rehearsalEgressPrivate`;
   * a deployment never does. @default none
   */
  allowPrivateAddresses: 'CORRAL_PROXY_ALLOW_PRIVATE_ADDRESSES',
} as const;

/** The ports, as the stack and the ECS provider name them. */
export const PROXY_SANDBOX_PORT = 3128;
export const PROXY_HARNESS_PORT = 8081;
