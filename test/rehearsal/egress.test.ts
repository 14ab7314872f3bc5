import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REHEARSAL_CONTEXT, rehearse } from '../../scripts/rehearse.js';
import { synthesize } from '../../infra/rehearsal/rehearsal.js';
import { EGRESS_STANDIN_HOSTS } from '../../infra/rehearsal/rehearsal-scenarios.js';
import { GIT_CONTEXT, GIT_SCENARIOS } from '../../infra/rehearsal/git-scenarios.js';
import { startFakeMessagesApi, type FakeMessagesApi } from '../fixtures/fake-messages-api.js';

/**
 * Sandbox egress as deployed (`proxyService=fargate`), in the deploy rehearsal, one deploy: the
 * proxy service's tasks run from the template's image with its environment and task role (the
 * grants read with that role), behind its NLB with its security group; a sandbox task whose
 * security group reaches no internet runs in a network namespace of its own, with its egress
 * channel bridged out from its private address through the security groups' check. Through the
 * official SDK, a scripted model's curl reaches an allowed host, a package registry and the
 * agent's MCP server (stand-ins on loopback), reads a denied host's 403 reason, and fails to
 * connect around the proxy. In the same deploy (`GIT_CONTEXT` lets the API accept a loopback
 * repository; sandbox egress does not read it), `private-git`: a private repository cloned and
 * pushed from the sandbox through the proxy service's git channel, the token nowhere in it.
 */
describe('deploy rehearsal: egress through the proxy service', () => {
  let fake: FakeMessagesApi;
  let dir: string;
  let assembly: string;
  const context = { proxyService: 'fargate', s3PrefixListId: 'pl-6da54004', ...GIT_CONTEXT };

  beforeAll(async () => {
    fake = await startFakeMessagesApi();
    dir = mkdtempSync(join(tmpdir(), 'corral-rehearsal-egress-'));
    assembly = await synthesize(join(dir, 'cdk.out'), { ...REHEARSAL_CONTEXT, ...context, anthropicBaseUrl: fake.url });
  }, 300_000);
  afterAll(async () => {
    await fake?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('allows the allowed hosts, the registry and the MCP server, denies the rest with a reason, and leaves no way around the proxy', async () => {
    const report = await rehearse({ fake, cloudAssembly: assembly, context, only: ['egress', ...GIT_SCENARIOS], egressHosts: EGRESS_STANDIN_HOSTS });
    const egress = report.results.find((r) => r.name === 'egress');
    expect([egress?.name, egress?.ok, egress?.detail]).toEqual(['egress', true, expect.stringMatching(/through the proxy service \(\d+ connections/)]);
    // private-git: a private repository cloned and pushed from the sandbox through the proxy
    // service's git channel, the token in none of its environment, processes, memory and files.
    const git = report.results.find((r) => r.name === 'private-git');
    expect([git?.name, git?.ok, git?.detail]).toEqual(['private-git', true, expect.stringMatching(/pushed through the proxy service's git channel; the token is in none of [1-9]\d* sandbox task/)]);
    expect(report.denials).toEqual([]);
    // The proxy's task role read the grants; no other call of it was denied.
    const calls = new Map(report.calls);
    expect([...calls.keys()].some((k) => k.includes('ProxyService') && k.endsWith(' dynamodb:GetItem'))).toBe(true);
  }, 300_000);
});
