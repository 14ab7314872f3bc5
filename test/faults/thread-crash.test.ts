import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SessionEvent } from '../../lambdas/core/session/events.js';
import type { RecordedRequest, ScriptedTurn } from '../fixtures/fake-messages-api.js';
import { Crash, CrashPlan, checkInvariants, logicalTranscript, startRig, type Rig } from './harness-rig.js';

/**
 * A coordinator spawns two threads that each append a line to a file in their sandbox; the
 * harness is killed at every I/O boundary of one thread's wake (its model calls, the tool's
 * dispatch and result, every DynamoDB call), or of the coordinator's spawning step. Fresh
 * harnesses then run everything to the end: every run ends with the transcripts of a run without
 * crashes (the coordinator's and each thread's), and each thread's command ran exactly once.
 */
const offered = (req: RecordedRequest) => (req.body.tools ?? []).map((t) => (t as { name?: string }).name);

/** Deterministic in the conversation, so a repeated request gets the same answer. */
function model(req: RecordedRequest): ScriptedTurn {
  const all = JSON.stringify(req.body.messages ?? []);
  if (offered(req).includes('spawn_thread')) {
    const answers = all.split('[Message from thread').length - 1;
    if (answers > 0) return { kind: 'text', text: `${answers} of 2 answered.` };
    if (all.includes('tool_result')) return { kind: 'text', text: 'Waiting.' };
    return {
      kind: 'tool_use',
      calls: [
        { name: 'spawn_thread', input: { agent: 'worker', message: 'task-a' } },
        { name: 'spawn_thread', input: { agent: 'worker', message: 'task-b' } },
      ],
    };
  }
  const task = /task-[ab]/.exec(all)?.[0] ?? 'task-?';
  if (!all.includes('tool_result')) return { kind: 'tool_use', calls: [{ name: 'bash', input: { command: `echo ${task} >> log.txt; wc -l < log.txt` } }] };
  return { kind: 'text', text: `Done with ${task}.` };
}

