/**
 * The template the capacity model reads, offline: without CDK context, the one the rehearsal's
 * tests use (`cdk.out/Corral.template.json` when fresher than infra/, else an in-process synthesis
 * cached in the temp dir; test/rehearsal/synth.ts); with context, an in-process synthesis with it
 * (no bundling, no lookups), cached under a hash of the sources and the context.
 */
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { CfnTemplate } from '../../infra/rehearsal/template.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
const sources = ['infra/lib', 'infra/bin', 'cdk.json'];

function files(path: string): string[] {
  const full = join(root, path);
  if (!statSync(full).isDirectory()) return [path];
  return readdirSync(full).flatMap((n) => files(join(path, n)));
}

export async function templateFor(context: Record<string, string> = {}): Promise<CfnTemplate> {
  if (Object.keys(context).length === 0) {
    const { synthesizedTemplate } = await import('../../test/rehearsal/synth.js');
    return synthesizedTemplate();
  }
  const hash = createHash('sha256');
  for (const f of sources.flatMap(files).sort()) hash.update(f).update('\0').update(readFileSync(join(root, f))).update('\0');
  hash.update(JSON.stringify(Object.entries(context).sort()));
  const cache = join(tmpdir(), `corral-capacity-template-${hash.digest('hex').slice(0, 16)}.json`);
  if (existsSync(cache)) return JSON.parse(readFileSync(cache, 'utf8')) as CfnTemplate;

  const { App } = await import('aws-cdk-lib');
  const { stackPropsFromContext } = await import('../../infra/lib/context.js');
  const { CorralStack } = await import('../../infra/lib/corral-stack.js');
  const cdkContext = JSON.parse(readFileSync(join(root, 'cdk.json'), 'utf8')).context as Record<string, unknown>;
  const app = new App({ context: { ...cdkContext, ...context, 'aws:cdk:bundling-stacks': [] } });
  const { stackName, props } = stackPropsFromContext((key) => app.node.tryGetContext(key));
  const stack = new CorralStack(app, stackName, props);
  const template = app.synth().getStackArtifact(stack.artifactId).template as CfnTemplate;
  writeFileSync(cache, JSON.stringify(template));
  return template;
}
