import { AnthropicModel, type ModelClient } from '../../core/harness/model.js';
import type { ServicesConfig } from '../../core/config.js';
import { SsmParameters } from './ssm-parameter.js';
import { BedrockModel } from './bedrock-model.js';
import type { Credentials } from './signed-http.js';

/**
 * The harness's model on AWS, by the configured provider (`CORRAL_MODEL_PROVIDER`):
 * - `anthropic`: the Messages API (at `ANTHROPIC_BASE_URL` if set). With `CORRAL_MODEL_PROXY_URL`
 *   (the stack sets it) the harness holds no key: it calls the proxy service's harness-facing port,
 *   which alone reads the key and forwards the call. Without it, the key is read once from the SSM
 *   SecureString parameter `CORRAL_MODEL_API_KEY_PARAMETER` names (a deployment of its own making);
 * - `gateway`: any Messages-compatible endpoint at `ANTHROPIC_BASE_URL`, reached the same way;
 * - `bedrock`: Claude on Amazon Bedrock, signed with the function's own IAM role: no key at all.
 * A module of its own, which only the harness step's entry imports: the API never calls the model,
 * so neither the Anthropic SDK nor the SSM client belongs in its bundle.
 */

/** The model API key, read once from an SSM SecureString parameter. */
export async function readModelApiKey(ssm: Pick<SsmParameters, 'get'>, parameterName: string): Promise<string> {
  const value = await ssm.get(parameterName, { withDecryption: true });
  if (!value) throw new Error(`SSM parameter ${parameterName} has no value`);
  return value;
}

export interface AwsModelOptions {
  /** How to read the key (tests pass one); by default SSM in the function's region with its own credentials. */
  ssm?: Pick<SsmParameters, 'get'>;
  /** Bedrock's signing credentials (tests); by default the function's own. */
  credentials?: Credentials;
}

/** The model from the configuration; without a key parameter, the SDK's own default (`ANTHROPIC_API_KEY`). */
export async function createAwsModel(config: Pick<ServicesConfig, 'model'>, opts: AwsModelOptions = {}): Promise<ModelClient> {
  if (config.model.provider === 'bedrock') {
    return new BedrockModel({
      region: config.model.bedrockRegion,
      profile: config.model.bedrockProfile,
      allowed: config.model.models,
      credentials: opts.credentials,
    });
  }
  if (config.model.proxyUrl) {
    // The proxy service adds the key and sends the call to the provider's base URL: nothing here holds one.
    return new AnthropicModel({ apiKey: 'held-by-the-proxy-service', baseURL: config.model.proxyUrl });
  }
  let apiKey: string | undefined;
  if (config.model.apiKeyParameter) {
    const ssm = opts.ssm ?? new SsmParameters();
    apiKey = await readModelApiKey(ssm, config.model.apiKeyParameter);
    if (!opts.ssm) (ssm as SsmParameters).destroy();
  }
  return new AnthropicModel({ apiKey, baseURL: config.model.baseUrl });
}
