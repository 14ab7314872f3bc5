import { availableParallelism } from 'node:os';
import { configDefaults, defineConfig } from 'vitest/config';
import { LongestFirst } from './test/sequencer.js';

/**
 * The suite in four vitest projects, chosen by globs over the test tree as it is (files are not
 * moved to fit them). `npm test` runs all four; `npm run test:<project>` runs one.
 *
 * - `unit`: pure code and small modules in-process, the under-30-seconds loop. A unit file starts
 *   no server (HTTP or socket), no dynalite, no sandbox and no child process. The rehearsal's
 *   template and IAM tests are unit: they read one synthesized template, cached in the temp dir
 *   under a hash of infra/ (test/rehearsal/synth.ts), so only the first run after an infra change
 *   pays for a synthesis. test/infra/ synthesizes a stack per case (~2 CPU-minutes in all), so
 *   it is not unit despite starting nothing.
 * - `infra`: the test/infra/ files that only synthesize the stack in-process (no server, no child
 *   process, no environment change, every spy restored). They share their workers' module cache
 *   (`isolate: false`): the first synthesis in a fresh process costs ~7 s of loading aws-cdk-lib
 *   and warming it up, a later one 1-2 s, so paying that once per worker rather than once per
 *   file halves the CPU these files take. A file that starts anything or changes global state
 *   belongs in `integration`, which isolates each file.
 * - `faults`: the fault suite (crashes, races, deadlines, fuzz, load) and the other long runs
 *   (the deploy rehearsal, the benchmark's smoke run).
 * - `integration`: everything else — real runtimes on loopback, dynalite, sandboxes, servers.
 *
 * `test/unit/projects.test.ts` fails if a test file is in no project or in two, so a new file
 * that fits none of these globs is noticed. Keep the globs explicit: a new unit file goes under
 * `test/unit/` or `test/core/`, or is named here.
 */
export const UNIT = [
  'test/unit/**/*.test.ts',
  'test/core/**/*.test.ts',
  'test/adapters/memory-queue.test.ts',
  'test/adapters/sqs-queue.test.ts',
  'test/cli/sse.test.ts',
  'test/credential-proxy/lambda.test.ts',
  'test/harness-step/metrics.test.ts',
  'test/rehearsal/iam.test.ts',
  'test/rehearsal/template.test.ts',
  'test/vault/secret-stores.test.ts',
];

export const INFRA = [
  'test/infra/blob-bucket.test.ts',
  'test/infra/capacity-template.test.ts',
  'test/infra/config-contract.test.ts',
  'test/infra/credential-proxy.test.ts',
  'test/infra/model-provider.test.ts',
  'test/infra/oidc-parameter.test.ts',
  'test/infra/proxy-service-secrets.test.ts',
  'test/infra/proxy-service.test.ts',
  'test/infra/sandbox-boundary.test.ts',
  'test/infra/secret-readers.test.ts',
  'test/infra/stack.test.ts',
  'test/infra/stream-tier.test.ts',
  'test/infra/wake-visibility.test.ts',
];

export const FAULTS = ['test/faults/**/*.test.ts', 'test/rehearsal/rehearsal.test.ts', 'test/bench/bench.test.ts'];

/** Every test file; integration is this less the other three projects. */
export const ALL = ['test/**/*.test.ts'];

export default defineConfig({
  test: {
    // Most files wait on processes, sockets and timers rather than the CPU: two at a time even
    // on a two-core machine (vitest's default there is one).
    maxWorkers: Math.max(2, availableParallelism() - 1),
    testTimeout: 30_000,
    // The longest files first within each project (test/sequencer.ts), so that no rehearsal of
    // minutes is the last file started.
    sequence: { sequencer: LongestFirst },
    // Setup hooks synthesize the stack (every bundle, the console's script) or start runtimes:
    // tens of seconds on a loaded two-core machine, so they get more room than a test.
    hookTimeout: 120_000,
    env: { AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true' },
    coverage: {
      provider: 'v8',
      // The core is what the unit project exists to cover; the adapters and runtimes are
      // exercised by the integration project, whose coverage this figure does not count.
      include: ['lambdas/core/**'],
      reporter: ['text-summary', 'text'],
      reportsDirectory: 'coverage',
      // the figure is still wanted when an unrelated test is red
      reportOnFailure: true,
    },
    projects: [
      { extends: true, test: { name: 'unit', include: UNIT } },
      { extends: true, test: { name: 'integration', include: ALL, exclude: [...configDefaults.exclude, ...UNIT, ...INFRA, ...FAULTS] } },
      { extends: true, test: { name: 'faults', include: FAULTS } },
      { extends: true, test: { name: 'infra', include: INFRA, isolate: false } },
    ],
  },
});
