import { AnthropicModel, type ModelClient } from '../../core/harness/model.js';
import type { ServicesConfig } from '../../core/config.js';
import { SsmParameters } from './ssm-parameter.js';

/**
 * The harness's model on AWS: the Messages API at the configured base URL, its key read once from
 * the SSM SecureString parameter `CORRAL_MODEL_API_KEY_PARAMETER` names. A module of its own, which
 * only the harness step's entry imports: the API never calls the model, so neither the Anthropic
 * SDK nor the SSM client belongs in its bundle.
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
}

/** The model from the configuration; without a key parameter, the SDK's own default (`ANTHROPIC_API_KEY`). */
export async function createAwsModel(config: Pick<ServicesConfig, 'model'>, opts: AwsModelOptions = {}): Promise<ModelClient> {
  let apiKey: string | undefined;
  if (config.model.apiKeyParameter) {
    const ssm = opts.ssm ?? new SsmParameters();
    apiKey = await readModelApiKey(ssm, config.model.apiKeyParameter);
    if (!opts.ssm) (ssm as SsmParameters).destroy();
  }
  return new AnthropicModel({ apiKey, baseURL: config.model.baseUrl });
}
