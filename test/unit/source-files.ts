import { readdirSync } from 'node:fs';
import { join } from 'node:path';

/** The product's TypeScript source (what ships or deploys), relative to the repository root; tests excluded. */
export const SOURCE_ROOTS = ['lambdas', 'local-runtime', 'cli', 'sandbox', 'infra', 'bench', 'scripts', 'bin'];

export function sourceFiles(roots = SOURCE_ROOTS): string[] {
  const out: string[] = [];
  const walk = (dir: string) => {
    let entries;
    try {
      entries = readdirSync(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      if (e.name === 'node_modules' || e.name === 'cdk.out' || e.name.startsWith('.')) continue;
      const path = join(dir, e.name);
      if (e.isDirectory()) walk(path);
      else if (/\.(ts|mts|cts|js|mjs)$/.test(e.name) && !e.name.endsWith('.d.ts')) out.push(path.split('\\').join('/'));
    }
  };
  for (const root of roots) walk(root);
  return out.sort();
}
