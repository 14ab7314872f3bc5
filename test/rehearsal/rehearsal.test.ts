import { cpSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REHEARSAL_CONTEXT, rehearse } from '../../scripts/rehearse.js';
import { synthesize } from '../../infra/rehearsal/rehearsal.js';
import { startFakeMessagesApi, type FakeMessagesApi } from '../fixtures/fake-messages-api.js';
import { dynamoDbLocalUnavailable } from '../helpers/dynamodb-local.js';

/**
 * The deploy rehearsal in CI: the synthesized stack, run from its own bundles with its own roles,
 * routes, queues, tables and security groups, passes every scenario with no AWS call denied; and
 * the same stack with one grant the code needs removed fails, naming the action and the function.
 */
describe('deploy rehearsal', () => {
  let fake: FakeMessagesApi;
  let dir: string;
  let assembly: string;
  // In CI the tables are AWS's own DynamoDB Local; elsewhere dynalite unless it is there.
  const dynamodb = dynamoDbLocalUnavailable() ? 'dynalite' : 'dynamodb-local';
  if (process.env.CI && dynamodb !== 'dynamodb-local') throw new Error(`CI needs DynamoDB Local for the rehearsal: ${dynamoDbLocalUnavailable()}`);

  beforeAll(async () => {
    fake = await startFakeMessagesApi();
    dir = mkdtempSync(join(tmpdir(), 'corral-rehearsal-test-'));
    assembly = await synthesize(join(dir, 'cdk.out'), { ...REHEARSAL_CONTEXT, anthropicBaseUrl: fake.url });
  }, 300_000);
  afterAll(async () => {
    await fake?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('passes every scenario with no IAM denial, no gateway failure and no function killed at its timeout', async () => {
    const report = await rehearse({ fake, cloudAssembly: assembly, dynamodb });
    const failed = report.results.filter((r) => !r.ok).map((r) => `${r.name}: ${r.detail}`);
    expect(failed).toEqual([]);
    expect(report.results.map((r) => r.name)).toEqual(
      expect.arrayContaining(['tool-round-trip', 'stream-resume', 'interrupt', 'tool-confirmation', 'large-event-list', 'session-delete', 'files-in-and-out', 'step-deadline', 'idle-reaper', 'sandbox-handoff', 'mcp-through-proxy', 'security-groups', 'workspace-after-idle', 'memory', 'webhooks', 'threads']),
    );
    expect(report.results.map((r) => r.name)).toContain('outcomes');
    expect(report.results.map((r) => r.name)).toContain('deployments');
    expect(report.denials).toEqual([]);
    // Every function that serves a scenario really ran from its bundle and called AWS through its role.
    const callers = new Set(report.calls.map(([k]) => k.split(' ')[0]));
    for (const fn of ['ApiHandler', 'ApiStreamHandler', 'HarnessStepFunction', 'CredentialProxyFunction', 'SandboxReaperFunction', 'WebhooksFunction']) {
      expect([...callers].some((c) => c.includes(fn)), `${fn} made no AWS call`).toBe(true);
    }
    // The deployments scenario's schedules invoked the fire function as the scheduler role.
    expect([...callers].some((c) => c.includes('DeploymentsFire')), 'the deployment-fire function made no AWS call').toBe(true);
    // The security-groups scenario was refused at least once, on purpose.
    expect(report.refusals.length).toBeGreaterThan(0);
  }, 1_200_000);

  it('fails, naming the denied action and the function, when the harness loses a grant it needs', async () => {
    // The same assembly with the harness role's ecs:RunTask statement removed.
    const broken = join(dir, 'broken.out');
    mkdirSync(broken);
    for (const entry of readdirSync(assembly)) {
      if (entry.startsWith('asset.')) symlinkSync(join(assembly, entry), join(broken, entry));
      else cpSync(join(assembly, entry), join(broken, entry), { recursive: true });
    }
    const file = join(broken, 'Corral.template.json');
    const template = JSON.parse(readFileSync(file, 'utf8'));
    let removed = 0;
    for (const [id, r] of Object.entries(template.Resources) as Array<[string, { Type: string; Properties: { PolicyDocument: { Statement: Array<{ Action: unknown }> } } }]>) {
      if (r.Type !== 'AWS::IAM::Policy' || !id.startsWith('HarnessStep')) continue;
      const before = r.Properties.PolicyDocument.Statement.length;
      r.Properties.PolicyDocument.Statement = r.Properties.PolicyDocument.Statement.filter((s) => ![s.Action].flat().includes('ecs:RunTask'));
      removed += before - r.Properties.PolicyDocument.Statement.length;
    }
    expect(removed).toBe(1);
    writeFileSync(file, JSON.stringify(template));
    const report = await rehearse({ fake, cloudAssembly: broken, dynamodb: 'dynalite', only: ['tool-round-trip'] });
    const [result] = report.results;
    expect(result.ok).toBe(false);
    expect(report.denials).toEqual(expect.arrayContaining([expect.objectContaining({ action: 'ecs:RunTask', function: expect.stringContaining('HarnessStepFunction') })]));
    expect(result.detail).toMatch(/IAM denied ecs:RunTask .* to Corral-HarnessStepFunction/);
  }, 600_000);
});
