/**
 * Smoke test a Corral deployment (or `npm start`) through the official SDK:
 *
 *   npm run smoke -- --url <ApiUrl> --key <api key> [--only name,...] [--model id] [--timeout-scale n] [--json]
 *
 * Runs the scenarios of `infra/rehearsal/scenarios.ts` one after another, prints a table
 * (scenario, pass/fail, seconds, detail) and the p50/p95 of time to first token, and exits 1 when
 * any scenario failed (2 for bad arguments). `--key` may be left out when `CORRAL_API_KEY` is set.
 */
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { runScenarios, SCENARIOS, selectScenarios, timeToFirstTokenSummary, type ScenarioResult } from '../infra/rehearsal/scenarios.js';

export interface SmokeArgs {
  url: string;
  key: string;
  only?: string[];
  model?: string;
  timeoutScale?: number;
  json: boolean;
}

export class UsageError extends Error {}

const USAGE = `usage: npm run smoke -- --url <ApiUrl> --key <api key> [--only name,...] [--model id] [--timeout-scale n] [--json]

scenarios:
${SCENARIOS.map((s) => `  ${s.name.padEnd(18)} ${s.proves}`).join('\n')}`;

/** Parse and check the arguments; throws UsageError with a message that says what is wrong. */
export function parseArgs(argv: string[], env: Record<string, string | undefined> = process.env): SmokeArgs | 'help' {
  const values = new Map<string, string>();
  let json = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--help' || a === '-h') return 'help';
    if (a === '--json') {
      json = true;
      continue;
    }
    const m = /^--(url|key|only|model|timeout-scale)(?:=(.*))?$/.exec(a);
    if (!m) throw new UsageError(`unknown argument ${a}`);
    const value = m[2] ?? argv[++i];
    if (value === undefined || (m[2] === undefined && value.startsWith('--'))) throw new UsageError(`--${m[1]} needs a value`);
    if (values.has(m[1])) throw new UsageError(`--${m[1]} given twice`);
    values.set(m[1], value);
  }
  const url = values.get('url');
  if (!url) throw new UsageError('--url is required (the ApiUrl output of the stack, or http://127.0.0.1:4000)');
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new UsageError(`--url: not a URL: ${url}`);
  }
  if (parsed.protocol !== 'https:' && parsed.protocol !== 'http:') throw new UsageError(`--url: must be http(s), not ${parsed.protocol}`);
  const key = values.get('key') ?? env.CORRAL_API_KEY;
  if (!key) throw new UsageError('--key is required (or set CORRAL_API_KEY)');
  const only = values.get('only')?.split(',').map((s) => s.trim()).filter(Boolean);
  if (values.has('only') && !only?.length) throw new UsageError('--only needs at least one scenario name');
  try {
    selectScenarios(only);
  } catch (err) {
    throw new UsageError(`--only: ${(err as Error).message}`);
  }
  const scaleRaw = values.get('timeout-scale');
  const timeoutScale = scaleRaw === undefined ? undefined : Number(scaleRaw);
  if (timeoutScale !== undefined && !(Number.isFinite(timeoutScale) && timeoutScale > 0)) {
    throw new UsageError(`--timeout-scale: must be a positive number, not ${scaleRaw}`);
  }
  const model = values.get('model');
  if (model !== undefined && !model.trim()) throw new UsageError('--model: must not be empty');
  return { url: url.replace(/\/+$/, ''), key, only, model, timeoutScale, json };
}

/** The table `npm run smoke` prints. */
export function formatTable(results: ScenarioResult[]): string {
  const rows = results.map((r) => [r.name, r.ok ? 'pass' : 'FAIL', (r.durationMs / 1000).toFixed(1), r.detail]);
  const head = ['scenario', 'result', 'seconds', 'detail'];
  const width = [0, 1, 2].map((i) => Math.max(head[i].length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) => cells.map((c, i) => (i < 3 ? c.padEnd(width[i]) : c)).join('  ').trimEnd();
  const ttft = timeToFirstTokenSummary(results);
  const summary = ttft.count
    ? `time to first token: p50 ${ttft.p50} ms, p95 ${ttft.p95} ms (${ttft.count} model requests)`
    : 'time to first token: no model request reported one';
  const failed = results.filter((r) => !r.ok).length;
  return [line(head), ...rows.map(line), '', summary, failed ? `${failed} of ${results.length} scenarios failed` : `all ${results.length} scenarios passed`].join('\n');
}

async function main() {
  let args: SmokeArgs | 'help';
  try {
    args = parseArgs(process.argv.slice(2));
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    console.error(`smoke: ${err.message}\n\n${USAGE}`);
    process.exit(2);
  }
  if (args === 'help') {
    console.log(USAGE);
    return;
  }
  const a = args;
  const results = await runScenarios({
    baseURL: a.url,
    apiKey: a.key,
    only: a.only,
    model: a.model,
    timeoutScale: a.timeoutScale,
    onResult: (r) => {
      if (!a.json) console.error(`${r.ok ? 'pass' : 'FAIL'}  ${r.name} (${(r.durationMs / 1000).toFixed(1)} s)`);
    },
  });
  if (a.json) {
    console.log(JSON.stringify({ ok: results.every((r) => r.ok), results, timeToFirstTokenMs: timeToFirstTokenSummary(results) }, null, 2));
  } else {
    console.log(`\n${formatTable(results)}`);
  }
  process.exitCode = results.every((r) => r.ok) ? 0 : 1;
}

if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  main().catch((err) => {
    console.error(`smoke: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  });
}
