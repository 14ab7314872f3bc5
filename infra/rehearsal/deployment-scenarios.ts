/**
 * The rehearsal's deployments scenario (docs/DEPLOYMENTS.md): a deployment's schedule on
 * EventBridge Scheduler as deployed. The API function makes the schedule through the rehearsal's
 * AWS endpoint under its own role (`scheduler:*Schedule` on the group's `corral-*` schedules,
 * `iam:PassRole` of the scheduler role to EventBridge Scheduler only); the Scheduler emulation
 * (`scheduler.ts`) fires it time-scaled (`RehearsalOptions.scheduleTimeScale`, 15 by default: a
 * one-minute schedule ticks every 4 seconds) by invoking the deployment-fire function as the
 * scheduler role, whose policy must allow `lambda:InvokeFunction` on it. The rehearsal's checks
 * after each scenario fail it for any IAM denial on the way.
 */
import type Anthropic from '@anthropic-ai/sdk';
import type { Rehearsal } from './rehearsal.js';
import { fail, type Scenario } from './scenarios.js';

export const DEPLOYMENT_SCENARIOS = ['deployments'] as const;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
type Run = Anthropic.Beta.BetaManagedAgentsDeploymentRun;
const scheduledAt = (run: Run) => (run.trigger_context.type === 'schedule' ? Date.parse(run.trigger_context.scheduled_at) : undefined);

