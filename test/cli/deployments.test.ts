import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestRuntime, type TestRuntime } from '../helpers/runtime.js';
import { cli } from './helpers.js';

/** `corral deployments`: list, show (with its runs), runs, pause, unpause, run, against a local Corral. */
describe('corral deployments', () => {
  let t: TestRuntime;
  let env: Record<string, string>;
  let deploymentId: string;
  beforeAll(async () => {
    t = await startTestRuntime();
    env = { CORRAL_URL: t.runtime.url, CORRAL_API_KEY: t.runtime.apiKey };
    const agent = await t.client.beta.agents.create({ name: 'nightly', model: 'claude-sonnet-4-6' });
    const environment = await t.client.beta.environments.create({ name: 'e', config: { type: 'cloud' } });
    deploymentId = (
      await t.client.beta.deployments.create({
        name: 'nightly report',
        agent: agent.id,
        environment_id: environment.id,
        initial_events: [{ type: 'user.message', content: [{ type: 'text', text: 'Write the report.' }] }],
        schedule: { type: 'cron', expression: '30 2 * * *', timezone: 'Europe/Paris' },
      })
    ).id;
  });
  afterAll(() => t?.close());

  it('lists deployments with their schedule, runs one now, and shows its runs', async () => {
    const list = await cli(['deployments', 'list'], { env });
    expect(list.code).toBe(0);
    expect(list.stdout).toMatch(new RegExp(`${deploymentId}\\s+nightly report\\s+active\\s+30 2 \\* \\* \\* Europe/Paris`));

    const run = await cli(['deployments', 'run', deploymentId], { env });
    expect(run.code).toBe(0);
    const [, runId, sessionId] = run.stdout.match(/run (drun_\w+) started session (sesn_\w+)/)!;
    expect((await t.client.beta.sessions.retrieve(sessionId)).metadata).toMatchObject({ deployment_id: deploymentId, deployment_run_id: runId });

    const show = await cli(['deployments', 'show', deploymentId], { env });
    expect(show.code).toBe(0);
    expect(show.stdout).toContain('30 2 * * * (Europe/Paris)');
    expect(show.stdout).toMatch(new RegExp(`${runId}\\s+manual\\s+-\\s+.*${sessionId}`));

    const runs = JSON.parse((await cli(['deployments', 'runs', deploymentId, '--json'], { env })).stdout) as Array<{ id: string; session_id: string }>;
    expect(runs.map((r) => [r.id, r.session_id])).toEqual([[runId, sessionId]]);
    expect((await cli(['deployments', 'runs', deploymentId, '--errors'], { env })).stderr).toContain('(none)');
  });

  it('pauses and unpauses', async () => {
    const paused = await cli(['deployments', 'pause', deploymentId], { env });
    expect(paused.code).toBe(0);
    expect((await cli(['deployments', 'list'], { env })).stdout).toMatch(new RegExp(`${deploymentId}.*paused`));
    expect((await cli(['deployments', 'show', deploymentId], { env })).stdout).toContain('paused (manual)');
    const unpaused = await cli(['deployments', 'unpause', deploymentId], { env });
    expect(unpaused.stdout).toMatch(/unpaused deployment .*; next run/);
    const missing = await cli(['deployments', 'pause', 'depl_missing'], { env });
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain('404');
  });
});
