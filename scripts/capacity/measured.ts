/**
 * The per-step storage calls and harness time the capacity model multiplies, taken from the
 * benchmark's results (`bench/results/latest.json`: §3 "step cost against session length" and
 * §2 "harness overhead" of docs/BENCHMARKS.md), or, when a field is missing, from
 * {@link FALLBACK}, a copy of the run documented in docs/BENCHMARKS.md.
 */

export interface Measured {
  /** Steps of the benchmark's measured turn (a text-only turn: one model call). */
  readonly stepsPerMeasuredTurn: number;
  /** State-table reads (GetItem/Query) per step, each 1 RRU (strongly consistent, small items). */
  readonly stateReadsPerStep: number;
  /** Event-log queries per step. */
  readonly logQueriesPerStep: number;
  /** Read units of the log queries per step: the view's bytes / 4 KB, at least one per query. */
  readonly logReadUnitsPerStep: number;
  readonly stateWritesPerStep: number;
  readonly eventWritesPerStep: number;
  /** Harness time per step besides waiting on the model or a tool, in seconds. */
  readonly harnessOverheadSecondsPerStep: number;
  /** Bytes of one model request (the view, bounded by its budget). */
  readonly modelRequestBytes: number;
  /**
   * The harness's memory and CPU (issue 20 item 5), where the benchmark recorded them: resident
   * memory after importing the harness bundle in a fresh Node (§5, bundles), and the heap the
   * benchmark process (API, harness, store and model fixture together: an upper bound for the
   * harness) reached over the overhead turns (§2). CPU per step at a full vCPU: at most the
   * step's `HarnessOverhead` (one thread: the harness's CPU outside the model and tool calls fits
   * in that wall time).
   */
  readonly harnessMemory?: { rssAfterImportMb: number; processHeapPeakMb: number };
  /** Where each number came from. */
  readonly source: string;
}

/** docs/BENCHMARKS.md §2 and §3 of the run of 2026-11-23 (commit 6b80988), at 10,000 events. */
export const FALLBACK: Measured = {
  stepsPerMeasuredTurn: 2,
  stateReadsPerStep: 4,
  logQueriesPerStep: 2.5,
  logReadUnitsPerStep: 6, // max(5 queries, ceil(46,272 B / 4 KB) = 12) / 2 steps
  stateWritesPerStep: 3.5,
  eventWritesPerStep: 2,
  harnessOverheadSecondsPerStep: 0.02306,
  modelRequestBytes: 46272,
  // bench run of 2026-11-29 (`--only overhead,bundles`, full profile, commit eea4789 with this
  // change): harness-step bundle resident after import p50 68.3 MB; the benchmark process's heap
  // peak over 180 overhead turns 82.5 MB. Its timings were taken under a load average of 20 on 2
  // cores and were not kept; memory does not depend on the load.
  harnessMemory: { rssAfterImportMb: 68.3, processHeapPeakMb: 82.45 },
  source: 'docs/BENCHMARKS.md §2-3 (run of 2026-11-23) copied into scripts/capacity/measured.ts',
};

/** Where {@link FALLBACK.harnessMemory} comes from, for the report when latest.json lacks it. */
export const FALLBACK_MEMORY_SOURCE = 'harness memory from the bench run of 2026-11-29 copied into scripts/capacity/measured.ts';

interface LogReadsSize {
  events: number;
  steps_per_turn: number;
  ops: string[];
  request_bytes?: number;
}

/** Counts from a parsed latest.json; falls back to {@link FALLBACK} for what it lacks. */
export function measuredFrom(latest: unknown, file = 'bench/results/latest.json'): Measured {
  const l = latest as {
    generated_at?: string;
    suites?: {
      log_reads?: { sizes?: LogReadsSize[] };
      overhead?: { harness_overhead_ms?: { mean?: number }; process?: { heap_used_peak_mb?: number } };
      bundles?: { bundles?: Array<{ name: string; rss_after_import_mb?: { p50?: number } }> };
    };
  };
  const sizes = l?.suites?.log_reads?.sizes;
  if (!Array.isArray(sizes) || sizes.length === 0) return FALLBACK;
  const largest = [...sizes].sort((a, b) => b.events - a.events)[0];
  const steps = largest.steps_per_turn;
  if (!(steps > 0) || !Array.isArray(largest.ops)) return FALLBACK;
  const count = (re: RegExp) => largest.ops.filter((op) => re.test(op)).length;
  const logQueries = count(/^(Query|GetItem|BatchGetItem):events$/);
  const requestBytes = largest.request_bytes ?? FALLBACK.modelRequestBytes;
  const overheadMs = l.suites?.overhead?.harness_overhead_ms?.mean;
  const importRss = l.suites?.bundles?.bundles?.find((b) => b.name === 'harness-step')?.rss_after_import_mb?.p50;
  const heapPeak = l.suites?.overhead?.process?.heap_used_peak_mb;
  return {
    harnessMemory: typeof importRss === 'number' && typeof heapPeak === 'number' ? { rssAfterImportMb: importRss, processHeapPeakMb: heapPeak } : FALLBACK.harnessMemory,
    stepsPerMeasuredTurn: steps,
    stateReadsPerStep: count(/^(Query|GetItem|BatchGetItem|Scan):state$/) / steps,
    logQueriesPerStep: logQueries / steps,
    logReadUnitsPerStep: Math.max(logQueries, Math.ceil(requestBytes / 4096)) / steps,
    stateWritesPerStep: count(/^(PutItem|UpdateItem|DeleteItem|BatchWriteItem|TransactWriteItems):state$/) / steps,
    eventWritesPerStep: count(/^(PutItem|UpdateItem|DeleteItem|BatchWriteItem|TransactWriteItems):events$/) / steps,
    harnessOverheadSecondsPerStep: typeof overheadMs === 'number' ? overheadMs / 1000 : FALLBACK.harnessOverheadSecondsPerStep,
    modelRequestBytes: requestBytes,
    source: `${file} (generated ${l.generated_at ?? 'at an unknown time'}): log_reads at ${largest.events} events, overhead.harness_overhead_ms.mean${typeof importRss === 'number' && typeof heapPeak === 'number' ? ', bundles harness-step rss_after_import_mb.p50, overhead.process.heap_used_peak_mb' : `; ${FALLBACK_MEMORY_SOURCE}`}`,
  };
}
