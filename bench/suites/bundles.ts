/**
 * (5) Bundle and cold start: each Lambda entry point bundled by esbuild with the settings the CDK
 * app uses (`infra/lib/constructs/corral-function.ts` and `infra/lib/bundling.ts`: ESM, node22,
 * minified, everything bundled, the `require` banner, the aliases, external source maps), then the
 * time to `import()` the bundle in a fresh Node process. Import time here is this machine's Node,
 * not Lambda's: Lambda's init adds its own.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { gzipSync } from 'node:zlib';
import { BUNDLE_ALIASES, BUNDLE_TARGET, ESM_REQUIRE_BANNER } from '../../infra/lib/bundling.js';
import { round, summarize, type Summary } from '../lib/stats.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

/** The Lambda entry points, and the CDK construct that deploys each (if any does yet). */
export const LAMBDA_ENTRIES = [
  { name: 'harness-step', entry: 'lambdas/harness-step/index.ts' },
  { name: 'api', entry: 'lambdas/api/lambda.ts' },
  { name: 'credential-proxy', entry: 'lambdas/credential-proxy/handler.ts' },
  { name: 'sandbox-reaper', entry: 'lambdas/sandbox-reaper/handler.ts' },
];

export interface BundleResult {
  name: string;
  entry: string;
  exists: boolean;
  /** Deployed by a construct under infra/ (an entry no construct names is bundled all the same). */
  deployed: boolean;
  note?: string;
  bytes?: number;
  gzip_bytes?: number;
  sourcemap_bytes?: number;
  /** The largest contributors to the bundle, by package (or source folder). */
  top_inputs?: Array<{ name: string; bytes: number }>;
  /** `import()` of the bundle in a fresh process (ms). */
  import_ms?: Summary;
  /** CPU time (user + system) of that `import()` (ms): less dependent on the machine's load than its wall time. */
  import_cpu_ms?: Summary;
  /** The same with `--enable-source-maps`, as the CDK app sets NODE_OPTIONS. */
  import_sourcemaps_ms?: Summary;
  /**
   * Resident memory and V8 heap of that process after the import, with source maps enabled as
   * the CDK app sets them (MB): the function's footprint before it handles anything; what the
   * capacity model sizes the function's memory from (docs/SCALE.md).
   */
  rss_after_import_mb?: Summary;
  heap_after_import_mb?: Summary;
  /** Spawn to exit of that process, Node's own start-up included. */
  process_ms?: Summary;
  import_error?: string;
}

export interface BundlesResult {
  esbuild: string;
  node: string;
  /** A process that imports nothing: Node's own start-up, for reference. */
  empty_process_ms: Summary;
  bundles: BundleResult[];
}

function packageOf(input: string): string {
  const nm = input.lastIndexOf('node_modules/');
  if (nm >= 0) {
    const rest = input.slice(nm + 'node_modules/'.length).split('/');
    return rest[0].startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0];
  }
  const parts = input.split('/');
  return parts.length > 2 ? `${parts[0]}/${parts[1]}` : input;
}

const IMPORT_SCRIPT = `
globalThis.awslambda ??= { streamifyResponse: (f) => f, HttpResponseStream: { from: (s) => s } };
const t0 = performance.now();
const c0 = process.cpuUsage();
try {
  await import(process.argv[1]);
  const importMs = performance.now() - t0;
  const cpu = process.cpuUsage(c0);
  const mem = process.memoryUsage();
  process.stdout.write(JSON.stringify({ ok: true, importMs, importCpuMs: (cpu.user + cpu.system) / 1000, rssMb: mem.rss / 1048576, heapMb: mem.heapUsed / 1048576 }));
} catch (err) {
  process.stdout.write(JSON.stringify({ ok: false, error: String(err && err.stack || err).slice(0, 500) }));
}
`;

function runNode(args: string[], env: Record<string, string>): Promise<{ out: string; ms: number; code: number | null }> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn(process.execPath, args, { env: { ...env, PATH: process.env.PATH ?? '' }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d) => (out += String(d)));
    child.stderr.on('data', () => undefined);
    child.on('error', reject);
    child.on('exit', (code) => resolve({ out, ms: performance.now() - t0, code }));
  });
}

/** Environment a function gets from the stack (dummy values: nothing is called at import). */
const LAMBDA_ENV: Record<string, string> = {
  AWS_REGION: 'us-east-1',
  AWS_DEFAULT_REGION: 'us-east-1',
  POWERTOOLS_SERVICE_NAME: 'corral-bench',
  POWERTOOLS_METRICS_NAMESPACE: 'Corral',
  POWERTOOLS_LOG_LEVEL: 'ERROR',
  POWERTOOLS_TRACE_ENABLED: 'false',
  AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
};

