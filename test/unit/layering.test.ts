import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, normalize } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

/**
 * The import direction of docs/ARCHITECTURE.md, checked on the source: every import of every
 * file under lambdas/, cli/, local-runtime/, sandbox/ and infra/{bin,lib}/ is read (a small
 * parser of `import … from`, `export … from`, `import '…'` and `import('…')`), and each layer may
 * import only what its row of RULES names. Allow-lists, not deny-lists, so a new folder is
 * outside every layer until someone places it. Keep the table and the one in ARCHITECTURE.md alike.
 */
const ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** Layers, top to bottom; a file belongs to the first whose prefix its path starts with. */
const LAYERS = {
  entries: ['lambdas/api/lambda.ts', 'lambdas/harness-step/', 'lambdas/credential-proxy/', 'lambdas/sandbox-reaper/', 'lambdas/stream-tier/', 'lambdas/proxy-service/', 'lambdas/webhook-delivery/'],
  'local-runtime': ['local-runtime/'],
  infra: ['infra/bin/', 'infra/lib/'],
  api: ['lambdas/api/'],
  'local adapters': ['lambdas/adapters/local/'],
  'aws adapters': ['lambdas/adapters/aws/'],
  core: ['lambdas/core/'],
  sandbox: ['sandbox/'],
  cli: ['cli/'],
} satisfies Record<string, string[]>;
// The deployments' scheduled-run function (EventBridge Scheduler's target) is an entry too.
LAYERS.entries.push('lambdas/deployment-fire/');
type Layer = keyof typeof LAYERS;

/**
 * Packages of one runtime only: AWS's SDK, Powertools, Lambda's types, the CDK; the local HTTP server.
 * (The local store's package is left out: test/unit/projects.test.ts flags unit files that name it.)
 */
const ONE_RUNTIME = /^(@aws-sdk\/|@smithy\/|@aws-lambda-powertools\/|aws-lambda$|aws-cdk-lib|constructs$|@hono\/node-server)/;

interface Rule {
  /** Layers, or single files (the deliberate exceptions), its files may import. */
  may: Array<Layer | `${string}.ts`>;
  /** Files it may import types from, and nothing else. */
  types?: `${string}.ts`[];
  /** Packages it may not import, or the only ones it may. */
  packagesNot?: RegExp;
  packagesOnly?: RegExp;
}

const RULES: Record<Layer, Rule> = {
  entries: { may: ['entries', 'api', 'aws adapters', 'core'] },
  'local-runtime': { may: ['local-runtime', 'api', 'local adapters', 'aws adapters', 'core', 'sandbox/limits.ts'] },
  // the console's script is bundled at synthesis into the API function, by the module that bundles it under npm start;
  // the stream tier's and the proxy service's tasks are given their environment by the names their entries read
  infra: { may: ['infra', 'aws adapters', 'core', 'sandbox/limits.ts', 'lambdas/api/console/bundle.ts', 'lambdas/stream-tier/env.ts', 'lambdas/proxy-service/env.ts'] },
  api: { may: ['api', 'core'], packagesNot: ONE_RUNTIME },
  // the local store speaks DynamoDB's protocol: the local side reuses the DynamoDB adapters
  'local adapters': { may: ['local adapters', 'aws adapters', 'core', 'sandbox/recipe.ts', 'sandbox/limits.ts'] },
  'aws adapters': { may: ['aws adapters', 'core', 'sandbox/recipe.ts'] },
  // sandbox/recipe.ts is the recipe's wire format (`WireRecipe`), built outside and applied by the agent
  core: { may: ['core', 'sandbox/recipe.ts'], packagesNot: ONE_RUNTIME },
  // bundled alone into the sandbox image (sandbox/Dockerfile copies only sandbox/, no node_modules)
  sandbox: { may: ['sandbox'], packagesOnly: /^node:/ },
  // a client of the API: the SDK, and the event union it prints (types and pure helpers such as toolUseIdOf)
  cli: { may: ['cli', 'lambdas/core/session/events.ts'], packagesOnly: /^(node:|@anthropic-ai\/sdk(\/|$))/ },
};

// ---------------------------------------------------------------------------------------------

interface Import {
  /** As written. */
  spec: string;
  /** The repository file a relative import names (`.js` read as the `.ts` beside it); null for a package. */
  target: string | null;
  typeOnly: boolean;
}

