import { repoPath } from './paths.js';

/**
 * The esbuild settings of every Lambda bundle, in one place: `CorralFunction` passes them to
 * `NodejsFunction`, and the bundle benchmark (bench/suites/bundles.ts) builds with the same ones,
 * so the sizes and import times it reports are the deployed bundles'.
 */

/** Node.js version the bundles are compiled for (the functions' runtime, nodejs22.x). */
export const BUNDLE_TARGET = 'node22';

/** Some dependencies are CommonJS and call require(); the ESM bundle gets one. */
export const ESM_REQUIRE_BANNER =
  "import { createRequire as __corralCreateRequire } from 'node:module'; const require = __corralCreateRequire(import.meta.url);";

/**
 * Modules replaced in every bundle by a stand-in that loads but must never be called, each with
 * its reason in the stand-in's header. Only dead code of a dependency belongs here.
 */
export const BUNDLE_ALIASES: Readonly<Record<string, string>> = {
  // Required at load by aws-xray-sdk-core's AWS SDK v2 patcher, which Corral never uses.
  semver: repoPath('infra/lib/bundling/semver-unused.cjs'),
};