export function deploymentScenarios(r: Rehearsal): Scenario[] {
  return [
    {
      name: 'deployments',
      proves:
        "a deployment with a one-minute schedule gets an EventBridge Scheduler schedule from the API function (under its role), which invokes the fire function as the scheduler role: one session per tick, one run for a scheduled time delivered twice; pausing stops the ticks and archiving deletes the schedule",
      timeoutMs: 150_000,
      async run(ctx) {
        const c = ctx.client;
        const api = r.fn('ApiHandler');
        const group = api.fn.environment.CORRAL_SCHEDULE_GROUP;
        if (!group || !api.fn.environment.CORRAL_SCHEDULER_ROLE_ARN || !api.fn.environment.CORRAL_DEPLOYMENT_FIRE_ARN) {
          fail("the API function's environment does not name the schedule group, the scheduler role and the fire function");
        }
        const agent = await c.beta.agents.create({ name: ctx.marker('deployment-agent'), model: ctx.model, tools: [] });
        const environment = await c.beta.environments.create({ name: ctx.marker('deployment-env'), config: { type: 'cloud' } });
        const runsOf = async (id: string) => {
          const out: Run[] = [];
          for await (const run of c.beta.deploymentRuns.list({ deployment_id: id, trigger_type: 'schedule' })) out.push(run);
          return out;
        };
        let deploymentId: string | undefined;
        try {
          const d = await c.beta.deployments.create({
            name: ctx.marker('deployment'),
            agent: agent.id,
            environment_id: environment.id,
            initial_events: [{ type: 'user.message', content: [{ type: 'text', text: 'Say hello.' }] }],
            schedule: { type: 'cron', expression: '* * * * *', timezone: 'UTC' },
          });
          deploymentId = d.id;
          const key = `${group}/corral-${d.id}`;
          const schedule = r.scheduler.schedules.get(key);
          if (!schedule || schedule.state !== 'ENABLED') fail(`no enabled schedule ${key} after the create (schedules: ${[...r.scheduler.schedules.keys()].join(', ') || 'none'})`);
          if (schedule.target.Arn !== api.fn.environment.CORRAL_DEPLOYMENT_FIRE_ARN || schedule.target.RoleArn !== api.fn.environment.CORRAL_SCHEDULER_ROLE_ARN) {
            fail(`the schedule targets ${schedule.target.Arn} as ${schedule.target.RoleArn}, not the fire function as the scheduler role`);
          }
          if (![...r.gateway.calls.keys()].some((k) => k.startsWith(`${api.fn.name} scheduler:`))) fail('the API function made no Scheduler call through the AWS endpoint');

          // Ticks: one run, with its own session, per scheduled time.
          const tickMs = 60_000 / r.scheduler.timeScale;
          let runs: Run[] = [];
          for (let i = 0; (runs = await runsOf(d.id)).length < 2; i++) {
            // The first tick cold-starts the fire function.
            if (i * 500 > 60_000 + 2 * tickMs) fail(`${runs.length} scheduled runs after ${Math.round(i / 2)} s of ticks every ${tickMs} ms`);
            await sleep(500);
          }
          const times = runs.map(scheduledAt);
          if (new Set(times).size !== runs.length) fail(`two runs for one scheduled time: ${times.join(', ')}`);
          if (times.some((t) => t === undefined || t % 60_000 !== 0)) fail(`scheduled times off the minute: ${times.join(', ')}`);
          const failed = runs.filter((run) => !run.session_id || run.error);
          if (failed.length) fail(`runs without a session: ${JSON.stringify(failed.map((run) => run.error))}`);
          if (new Set(runs.map((run) => run.session_id)).size !== runs.length) fail('two runs share a session');
          const session = await c.beta.sessions.retrieve(runs[0].session_id!);
          if (session.metadata?.deployment_id !== d.id || session.metadata?.deployment_run_id !== runs[0].id) fail(`the run's session says ${JSON.stringify(session.metadata)}`);

          // EventBridge Scheduler delivers at least once: the same scheduled time again starts nothing.
          const first = r.scheduler.fired.find((f) => f.schedule === key)!;
          const again = (await r.scheduler.fireAgain(key, first.scheduledAt)) as { started?: boolean; run_id?: string | null };
          if (again.started !== false) fail(`a second delivery of ${first.scheduledAt} answered ${JSON.stringify(again)}`);
          const ofFirst = (await runsOf(d.id)).filter((run) => scheduledAt(run) === Date.parse(first.scheduledAt));
          if (ofFirst.length !== 1 || ofFirst[0].id !== again.run_id) fail(`${ofFirst.length} runs for ${first.scheduledAt} after a second delivery (it answered run ${again.run_id})`);

          // Paused: the schedule is gone and nothing fires.
          await c.beta.deployments.pause(d.id);
          if (r.scheduler.schedules.has(key)) fail('the paused deployment still has its schedule');
          const firedAtPause = r.scheduler.fired.filter((f) => f.schedule === key).length;
          // Deliveries already under way when it paused finish; then two ticks' worth of waiting.
          for (let i = 0; (await runsOf(d.id)).length < firedAtPause; i++) {
            if (i > 50) break;
            await sleep(200);
          }
          const runsAtPause = (await runsOf(d.id)).length;
          await sleep(2 * tickMs);
          const firedAfter = r.scheduler.fired.filter((f) => f.schedule === key).length;
          const runsAfter = (await runsOf(d.id)).length;
          if (firedAfter !== firedAtPause || runsAfter !== runsAtPause) fail(`paused, it still fired (${firedAtPause} → ${firedAfter} firings, ${runsAtPause} → ${runsAfter} runs)`);

          // Unpaused, the schedule is back; archived, it is deleted.
          await c.beta.deployments.unpause(d.id);
          if (r.scheduler.schedules.get(key)?.state !== 'ENABLED') fail('unpausing did not bring the schedule back');
          await c.beta.deployments.archive(d.id);
          deploymentId = undefined;
          if ([...r.scheduler.schedules.keys()].some((k) => k.includes(d.id))) fail('the archived deployment still has a schedule');
          return `${runsAfter} scheduled runs, each its own session; a repeated delivery started nothing; paused: no firing; archived: no schedule`;
        } finally {
          if (deploymentId) await c.beta.deployments.archive(deploymentId).catch(() => undefined);
          // Every session the runs started goes, as the scenario runner deletes its own.
          const all: Run[] = [];
          for await (const run of c.beta.deploymentRuns.list({ limit: 100 })) if (run.agent.id === agent.id) all.push(run);
          for (const run of all) if (run.session_id) await c.beta.sessions.delete(run.session_id).catch(() => undefined);
          await c.beta.agents.archive(agent.id).catch(() => undefined);
          await c.beta.environments.delete(environment.id).catch(() => undefined);
        }
      },
    },
  ];
}
