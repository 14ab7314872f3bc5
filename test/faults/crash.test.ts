import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SessionEvent } from '../../lambdas/core/session/events.js';
import type { ScriptedTurn } from '../fixtures/fake-messages-api.js';
import { Crash, CrashPlan, checkInvariants, logicalTranscript, startRig, type Rig } from './harness-rig.js';

/**
 * A scripted session whose model decides from the conversation so far, so that repeating a
 * request (after a crash) gets the same answer: append a line to a file, read the file, answer.
 */
function model(req: { body: { messages: Array<{ content: unknown }> } }): ScriptedTurn {
  const results = JSON.stringify(req.body.messages).split('"tool_result"').length - 1;
  if (results === 0) return { kind: 'tool_use', text: 'Appending.', calls: [{ name: 'bash', input: { command: 'echo ran >> log.txt; wc -l < log.txt' } }] };
  if (results === 1) return { kind: 'tool_use', calls: [{ name: 'read', input: { file_path: 'log.txt' } }] };
  return { kind: 'text', text: 'Done.' };
}

describe('crash at every I/O boundary of a harness step', () => {
  let rig: Rig;
  let agentId: string;
  let envId: string;
  const tenant = 'faults';
  beforeAll(async () => {
    rig = await startRig();
    rig.fake.setFallback(model as never);
    const agent = await rig.services.agents.create(tenant, { name: 'crash', model: 'claude-sonnet-4-6', tools: [{ type: 'agent_toolset_20260401' }] });
    const env = await rig.services.environments.create(tenant, { name: 'env' });
    agentId = agent.id;
    envId = env.id;
  });
  afterAll(() => rig.close());

  async function runOnce(crashAt: number | null) {
    const session = await rig.services.sessions.create(tenant, { agent: agentId, environment_id: envId });
    await rig.services.sessions.send(tenant, session.id, [{ type: 'user.message', content: [{ type: 'text', text: 'go' }] }]);
    const plan = new CrashPlan(crashAt);
    let crashed: string | null = null;
    try {
      await rig.dyingServices(plan).harness.wake(session.id);
    } catch (err) {
      if (!(err instanceof Crash)) throw err;
      crashed = err.at;
    }
    if (plan.dead && !crashed) crashed = plan.ops[plan.ops.length - 1];
    await rig.settle(session.id); // a fresh harness takes over
    const stored = await rig.services.events.getEvents(session.id);
    const events = stored.map((s) => s.event as SessionEvent);
    const sandbox = (await rig.services.sandboxes.list(session.id))[0];
    const file = sandbox ? readFileSync(`${rig.provider.workspaceDir(session.id, 'default')}/log.txt`, 'utf8') : '';
    return { plan, crashed, events, positions: stored.map((s) => s.position), file };
  }

  it('ends every run with the transcript of a run without crashes, and runs the command once', async () => {
    const baseline = await runOnce(null);
    expect(checkInvariants(baseline.positions, baseline.events)).toEqual([]);
    expect(baseline.events.at(-1)).toMatchObject({ type: 'session.status_idle', stop_reason: { type: 'end_turn' } });
    expect(baseline.file).toBe('ran\n');
    const expected = logicalTranscript(baseline.events);
    const points = baseline.plan.ops.length;
    expect(points).toBeGreaterThan(20);
    // every boundary kind is among the crash points
    for (const kind of ['dynamodb:Query', 'dynamodb:PutItem', 'model:answered', 'tool:dispatched', 'tool:returned']) {
      expect(baseline.plan.ops).toContain(kind);
    }

    const crashedAt: string[] = [];
    for (let k = 1; k <= points; k++) {
      const run = await runOnce(k);
      expect(run.crashed, `crash point ${k}`).not.toBeNull();
      crashedAt.push(run.crashed!);
      expect({ k, problems: checkInvariants(run.positions, run.events) }).toEqual({ k, problems: [] });
      expect({ k, at: run.crashed, transcript: logicalTranscript(run.events) }).toEqual({ k, at: run.crashed, transcript: expected });
      // at most once: the append ran exactly once, even when the harness died mid-command
      expect({ k, at: run.crashed, file: run.file }).toEqual({ k, at: run.crashed, file: 'ran\n' });
    }
    expect(crashedAt).toHaveLength(points);
    console.info(`crash suite: ${points} crash points, ${new Set(crashedAt).size} kinds of boundary`);
    // One run per crash point, one after another, each with a sandbox: minutes on a loaded
    // two-core machine (about 2.5 in CI beside the other long files; allow for twice as loaded).
  }, 900_000);
});
