import Anthropic from '@anthropic-ai/sdk';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startLocalRuntime } from '../../local-runtime/runtime.js';
import { startTestRuntime, type TestRuntime } from '../helpers/runtime.js';
import { SdkTypes } from '../helpers/sdk-types.js';

/**
 * Deployments through the official SDK against the local runtime, with scheduled time running 60
 * times faster than real time (a one-minute schedule ticks every second): each tick starts one
 * session, a duplicated trigger of a time starts none more, pause stops the ticks, run now starts
 * one while paused, archive disarms. Responses are checked against the SDK's declared types.
 */
const DEPLOYMENTS = { file: 'deployments.d.ts', className: 'Deployments' };
const RUNS = { file: 'deployment-runs.d.ts', className: 'DeploymentRuns' };
const sdk = new SdkTypes([DEPLOYMENTS.file, RUNS.file]);
const resultOf = (r: typeof DEPLOYMENTS, name: string) => sdk.methods(r).find((m) => m.name === name)!.result;

const TIME_SCALE = 60;
const MINUTE = 60_000;

async function until<T>(what: string, f: () => Promise<T | undefined | false>, timeoutMs = 20_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await f();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('deployments', () => {
  let t: TestRuntime;
  let c: Anthropic;
  let agent: { id: string; version: number };
  let environmentId: string;
  beforeAll(async () => {
    t = await startTestRuntime({ runtime: { deploymentTimeScale: TIME_SCALE } });
    c = t.client;
    const a = await c.beta.agents.create({ name: 'cron-worker', model: 'claude-sonnet-4-6', tools: [] });
    agent = { id: a.id, version: a.version };
    environmentId = (await c.beta.environments.create({ name: 'env', config: { type: 'cloud' } })).id;
  });
  afterAll(() => t?.close());

  const template = () => ({
    name: 'every minute',
    agent: agent.id,
    environment_id: environmentId,
    initial_events: [{ type: 'user.message' as const, content: [{ type: 'text' as const, text: 'Check the orders.' }] }],
  });

  async function sessionsOf(deploymentId: string) {
    const out = [];
    for await (const s of c.beta.sessions.list({ limit: 100 })) if (s.metadata?.deployment_id === deploymentId) out.push(s);
    return out;
  }
  async function runsOf(deploymentId: string, trigger?: 'schedule' | 'manual') {
    const out = [];
    for await (const r of c.beta.deploymentRuns.list({ deployment_id: deploymentId, ...(trigger ? { trigger_type: trigger } : {}) })) out.push(r);
    return out;
  }

  it('a one-minute schedule starts one session per tick; a duplicated trigger starts none more; pause stops the ticks', { timeout: 60_000 }, async () => {
    const d = await c.beta.deployments.create({ ...template(), schedule: { type: 'cron', expression: '* * * * *', timezone: 'UTC' } });
    expect(d).toMatchObject({ type: 'deployment', status: 'active', paused_reason: null, archived_at: null, agent: { type: 'agent', id: agent.id, version: agent.version } });
    const upcoming = d.schedule!.upcoming_runs_at!.map(Date.parse);
    expect(upcoming).toHaveLength(5);
    upcoming.forEach((at, i) => {
      expect(at % MINUTE).toBe(0);
      if (i) expect(at - upcoming[i - 1]).toBe(MINUTE);
    });
    const raw = await c.beta.deployments.retrieve(d.id).asResponse().then((r) => r.json());
    expect(sdk.conforms(raw, resultOf(DEPLOYMENTS, 'retrieve'))).toEqual([]);

    // Three ticks, then pause. A fire that began before the pause may still be recording its run:
    // wait until every session the deployment started has its run (and no run lacks its session).
    await until('three scheduled runs', async () => (await runsOf(d.id)).length >= 3);
    const paused = await c.beta.deployments.pause(d.id);
    const scheduledAt = (r: { trigger_context: unknown }) => Date.parse((r.trigger_context as { scheduled_at: string }).scheduled_at);
    const runs = await until('every started session recorded as a run', async () => {
      const [r, sessions] = [await runsOf(d.id), await sessionsOf(d.id)];
      const ids = new Set(r.map((x) => x.session_id));
      return sessions.length === r.length && sessions.every((x) => ids.has(x.id)) && r.sort((x, y) => scheduledAt(x) - scheduledAt(y));
    });
    // One run per tick: consecutive scheduled minutes, none twice, none skipped.
    runs.forEach((r, i) => i && expect(scheduledAt(r) - scheduledAt(runs[i - 1])).toBe(MINUTE));
    for (const r of runs) {
      expect(r).toMatchObject({ type: 'deployment_run', deployment_id: d.id, error: null, trigger_context: { type: 'schedule' }, agent: { id: agent.id, version: agent.version } });
      expect(r.session_id).toMatch(/^sesn_/);
    }
    const scheduled = runs.map((r) => (r.trigger_context as { scheduled_at: string }).scheduled_at);
    expect(new Set(scheduled).size).toBe(runs.length);
    // The first tick is the deployment's first upcoming run (or, on a slow machine, the minute after:
    // the schedule is armed a moment after the response's upcoming runs were computed).
    expect(Date.parse(scheduled[0]) - upcoming[0]).toBeGreaterThanOrEqual(0);
    expect(Date.parse(scheduled[0]) - upcoming[0]).toBeLessThanOrEqual(MINUTE);
    const rawRun = await c.beta.deploymentRuns.retrieve(runs[0].id).asResponse().then((r) => r.json());
    expect(sdk.conforms(rawRun, resultOf(RUNS, 'retrieve'))).toEqual([]);
    const session = await c.beta.sessions.retrieve(runs[0].session_id!);
    expect(session).toMatchObject({ title: 'every minute', metadata: { deployment_id: d.id, deployment_run_id: runs[0].id }, agent: { id: agent.id, version: agent.version } });

    expect(paused).toMatchObject({ status: 'paused', paused_reason: { type: 'manual' } });
    expect(paused.schedule!.upcoming_runs_at).toHaveLength(5); // what it would do if unpaused
    expect(t.runtime.deploymentScheduler.armed().has(d.id)).toBe(false);
    // While paused, a trigger (a late EventBridge delivery) starts nothing.
    const future = new Date(Math.ceil((t.runtime.deploymentScheduler.clock() + 3_600_000) / MINUTE) * MINUTE).toISOString();
    expect(await t.runtime.services.deployments.fire(d.id, future)).toBeNull();

  });

  it('a duplicated trigger of one scheduled time starts one session, however often and however concurrently it comes', async () => {
    // New Year's midnight: the scheduler's own tick is far away, so every fire here is the test's.
    const d = await c.beta.deployments.create({ ...template(), name: 'yearly', schedule: { type: 'cron', expression: '0 0 1 1 *', timezone: 'Europe/Paris' } });
    const at = d.schedule!.upcoming_runs_at![0];
    const fire = () => t.runtime.services.deployments.fire(d.id, at);
    const results = await Promise.all([fire(), fire(), fire()]);
    expect(results.filter((r) => r!.started)).toHaveLength(1);
    expect(new Set(results.map((r) => r!.run.id)).size).toBe(1);
    // Later duplicates (EventBridge Scheduler delivers at least once) find the recorded run.
    const late = await fire();
    expect(late).toMatchObject({ started: false, run: { id: results[0]!.run.id, session_id: expect.stringMatching(/^sesn_/) } });
    // A time that is not an occurrence of the schedule starts nothing.
    expect(await t.runtime.services.deployments.fire(d.id, new Date(Date.parse(at) + MINUTE).toISOString())).toBeNull();
    const runs = await runsOf(d.id);
    expect(runs.map((r) => r.id)).toEqual([late!.run.id]);
    expect((await sessionsOf(d.id)).map((s) => s.id)).toEqual([late!.run.session_id]);
    expect((await c.beta.deployments.retrieve(d.id)).schedule!.last_run_at).toBe(late!.run.created_at);
    await c.beta.deployments.archive(d.id);
  });

  it('run now starts a session while paused, with a manual trigger; archive disarms the schedule', { timeout: 60_000 }, async () => {
    const d = await c.beta.deployments.create({ ...template(), schedule: { type: 'cron', expression: '0 9 * * 1-5', timezone: 'America/New_York' } });
    expect(t.runtime.deploymentScheduler.armed().get(d.id)).toBe(d.schedule!.upcoming_runs_at![0]);
    await c.beta.deployments.pause(d.id);
    const run = await c.beta.deployments.run(d.id);
    expect(run).toMatchObject({ type: 'deployment_run', deployment_id: d.id, trigger_context: { type: 'manual' }, error: null });
    expect(sdk.conforms(JSON.parse(JSON.stringify(run)), resultOf(DEPLOYMENTS, 'run'))).toEqual([]);
    expect((await c.beta.sessions.retrieve(run.session_id!)).metadata).toMatchObject({ deployment_id: d.id });
    expect((await runsOf(d.id, 'manual')).map((r) => r.id)).toEqual([run.id]);
    expect(await runsOf(d.id, 'schedule')).toEqual([]);
    // Manual runs do not move last_run_at.
    expect((await c.beta.deployments.retrieve(d.id)).schedule!.last_run_at).toBeNull();

    await c.beta.deployments.unpause(d.id);
    expect(t.runtime.deploymentScheduler.armed().has(d.id)).toBe(true);
    const updated = await c.beta.deployments.update(d.id, { schedule: null, description: 'manual only' });
    expect(updated).toMatchObject({ schedule: null, description: 'manual only' });
    expect(t.runtime.deploymentScheduler.armed().has(d.id)).toBe(false);
    await c.beta.deployments.update(d.id, { schedule: { type: 'cron', expression: '*/5 * * * *', timezone: 'UTC' } });
    expect(t.runtime.deploymentScheduler.armed().has(d.id)).toBe(true);

    const archived = await c.beta.deployments.archive(d.id);
    expect(archived).toMatchObject({ status: 'active', archived_at: expect.any(String) });
    expect(archived.schedule!.upcoming_runs_at).toEqual([]);
    expect(t.runtime.deploymentScheduler.armed().has(d.id)).toBe(false);
    await expect(c.beta.deployments.run(d.id)).rejects.toMatchObject({ status: 400 });
    const listed = [];
    for await (const x of c.beta.deployments.list()) listed.push(x.id);
    expect(listed).not.toContain(d.id);
    const all = [];
    for await (const x of c.beta.deployments.list({ include_archived: true })) all.push(x.id);
    expect(all).toContain(d.id);
    // The run record outlives the archive.
    expect((await c.beta.deploymentRuns.retrieve(run.id)).session_id).toBe(run.session_id);
  });

  it('refuses at the edge what it would not run, naming the field', { timeout: 60_000 }, async () => {
    const bad: Array<[Record<string, unknown>, RegExp]> = [
      [{ schedule: { type: 'cron', expression: '0 0 30 2 *', timezone: 'UTC' } }, /schedule\.expression.*never matches/],
      [{ schedule: { type: 'cron', expression: '0 9 * * MON-FRI', timezone: 'Mars/Base' } }, /schedule\.timezone/],
      [{ schedule: { type: 'cron', expression: '@daily', timezone: 'UTC' } }, /schedule\.expression/],
      [{ schedule: { type: 'cron', expression: '0 0 * * *' } }, /schedule\.timezone/],
      [{ initial_events: [] }, /initial_events/],
      [{ initial_events: [{ type: 'system.message', content: [{ type: 'text', text: 'x' }] }] }, /initial_events\.0.*system\.message/],
      [{ resources: [{ type: 'github_repository', url: 'https://github.com/a/b', authorization_token: 'ghp_secret' }] }, /resources\.0\.authorization_token/],
      [{ agent: 'agent_missing' }, /agent: /],
      [{ environment_id: 'env_missing' }, /environment_id: /],
      [{ triggers: [] }, /triggers/],
    ];
    for (const [patch, message] of bad) {
      const err = await c.beta.deployments.create({ ...template(), ...patch } as never).then(() => null, (e: unknown) => e as { status: number; message: string });
      expect(err, JSON.stringify(patch)).not.toBeNull();
      expect(err!.status, JSON.stringify(patch)).toBe(400);
      expect(err!.message, JSON.stringify(patch)).toMatch(message);
      expect(err!.message).not.toContain('ghp_secret');
    }
    await expect(c.beta.deployments.list({ include_archived: true, status: 'paused' })).rejects.toMatchObject({ status: 400 });
    await expect(c.beta.deploymentRuns.retrieve('drun_missing')).rejects.toMatchObject({ status: 404 });
  });
});

describe('deployments across a restart', () => {
  it('the scheduler arms the stored deployments again when the runtime starts', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'corral-deploy-'));
    const start = () => startLocalRuntime({ port: 0, dataDir, anthropicApiKey: 'k', anthropicBaseUrl: 'http://127.0.0.1:9', credentialProxy: false });
    try {
      let rt = await start();
      const c = new Anthropic({ baseURL: rt.url, apiKey: rt.apiKey, maxRetries: 0 });
      const agent = await c.beta.agents.create({ name: 'a', model: 'claude-sonnet-4-6' });
      const env = await c.beta.environments.create({ name: 'e', config: { type: 'cloud' } });
      const base = { agent: agent.id, environment_id: env.id, initial_events: [{ type: 'user.message' as const, content: [{ type: 'text' as const, text: 'hi' }] }] };
      const daily = await c.beta.deployments.create({ ...base, name: 'daily', schedule: { type: 'cron', expression: '0 6 * * *', timezone: 'Europe/Paris' } });
      const paused = await c.beta.deployments.create({ ...base, name: 'paused', schedule: { type: 'cron', expression: '0 6 * * *', timezone: 'UTC' } });
      await c.beta.deployments.pause(paused.id);
      await rt.close();
      rt = await start();
      try {
        expect(rt.deploymentScheduler.armed().get(daily.id)).toBe(daily.schedule!.upcoming_runs_at![0]);
        expect(rt.deploymentScheduler.armed().has(paused.id)).toBe(false);
      } finally {
        await rt.close();
      }
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
