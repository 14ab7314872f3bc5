import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LocalEgressProxy } from '../../lambdas/adapters/local/egress-proxy.js';
import { ProcessSandboxProvider, bwrapAvailable } from '../../lambdas/adapters/local/process-sandbox.js';
import { collectUntil, isIdle, startTestRuntime, type TestRuntime } from '../helpers/runtime.js';
import { tempDir } from '../sandbox/helpers.js';

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';

/**
 * An environment's networking, end to end on the local runtime (official SDK -> API -> harness ->
 * fake model -> a bubblewrapped sandbox -> the egress proxy): the policy is planned from the
 * environment the session was created with, and the model's tool calls see an allowed host, a
 * package registry stand-in, and a denied host's 403. The proxy is given the test-only loopback
 * exception and resolver (see test/sandbox/egress.test.ts).
 */
const HAS_BWRAP = await bwrapAvailable();
if (!HAS_BWRAP && process.env.CI) throw new Error('bubblewrap (bwrap) is required for the egress tests in CI');

const text = (t: string) => [{ type: 'text' as const, text: t }];
type Ev = { type: string; [k: string]: unknown };

describe.skipIf(!HAS_BWRAP)('egress end to end (local runtime)', { timeout: 60_000 }, () => {
  let t: TestRuntime;
  let provider: ProcessSandboxProvider;
  let egress: LocalEgressProxy;
  let origin: http.Server;
  let port: number;
  let root: string;
  const hits: string[] = [];

  beforeAll(async () => {
    root = tempDir('corral-e2e-egress-');
    origin = http.createServer((req, res) => {
      hits.push(`${req.headers.host}${req.url}`);
      res.end(`hello from ${req.headers.host}\n`);
    });
    await new Promise<void>((r) => origin.listen(0, '127.0.0.1', r));
    port = (origin.address() as AddressInfo).port;
    const names = new Set(['allowed.test', 'denied.test', 'pypi.org']);
    egress = new LocalEgressProxy({
      logger: { warn: () => {} },
      allowPrivateAddresses: ['127.0.0.1'],
      resolve: async (host) => (names.has(host) ? ['127.0.0.1'] : Promise.reject(Object.assign(new Error('not found'), { code: 'ENOTFOUND' }))),
    });
    provider = new ProcessSandboxProvider({ dataDir: root, isolation: 'bwrap', logger: { warn: () => {} }, egress });
    t = await startTestRuntime({ runtime: { sandboxProvider: provider } });
  });
  afterAll(async () => {
    await t?.close();
    await provider?.close();
    await egress?.close();
    await new Promise((r) => origin?.close(r));
    fs.rmSync(root, { recursive: true, force: true });
  });

  it("applies the session's environment: an allowed host and a registry answer, another host is a 403 the model reads", async () => {
    const agent = await t.client.beta.agents.create({ name: 'a', model: 'claude-sonnet-4-6', tools: [{ type: 'agent_toolset_20260401' }] } as never);
    const environment = await t.client.beta.environments.create({
      name: 'limited',
      config: { type: 'cloud', networking: { type: 'limited', allowed_hosts: [`allowed.test:${port}`], allow_package_managers: true } },
    });
    const session = await t.client.beta.sessions.create({ agent: agent.id, environment_id: environment.id });
    const curl = (host: string) => `curl -sS -m 10 http://${host}:${port}/x`;
    t.fake.push(
      {
        kind: 'tool_use',
        calls: [
          { name: 'bash', input: { command: curl('allowed.test') } },
          { name: 'bash', input: { command: curl('pypi.org') } },
          { name: 'bash', input: { command: curl('denied.test') } },
        ],
      },
      { kind: 'text', text: 'done' },
    );
    const stream = await t.client.beta.sessions.events.stream(session.id);
    await t.client.beta.sessions.events.send(session.id, { events: [{ type: 'user.message', content: text('fetch') }] });
    const seen = (await collectUntil(stream, isIdle)) as Ev[];
    const results = seen.filter((e) => e.type === 'agent.tool_result').map((e) => (e.content as Array<{ text: string }>)[0]!.text);
    expect(results[0]).toBe(`hello from allowed.test:${port}\n`);
    expect(results[1]).toBe(`hello from pypi.org:${port}\n`);
    expect(results[2]).toContain(`denied.test:${port} is not allowed by this environment's networking policy (limited; allowed_hosts: allowed.test:${port}; allow_package_managers: true`);
    expect(hits).toEqual([`allowed.test:${port}/x`, `pypi.org:${port}/x`]);
  });
});
