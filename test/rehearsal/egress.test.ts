import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REHEARSAL_CONTEXT, rehearse } from '../../scripts/rehearse.js';
import { synthesize } from '../../infra/rehearsal/rehearsal.js';
import { EGRESS_STANDIN_HOSTS } from '../../infra/rehearsal/rehearsal-scenarios.js';
import { CREDENTIAL_SCENARIOS } from '../../infra/rehearsal/credential-scenarios.js';
import type { RehearseReport } from '../../scripts/rehearse.js';
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
 * pushed from the sandbox through the proxy service's git channel, the token nowhere in it. And the
 * environment-variable canary (`egress-credentials`): the secret reaches the API from the proxy
 * service and is nowhere in the sandbox; and the recorded AWS calls show who read the model key
 * and the vaults' secrets.
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

  it('allows the allowed hosts, the registry and the MCP server, denies the rest with a reason, leaves no way around the proxy; a private repository and an environment_variable credential pass through it, their secrets nowhere in the sandbox', async () => {
    const report = await rehearse({ fake, cloudAssembly: assembly, context, only: ['egress', ...GIT_SCENARIOS, ...CREDENTIAL_SCENARIOS], egressHosts: EGRESS_STANDIN_HOSTS });
    const egress = report.results.find((r) => r.name === 'egress');
    expect([egress?.name, egress?.ok, egress?.detail]).toEqual(['egress', true, expect.stringMatching(/through the proxy service \(\d+ connections/)]);
    // private-git: a private repository cloned and pushed from the sandbox through the proxy
    // service's git channel, the token in none of its environment, processes, memory and files.
    const git = report.results.find((r) => r.name === 'private-git');
    expect([git?.name, git?.ok, git?.detail]).toEqual(['private-git', true, expect.stringMatching(/pushed through the proxy service's git channel; the token is in none of [1-9]\d* sandbox task/)]);
    expectCredentialsRehearsed(report);
    expect(report.denials).toEqual([]);
    // The proxy's task role read the grants; no other call of it was denied.
    const calls = new Map(report.calls);
    expect([...calls.keys()].some((k) => k.includes('ProxyService') && k.endsWith(' dynamodb:GetItem'))).toBe(true);
  }, 300_000);
});

/**
 * The environment-variable canary passed, and the recorded AWS calls show who read what: the
 * model key's parameter by the proxy service's task role alone (never the harness), the vaults'
 * secrets only by the credential proxy function and the proxy service; nothing denied, no
 * connection refused by a security group.
 */
function expectCredentialsRehearsed(report: RehearseReport) {
  expect(report.results.filter((r) => r.name === 'egress-credentials').map((r) => [r.ok, r.detail])).toEqual([
    [true, expect.stringMatching(/^the canary API got the secret from the proxy service \(\d+ request.*processes' memory searched/)],
  ]);
  const readers = (match: (n: RehearseReport['named'][number]) => boolean) => [...new Set(report.named.filter(match).map((n) => `${n.caller} ${n.action}`))].sort();
  // The model key: read by the proxy service's task (its model route), by nothing else.
  const modelKey = readers((n) => n.action === 'ssm:GetParameter');
  expect(modelKey.length).toBeGreaterThan(0);
  expect(modelKey.filter((k) => !/ProxyService.* task ssm:GetParameter$/.test(k))).toEqual([]);
  expect([...report.calls.map(([k]) => k)].filter((k) => k.includes('HarnessStepFunction') && k.includes(' ssm:'))).toEqual([]);
  // The vaults' secrets: written by the credential proxy function, read by it and the proxy service.
  const vault = readers((n) => n.name.startsWith('corral/vault/'));
  expect(vault.some((k) => k.includes('CredentialProxyFunction') && k.endsWith('secretsmanager:CreateSecret'))).toBe(true);
  expect(vault.some((k) => /ProxyService.* task secretsmanager:GetSecretValue$/.test(k))).toBe(true);
  expect(vault.filter((k) => !k.includes('CredentialProxyFunction') && !/ProxyService.* task secretsmanager:GetSecretValue$/.test(k))).toEqual([]);
  expect(report.denials).toEqual([]);
  expect(report.refusals).toEqual([]);
}
