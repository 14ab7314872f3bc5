/**
 * Environment packages in local sandboxes, through the egress proxy and the package cache: real
 * bubblewrapped sandboxes, the sandbox manager over dynalite and the file blob store, and a
 * package registry stand-in on loopback (an npm registry serving a tiny tarball and a PyPI simple
 * index serving a tiny wheel) reached under the public registries' names, which the environment's
 * `allow_package_managers` opens (the egress proxy's test resolver maps them to loopback, as in
 * egress.test.ts).
 */
import { spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import type net from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DynamoStateTable } from '../../lambdas/adapters/aws/dynamodb-state-table.js';
import { ensureTables } from '../../lambdas/adapters/aws/tables.js';
import { startDynalite, type EmbeddedDynamo } from '../../lambdas/adapters/local/dynalite.js';
import { LocalEgressProxy } from '../../lambdas/adapters/local/egress-proxy.js';
import { FileBlobStore } from '../../lambdas/adapters/local/file-blob-store.js';
import { ProcessSandboxProvider, bwrapAvailable, localPackageManagers } from '../../lambdas/adapters/local/process-sandbox.js';
import { SandboxManager } from '../../lambdas/core/sandbox/manager.js';
import { packageCacheKey } from '../../lambdas/core/sandbox/package-cache.js';
import { fitRecipe, planRecipe, type RecipePlan } from '../../lambdas/core/sandbox/recipe.js';
import { tempDir } from './helpers.js';

const HAS_BWRAP = await bwrapAvailable();
if (!HAS_BWRAP && process.env.CI) throw new Error('bubblewrap (bwrap) is required for the package tests in CI');
// The host's /usr/bin/python3 with pip, and npm, which local sandboxes install with.
const HAS_TOOLS = ['pip', 'npm'].every((pm) => localPackageManagers(true).includes(pm as 'pip' | 'npm'));
if (!HAS_TOOLS && process.env.CI) throw new Error('python3 with pip (python3-pip) and npm are required for the package tests in CI');

const NAMES: Record<string, string[]> = { 'registry.npmjs.org': ['127.0.0.1'], 'pypi.org': ['127.0.0.1'] };
const testResolve = async (host: string) => {
  const a = NAMES[host];
  if (!a) throw Object.assign(new Error('not found'), { code: 'ENOTFOUND' });
  return a;
};

let root: string;
let db: EmbeddedDynamo;
let table: DynamoStateTable;
let registry: http.Server;
let port: number;
let egress: LocalEgressProxy;
let provider: ProcessSandboxProvider;
let manager: SandboxManager;
let blobDir: string;
/** Every request the registry stand-in saw. */
const hits: string[] = [];
let n = 0;

/** A tiny npm package (`corral-hello`, a module and a bin) as a registry tarball. */
function npmTarball(dir: string): Buffer {
  const pkg = path.join(dir, 'package');
  fs.mkdirSync(pkg, { recursive: true });
  fs.writeFileSync(path.join(pkg, 'package.json'), JSON.stringify({ name: 'corral-hello', version: '1.0.0', main: 'index.js', bin: { 'corral-hello': 'cli.js' } }));
  fs.writeFileSync(path.join(pkg, 'index.js'), "module.exports = 'hello from npm';\n");
  fs.writeFileSync(path.join(pkg, 'cli.js'), "#!/usr/bin/env node\nconsole.log('hello from the npm bin');\n", { mode: 0o755 });
  const r = spawnSync('tar', ['czf', 'pkg.tgz', 'package'], { cwd: dir });
  if (r.status !== 0) throw new Error(`tar: ${r.stderr}`);
  return fs.readFileSync(path.join(dir, 'pkg.tgz'));
}