const STATIC = /^[ \t]*(?:import|export)[ \t]+(type[ \t]+)?[\w$*{},\s]*?\bfrom\s*['"]([^'"\n]+)['"]/gm;
const BARE = /^[ \t]*import\s*['"]([^'"\n]+)['"]/gm;
const DYNAMIC = /\bimport\(\s*['"]([^'"\n]+)['"]\s*\)/g;

function parseImports(file: string, source: string, exists: (path: string) => boolean): Import[] {
  const found: Array<[string, boolean]> = [
    ...[...source.matchAll(STATIC)].map((m): [string, boolean] => [m[2], m[1] !== undefined]),
    ...[...source.matchAll(BARE)].map((m): [string, boolean] => [m[1], false]),
    ...[...source.matchAll(DYNAMIC)].map((m): [string, boolean] => [m[1], false]),
  ];
  return found.map(([spec, typeOnly]) => {
    if (!spec.startsWith('.')) return { spec, target: null, typeOnly };
    const path = normalize(join(dirname(file), spec));
    const ts = path.replace(/\.js$/, '.ts');
    return { spec, target: ts !== path && exists(ts) ? ts : path, typeOnly };
  });
}

function layerOf(path: string): Layer | null {
  for (const [layer, prefixes] of Object.entries(LAYERS) as Array<[Layer, string[]]>) {
    if (prefixes.some((p) => (p.endsWith('/') ? path.startsWith(p) : path === p))) return layer;
  }
  return null;
}

/** Every import that its file's rule does not allow, as `file -> import (why)`. */
function violations(sources: Map<string, string>, exists: (path: string) => boolean): string[] {
  const out: string[] = [];
  for (const [file, source] of sources) {
    const layer = layerOf(file);
    if (!layer) {
      out.push(`${file} is in no layer`);
      continue;
    }
    const rule = RULES[layer];
    for (const imp of parseImports(file, source, exists)) {
      if (imp.target === null) {
        if (rule.packagesNot?.test(imp.spec) || (rule.packagesOnly && !rule.packagesOnly.test(imp.spec))) {
          out.push(`${file} -> ${imp.spec} (a package ${layer} may not import)`);
        }
        continue;
      }
      const to = layerOf(imp.target);
      const allowed =
        (to !== null && rule.may.includes(to)) || rule.may.includes(imp.target as `${string}.ts`) || (imp.typeOnly && rule.types?.includes(imp.target as `${string}.ts`));
      if (!allowed) out.push(`${file} -> ${imp.target} (${layer} may not import ${to ?? 'outside the layers'})`);
    }
  }
  return out.sort();
}

/** Import cycles among `files` (type-only imports count), each as the path that closes it. */
function cycles(sources: Map<string, string>, exists: (path: string) => boolean): string[][] {
  const graph = new Map([...sources].map(([f, src]) => [f, parseImports(f, src, exists).flatMap((i) => (i.target && sources.has(i.target) ? [i.target] : []))]));
  const found = new Map<string, string[]>();
  const state = new Map<string, 'open' | 'done'>();
  const path: string[] = [];
  const visit = (f: string) => {
    state.set(f, 'open');
    path.push(f);
    for (const t of graph.get(f) ?? []) {
      if (state.get(t) === 'open') {
        const cycle = path.slice(path.indexOf(t));
        found.set([...cycle].sort().join(' '), [...cycle, t]);
      } else if (!state.has(t)) visit(t);
    }
    path.pop();
    state.set(f, 'done');
  };
  for (const f of [...graph.keys()].sort()) if (!state.has(f)) visit(f);
  return [...found.values()];
}

const SOURCE = /\.(ts|mts|mjs|js)$/;
function sourceTree(): Map<string, string> {
  const files = ['lambdas', 'cli', 'local-runtime', 'sandbox', 'infra/bin', 'infra/lib'].flatMap((dir) =>
    (readdirSync(join(ROOT, dir), { recursive: true }) as string[]).filter((f) => SOURCE.test(f)).map((f) => join(dir, f)),
  );
  return new Map(files.sort().map((f) => [f, readFileSync(join(ROOT, f), 'utf8')]));
}
const onDisk = (path: string) => existsSync(join(ROOT, path));