export async function runBundles(cfg: { imports: number }, ctx: { log: (msg: string) => void }): Promise<BundlesResult> {
  const esbuild = await import('esbuild');
  const infraText = listFiles(path.join(ROOT, 'infra'))
    .filter((f) => f.endsWith('.ts'))
    .map((f) => fs.readFileSync(f, 'utf8'))
    .join('\n');
  const outDir = fs.mkdtempSync(path.join(os.tmpdir(), 'corral-bench-bundles-'));
  try {
    const empty = [];
    await runNode(['--input-type=module', '-e', ''], LAMBDA_ENV);
    for (let i = 0; i < cfg.imports; i++) empty.push((await runNode(['--input-type=module', '-e', ''], LAMBDA_ENV)).ms);
    const bundles: BundleResult[] = [];
    for (const { name, entry } of LAMBDA_ENTRIES) {
      const file = path.join(ROOT, entry);
      const deployed = infraText.includes(entry);
      if (!fs.existsSync(file)) {
        bundles.push({ name, entry, exists: false, deployed, note: `${entry} does not exist yet: skipped` });
        continue;
      }
      const outfile = path.join(outDir, name, 'index.mjs');
      const built = await esbuild.build({
        entryPoints: [file],
        outfile,
        bundle: true,
        platform: 'node',
        target: BUNDLE_TARGET,
        format: 'esm',
        minify: true,
        sourcemap: true,
        sourcesContent: false,
        mainFields: ['module', 'main'],
        banner: { js: ESM_REQUIRE_BANNER },
        alias: { ...BUNDLE_ALIASES },
        metafile: true,
        logLevel: 'silent',
        absWorkingDir: ROOT,
      });
      const code = fs.readFileSync(outfile);
      const byPkg = new Map<string, number>();
      const output = Object.values(built.metafile.outputs).find((o) => o.entryPoint);
      for (const [input, info] of Object.entries(output?.inputs ?? {})) byPkg.set(packageOf(input), (byPkg.get(packageOf(input)) ?? 0) + info.bytesInOutput);
      const result: BundleResult = {
        name,
        entry,
        exists: true,
        deployed,
        ...(deployed ? {} : { note: 'no construct under infra/ deploys it yet' }),
        bytes: code.length,
        gzip_bytes: gzipSync(code).length,
        sourcemap_bytes: fs.statSync(`${outfile}.map`).size,
        top_inputs: [...byPkg.entries()].sort((a, b) => b[1] - a[1]).slice(0, 6).map(([n, bytes]) => ({ name: n, bytes })),
      };
      const url = pathToFileURL(outfile).href;
      const imports: number[] = [];
      const cpu: number[] = [];
      const withMaps: number[] = [];
      const processes: number[] = [];
      const rss: number[] = [];
      const heap: number[] = [];
      await runNode(['--input-type=module', '-e', IMPORT_SCRIPT, url], LAMBDA_ENV); // warm the file cache
      for (let i = 0; i < cfg.imports; i++) {
        for (const maps of [false, true]) {
          const r = await runNode([...(maps ? ['--enable-source-maps'] : []), '--input-type=module', '-e', IMPORT_SCRIPT, url], LAMBDA_ENV);
          const parsed = JSON.parse(r.out || '{"ok":false,"error":"no output"}') as { ok: boolean; importMs?: number; importCpuMs?: number; rssMb?: number; heapMb?: number; error?: string };
          if (!parsed.ok) {
            result.import_error = parsed.error;
            break;
          }
          (maps ? withMaps : imports).push(parsed.importMs!);
          if (!maps) processes.push(r.ms);
          if (!maps) cpu.push(parsed.importCpuMs!);
          if (maps) {
            rss.push(parsed.rssMb!);
            heap.push(parsed.heapMb!);
          }
        }
        if (result.import_error) break;
      }
      if (!result.import_error) {
        result.import_ms = summarize(imports);
        result.import_cpu_ms = summarize(cpu);
        result.import_sourcemaps_ms = summarize(withMaps);
        result.process_ms = summarize(processes);
        result.rss_after_import_mb = summarize(rss);
        result.heap_after_import_mb = summarize(heap);
      }
      bundles.push(result);
      ctx.log(`  bundle ${name}: ${round(code.length / 1024, 1)} KiB, import p50 ${result.import_ms?.p50 ?? 'n/a'} ms (CPU ${result.import_cpu_ms?.p50 ?? 'n/a'} ms)`);
    }
    return { esbuild: esbuild.version, node: process.version, empty_process_ms: summarize(empty), bundles };
  } finally {
    fs.rmSync(outDir, { recursive: true, force: true });
  }
}

function listFiles(dir: string): string[] {
  if (!fs.existsSync(dir)) return [];
  const out: string[] = [];
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) {
      if (e.name !== 'node_modules' && e.name !== 'cdk.out') out.push(...listFiles(p));
    } else out.push(p);
  }
  return out;
}
