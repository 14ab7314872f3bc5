/**
 * `npm run bench -- --only <suite> --merge`: one suite rerun over an existing latest.json keeps
 * the other suites' results and recomputes the headline figures and goals from the merged suites.
 */
import { describe, expect, it } from 'vitest';
import { mergeResults, type BenchResults } from '../../bench/run.js';
import type { Summary } from '../../bench/lib/stats.js';

const summary = (p50: number): Summary => ({ n: 3, min: p50, p50, p95: p50, p99: p50, max: p50, mean: p50 });

function results(at: string, suites: BenchResults['suites'], load: Record<string, number[]>): BenchResults {
  return { schema: 1, generated_at: at, mode: 'full', duration_s: 1, machine: { load_per_suite: load }, settings: {}, goals: [], suites };
}

const bundles = (bytes: number, importMs: number): NonNullable<BenchResults['suites']['bundles']> => ({
  esbuild: '0.28.2',
  node: process.version,
  empty_process_ms: summary(50),
  bundles: [{ name: 'harness-step', entry: 'lambdas/harness-step/index.ts', exists: true, deployed: true, bytes, import_ms: summary(importMs) }],
});

describe('mergeResults', () => {
  const logReads = {
    sizes: [
      { events: 10, reads_per_step: 3, log_reads_per_step: 1 },
      { events: 10_000, reads_per_step: 3, log_reads_per_step: 1 },
    ],
    flat: true,
  } as unknown as NonNullable<BenchResults['suites']['log_reads']>;
  const previous = results('2026-01-01T00:00:00.000Z', { log_reads: logReads, bundles: bundles(1_800_000, 270) }, { reads: [1, 1], bundles: [2, 2] });
  // As runBench leaves it: a key for every suite, undefined for those that did not run.
  const fresh = results('2026-01-02T00:00:00.000Z', { ttft: undefined, log_reads: undefined, bundles: bundles(900_000, 140) }, { bundles: [3, 3] });
  const merged = mergeResults(previous, fresh);

  it('keeps the suites not rerun and takes the rerun ones from the new run', () => {
    expect(merged.suites.log_reads).toBe(logReads);
    expect(merged.suites.bundles).toBe(fresh.suites.bundles);
    expect(merged.machine.load_per_suite).toEqual({ reads: [1, 1], bundles: [3, 3] });
    expect(merged.merged).toEqual([expect.objectContaining({ suites: ['bundles'], generated_at: '2026-01-02T00:00:00.000Z' })]);
    expect(merged.generated_at).toBe('2026-01-01T00:00:00.000Z');
  });

  it('recomputes the headline figures and the goals from the merged suites', () => {
    expect(merged.harness_bundle_bytes).toBe(900_000);
    expect(merged.harness_import_p50_ms).toBe(140);
    expect(merged.step_reads_10000).toBe(3);
    const goal = (prefix: string) => merged.goals.find((g) => g.goal.startsWith(prefix));
    expect(goal('Bundle of harness-step')).toMatchObject({ actual: '900,000 bytes', met: true });
    expect(goal('Import of the harness-step bundle')).toMatchObject({ actual: '140 ms', met: true });
    expect(goal('Reads per step')).toMatchObject({ met: true });
  });
});