/** A tiny wheel (`corral_hello`, pure Python). */
function wheel(dir: string): Buffer {
  const file = path.join(dir, 'corral_hello-1.0-py3-none-any.whl');
  const script = `
import sys, zipfile
with zipfile.ZipFile(sys.argv[1], 'w') as z:
    z.writestr('corral_hello/__init__.py', "GREETING = 'hello from pip'\\n")
    z.writestr('corral_hello-1.0.dist-info/METADATA', 'Metadata-Version: 2.1\\nName: corral-hello\\nVersion: 1.0\\n')
    z.writestr('corral_hello-1.0.dist-info/WHEEL', 'Wheel-Version: 1.0\\nGenerator: corral-test\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n')
    z.writestr('corral_hello-1.0.dist-info/RECORD', 'corral_hello/__init__.py,,\\ncorral_hello-1.0.dist-info/METADATA,,\\ncorral_hello-1.0.dist-info/WHEEL,,\\ncorral_hello-1.0.dist-info/RECORD,,\\n')
`;
  const r = spawnSync('/usr/bin/python3', ['-c', script, file]);
  if (r.status !== 0) throw new Error(`wheel: ${r.stderr}`);
  return fs.readFileSync(file);
}

beforeAll(async () => {
  root = tempDir('corral-packages-');
  const tgz = npmTarball(path.join(root, 'npm'));
  const whl = wheel(root);
  registry = http.createServer((req, res) => {
    hits.push(`${req.headers.host} ${req.url}`);
    const base = `http://${req.headers.host}`;
    if (req.url === '/corral-hello') {
      const dist = {
        tarball: `${base}/corral-hello/-/corral-hello-1.0.0.tgz`,
        shasum: crypto.createHash('sha1').update(tgz).digest('hex'),
        integrity: `sha512-${crypto.createHash('sha512').update(tgz).digest('base64')}`,
      };
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ name: 'corral-hello', 'dist-tags': { latest: '1.0.0' }, versions: { '1.0.0': { name: 'corral-hello', version: '1.0.0', bin: { 'corral-hello': 'cli.js' }, dist } } }));
    } else if (req.url === '/corral-hello/-/corral-hello-1.0.0.tgz') {
      res.setHeader('content-type', 'application/octet-stream');
      res.end(tgz);
    } else if (req.url === '/simple/corral-hello/') {
      const sha = crypto.createHash('sha256').update(whl).digest('hex');
      res.setHeader('content-type', 'text/html');
      res.end(`<!DOCTYPE html><html><body><a href="/files/corral_hello-1.0-py3-none-any.whl#sha256=${sha}">corral_hello-1.0-py3-none-any.whl</a></body></html>`);
    } else if (req.url === '/files/corral_hello-1.0-py3-none-any.whl') {
      res.setHeader('content-type', 'application/octet-stream');
      res.end(whl);
    } else {
      res.statusCode = 404;
      res.end('not found');
    }
  });
  await new Promise<void>((r) => registry.listen(0, '127.0.0.1', r));
  port = (registry.address() as net.AddressInfo).port;
  db = await startDynalite();
  await ensureTables(db.client, { events: 'events', state: 'state' });
  table = new DynamoStateTable(db.client, 'state');
  blobDir = path.join(root, 'blobs');
  egress = new LocalEgressProxy({ logger: { warn: () => {} }, resolve: testResolve, allowPrivateAddresses: ['127.0.0.1'] });
  provider = new ProcessSandboxProvider({
    dataDir: path.join(root, 'data'),
    isolation: 'bwrap',
    logger: { warn: () => {} },
    egress,
    // The public registries' names, on the stand-in's port: the policy decides by name.
    packageIndexes: { npm: `http://registry.npmjs.org:${port}/`, pip: `http://pypi.org:${port}/simple/` },
  });
  manager = new SandboxManager(provider, table, Buffer.alloc(32, 7), undefined, undefined, { packageCache: { blobs: new FileBlobStore(blobDir) } });
});

afterAll(async () => {
  await provider?.close();
  await egress?.close();
  await db?.close();
  await new Promise((r) => registry?.close(r));
  fs.rmSync(root, { recursive: true, force: true });
});

/** The plan of a session of environment `env` at `version` (its `updated_at`). */
function plan(env: string, version: string, config: Record<string, unknown> = {}): RecipePlan {
  return planRecipe({
    session: { environment_id: env, resources: [] },
    environment: {
      config: { type: 'cloud', packages: { pip: ['corral-hello'], npm: ['corral-hello'] }, networking: { type: 'limited', allowed_hosts: [], allow_package_managers: true }, ...config },
      updated_at: version,
    },
    credentials: [],
  });
}

