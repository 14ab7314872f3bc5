import { jsonLogger } from '../lambdas/core/logger.js';
import { startLocalRuntime } from './runtime.js';
import { readModelConfig } from '../lambdas/core/config.js';
import { parseRateLimits } from '../lambdas/core/resources/rate-limits.js';
import { REPOSITORY_URL_ALLOW_ENV, parseRepositoryUrlAllow } from '../lambdas/core/resources/repository-url.js';
import { SANDBOX_LIMITS_ENV, parseSandboxLimits } from '../sandbox/limits.js';
import { SANDBOX_PRIORITY_ENV, parseSandboxPriority } from '../lambdas/adapters/local/sandbox-priority.js';
import { PACKAGE_INDEXES_ENV, parsePackageIndexes } from '../lambdas/adapters/local/process-sandbox.js';

/**
 * `npm start`: the embedded default. Settings come from the environment:
 * PORT (4000), CORRAL_DATA_DIR (./.corral), CORRAL_API_KEY (generated if unset, and printed once, when it is generated),
 * ANTHROPIC_API_KEY and ANTHROPIC_BASE_URL for the model, CORRAL_MODEL_PROVIDER (anthropic | bedrock | gateway),
 * CORRAL_MODELS, CORRAL_BEDROCK_REGION and CORRAL_BEDROCK_PROFILE (bedrock signs with the AWS_ACCESS_KEY_ID,
 * AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN of the environment), CORRAL_SANDBOX_ISOLATION
 * (auto | bwrap | none), CORRAL_RATE_LIMITS (per tenant per minute, e.g. `create=300,write=1200,read=6000`),
 * CORRAL_REPOSITORY_URL_ALLOW (origins accepted besides public https ones, e.g. `http://127.0.0.1`),
 * CORRAL_SANDBOX_LIMITS (e.g. `processes=256,memory=2g,file_size=1g,cpu_seconds=3600,disk=10g`),
 * CORRAL_SANDBOX_PRIORITY (e.g. `cpu_shares=512,nice=10,sched=batch,io_class=best-effort,io_level=7`).
 */
const env = process.env;
const port = env.PORT ? Number(env.PORT) : 4000;
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  console.error(`PORT must be a port number, not ${JSON.stringify(env.PORT)}`);
  process.exit(2);
}
const isolation = (env.CORRAL_SANDBOX_ISOLATION ?? 'auto') as 'auto' | 'bwrap' | 'none';
if (!['auto', 'bwrap', 'none'].includes(isolation)) {
  console.error('CORRAL_SANDBOX_ISOLATION must be auto, bwrap or none');
  process.exit(2);
}
let rateLimits;
try {
  rateLimits = parseRateLimits(env.CORRAL_RATE_LIMITS);
} catch (err) {
  console.error(`CORRAL_RATE_LIMITS: ${(err as Error).message}`);
  process.exit(2);
}
function setting<T>(name: string, parse: (text: string | undefined) => T): T {
  try {
    return parse(env[name]);
  } catch (err) {
    console.error(`${name}: ${(err as Error).message}`);
    process.exit(2);
  }
}
const repositoryUrlAllow = setting(REPOSITORY_URL_ALLOW_ENV, parseRepositoryUrlAllow);
const sandboxLimits = setting(SANDBOX_LIMITS_ENV, parseSandboxLimits);
const sandboxPriority = setting(SANDBOX_PRIORITY_ENV, parseSandboxPriority);
const packageIndexes = setting(PACKAGE_INDEXES_ENV, parsePackageIndexes);
const modelConfig = (() => {
  try {
    return readModelConfig(env);
  } catch (err) {
    console.error((err as Error).message);
    process.exit(2);
  }
})();
const logger = jsonLogger({ service: 'corral-local' });
// The model key is handed to the credential proxy process (on its stdin) and leaves this
// process's environment, so that nothing started from here inherits it.
const anthropicApiKey = env.ANTHROPIC_API_KEY || undefined;
delete env.ANTHROPIC_API_KEY;

const runtime = await startLocalRuntime({
  port,
  host: env.HOST ?? '127.0.0.1',
  dataDir: env.CORRAL_DATA_DIR ?? './.corral',
  apiKey: env.CORRAL_API_KEY || undefined,
  anthropicApiKey,
  anthropicBaseUrl: env.ANTHROPIC_BASE_URL,
  modelProvider: modelConfig.provider,
  models: modelConfig.models,
  bedrock: { region: modelConfig.bedrockRegion ?? env.AWS_REGION, profile: modelConfig.bedrockProfile },
  sandboxIsolation: isolation,
  rateLimits,
  repositoryUrlAllow,
  sandboxLimits,
  sandboxPriority,
  packageIndexes,
  keepWorkspacesOnClose: true,
  logger,
}).catch((err) => {
  console.error(`corral: could not start: ${(err as Error).message}`);
  process.exit(1);
});

const lines = [
  `Corral is listening on ${runtime.url}`,
  `  data dir: ${runtime.dataDir}`,
  // The key is shown once, on the start that makes it; later starts only say where it is.
  runtime.apiKeyNew
    ? `  API key:  ${runtime.apiKey}  (generated now and kept in ${runtime.dataDir}/api-key; it is not shown again)`
    : runtime.apiKeyGenerated
      ? `  API key:  in ${runtime.dataDir}/api-key`
      : '  API key:  from CORRAL_API_KEY',
  modelConfig.provider === 'bedrock'
    ? `  model:    Amazon Bedrock in ${modelConfig.bedrockRegion ?? env.AWS_REGION ?? '(no region: set CORRAL_BEDROCK_REGION or AWS_REGION)'}${env.AWS_ACCESS_KEY_ID ? '' : '  (AWS_ACCESS_KEY_ID is not set)'}`
    : `  model:    ${modelConfig.provider === 'gateway' ? 'gateway ' : ''}${env.ANTHROPIC_BASE_URL ?? 'https://api.anthropic.com'}${anthropicApiKey ? '' : '  (ANTHROPIC_API_KEY is not set)'}`,
];
console.log(lines.join('\n'));

let stopping = false;
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    if (stopping) process.exit(1);
    stopping = true;
    console.log('corral: stopping');
    runtime.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  });
}
