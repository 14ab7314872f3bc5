/**
 * The harness port's model route (`/model/…`): the harness's Messages calls, forwarded with the
 * key this task's role reads from SSM (`lambdas/adapters/aws/model-forwarder.ts`). Mounted only
 * when the stack names the key's parameter (`CORRAL_MODEL_API_KEY_PARAMETER`: the `anthropic` and
 * `gateway` providers; Bedrock has no key and the harness calls it with its own role).
 */
import { createModelForwarder } from '../adapters/aws/model-forwarder.js';
import { SsmParameters } from '../adapters/aws/ssm-parameter.js';
import { CORRAL_ENV } from '../core/config.js';
import type { ProxyServiceRoute } from './routes.js';

export function modelRoute(env: NodeJS.ProcessEnv = process.env): ProxyServiceRoute | null {
  const keyParameter = env[CORRAL_ENV.modelApiKeyParameter];
  if (!keyParameter) return null;
  const forwarder = createModelForwarder({ keyParameter, ssm: new SsmParameters({ region: env.AWS_REGION }), baseUrl: env[CORRAL_ENV.modelBaseUrl] || undefined });
  return { prefix: forwarder.prefix, name: forwarder.name, handle: forwarder.handle };
}
