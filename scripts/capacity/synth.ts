/**
 * The template the capacity model reads, offline: the rehearsal tests' synthesis
 * (test/rehearsal/synth.ts): `cdk.out/Corral.template.json` when fresher than infra/ and no CDK
 * context is given, else an in-process synthesis with the context (no bundling, no lookups),
 * cached under a hash of the sources and the context.
 */
import type { CfnTemplate } from '../../infra/rehearsal/template.js';

export async function templateFor(context: Record<string, string> = {}): Promise<CfnTemplate> {
  const { synthesizedTemplate } = await import('../../test/rehearsal/synth.js');
  return synthesizedTemplate(context);
}
