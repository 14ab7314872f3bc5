/**
 * The benchmark suite end to end, in its smallest configuration (`--smoke`): it runs, and what it
 * writes has the documented shape and sane figures. No timing thresholds: speed goals are reported
 * by the benchmark itself (`docs/BENCHMARKS.md`), never asserted here.
 *
 * The peer suite runs only where its own package is installed (`npm ci --prefix bench/peers`, which
 * `npm run bench` does on demand and CI does not: it compiles better-sqlite3 for minutes); without
 * it the peer's checks are skipped with the reason printed, and every other suite still runs.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { peerPackageStatus } from '../../bench/lib/peer-package.js';
import { mergeResults, parseOptions, runBench, SUITES, writeResults, type BenchOptions, type BenchResults } from '../../bench/run.js';
import type { Summary } from '../../bench/lib/stats.js';

const peer = peerPackageStatus();
if (!peer.installed) console.warn(`bench smoke: the peer suite is skipped: ${peer.reason}`);

const ISSUE_KEYS = [
  'ttft_coupled_p50_ms',
  'ttft_coupled_p95_ms',
  'ttft_decoupled_p50_ms',
  'ttft_decoupled_p95_ms',
  'overhead_p50_ms',
  'overhead_p95_ms',
  'step_reads_10',
  'step_reads_10000',
  'concurrent_sessions',
  'steps_per_second',
  'harness_bundle_bytes',
] as const;
const PEER_KEYS = ['peer_turn_ratio_p50', 'peer_turn_ratio_p95'] as const;

function expectSummary(s: Summary, n?: number) {
  expect(s.n).toBeGreaterThan(0);
  if (n !== undefined) expect(s.n).toBe(n);
  for (const k of ['min', 'p50', 'p95', 'p99', 'max', 'mean'] as const) expect(Number.isFinite(s[k])).toBe(true);
  expect(s.min).toBeGreaterThanOrEqual(0);
  expect(s.p50).toBeLessThanOrEqual(s.p95);
  expect(s.p95).toBeLessThanOrEqual(s.p99);
  expect(s.p99).toBeLessThanOrEqual(s.max + 0.01);
  expect(s.min).toBeLessThanOrEqual(s.p50 + 0.01);
}

describe('npm run bench -- --smoke', () => {
  let dir: string;
  let options: BenchOptions;
  let results: BenchResults;
  let written: BenchResults;

  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'corral-bench-test-'));
    const only = SUITES.filter((s) => s !== 'peer' || peer.installed);
    const parsed = parseOptions(['--smoke', '--quiet', '--only', only.join(','), '--out', path.join(dir, 'results'), '--doc', path.join(dir, 'docs', 'BENCHMARKS.md')]);
    if (parsed === 'help') throw new Error('unexpected help');
    options = parsed;
    results = await runBench(options);
    writeResults(results, options);
    written = JSON.parse(fs.readFileSync(path.join(dir, 'results', 'latest.json'), 'utf8')) as BenchResults;
  }, 300_000);

  afterAll(() => {
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  it('parses its options and refuses unknown ones', () => {
    const full = parseOptions([]);
    expect(full).toMatchObject({ mode: 'full', brains: 500, modelLatencyMs: 500, fargateScale: 1 });
    expect(parseOptions(['--quick'])).toMatchObject({ mode: 'quick', fargateScale: 0.1 });
    expect(parseOptions(['--help'])).toBe('help');
    expect(() => parseOptions(['--only', 'nope'])).toThrow(/unknown suite/);
    expect(() => parseOptions(['--model-latency-ms', '-1'])).toThrow(/model-latency-ms/);
    expect(() => parseOptions(['--bogus'])).toThrow();
    expect(parseOptions(['--only', 'peer', '--merge'])).toMatchObject({ only: ['peer'], merge: true });
    expect(full).toMatchObject({ merge: false, only: expect.arrayContaining(['peer']) });
  });

  it('writes latest.json with the issue\'s keys, as numbers', () => {
    expect(written.schema).toBe(1);
    expect(written.mode).toBe('smoke');
    for (const key of [...ISSUE_KEYS, ...(peer.installed ? PEER_KEYS : [])]) {
      expect(typeof written[key], key).toBe('number');
      expect(Number.isFinite(written[key] as number), key).toBe(true);
      expect(written[key] as number, key).toBeGreaterThan(0);
    }
    expect(written.machine).toMatchObject({ cores: expect.any(Number), node: process.version });
    expect(Array.isArray(written.machine.load_at_start)).toBe(true);
    // A suite that did not run leaves its keys null, not absent or invented.
    if (!peer.installed) for (const key of PEER_KEYS) expect(written[key], key).toBeNull();
    expect(written.goals.length).toBeGreaterThanOrEqual(8);
    for (const g of written.goals) expect(g).toEqual({ goal: expect.any(String), target: expect.any(String), actual: expect.any(String), met: expect.any(Boolean) });
  });

  it('time to first token: both designs measured, never below the model, eager provisions for every session and lazy only for those that need it', () => {
    const ttft = written.suites.ttft!;
    const latency = options.modelLatencyMs;
    for (const scenario of [ttft.real, ttft.simulated_fargate]) {
      for (const design of [scenario.coupled, scenario.decoupled]) {
        expectSummary(design.ttft_ms, scenario.config.sessions);
        expect(design.ttft_ms.min).toBeGreaterThanOrEqual(latency); // the model's own latency is the floor
        expect(design.samples_ms).toHaveLength(scenario.config.sessions);
        expectSummary(design.model_ttft_ms);
      }
      const needing = scenario.decoupled.ttft_needs_sandbox_ms.n;
      expect(needing).toBeGreaterThan(0);
      expect(scenario.decoupled.ttft_no_sandbox_ms.n).toBeGreaterThan(0);
      expect(scenario.coupled.sandboxes_provisioned).toBe(scenario.config.sessions);
      expect(scenario.decoupled.sandboxes_provisioned).toBe(needing);
      expect(Number.isFinite(scenario.p50_reduction_pct)).toBe(true);
    }
    expect(ttft.simulated_fargate.label).toMatch(/SIMULATED/);
    expect(ttft.simulated_fargate.config.delay).toMatchObject({ medianMs: 30_000, p95Ms: 60_000 });
    expect(['bwrap', 'none']).toContain(ttft.isolation);
    expect(written.ttft_coupled_p50_ms).toBe(ttft.real.coupled.ttft_ms.p50);
  });

  it('harness overhead: every step and turn measured, overhead within the step', () => {
    const ov = written.suites.overhead!;
    expect(ov.turns).toBe(ov.config.sessions * ov.config.turnsPerSession);
    expect(ov.steps).toBeGreaterThanOrEqual(ov.turns); // a text turn: its model call (which starts the turn) at least
    expectSummary(ov.harness_overhead_ms, ov.steps);
    expectSummary(ov.step_duration_ms, ov.steps);
    expect(ov.harness_overhead_ms.max).toBeLessThanOrEqual(ov.step_duration_ms.max);
    expectSummary(ov.accepted_to_model_request_ms, ov.turns);
    expectSummary(ov.model_done_to_readable_ms, ov.turns);
    expect(ov.model_ttft_ms.min).toBeGreaterThanOrEqual(ov.config.modelLatencyMs);
    // a text turn is one step: start_turn, which makes the turn's model call
    expect(Object.keys(ov.harness_overhead_by_action_ms)).toEqual(expect.arrayContaining(['start_turn']));
    expect(written.overhead_p50_ms).toBe(ov.harness_overhead_ms.p50);
    // the process's memory after every measured turn, and its CPU per step (what sizes the harness)
    expectSummary(ov.process.rss_mb, ov.turns);
    expectSummary(ov.process.heap_used_mb, ov.turns);
    expect(ov.process.heap_used_peak_mb).toBeCloseTo(ov.process.heap_used_mb.max, 1);
    expect(ov.process.heap_used_peak_mb).toBeLessThan(ov.process.rss_peak_mb);
    expect(ov.process.cpu_ms_per_step).toBeGreaterThan(0);
  });

  it('log reads: 10, 1,000 and 10,000 events, the same calls at every size', () => {
    const lr = written.suites.log_reads!;
    expect(lr.sizes.map((s) => s.events)).toEqual([10, 1_000, 10_000]);
    for (const s of lr.sizes) {
      expect(s.reads_per_turn).toBeGreaterThan(0);
      expect(s.log_reads_per_turn).toBeGreaterThan(0);
      expect(s.reads_per_step).toBeCloseTo(s.reads_per_turn / s.steps_per_turn, 1);
      expect(s.ops).toContain('model');
      expect(s.calls_before_model_request).toBeGreaterThan(0);
      expect(s.round_trips_before_model_request).toBeGreaterThan(0);
      expect(s.round_trips_before_model_request).toBeLessThanOrEqual(s.calls_before_model_request);
      expect(s.op_rounds).toHaveLength(s.ops.length);
    }
    expect(lr.flat).toBe(true);
    expect(written.step_reads_10).toBe(written.step_reads_10000);
    // Items read are bounded by the view, not the log.
    expect(lr.sizes[2].log_items_read_per_turn).toBeLessThan(2_000);
  });

  it('many brains: every session finished every turn', () => {
    const mb = written.suites.many_brains!;
    expect(mb.concurrent_sessions).toBe(options.brains);
    expect(mb.sessions_completed).toBe(mb.concurrent_sessions);
    expect(mb.turns_per_session_min).toBe(mb.config.turns);
    expect(mb.steps).toBeGreaterThanOrEqual(mb.concurrent_sessions * mb.config.turns);
    expect(mb.cpu_ms_per_turn).toBeGreaterThan(0);
    expect(mb.peak_model_calls_in_flight).toBeGreaterThan(0);
    expect(mb.steps_per_second).toBeGreaterThan(0);
    expectSummary(mb.harness_overhead_ms, mb.steps);
  });

  it('bundles: sizes of every entry that exists, and a cold import of each', () => {
    const bu = written.suites.bundles!;
    const harness = bu.bundles.find((b) => b.name === 'harness-step')!;
    expect(harness.exists).toBe(true);
    expect(harness.deployed).toBe(true);
    expect(written.harness_bundle_bytes).toBe(harness.bytes);
    for (const b of bu.bundles) {
      if (!b.exists) {
        expect(b.note).toMatch(/does not exist/);
        continue;
      }
      expect(b.bytes!).toBeGreaterThan(10_000);
      expect(b.gzip_bytes!).toBeLessThan(b.bytes!);
      expect(b.import_error, `${b.name}: ${b.import_error}`).toBeUndefined();
      expectSummary(b.import_ms!);
      expectSummary(b.import_cpu_ms!);
      // resident memory and heap after the import: what the capacity model sizes the harness from
      expectSummary(b.rss_after_import_mb!);
      expect(b.heap_after_import_mb!.max).toBeLessThan(b.rss_after_import_mb!.max);
      expect(b.top_inputs!.length).toBeGreaterThan(0);
    }
  });

  it.skipIf(!peer.installed)('peer: both Corral and the LangGraph.js agent ran every turn, the bash tool\'s output in each final answer, two model calls a turn', () => {
    const pe = written.suites.peer!;
    const turns = pe.config.sessions * (pe.config.warmupTurns + pe.config.turnsPerSession);
    for (const side of [pe.corral, pe.peer]) {
      expect(side.checks.first_failure).toBeUndefined();
      expect(side.checks).toEqual({ turns, answered_with_tool_output: turns, tool_ran: turns, model_calls_per_turn: { min: 2, max: 2 } });
      expectSummary(side.turn_ms, pe.config.sessions * pe.config.turnsPerSession);
      expect(side.samples_ms).toHaveLength(pe.config.sessions * pe.config.turnsPerSession);
      expectSummary(side.tool_ms, pe.config.sessions * pe.config.turnsPerSession);
    }
    expect(['bwrap', 'none']).toContain(pe.corral.isolation);
    expect(pe.corral.events_per_turn).toBeGreaterThanOrEqual(6); // user.message, running, tool use and result, message, idle at least
    expect(pe.corral.steps_per_turn).toBeGreaterThanOrEqual(2);
    // The checkpointer wrote to its SQLite file on every turn.
    expect(pe.peer.checkpoints_per_turn).toBeGreaterThanOrEqual(2);
    expect(pe.peer.sqlite.journal_mode).toBe('wal');
    expect(pe.peer.packages['better-sqlite3']).toMatch(/^12\./);
    expect(written.peer_turn_ratio_p50).toBe(pe.ratio_p50);
    expect(pe.ratio_p50).toBeCloseTo(pe.corral.turn_ms.p50 / pe.peer.turn_ms.p50, 1);
    expect(written.goals.filter((g) => g.goal.includes('LangGraph'))).toHaveLength(2);
  });

  it('--merge keeps the other suites of the previous results and replaces those of the new run', () => {
    // The later run measured one suite (the overhead one: it runs with or without the peer installed).
    const ov = structuredClone(written.suites.overhead!);
    const later: BenchResults = {
      ...structuredClone(written),
      generated_at: '2030-01-01T00:00:00.000Z',
      suites: { overhead: { ...ov, harness_overhead_ms: { ...ov.harness_overhead_ms, p50: 7, p95: 8 } } },
    };
    const merged = mergeResults(written, later);
    expect(merged.suites.ttft).toEqual(written.suites.ttft);
    expect(merged.suites.bundles).toEqual(written.suites.bundles);
    expect(merged.suites.peer).toEqual(written.suites.peer);
    expect(merged.suites.overhead!.harness_overhead_ms.p50).toBe(7);
    expect(merged.overhead_p50_ms).toBe(7);
    expect(merged.overhead_p95_ms).toBe(8);
    expect(merged.ttft_coupled_p50_ms).toBe(written.ttft_coupled_p50_ms);
    expect(merged.peer_turn_ratio_p50).toBe(written.peer_turn_ratio_p50);
    expect(merged.generated_at).toBe(written.generated_at);
    expect(merged.merged).toEqual([expect.objectContaining({ suites: ['overhead'], generated_at: '2030-01-01T00:00:00.000Z' })]);
    expect(merged.goals.length).toBe(written.goals.length);
    expect(merged.goals.find((g) => g.goal.startsWith('Harness overhead p50'))).toMatchObject({ actual: '7 ms', met: true });
    expect(() => mergeResults(written, { ...later, mode: 'full' })).toThrow(/same profile/);
  });

  it('writes the plots and the Markdown report', () => {
    for (const name of ['ttft-real.svg', 'ttft-fargate.svg', 'overhead.svg', ...(peer.installed ? ['peer.svg'] : [])]) {
      const svg = fs.readFileSync(path.join(dir, 'results', name), 'utf8');
      expect(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"')).toBe(true);
      expect(svg.trimEnd().endsWith('</svg>')).toBe(true);
      expect(svg).toMatch(/<path d="M[\d.]+,[\d.]+ L/);
      expect(svg).not.toMatch(/NaN|undefined|Infinity/);
    }
    const md = fs.readFileSync(path.join(dir, 'docs', 'BENCHMARKS.md'), 'utf8');
    for (const heading of ['## Machine and load', '## Goals', '## 1. Time to first token', '## 2. Harness overhead', '## 3. Step cost', '## 4. Many brains', '## 5. Bundles']) {
      expect(md).toContain(heading);
    }
    if (peer.installed) expect(md).toContain('## 6. A bash turn against a durable peer');
    else expect(md).not.toContain('## 6.');
    expect(md).toContain('](../results/ttft-real.svg)');
    expect(md).toMatch(/SIMULATED/);
    expect(md).not.toMatch(/NaN|undefined/);
  });
});