describe('the import direction', () => {
  const tree = sourceTree();

  it('reads every import of the tree, and each relative one names a file', () => {
    expect(tree.size).toBeGreaterThan(100);
    const all = [...tree].flatMap(([f, src]) => parseImports(f, src, onDisk).map((i) => ({ f, ...i })));
    expect(all.length).toBeGreaterThan(500);
    expect(all.filter((i) => i.target !== null && !onDisk(i.target)).map((i) => `${i.f} -> ${i.spec}`)).toEqual([]);
    // multi-line, type-only and dynamic imports are all seen
    const of = (f: string) => parseImports(f, tree.get(f)!, onDisk);
    expect(of('lambdas/adapters/aws/services.ts').map((i) => i.target)).toContain('lambdas/adapters/aws/ecs-sandbox-provider.ts');
    expect(of('lambdas/core/vault/proxy.ts').map((i) => i.target)).toContain('lambdas/core/vault/protocol.ts');
    expect(of('cli/main.ts')).toContainEqual({ spec: '../lambdas/core/session/events.js', target: 'lambdas/core/session/events.ts', typeOnly: true });
  });

  it('goes one way: each layer imports only what its rule allows', () => {
    expect(violations(tree, onDisk)).toEqual([]);
  });

  it('has no import cycle inside lambdas/core', () => {
    const core = new Map([...tree].filter(([f]) => f.startsWith('lambdas/core/')));
    expect(cycles(core, onDisk)).toEqual([]);
  });

  it('is caught when broken (a check that could not fail would prove nothing)', () => {
    const bad = new Map([
      ['lambdas/core/harness/x.ts', "import { SqsWakeQueue } from '../../adapters/aws/sqs-queue.js';\nimport { SQSClient } from '@aws-sdk/client-sqs';"],
      ['lambdas/core/y.ts', "export {\n  toWireRecipe,\n} from '../../sandbox/recipe.js';\nexport * from '../../sandbox/limits.js';"],
      ['lambdas/adapters/local/z.ts', "const m = await import('../../../local-runtime/runtime.js');"],
      ['lambdas/api/w.ts', "import type { X } from '../adapters/aws/services.js';"],
      ['sandbox/tools.ts', "import '../lambdas/core/ids.js';\nimport { z } from 'zod';"],
      ['cli/v.ts', "import { SessionService } from '../lambdas/core/resources/sessions.js';\nimport type { SessionEvent } from '../lambdas/core/session/events.js';"],
      ['lambdas/new-folder/u.ts', ''],
    ]);
    expect(violations(bad, onDisk)).toEqual([
      'cli/v.ts -> lambdas/core/resources/sessions.ts (cli may not import core)',
      'lambdas/adapters/local/z.ts -> local-runtime/runtime.ts (local adapters may not import local-runtime)',
      'lambdas/api/w.ts -> lambdas/adapters/aws/services.ts (api may not import aws adapters)',
      'lambdas/core/harness/x.ts -> @aws-sdk/client-sqs (a package core may not import)',
      'lambdas/core/harness/x.ts -> lambdas/adapters/aws/sqs-queue.ts (core may not import aws adapters)',
      'lambdas/core/y.ts -> sandbox/limits.ts (core may not import sandbox)',
      'lambdas/new-folder/u.ts is in no layer',
      'sandbox/tools.ts -> lambdas/core/ids.ts (sandbox may not import core)',
      'sandbox/tools.ts -> zod (a package sandbox may not import)',
    ]);
    const loop = new Map([
      ['lambdas/core/a.ts', "import type { B } from './b.js';"],
      ['lambdas/core/b.ts', "import { c } from './c.js';"],
      ['lambdas/core/c.ts', "import { a } from './a.js';"],
    ]);
    expect(cycles(loop, (p) => loop.has(p))).toEqual([['lambdas/core/a.ts', 'lambdas/core/b.ts', 'lambdas/core/c.ts', 'lambdas/core/a.ts']]);
  });

  it('covers the walk of docs/ARCHITECTURE.md: every file it names exists and is in a layer', () => {
    const doc = readFileSync(join(ROOT, 'docs/ARCHITECTURE.md'), 'utf8');
    const named = [...new Set([...doc.matchAll(/`((?:lambdas|cli|local-runtime|sandbox|infra)\/[\w./-]*)`/g)].map((m) => m[1]))];
    expect(named.length).toBeGreaterThan(20);
    expect(named.filter((f) => !onDisk(f)), 'paths named in docs/ARCHITECTURE.md that do not exist').toEqual([]);
    expect(named.filter((f) => f.endsWith('.ts') && layerOf(f) === null)).toEqual([]);
  });
});
