import { GetParameterCommand, SSMClient } from '@aws-sdk/client-ssm';
import { AnthropicModel, type ModelClient } from '../../core/harness/model.js';
import type { ServicesConfig } from '../../core/config.js';

/**
 * The harness's model on AWS: the Messages API at the configured base URL, its key read once from
 * the SSM SecureString parameter `CORRAL_MODEL_API_KEY_PARAMETER` names. A module of its own, which
 * only the harness step's entry imports: the API never calls the model, so neither the Anthropic
 * SDK nor the SSM client belongs in its bundle.
 */

/** The model API key, read once from an SSM SecureString parameter. */
export async function readModelApiKey(ssm: SSMClient, parameterName: string): Promise<string> {
  const out = await ssm.send(new GetParameterCommand({ Name: parameterName, WithDecryption: true }));
  const value = out.Parameter?.Value;
  if (!value) throw new Error(`SSM parameter ${parameterName} has no value`);
  return value;
}

export interface AwsModelOptions {
  /** The SSM client to read the key with (tests pass one); created with default settings when absent. */
  ssm?: SSMClient;
  /** Wraps the SSM client created here (the Powertools tracer's `captureAWSv3Client`). */
  instrument?: <T>(client: T) => T;
}

/** The model from the configuration; without a key parameter, the SDK's own default (`ANTHROPIC_API_KEY`). */
export async function createAwsModel(config: Pick<ServicesConfig, 'model'>, opts: AwsModelOptions = {}): Promise<ModelClient> {
  let apiKey: string | undefined;
  if (config.model.apiKeyParameter) {
    const instrument = opts.instrument ?? (<T>(c: T) => c);
    const ssm = opts.ssm ?? instrument(new SSMClient({}));
    apiKey = await readModelApiKey(ssm, config.model.apiKeyParameter);
  }
  return new AnthropicModel({ apiKey, baseURL: config.model.baseUrl });
}
