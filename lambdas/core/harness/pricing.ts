/**
 * List prices, for session budgets (`budget.max_list_cost`), in US dollars per million tokens.
 * Matched by model id prefix, longest first. A model with no list price here cannot be
 * measured against a budget, and a session with a budget stops before calling it, as the hosted
 * service does (`budget_reached`). Deployments can override the table (`CORRAL_MODEL_PRICES`).
 */
export interface ModelPrice {
  input: number;
  output: number;
  cacheRead: number;
  cacheWrite: number;
}

export const DEFAULT_PRICES: Record<string, ModelPrice> = {
  'claude-opus-4-5': { input: 5, output: 25, cacheRead: 0.5, cacheWrite: 6.25 },
  'claude-opus-4-6': { input: 5, output: 25, cacheRead: 0.5, cacheWrite: 6.25 },
  'claude-opus-4': { input: 15, output: 75, cacheRead: 1.5, cacheWrite: 18.75 },
  'claude-sonnet-4': { input: 3, output: 15, cacheRead: 0.3, cacheWrite: 3.75 },
  'claude-haiku-4': { input: 1, output: 5, cacheRead: 0.1, cacheWrite: 1.25 },
};

export function priceOf(model: string, table: Record<string, ModelPrice> = DEFAULT_PRICES): ModelPrice | null {
  const match = Object.keys(table)
    .filter((prefix) => model.startsWith(prefix))
    .sort((a, b) => b.length - a.length)[0];
  return match ? table[match] : null;
}

export interface TokenUsage {
  input_tokens: number;
  output_tokens: number;
  cache_read_input_tokens: number;
  cache_creation_input_tokens: number;
}

/** List cost in US cents (fractional), or null when the model has no list price. */
export function listCostCents(model: string, usage: TokenUsage, table?: Record<string, ModelPrice>): number | null {
  const p = priceOf(model, table);
  if (!p) return null;
  const dollars =
    (usage.input_tokens * p.input +
      usage.output_tokens * p.output +
      usage.cache_read_input_tokens * p.cacheRead +
      usage.cache_creation_input_tokens * p.cacheWrite) /
    1_000_000;
  return dollars * 100;
}

/** Parse a `CORRAL_MODEL_PRICES` JSON object of prefix -> {input, output, cacheRead, cacheWrite}. */
export function parsePrices(json: string | undefined): Record<string, ModelPrice> {
  if (!json) return DEFAULT_PRICES;
  const parsed = JSON.parse(json) as Record<string, Partial<ModelPrice>>;
  const out: Record<string, ModelPrice> = {};
  for (const [prefix, p] of Object.entries(parsed)) {
    if (typeof p?.input !== 'number' || typeof p?.output !== 'number') {
      throw new Error(`price for ${prefix}: input and output (dollars per million tokens) are required`);
    }
    out[prefix] = { input: p.input, output: p.output, cacheRead: p.cacheRead ?? p.input / 10, cacheWrite: p.cacheWrite ?? p.input * 1.25 };
  }
  return out;
}
