/**
 * The agent's model configuration (`BetaManagedAgentsModelConfig`) as Messages API request
 * fields. Every field the agent stores reaches every model request of its sessions (the answer's
 * and the summary's, so that a pinned inference geography holds for all of them):
 *
 *   effort         -> `output_config.effort`
 *   speed          -> `speed`, with the `fast-mode-2026-02-01` beta (some models want it for any value)
 *   inference_geo  -> `inference_geo`
 *   (thinking)     -> `thinking: {type: "adaptive"}` on models that think adaptively: the agent
 *                     types have no thinking switch; effort is how hard the model thinks.
 */

export const EFFORTS = ['low', 'medium', 'high', 'xhigh', 'max'] as const;
export type Effort = (typeof EFFORTS)[number];

/**
 * The inference geographies the Messages API serves (`"global"`, the default, and `"us"`). Any
 * other value is refused when the agent is saved, rather than failing every model call later.
 */
export const INFERENCE_GEOS = ['global', 'us'] as const;

/** The beta that `speed` needs on the models that have fast mode. */
export const FAST_MODE_BETA = 'fast-mode-2026-02-01';

/** Model options of a Messages API request, named as the request names them. */
export interface ModelOptions {
  output_config?: { effort: Effort };
  speed?: 'standard' | 'fast';
  inference_geo?: string;
  thinking?: { type: 'adaptive' };
  /** `anthropic-beta` values the request needs. */
  betas?: string[];
}

/**
 * Models released before adaptive thinking (Claude 3 and 4.x up to 4.5): they refuse
 * `thinking: {type: "adaptive"}`, so they are called without `thinking` (their default: none).
 * The set is closed; every later model thinks adaptively, and some (the 5 family) only so.
 */
const BEFORE_ADAPTIVE_THINKING = /^claude-(?:3|(?:opus|sonnet|haiku)-4(?:-[015])?(?:-\d{8})?$|(?:opus|sonnet|haiku)-4-[015]-)/;

export function thinksAdaptively(modelId: string): boolean {
  return !BEFORE_ADAPTIVE_THINKING.test(modelId);
}

/** An agent's model configuration, as stored (`Agent['model']`; not imported: the API's schemas import this module). */
export interface AgentModel {
  id: string;
  effort?: { type: string };
  speed?: 'standard' | 'fast';
  inference_geo?: string;
}

/** The request fields for an agent's model configuration. Pure. */
export function modelOptions(model: AgentModel, opts: { thinking?: boolean } = {}): ModelOptions {
  const out: ModelOptions = {};
  const betas: string[] = [];
  if (model.effort) out.output_config = { effort: model.effort.type as Effort };
  if (model.speed) {
    out.speed = model.speed;
    betas.push(FAST_MODE_BETA);
  }
  if (model.inference_geo) out.inference_geo = model.inference_geo;
  if ((opts.thinking ?? true) && thinksAdaptively(model.id)) out.thinking = { type: 'adaptive' };
  if (betas.length) out.betas = betas;
  return out;
}
