import { relative } from 'node:path';
import { BaseSequencer, type TestSpecification } from 'vitest/node';

/**
 * Seconds the slowest files took in CI (`.ci/run`, vitest's per-file durations, 2 workers on 2
 * cores). Only their order is taken from here: a stale figure costs some wall time, never a test.
 */
export const CI_SECONDS: Record<string, number> = {
  'test/rehearsal/rehearsal.test.ts': 233,
  'test/faults/crash.test.ts': 164,
  'test/rehearsal/stream-tier.test.ts': 112,
  'test/rehearsal/egress.test.ts': 77,
  'test/faults/load.test.ts': 69,
  'test/e2e/credentials-canary.test.ts': 57,
  'test/bench/bench.test.ts': 49,
  'test/infra/stack.test.ts': 33,
  'test/e2e/restart.test.ts': 33,
  'test/faults/fuzz.test.ts': 33,
  'test/api/pages.test.ts': 31,
  'test/e2e/sandboxes.test.ts': 30,
  'test/console/console.test.ts': 27,
  'test/infra/stream-tier-bundle.test.ts': 21,
};

/**
 * The longest files first, within each project. CI starts from a fresh checkout, so vitest has no
 * durations of its own there and orders by file size: the deploy rehearsals are small files of
 * minutes each and started last, leaving one worker running a rehearsal alone at the end while
 * the other had nothing left. Taking the longest first (a file's duration from vitest's cache of
 * an earlier run when there is one, else {@link CI_SECONDS}) lets the many short files fill in
 * around them. Projects stay in vitest's order and each one's files stay together, which the
 * `infra` project needs: its workers are reused only while the next file queued is also its own.
 */
export class LongestFirst extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    const ordered = await super.sort(files);
    const root = this.ctx.config.root;
    const projectRank = new Map<string, number>();
    for (const spec of ordered) if (!projectRank.has(spec.project.name)) projectRank.set(spec.project.name, projectRank.size);
    const keyed = ordered.map((spec, index) => {
      const path = relative(root, spec.moduleId);
      const cached = this.ctx.cache.getFileTestResults(`${spec.project.name}:${path}`)?.duration;
      const ms = cached ?? (CI_SECONDS[path] === undefined ? undefined : CI_SECONDS[path] * 1000);
      return { spec, index, rank: projectRank.get(spec.project.name)!, ms };
    });
    keyed.sort((a, b) => {
      if (a.rank !== b.rank) return a.rank - b.rank;
      if (a.ms !== undefined && b.ms !== undefined && a.ms !== b.ms) return b.ms - a.ms;
      if ((a.ms === undefined) !== (b.ms === undefined)) return a.ms === undefined ? 1 : -1;
      return a.index - b.index;
    });
    return keyed.map((k) => k.spec);
  }
}