/** What the model's command sees of the packages: pip's module, npm's module and npm's bin. */
const USE = `python3 -c 'import corral_hello; print(corral_hello.GREETING)'; node -e "console.log(require('corral-hello'))"; corral-hello`;
const USED = 'hello from pip\nhello from npm\nhello from the npm bin\n';

const run = (p: RecipePlan, command = USE) => manager.execute(`sesn_pkg_${++n}`, 'default', p, 'bash', { command });

describe.skipIf(!HAS_BWRAP || !HAS_TOOLS)('environment packages in a local sandbox', { timeout: 300_000 }, () => {
  it('installs through the egress proxy once per environment version; the next sandbox restores them from the cache without the registry', async () => {
    const v1 = plan('env_pkg_a', '2026-01-01T00:00:00.000Z');
    const first = await run(v1);
    expect(first.output).toBe(USED);
    expect(first.isError).toBe(false);
    expect(first.packages).toMatchObject({ cache: 'miss', stored: true, install_ms: { pip: expect.any(Number), npm: expect.any(Number) } });
    expect(hits.some((h) => h.startsWith(`registry.npmjs.org:${port} /corral-hello`))).toBe(true);
    expect(hits.some((h) => h.startsWith(`pypi.org:${port} /simple/corral-hello/`))).toBe(true);
    // Not in the host's prefixes: nowhere but the sandbox's own packages directory.
    expect(spawnSync('/usr/bin/python3', ['-c', 'import corral_hello']).status).not.toBe(0);
    const key = packageCacheKey(fitRecipe(v1, provider.recipeSupport).recipe)!;
    expect(fs.existsSync(path.join(blobDir, key))).toBe(true);

    hits.length = 0;
    const second = await run(v1);
    expect(second.output).toBe(USED);
    expect(second.packages).toMatchObject({ cache: 'hit', restore_ms: expect.any(Number), install_ms: {} });
    expect(hits).toEqual([]);

    // A new version of the environment installs again; two of its sandboxes starting at once
    // both install, and leave one whole entry (no partial write left, every file in it).
    const v2 = plan('env_pkg_a', '2026-02-01T00:00:00.000Z');
    const both = await Promise.all([run(v2), run(v2)]);
    for (const r of both) {
      expect(r.output).toBe(USED);
      expect(r.packages).toMatchObject({ cache: 'miss', stored: true });
    }
    expect(hits.length).toBeGreaterThan(0);
    const key2 = packageCacheKey(fitRecipe(v2, provider.recipeSupport).recipe)!;
    expect(key2).not.toBe(key);
    expect(fs.readdirSync(path.dirname(path.join(blobDir, key2))).filter((f) => f.includes('.partial'))).toEqual([]);
    const listed = spawnSync('tar', ['tzf', path.join(blobDir, key2)], { encoding: 'utf8' });
    expect(listed.status).toBe(0);
    expect(listed.stdout).toContain('python/corral_hello/__init__.py');
    expect(listed.stdout).toContain('npm/lib/node_modules/corral-hello/cli.js');
    expect(listed.stdout).toContain('npm/bin/corral-hello');
  });

  it('a failed install (the registry closed by the networking policy) starts no sandbox and caches nothing', async () => {
    const closed = plan('env_pkg_b', '2026-01-01T00:00:00.000Z', { networking: { type: 'limited', allowed_hosts: [], allow_package_managers: false } });
    hits.length = 0;
    const r = await run(closed, 'echo never');
    expect(r.isError).toBe(true);
    expect(r.setupError?.type).toBe('package_install_error');
    expect(r.output).not.toContain('never');
    expect(hits).toEqual([]);
    const key = packageCacheKey(fitRecipe(closed, provider.recipeSupport).recipe)!;
    expect(fs.existsSync(path.join(blobDir, key))).toBe(false);
  });
});
