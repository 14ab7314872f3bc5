/**
 * Model providers and the one table that translates the Claude model ids agents are written with
 * into each provider's ids. Agent definitions never change with the provider: an agent says
 * `claude-sonnet-4-5`, and the provider the deployment is configured with decides what goes on
 * the wire. Prices (pricing.ts) and usage stay keyed on the Claude id.
 *
 * A model the configured provider cannot serve is an error (`UnsupportedModelError`), never a
 * silent substitution of another model.
 */

/** Who serves the model calls. */
export type ModelProvider = 'anthropic' | 'bedrock' | 'gateway';
export const MODEL_PROVIDERS: readonly ModelProvider[] = ['anthropic', 'bedrock', 'gateway'];
export const DEFAULT_MODEL_PROVIDER: ModelProvider = 'anthropic';

export interface ModelIds {
  /** Bedrock's foundation-model id (`anthropic.…`), without the inference-profile prefix. */
  bedrock: string;
  /**
   * Bedrock serves it only through a cross-region inference profile (`us.`, `eu.`, `apac.`,
   * `global.` + the id), as every Claude 4 model: on-demand calls to the bare id are refused.
   */
  bedrockProfileOnly: boolean;
}

/**
 * The table: Claude id (dated ids and the API's aliases) -> provider ids. The Anthropic API and a
 * gateway take the Claude id as it is; a Messages-compatible gateway may serve any id, so only
 * Bedrock is limited to this table.
 */
export const MODEL_TABLE: Readonly<Record<string, ModelIds>> = {
  'claude-opus-4-6': { bedrock: 'anthropic.claude-opus-4-6-v1', bedrockProfileOnly: true },
  'claude-sonnet-4-6': { bedrock: 'anthropic.claude-sonnet-4-6', bedrockProfileOnly: true },
  'claude-opus-4-5-20251101': { bedrock: 'anthropic.claude-opus-4-5-20251101-v1:0', bedrockProfileOnly: true },
  'claude-opus-4-5': { bedrock: 'anthropic.claude-opus-4-5-20251101-v1:0', bedrockProfileOnly: true },
  'claude-sonnet-4-5-20250929': { bedrock: 'anthropic.claude-sonnet-4-5-20250929-v1:0', bedrockProfileOnly: true },
  'claude-sonnet-4-5': { bedrock: 'anthropic.claude-sonnet-4-5-20250929-v1:0', bedrockProfileOnly: true },
  'claude-haiku-4-5-20251001': { bedrock: 'anthropic.claude-haiku-4-5-20251001-v1:0', bedrockProfileOnly: true },
  'claude-haiku-4-5': { bedrock: 'anthropic.claude-haiku-4-5-20251001-v1:0', bedrockProfileOnly: true },
  'claude-opus-4-1-20250805': { bedrock: 'anthropic.claude-opus-4-1-20250805-v1:0', bedrockProfileOnly: true },
  'claude-opus-4-1': { bedrock: 'anthropic.claude-opus-4-1-20250805-v1:0', bedrockProfileOnly: true },
  'claude-opus-4-20250514': { bedrock: 'anthropic.claude-opus-4-20250514-v1:0', bedrockProfileOnly: true },
  'claude-opus-4-0': { bedrock: 'anthropic.claude-opus-4-20250514-v1:0', bedrockProfileOnly: true },
  'claude-sonnet-4-20250514': { bedrock: 'anthropic.claude-sonnet-4-20250514-v1:0', bedrockProfileOnly: true },
  'claude-sonnet-4-0': { bedrock: 'anthropic.claude-sonnet-4-20250514-v1:0', bedrockProfileOnly: true },
};

/** An agent's model that the configured provider cannot serve. Not retryable: the agent must change. */
export class UnsupportedModelError extends Error {
  constructor(
    readonly model: string,
    readonly provider: ModelProvider,
    reason: string,
  ) {
    super(`model ${JSON.stringify(model)} is not served by the ${provider} provider: ${reason}`);
    this.name = 'UnsupportedModelError';
  }
}

/**
 * The inference-profile prefix Bedrock uses for a region's geography: `us` (and `us-gov`), `eu`,
 * `apac`, ... A region outside these has no default: configure the prefix (or `global`).
 */
export function bedrockProfilePrefix(region: string): string {
  if (region.startsWith('us-gov-')) return 'us-gov';
  if (region.startsWith('us-')) return 'us';
  if (region.startsWith('eu-')) return 'eu';
  if (region.startsWith('ap-')) return 'apac';
  if (region.startsWith('ca-')) return 'ca';
  if (region.startsWith('sa-')) return 'sa';
  throw new Error(`no Bedrock inference-profile geography known for region ${region}: set CORRAL_BEDROCK_PROFILE (e.g. global)`);
}

export interface BedrockTarget {
  /** What Bedrock is called with (`/model/{id}/…`): the profile id, or the foundation-model id. */
  invokeId: string;
  /** The foundation-model id behind it (IAM: `foundation-model/<id>`). */
  foundationModel: string;
  /** The inference profile's id, when the call goes through one (IAM: `inference-profile/<id>`). */
  inferenceProfile?: string;
}

/**
 * The Bedrock call for a Claude id, through the inference profile of `profile` (a geography such
 * as `us`, or `global`) when the model needs one. `allowed` (the deployment's configured models,
 * the only ones its IAM grants) limits it further.
 */
export function bedrockTarget(model: string, opts: { profile: string; allowed?: readonly string[] }): BedrockTarget {
  const ids = MODEL_TABLE[model];
  if (!ids) {
    throw new UnsupportedModelError(model, 'bedrock', `not in Corral's model table (known: ${Object.keys(MODEL_TABLE).join(', ')})`);
  }
  if (opts.allowed && !opts.allowed.includes(model)) {
    throw new UnsupportedModelError(model, 'bedrock', `not among this deployment's configured models (${opts.allowed.join(', ')})`);
  }
  if (!ids.bedrockProfileOnly) return { invokeId: ids.bedrock, foundationModel: ids.bedrock };
  const inferenceProfile = `${opts.profile}.${ids.bedrock}`;
  return { invokeId: inferenceProfile, foundationModel: ids.bedrock, inferenceProfile };
}

/**
 * Can the provider serve `model`? Throws `UnsupportedModelError` when it cannot (the API answers
 * 400 at agent create with it); `allowed` is the deployment's configured models, when it has a list.
 */
export function checkModelServed(model: string, provider: ModelProvider, allowed?: readonly string[]): void {
  if (provider === 'bedrock') {
    bedrockTarget(model, { profile: 'global', allowed });
    return;
  }
  if (allowed && !allowed.includes(model)) {
    throw new UnsupportedModelError(model, provider, `not among this deployment's configured models (${allowed.join(', ')})`);
  }
}

/** `anthropic` | `bedrock` | `gateway` (any case); unset is the default. */
export function parseModelProvider(text: string | undefined): ModelProvider {
  if (text === undefined || text.trim() === '') return DEFAULT_MODEL_PROVIDER;
  const p = text.trim().toLowerCase();
  if (!(MODEL_PROVIDERS as readonly string[]).includes(p)) throw new Error(`expected one of ${MODEL_PROVIDERS.join(', ')}, not ${JSON.stringify(text)}`);
  return p as ModelProvider;
}
