import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildSync } from 'esbuild';
import { BUNDLE_ALIASES, BUNDLE_TARGET, ESM_REQUIRE_BANNER } from './bundling.js';
import { repoPath } from './paths.js';

export interface NodeServiceImageOptions {
  /** The entry, from the repository's root (`lambdas/stream-tier/main.ts`). */
  readonly entry: string;
  /** Names the bundle (`<name>.mjs`) and the build directory. */
  readonly name: string;
  /** What the image is, for its Dockerfile's first line. */
  readonly description: string;
  readonly ports: readonly number[];
  /** esbuild `define`s. */
  readonly define?: Record<string, string>;
  /** False where bundling is skipped (`aws:cdk:bundling-stacks`, as the template tests do): the bundle is a stand-in. */
  readonly bundle: boolean;
}

/**
 * The build context of a Fargate service's image: a Dockerfile and the entry bundled by esbuild
 * with the Lambda bundles' settings (infra/lib/bundling.ts), on the official Node 22 image (no
 * build inside Docker), written into a directory named after the bundle's hash (so an unchanged
 * bundle is an unchanged asset). The deploy rehearsal runs the bundle named by the entrypoint.
 */
export function nodeServiceImage(opts: NodeServiceImageOptions): string {
  let code = '// bundling was skipped for this synthesis\n';
  if (opts.bundle) {
    const out = buildSync({
      entryPoints: [repoPath(opts.entry)],
      bundle: true,
      write: false,
      platform: 'node',
      target: BUNDLE_TARGET,
      format: 'esm',
      mainFields: ['module', 'main'],
      minify: true,
      legalComments: 'none',
      logLevel: 'silent',
      banner: { js: ESM_REQUIRE_BANNER },
      alias: BUNDLE_ALIASES,
      define: opts.define,
    });
    code = out.outputFiles[0].text;
  }
  const file = `${opts.name}.mjs`;
  const dockerfile = [
    `# ${opts.description} (${opts.entry}), bundled at synthesis.`,
    'FROM public.ecr.aws/docker/library/node:22-bookworm-slim',
    `COPY --chmod=0644 ${file} /opt/corral/${file}`,
    'ENV NODE_ENV=production',
    'USER node',
    ...opts.ports.map((p) => `EXPOSE ${p}`),
    `ENTRYPOINT ["node", "/opt/corral/${file}"]`,
    '',
  ].join('\n');
  const hash = createHash('sha256').update(dockerfile).update(code).digest('hex').slice(0, 16);
  const dir = join(tmpdir(), `corral-${opts.name}-${hash}`);
  if (!existsSync(join(dir, 'Dockerfile'))) {
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, file), code);
    writeFileSync(join(dir, 'Dockerfile'), dockerfile);
  }
  return dir;
}
