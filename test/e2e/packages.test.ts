import { spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LocalEgressProxy } from '../../lambdas/adapters/local/egress-proxy.js';
import { ProcessSandboxProvider, bwrapAvailable, localPackageManagers } from '../../lambdas/adapters/local/process-sandbox.js';
import { collectUntil, isIdle, startTestRuntime, type TestRuntime } from '../helpers/runtime.js';
import { tempDir } from '../sandbox/helpers.js';

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';

/**
 * An environment's packages end to end on the local runtime (official SDK -> API -> harness ->
 * fake model -> a bubblewrapped sandbox -> the egress proxy -> an npm registry stand-in on
 * loopback under registry.npmjs.org's name): the first session's sandbox installs the package and
 * the model's command uses it; the second session's sandbox (same environment version) has it
 * from the package cache without the registry; each starting call's `agent.tool_result` reports
 * how (`sandbox_packages`). test/sandbox/packages.test.ts covers pip, versions, failures and races.
 */
const HAS_BWRAP = await bwrapAvailable();
if (!HAS_BWRAP && process.env.CI) throw new Error('bubblewrap (bwrap) is required for the package tests in CI');
const HAS_NPM = localPackageManagers(true).includes('npm');
if (!HAS_NPM && process.env.CI) throw new Error('npm on the sandbox PATH is required for the package tests in CI');

type Ev = { type: string; [k: string]: unknown };

describe.skipIf(!HAS_BWRAP || !HAS_NPM)('environment packages end to end (local runtime)', { timeout: 300_000 }, () => {
  let t: TestRuntime;
  let provider: ProcessSandboxProvider;
  let egress: LocalEgressProxy;
  let registry: http.Server;
  let root: string;
  const hits: string[] = [];

  beforeAll(async () => {
    root = tempDir('corral-e2e-packages-');
    const pkg = path.join(root, 'package');
    fs.mkdirSync(pkg);
    fs.writeFileSync(path.join(pkg, 'package.json'), JSON.stringify({ name: 'corral-e2e', version: '1.0.0', main: 'index.js' }));
    fs.writeFileSync(path.join(pkg, 'index.js'), "module.exports = 'hello from the registry';\n");
    spawnSync('tar', ['czf', 'pkg.tgz', 'package'], { cwd: root });
    const tgz = fs.readFileSync(path.join(root, 'pkg.tgz'));
    registry = http.createServer((req, res) => {
      hits.push(req.url ?? '');
      if (req.url === '/corral-e2e') {
        const dist = { tarball: `http://${req.headers.host}/corral-e2e/-/corral-e2e-1.0.0.tgz`, integrity: `sha512-${crypto.createHash('sha512').update(tgz).digest('base64')}` };
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify({ name: 'corral-e2e', 'dist-tags': { latest: '1.0.0' }, versions: { '1.0.0': { name: 'corral-e2e', version: '1.0.0', dist } } }));
      } else if (req.url === '/corral-e2e/-/corral-e2e-1.0.0.tgz') res.end(tgz);
      else {
        res.statusCode = 404;
        res.end();
      }
    });
    await new Promise<void>((r) => registry.listen(0, '127.0.0.1', r));
    const port = (registry.address() as AddressInfo).port;
    egress = new LocalEgressProxy({
      logger: { warn: () => {} },
      allowPrivateAddresses: ['127.0.0.1'],
      resolve: async (host) => (host === 'registry.npmjs.org' ? ['127.0.0.1'] : Promise.reject(Object.assign(new Error('not found'), { code: 'ENOTFOUND' }))),
    });
    provider = new ProcessSandboxProvider({ dataDir: root, isolation: 'bwrap', logger: { warn: () => {} }, egress, packageIndexes: { npm: `http://registry.npmjs.org:${port}/` } });
    t = await startTestRuntime({ runtime: { sandboxProvider: provider } });
  });
  afterAll(async () => {
    await t?.close();
    await provider?.close();
    await egress?.close();
    await new Promise((r) => registry?.close(r));
    fs.rmSync(root, { recursive: true, force: true });
  });

  it("installs the environment's npm package once; the next session's sandbox restores it, and each start is reported on its tool result", async () => {
    const agent = await t.client.beta.agents.create({ name: 'a', model: 'claude-sonnet-4-6', tools: [{ type: 'agent_toolset_20260401' }] } as never);
    const environment = await t.client.beta.environments.create({
      name: 'with-packages',
      config: { type: 'cloud', packages: { npm: ['corral-e2e'] }, networking: { type: 'limited', allowed_hosts: [], allow_package_managers: true } } as never,
    });
    const runSession = async () => {
      const session = await t.client.beta.sessions.create({ agent: agent.id, environment_id: environment.id });
      t.fake.push({ kind: 'tool_use', calls: [{ name: 'bash', input: { command: `node -e "console.log(require('corral-e2e'))"` } }] }, { kind: 'text', text: 'done' });
      const stream = await t.client.beta.sessions.events.stream(session.id);
      await t.client.beta.sessions.events.send(session.id, { events: [{ type: 'user.message', content: [{ type: 'text', text: 'go' }] }] });
      const seen = (await collectUntil(stream, isIdle)) as Ev[];
      return seen.find((e) => e.type === 'agent.tool_result')!;
    };

    const first = await runSession();
    expect((first.content as Array<{ text: string }>)[0]!.text).toBe('hello from the registry\n');
    expect(first.sandbox_packages).toEqual({ cache: 'miss', install_ms: { npm: expect.any(Number) }, stored: true });
    expect(hits).toContain('/corral-e2e');

    hits.length = 0;
    const second = await runSession();
    expect((second.content as Array<{ text: string }>)[0]!.text).toBe('hello from the registry\n');
    expect(second.sandbox_packages).toEqual({ cache: 'hit', restore_ms: expect.any(Number), install_ms: {} });
    expect(hits).toEqual([]);
  });
});