describe('crash in the middle of a thread', () => {
  let rig: Rig;
  let coordinatorId: string;
  let envId: string;
  const tenant = 'faults-threads';
  beforeAll(async () => {
    rig = await startRig();
    rig.fake.setFallback(model);
    const worker = await rig.services.agents.create(tenant, { name: 'worker', model: 'claude-sonnet-4-6', tools: [{ type: 'agent_toolset_20260401' }] });
    coordinatorId = (await rig.services.agents.create(tenant, { name: 'lead', model: 'claude-sonnet-4-6', tools: [], multiagent: { type: 'coordinator', agents: [worker.id] } })).id;
    envId = (await rig.services.environments.create(tenant, { name: 'env' })).id;
  });
  afterAll(() => rig.close());

  const eventsOf = async (id: string) => (await rig.services.events.getEvents(id)).map((s) => s.event as SessionEvent);
  const threadsOf = async (id: string) => (await eventsOf(id)).flatMap((e) => (e.type === 'session.thread_created' ? [e.session_thread_id] : []));

  /** The coordinator's transcript with the threads named by their order of creation (their ids differ per run). */
  function coordinatorTranscript(events: SessionEvent[], threads: string[]) {
    const name = (text: string) => threads.reduce((t, id, i) => t.replaceAll(id, `thread-${i}`), text);
    return JSON.parse(
      name(
        JSON.stringify([
          ...logicalTranscript(events),
          ...events.flatMap((e): unknown[] => {
            if (e.type === 'session.thread_created') return [[e.type, e.session_thread_id, e.agent_name]];
            if (e.type === 'agent.thread_message_sent') return [[e.type, e.to_session_thread_id, e.content]];
            if (e.type === 'agent.thread_message_received') return [[e.type, e.from_session_thread_id, e.content]];
            if (e.type === 'session.thread_status_idle') return [[e.type, e.session_thread_id]];
            return [];
          }),
        ]),
      ),
    );
  }

  /**
   * One run: the coordinator spawns its two threads; `target` is the wake that dies after its
   * `crashAt`-th I/O operation (null: none): the coordinator's first wake (the one that spawns),
   * or the first thread's wake (the one that runs its command). Then fresh harnesses finish that
   * wake's work: the coordinator, and, for a thread crash, the first thread and the coordinator
   * that hears from it (the second thread is left alone: it is not what this run tests).
   */
  async function runOnce(target: 'thread' | 'coordinator', crashAt: number | null) {
    const session = await rig.services.sessions.create(tenant, { agent: coordinatorId, environment_id: envId });
    await rig.services.sessions.send(tenant, session.id, [{ type: 'user.message', content: [{ type: 'text', text: 'split it' }] }]);
    const plan = new CrashPlan(crashAt);
    try {
      if (target === 'coordinator') {
        await rig.dyingServices(plan).harness.wake(session.id);
      } else {
        await rig.settle(session.id);
        const [first] = await threadsOf(session.id);
        await rig.dyingServices(plan).harness.wake(first);
      }
    } catch (err) {
      if (!(err instanceof Crash)) throw err;
    }
    await rig.settle(session.id);
    const threads = await threadsOf(session.id);
    if (target === 'thread') {
      await rig.settle(threads[0]);
      await rig.settle(session.id);
    }
    const stored = await rig.services.events.getEvents(session.id);
    const events = stored.map((s) => s.event as SessionEvent);
    const threadLogs = await Promise.all(
      threads.map(async (id) => {
        const own = await rig.services.events.getEvents(id);
        const evs = own.map((s) => s.event as SessionEvent);
        return { problems: checkInvariants(own.map((s) => s.position), evs), transcript: logicalTranscript(evs) };
      }),
    );
    const file = target === 'thread' ? readFileSync(`${rig.provider.workspaceDir(threads[0], 'default')}/log.txt`, 'utf8') : null;
    return {
      plan,
      problems: [checkInvariants(stored.map((s) => s.position), events), ...threadLogs.map((t) => t.problems)],
      transcript: { coordinator: coordinatorTranscript(events, threads), threads: threadLogs.map((t) => t.transcript) },
      file,
    };
  }

  it('spawns each thread once and delivers its task once, whatever I/O of the spawning step the coordinator dies after', async () => {
    const baseline = await runOnce('coordinator', null);
    expect(baseline.problems).toEqual([[], [], []]);
    expect(baseline.transcript.threads).toEqual([
      [{ type: 'user.message', content: [{ type: 'text', text: 'task-a' }] }],
      [{ type: 'user.message', content: [{ type: 'text', text: 'task-b' }] }],
    ]);
    // From the answer that spawns to the end of the wake: every I/O of the spawning step.
    const from = baseline.plan.ops.indexOf('model:answered') + 1;
    expect(baseline.plan.ops.length - from).toBeGreaterThan(8);
    for (let k = from; k <= baseline.plan.ops.length; k++) {
      const run = await runOnce('coordinator', k);
      const at = `coordinator ${k} (${run.plan.ops.at(-1)})`;
      expect(run.plan.dead, at).toBe(true);
      expect({ at, problems: run.problems }).toEqual({ at, problems: [[], [], []] });
      expect({ at, transcript: run.transcript }).toEqual({ at, transcript: baseline.transcript });
    }
  }, 120_000);

  it("ends the same way and runs the thread's command once, whatever I/O of the thread's tool step it dies after", async () => {
    const baseline = await runOnce('thread', null);
    expect(baseline.problems).toEqual([[], [], []]);
    expect(baseline.file).toBe('task-a\n');
    expect(baseline.transcript.coordinator).toContainEqual(['session.thread_status_idle', 'thread-0']);
    expect(baseline.transcript.coordinator).not.toContainEqual(['session.thread_status_idle', 'thread-1']);
    expect(JSON.stringify(baseline.transcript.coordinator)).toContain('Done with task-a.');
    // The thread's tool step around the command: its last reads before the dispatch (the
    // sandbox's records), the command in flight, and the result's append. (The provisioning's
    // earlier I/O is the session crash suite's, test/faults/crash.test.ts: a thread runs the
    // same steps; each point here costs a sandbox.)
    const ops = baseline.plan.ops;
    const from = ops.indexOf('tool:dispatched') - 3;
    const to = ops.indexOf('tool:returned') + 3;
    expect(ops.slice(from, to)).toContain('tool:dispatched');
    for (let k = from; k <= to; k++) {
      const run = await runOnce('thread', k);
      const at = `thread ${k} (${run.plan.ops.at(-1)})`;
      expect(run.plan.dead, at).toBe(true);
      expect({ at, problems: run.problems }).toEqual({ at, problems: [[], [], []] });
      expect({ at, transcript: run.transcript }).toEqual({ at, transcript: baseline.transcript });
      // At most once: the command appended its line exactly once, even when the harness died mid-command.
      expect({ at, file: run.file }).toEqual({ at, file: 'task-a\n' });
    }
    console.info(`thread crash suite: ${to - from + 1} crash points in a thread's tool step`);
  }, 240_000);
});
