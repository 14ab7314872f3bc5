import Anthropic from '@anthropic-ai/sdk';
import { PutItemCommand } from '@aws-sdk/client-dynamodb';
import { unmarshall } from '@aws-sdk/util-dynamodb';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureTables } from '../../lambdas/adapters/aws/tables.js';
import { startDynalite } from '../../lambdas/adapters/local/dynalite.js';
import { startFakeMessagesApi, type FakeMessagesApi } from '../fixtures/fake-messages-api.js';
import { listAll, waitFor } from '../helpers/runtime.js';

/**
 * An upgrade of a running instance. The old code's part is real: `test/fixtures/upgrade/
 * unversioned.jsonl` holds the tables of a local instance of the release before schema versions,
 * SIGKILLed in the middle of a session (made by `scripts/make-upgrade-fixture.ts` on that
 * release): one tool call done, a second running in its sandbox, a user message queued behind
 * it, the harness holding the lease; and a second session at rest with a saved cursor and a
 * raised interrupt signal. The new code (`npm start`'s program, this checkout) starts on those
 * tables and must finish both sessions: each tool command run once, the transcript complete.
 */

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const FIXTURE = join(ROOT, 'test', 'fixtures', 'upgrade', 'unversioned.jsonl');
/** The fixture's tenant key (only its hash is in the fixture). */
const API_KEY = 'sk-corral-upgrade-fixture';

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

/** Put the old release's items, byte for byte, into the tables of a fresh data dir. */
async function loadFixture(dataDir: string) {
  const lines = readFileSync(FIXTURE, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  const dynamo = await startDynalite({ path: join(dataDir, 'dynamodb') });
  try {
    await ensureTables(dynamo.client, { events: 'corral-events', state: 'corral-state' });
    for (const { table, item } of lines.slice(1)) await dynamo.client.send(new PutItemCommand({ TableName: table, Item: item }));
  } finally {
    await dynamo.close();
  }
  const events = lines.slice(1).filter((l) => l.table === 'corral-events').map((l) => unmarshall(l.item));
  return { meta: lines[0] as { session_id: string; idle_session_id: string; agent_id: string }, events };
}

describe('upgrading a running instance', () => {
  let fake: FakeMessagesApi;
  let dataDir: string;
  let child: ChildProcess | null = null;

  beforeAll(async () => {
    fake = await startFakeMessagesApi();
    dataDir = mkdtempSync(join(tmpdir(), 'corral-upgrade-'));
  });
  afterAll(async () => {
    if (child && child.exitCode === null) {
      const exited = new Promise((r) => child!.once('exit', r));
      child.kill('SIGKILL');
      await exited;
    }
    await fake.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('new code on the old release\'s data finishes the session it was stopped in', async () => {
    const { meta, events: oldEvents } = await loadFixture(dataDir);
    const sessionId = meta.session_id;
    const oldLog = oldEvents.filter((e) => e.sessionId === sessionId).sort((a, b) => a.position - b.position).map((e) => JSON.parse(e.event));
    // the moment the old instance was stopped: a tool call running, a message queued behind it
    expect(oldLog.map((e) => e.type)).toEqual([
      'user.message', 'session.status_running', 'span.model_request_start', 'agent.tool_use', 'span.model_request_end', 'agent.tool_result',
      'span.model_request_start', 'agent.tool_use', 'span.model_request_end', 'user.message',
    ]);

    // What the model answers once the new code asks it again: one more command, then the end.
    fake.push(
      { kind: 'tool_use', calls: [{ name: 'bash', input: { command: 'echo third >> ran-third; ls' } }] },
      { kind: 'text', text: 'all done' },
    );
    const port = await freePort();
    const url = `http://127.0.0.1:${port}`;
    child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'local-runtime/main.ts')], {
      cwd: ROOT,
      env: { ...process.env, PORT: String(port), CORRAL_DATA_DIR: dataDir, CORRAL_API_KEY: API_KEY, ANTHROPIC_API_KEY: 'test-model-key', ANTHROPIC_BASE_URL: fake.url },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    await waitFor(() => fetch(`${url}/health`).then((r) => r.ok, () => false), 'server health', 30_000);
    const client = new Anthropic({ baseURL: url, apiKey: API_KEY, maxRetries: 2 });

    // The session it was stopped in finishes, woken by the new code's start-up recovery.
    await waitFor(async () => (await listAll(client, sessionId)).some((e) => e.type === 'agent.message'), 'the session to finish', 60_000);
    await waitFor(async () => (await client.beta.sessions.retrieve(sessionId)).status === 'idle', 'the session to be idle', 30_000);
    const log = await listAll(client, sessionId);
    // nothing the old code wrote changed
    expect(log.slice(0, oldLog.length)).toEqual(oldLog);
    // the transcript is complete: every tool use has exactly one result, after it
    const uses = log.filter((e) => e.type === 'agent.tool_use');
    expect(uses).toHaveLength(3);
    for (const use of uses) {
      const results = log.filter((e) => e.type === 'agent.tool_result' && e.tool_use_id === use.id);
      expect(results).toHaveLength(1);
      expect(log.indexOf(results[0]!)).toBeGreaterThan(log.indexOf(use));
    }
    // the command that was running when the old code stopped is reported, not run again
    const second = log.find((e) => e.type === 'agent.tool_result' && e.tool_use_id === uses[1]!.id)!;
    expect(second.is_error).toBe(true);
    const starts = log.filter((e) => e.type === 'span.model_request_start').map((e) => e.id);
    expect(log.filter((e) => e.type === 'span.model_request_end').map((e) => e.model_request_start_id).sort()).toEqual([...starts].sort());
    expect(log.at(-1)).toMatchObject({ type: 'session.status_idle', stop_reason: { type: 'end_turn' } });
    expect(log.find((e) => e.type === 'agent.message')).toMatchObject({ content: [{ type: 'text', text: 'all done' }] });

    // the queued message reached the model, in the first request the new code made
    const after = fake.requests.map((r) => JSON.stringify(r.body));
    expect(after[0]).toContain('queued while the tool runs');
    // each command ran once: the new sandbox ran only the third (the old ones' markers would be here too)
    const workspace = join(dataDir, 'sandboxes', sessionId, 'default', 'workspace');
    expect(readFileSync(join(workspace, 'ran-third'), 'utf8')).toBe('third\n');
    expect(existsSync(join(workspace, 'ran-first'))).toBe(false);
    expect(existsSync(join(workspace, 'ran-second'))).toBe(false);

    // The session at rest (a release-0 cursor, a raised interrupt signal) takes a new turn.
    const idleBefore = await listAll(client, meta.idle_session_id);
    await client.beta.sessions.events.send(meta.idle_session_id, { events: [{ type: 'user.message', content: [{ type: 'text', text: 'after the upgrade' }] }] });
    await waitFor(async () => (await listAll(client, meta.idle_session_id)).filter((e) => e.type === 'agent.message').length === 2, 'the resting session to answer', 30_000);
    const idleAfter = await listAll(client, meta.idle_session_id);
    expect(idleAfter.slice(0, idleBefore.length)).toEqual(idleBefore);
    expect(idleAfter.filter((e) => e.type === 'agent.message').at(-1)).toMatchObject({ content: [{ text: 'You said: after the upgrade' }] });

    // the agent and its versions are the old release's, read by the new code
    const versions = await client.beta.agents.versions.list(meta.agent_id);
    expect(versions.data.map((v) => v.version).sort()).toEqual([1, 2]);
    expect(stderr).not.toMatch(/newer_record/);
  }, 120_000);
});
