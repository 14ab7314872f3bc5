/**
 * `npm run bench -- --only ttft --merge`: one suite's new figures replace that suite's in the
 * results file, the other suites' figures stay, and the headline and goals follow the merge.
 */
import { describe, expect, it } from 'vitest';
import { mergeResults, type BenchResults } from '../../bench/run.js';

const summary = (p50: number, p95: number) => ({ n: 10, min: p50, p50, p95, p99: p95, max: p95, mean: p50 });
const mode = (p50: number, p95: number) => ({
  ttft_ms: summary(p50, p95),
  ttft_needs_sandbox_ms: summary(p50, p95),
  ttft_no_sandbox_ms: summary(p50, p95),
  provisioning_ms: summary(p50, p95),
  sandboxes_provisioned: 1,
  model_ttft_ms: summary(500, 500),
  turn_ms: summary(p50, p95),
  samples_ms: [p50],
});
const scenario = (c95: number, d95: number, red95: number) => ({
  name: 'real',
  label: 'x',
  config: { name: 'real' as const, sessions: 10, warmup: 0, concurrency: 1, sandboxShare: 0.25, seed: 1 },
  coupled: mode(1000, c95),
  decoupled: mode(600, d95),
  p50_reduction_pct: 40,
  p95_reduction_pct: red95,
  p99_reduction_pct: red95,
});
const results = (at: string, ttft: ReturnType<typeof scenario> | undefined, withOverhead: boolean): BenchResults =>
  ({
    schema: 1,
    generated_at: at,
    mode: 'full',
    duration_s: 1,
    machine: { commit: at.slice(0, 4), load_per_suite: { ttft: [1, 2] } },
    settings: {},
    goals: [],
    suites: {
      ...(ttft ? { ttft: { real: ttft, simulated_fargate: ttft, isolation: 'bwrap', repository: { files: 1, bytes: 1 } } } : {}),
      ...(withOverhead ? { overhead: { harness_overhead_ms: summary(20, 50), accepted_to_model_request_ms: summary(70, 140), model_done_to_readable_ms: summary(16, 31) } } : {}),
    },
  }) as unknown as BenchResults;

describe('bench --merge', () => {
  it("replaces only the suites run, keeps the others, and recomputes the headline and the goals", () => {
    const previous = results('2026-01-01T00:00:00Z', scenario(5000, 2000, 60), true);
    const run = results('2026-02-02T00:00:00Z', scenario(9000, 800, 91.1), false);
    const merged = mergeResults(previous, run);
    expect(merged.suites.ttft?.real.p95_reduction_pct).toBe(91.1);
    expect(merged.suites.overhead?.harness_overhead_ms.p50).toBe(20);
    expect(merged.ttft_decoupled_p95_ms).toBe(800);
    expect(merged.overhead_p50_ms).toBe(20);
    expect(merged.goals.find((g) => g.goal.startsWith('Decoupled TTFT p95'))?.met).toBe(true);
    expect(merged.goals.some((g) => g.goal.startsWith('Harness overhead p50'))).toBe(true);
    expect(merged.generated_at).toBe(previous.generated_at);
    expect(merged.merged_suites?.ttft).toMatchObject({ generated_at: run.generated_at, load: [1, 2] });
  });
});
