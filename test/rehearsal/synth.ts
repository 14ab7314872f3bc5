import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { CfnTemplate } from '../../infra/rehearsal/template.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
/** What the template is made from. */
const sources = ['infra/lib', 'infra/bin', 'cdk.json'];

function files(path: string): string[] {
  const full = join(root, path);
  if (!statSync(full).isDirectory()) return [path];
  return readdirSync(full).flatMap((n) => files(join(path, n)));
}

/**
 * The real template, as `npx cdk synth` produces it:
 * - without `context`, `cdk.out/Corral.template.json` when it is newer than every infra source (it
 *   then also carries the bundled assets' `aws:asset:path`), else
 * - synthesized in-process with the feature flags of cdk.json plus `context` but without bundling
 *   (the template does not depend on the bundles' contents), cached in the temp dir under a hash
 *   of the sources and the context, since one synthesis takes ~20 s on these machines. Test files
 *   in parallel workers may synthesize the same one at once: each writes its own temporary file
 *   and renames it into place (atomic), so a reader never sees a half-written cache.
 */
export async function synthesizedTemplate(context: Record<string, string> = {}): Promise<CfnTemplate> {
  const all = sources.flatMap(files).sort();
  const withContext = Object.keys(context).length > 0;
  const out = join(root, 'cdk.out', 'Corral.template.json');
  if (!withContext && existsSync(out)) {
    const newest = Math.max(...all.map((f) => statSync(join(root, f)).mtimeMs));
    if (statSync(out).mtimeMs > newest) return JSON.parse(readFileSync(out, 'utf8')) as CfnTemplate;
  }
  const hash = createHash('sha256');
  for (const f of all) hash.update(f).update('\0').update(readFileSync(join(root, f))).update('\0');
  if (withContext) hash.update(JSON.stringify(Object.entries(context).sort()));
  const cache = join(tmpdir(), `corral-rehearsal-template-${hash.digest('hex').slice(0, 16)}.json`);
  if (existsSync(cache)) return JSON.parse(readFileSync(cache, 'utf8')) as CfnTemplate;

  const { App } = await import('aws-cdk-lib');
  const { stackPropsFromContext } = await import('../../infra/lib/context.js');
  const { CorralStack } = await import('../../infra/lib/corral-stack.js');
  const cdkContext = JSON.parse(readFileSync(join(root, 'cdk.json'), 'utf8')).context as Record<string, unknown>;
  const app = new App({ context: { ...cdkContext, ...context, 'aws:cdk:bundling-stacks': [] } });
  const { stackName, props } = stackPropsFromContext((key) => app.node.tryGetContext(key));
  const stack = new CorralStack(app, stackName, props);
  const template = app.synth().getStackArtifact(stack.artifactId).template as CfnTemplate;
  const partial = `${cache}.${process.pid}.${Date.now()}.tmp`;
  writeFileSync(partial, JSON.stringify(template));
  renameSync(partial, cache);
  return template;
}
