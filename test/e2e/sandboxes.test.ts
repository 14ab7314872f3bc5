/**
 * Hands as cattle, end to end on the local runtime (official SDK -> API -> harness -> fake model
 * -> real sandboxes): several named sandboxes in one session, a sandbox killed in the middle of a
 * command, a handoff from one session to another over HTTP, the recipe's repositories, and the
 * idle reaper wired into the runtime.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ProcessSandboxProvider } from '../../lambdas/adapters/local/process-sandbox.js';
import { SandboxClient } from '../../lambdas/core/sandbox/client.js';
import { SandboxUnavailableError } from '../../lambdas/core/sandbox/types.js';
import { collectUntil, createAgentAndEnvironment, isIdle, listAll, startTestRuntime, waitFor, type TestRuntime } from '../helpers/runtime.js';
import { makeGitFixture, processAlive, tempDir } from '../sandbox/helpers.js';

const text = (t: string) => [{ type: 'text' as const, text: t }];
type Ev = { type: string; [k: string]: unknown };
const resultText = (e: Ev) => (e.content as Array<{ text: string }>)[0]!.text;

describe('sandboxes end to end (local runtime)', () => {
  let t: TestRuntime;
  let provider: ProcessSandboxProvider;
  let sandboxRoot: string;
  let agentId: string;
  let envId: string;

  beforeAll(async () => {
    sandboxRoot = tempDir('corral-e2e-sbx-');
    provider = new ProcessSandboxProvider({ dataDir: sandboxRoot, logger: { warn: () => {} } });
    t = await startTestRuntime({ runtime: { sandboxProvider: provider } });
    const { agent, environment } = await createAgentAndEnvironment(t.client);
    agentId = agent.id;
    envId = environment.id;
  });
  afterAll(async () => {
    await t?.close();
    await provider?.close();
    fs.rmSync(sandboxRoot, { recursive: true, force: true });
  });

  const newSession = (extra: Record<string, unknown> = {}) => t.client.beta.sessions.create({ agent: agentId, environment_id: envId, ...extra } as never);
  const api = (method: string, p: string, body?: unknown, key = t.runtime.apiKey) =>
    fetch(`${t.runtime.url}${p}`, {
      method,
      headers: { 'x-api-key': key, 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  async function turn(sessionId: string, message: string): Promise<Ev[]> {
    const stream = await t.client.beta.sessions.events.stream(sessionId);
    await t.client.beta.sessions.events.send(sessionId, { events: [{ type: 'user.message', content: text(message) }] });
    return (await collectUntil(stream, isIdle)) as Ev[];
  }

  it('runs two named sandboxes in one session; tool results name the sandbox that answered', async () => {
    const session = await newSession();
    t.fake.push(
      {
        kind: 'tool_use',
        calls: [
          { name: 'bash', input: { command: 'echo api > who; pwd', sandbox: 'api' } },
          { name: 'bash', input: { command: 'cat who 2>/dev/null || echo none; pwd', sandbox: 'web' } },
        ],
      },
      { kind: 'tool_use', calls: [{ name: 'read', input: { file_path: 'who', sandbox: 'api' } }, { name: 'glob', input: { pattern: '*' } }] },
      { kind: 'text', text: 'two hands' },
    );
    const seen = await turn(session.id, 'use two sandboxes');
    const results = seen.filter((e) => e.type === 'agent.tool_result');
    expect(results.map((r) => [r.sandbox, r.is_error])).toEqual([
      ['api', false],
      ['web', false],
      ['api', false],
      ['default', false],
    ]);
    const apiWs = provider.workspaceDir(session.id, 'api');
    const webWs = provider.workspaceDir(session.id, 'web');
    expect(resultText(results[0]!)).toBe(`${apiWs}\n`);
    expect(resultText(results[1]!)).toBe(`none\n${webWs}\n`);
    expect(resultText(results[2]!)).toBe('     1\tapi');
    expect(seen.at(-1)).toMatchObject({ stop_reason: { type: 'end_turn' } });

    const records = await t.runtime.services.sandboxes.list(session.id);
    expect(records.map((r) => r.name).sort()).toEqual(['api', 'default', 'web']);
    expect(new Set(records.map((r) => r.ref)).size).toBe(3);

    const res = await api('GET', `/v1/sessions/${session.id}/sandboxes`);
    expect(res.status).toBe(200);
    const body = (await res.json()) as { data: Array<Record<string, unknown>>; next_page: null };
    expect(body.next_page).toBeNull();
    expect(body.data.map((d) => d.name).sort()).toEqual(['api', 'default', 'web']);
    expect(body.data[0]).toEqual({ type: 'sandbox', name: expect.any(String), state: 'ready', created_at: expect.any(String), last_used_at: expect.any(String) });
    const raw = JSON.stringify(body);
    for (const r of records) expect(raw).not.toContain(r.endpoint.capability);
    expect(raw).not.toMatch(/socket|capability|endpoint|ref/);
  });

  it('turns a sandbox killed mid-command into an error result, and the next call runs on a fresh one', async () => {
    const session = await newSession();
    t.fake.push(
      { kind: 'tool_use', calls: [{ name: 'bash', input: { command: 'touch started; sleep 120' } }] },
      { kind: 'tool_use', calls: [{ name: 'bash', input: { command: 'echo fresh' } }] },
      { kind: 'text', text: 'recovered' },
    );
    const stream = await t.client.beta.sessions.events.stream(session.id);
    await t.client.beta.sessions.events.send(session.id, { events: [{ type: 'user.message', content: text('go') }] });
    const marker = () => path.join(provider.workspaceDir(session.id, 'default'), 'started');
    await waitFor(async () => fs.existsSync(marker()), 'the command to start');
    const killed = (await t.runtime.services.sandboxes.get(session.id, 'default'))!;
    process.kill(Number(killed.ref), 'SIGKILL');

    // Bounded: were the death not noticed, the command would run for 120 s and the test time out.
    const seen = (await collectUntil(stream, isIdle)) as Ev[];
    const results = seen.filter((e) => e.type === 'agent.tool_result');
    expect(results).toHaveLength(2);
    expect(results[0]).toMatchObject({ is_error: true, sandbox: 'default' });
    expect(resultText(results[0]!)).toMatch(/^sandbox "default" became unavailable during this call \(.*\)\. Its state is lost; the next tool call starts a fresh sandbox/);
    // the model is not shown where the sandbox lived
    expect(resultText(results[0]!)).not.toMatch(/unix:|\.sock|\/sandboxes\//);
    expect(results[1]).toMatchObject({ is_error: false, sandbox: 'default', content: [{ type: 'text', text: 'fresh\n' }] });
    expect(seen.at(-1)).toMatchObject({ type: 'session.status_idle', stop_reason: { type: 'end_turn' } });
    // the model saw the error
    const second = t.fake.requests.at(-2)!.body as { messages: unknown[] };
    expect(JSON.stringify(second.messages.at(-1))).toContain('became unavailable');
    const fresh = (await t.runtime.services.sandboxes.get(session.id, 'default'))!;
    expect(fresh.state).toBe('ready');
    expect(fresh.ref).not.toBe(killed.ref);
    expect(processAlive(Number(killed.ref))).toBe(false);
  }, 60_000);

  it('hands a sandbox from one session to another over HTTP, recorded in both logs', async () => {
    const a = await newSession({ title: 'implementer' });
    const b = await newSession({ title: 'reviewer' });

    // A writes its work, then holds the sandbox busy until we let it go.
    t.fake.push(
      { kind: 'tool_use', calls: [{ name: 'write', input: { file_path: 'handoff.txt', content: 'from A' } }] },
      { kind: 'tool_use', calls: [{ name: 'bash', input: { command: 'touch busy; while [ ! -f release ]; do sleep 0.05; done; echo released' } }] },
      { kind: 'text', text: 'A done' },
    );
    const aStream = await t.client.beta.sessions.events.stream(a.id);
    await t.client.beta.sessions.events.send(a.id, { events: [{ type: 'user.message', content: text('implement') }] });
    const ws = () => provider.workspaceDir(a.id, 'default');
    await waitFor(async () => fs.existsSync(path.join(ws(), 'busy')), 'A to be busy in its sandbox');
    const busy = await api('POST', `/v1/sessions/${a.id}/sandboxes/default/handoff`, { to_session_id: b.id, as: 'impl' });
    expect(busy.status).toBe(409);
    expect(((await busy.json()) as { error: { message: string } }).error.message).toMatch(/is running; a sandbox can be handed off only while both sessions are idle/);
    fs.writeFileSync(path.join(ws(), 'release'), '');
    await collectUntil(aStream, isIdle);
    const before = (await t.runtime.services.sandboxes.get(a.id, 'default'))!;

    // The handoff
    const bStream = await t.client.beta.sessions.events.stream(b.id);
    const res = await api('POST', `/v1/sessions/${a.id}/sandboxes/default/handoff`, { to_session_id: b.id, as: 'impl' });
    expect(res.status).toBe(200);
    const body = (await res.json()) as Record<string, any>;
    expect(body).toEqual({
      type: 'sandbox_handoff',
      sandbox: { type: 'sandbox', name: 'impl', state: 'ready', created_at: before.createdAt, last_used_at: expect.any(String), received_from: { session_id: a.id, sandbox: 'default', at: expect.any(String) } },
      from: { session_id: a.id, sandbox: 'default', event_id: expect.any(String) },
      to: { session_id: b.id, sandbox: 'impl', event_id: expect.any(String) },
    });

    // both logs, through the official SDK (list and stream)
    const aLog = await listAll(t.client, a.id);
    expect(aLog.at(-1)).toEqual({ type: 'corral.sandbox_handoff_sent', id: body.from.event_id, processed_at: expect.any(String), sandbox: 'default', to_session_id: b.id, to_sandbox: 'impl' });
    const [received] = (await collectUntil(bStream, (e) => e.type === 'corral.sandbox_handoff_received')) as Ev[];
    expect(received).toEqual({ type: 'corral.sandbox_handoff_received', id: body.to.event_id, processed_at: expect.any(String), sandbox: 'impl', from_session_id: a.id, from_sandbox: 'default' });
    expect((await t.client.beta.sessions.retrieve(a.id)).status).toBe('idle');
    expect((await t.client.beta.sessions.retrieve(b.id)).status).toBe('idle');

    // the old capability no longer opens it
    const old = await new SandboxClient(before.endpoint).execute('bash', { command: 'true' }).catch((e: unknown) => e);
    expect(old).toBeInstanceOf(SandboxUnavailableError);
    expect((old as Error).message).toMatch(/capability rejected/);

    // B's model reaches A's workspace under the new name, without a copy
    t.fake.push({ kind: 'tool_use', calls: [{ name: 'bash', input: { command: 'cat handoff.txt; echo; pwd', sandbox: 'impl' } }] }, { kind: 'text', text: 'reviewed' });
    await t.client.beta.sessions.events.send(b.id, { events: [{ type: 'user.message', content: text('review') }] });
    const bTurn = (await collectUntil(bStream, isIdle)) as Ev[];
    const bResult = bTurn.find((e) => e.type === 'agent.tool_result')!;
    expect(bResult).toMatchObject({ is_error: false, sandbox: 'impl' });
    const aWorkspace = ws();
    expect(provider.workspaceDir(b.id, 'impl')).toBe(aWorkspace);
    expect(resultText(bResult)).toBe(`from A\n${aWorkspace}\n`);
    expect(bTurn.at(-1)).toMatchObject({ stop_reason: { type: 'end_turn' } });
    // B's model request carries no trace of the Corral events (the context builder ignores them)
    expect(JSON.stringify(t.fake.requests.at(-2)!.body)).not.toContain('corral.sandbox');

    // A's model gets a fresh sandbox under the old name: the work is gone from A's reach
    t.fake.push({ kind: 'tool_use', calls: [{ name: 'bash', input: { command: 'cat handoff.txt 2>/dev/null || echo missing' } }] }, { kind: 'text', text: 'ok' });
    const aTurn = await turn(a.id, 'look again');
    expect(aTurn.find((e) => e.type === 'agent.tool_result')).toMatchObject({ is_error: false, sandbox: 'default', content: [{ type: 'text', text: 'missing\n' }] });
    const after = (await t.runtime.services.sandboxes.get(a.id, 'default'))!;
    expect(after.ref).not.toBe(before.ref);
    expect(processAlive(Number(before.ref))).toBe(true);

    // listings
    const aList = (await (await api('GET', `/v1/sessions/${a.id}/sandboxes`)).json()) as { data: Array<Record<string, unknown>> };
    expect(aList.data.map((d) => d.name)).toEqual(['default']);
    expect(aList.data[0]!.received_from).toBeUndefined();
    const bList = (await (await api('GET', `/v1/sessions/${b.id}/sandboxes`)).json()) as { data: Array<Record<string, unknown>> };
    expect(bList.data).toEqual([expect.objectContaining({ name: 'impl', state: 'ready', received_from: expect.objectContaining({ session_id: a.id, sandbox: 'default' }) })]);
  }, 60_000);

  it('refuses handoffs that cannot be done, with API errors', async () => {
    const a = await newSession();
    const b = await newSession();
    const none = await api('POST', `/v1/sessions/${a.id}/sandboxes/default/handoff`, { to_session_id: b.id });
    expect(none.status).toBe(404);
    expect(await none.json()).toEqual({ type: 'error', error: { type: 'not_found_error', message: `session ${a.id} has no running sandbox named "default"` } });

    t.fake.push({ kind: 'tool_use', calls: [{ name: 'bash', input: { command: 'true' } }] }, { kind: 'text', text: 'x' });
    await turn(a.id, 'start one');
    t.fake.push({ kind: 'tool_use', calls: [{ name: 'bash', input: { command: 'true' } }] }, { kind: 'text', text: 'x' });
    await turn(b.id, 'start one too');

    const cases: Array<[unknown, number, RegExp]> = [
      [{ to_session_id: a.id }, 400, /another session/],
      [{ to_session_id: 'sesn_doesnotexist' }, 404, /not found/],
      [{ to_session_id: b.id }, 409, /already has a running sandbox named "default"/],
      [{ to_session_id: b.id, as: 'bad name!' }, 400, /as:/],
      [{ to_session_id: b.id, extra: 1 }, 400, /unknown field/],
    ];
    for (const [reqBody, status, message] of cases) {
      const res = await api('POST', `/v1/sessions/${a.id}/sandboxes/default/handoff`, reqBody);
      expect({ reqBody, status: res.status }).toEqual({ reqBody, status });
      expect(((await res.json()) as { error: { message: string } }).error.message).toMatch(message);
    }
    // another tenant sees neither session
    const otherKey = 'sk-other-tenant-key-0123456789abcdef';
    await t.runtime.services.tenants.addKey('someone-else', otherKey);
    expect((await api('GET', `/v1/sessions/${a.id}/sandboxes`, undefined, otherKey)).status).toBe(404);
    expect((await api('POST', `/v1/sessions/${a.id}/sandboxes/default/handoff`, { to_session_id: b.id, as: 'x' }, otherKey)).status).toBe(404);
    // nothing moved
    expect((await t.runtime.services.sandboxes.get(a.id, 'default'))!.state).toBe('ready');
    expect(await t.runtime.services.sandboxes.get(b.id, 'x')).toBeUndefined();
  });

  it('refuses repositories that are not remote, and reports a clone that cannot happen as a tool error and a session error', async () => {
    // A local path is a 400 (repositories are cloned inside the sandbox, never on the host).
    const repo = makeGitFixture(sandboxRoot, 'proj');
    await expect(newSession({ resources: [{ type: 'github_repository', url: repo.url }] })).rejects.toMatchObject({ status: 400 });
    // This runtime's provider has no credential proxy, so a remote repository cannot be cloned.
    const bad = await newSession({ resources: [{ type: 'github_repository', url: 'https://git.example.com/org/missing.git' }] });
    t.fake.push({ kind: 'tool_use', calls: [{ name: 'bash', input: { command: 'true' } }] }, { kind: 'text', text: 'x' });
    const failed = await turn(bad.id, 'look');
    const err = failed.find((e) => e.type === 'agent.tool_result')!;
    expect(err.is_error).toBe(true);
    expect(resultText(err)).toMatch(/^could not start sandbox "default": repository_clone_error: repositories are cloned through the credential proxy/);
    expect(failed.find((e) => e.type === 'session.error')).toMatchObject({
      error: { type: 'repository_clone_error', retry_status: { type: 'terminal' } },
    });
    expect(failed.at(-1)).toMatchObject({ stop_reason: { type: 'end_turn' } });
  });
});

describe('the idle reaper in the local runtime', () => {
  it('keeps the workspace: the files written before an idle stop are there in the new sandbox', async () => {
    // Default isolation: bubblewrap, with the tools as a uid of their own where Corral is root.
    const t = await startTestRuntime({ runtime: { sandboxIdleMs: 400 } });
    try {
      const { agent, environment } = await createAgentAndEnvironment(t.client);
      const session = await t.client.beta.sessions.create({ agent: agent.id, environment_id: environment.id });
      t.fake.push(
        { kind: 'tool_use', calls: [{ name: 'bash', input: { command: 'mkdir -p notes && echo "remember me" > notes/a.txt && seq 1 3 > n.txt' } }] },
        { kind: 'text', text: 'x' },
      );
      const stream = await t.client.beta.sessions.events.stream(session.id);
      await t.client.beta.sessions.events.send(session.id, { events: [{ type: 'user.message', content: text('write') }] });
      await collectUntil(stream, isIdle);
      const first = (await t.runtime.services.sandboxes.get(session.id, 'default'))!;
      await waitFor(async () => (await t.runtime.services.sandboxes.get(session.id, 'default'))?.state === 'released', 'the reaper', 60_000);
      await waitFor(async () => !processAlive(Number(first.ref)), 'the sandbox to stop');
      const released = (await t.runtime.services.sandboxes.get(session.id, 'default'))!;
      expect(released.snapshot?.key).toMatch(new RegExp(`^workspaces/local/${session.id}/default\\.`));
      expect(fs.existsSync(path.join(t.dataDir, 'blobs', released.snapshot!.key))).toBe(true);

      t.fake.push({ kind: 'tool_use', calls: [{ name: 'bash', input: { command: 'cat notes/a.txt n.txt' } }] }, { kind: 'text', text: 'x' });
      await t.client.beta.sessions.events.send(session.id, { events: [{ type: 'user.message', content: text('read') }] });
      const seen = (await collectUntil(stream, isIdle)) as Ev[];
      expect(resultText(seen.find((e) => e.type === 'agent.tool_result')!)).toMatch(
        /^\[corral\] sandbox "default": it had been stopped \(unused for more than 400 ms\); this call runs in a new sandbox whose workspace was restored from the snapshot .*: 2 files, .*\nremember me\n1\n2\n3\n$/,
      );
      const second = (await t.runtime.services.sandboxes.get(session.id, 'default'))!;
      expect(second.ref).not.toBe(first.ref);

      // Deleting the session deletes its snapshots.
      const partition = async () => (await t.runtime.services.table.query(`session#${session.id}`)).items.map((i) => i.sk);
      expect(await partition()).toEqual(expect.arrayContaining(['cursor', 'head', 'head#usage', 'sandbox#default']));
      await t.client.beta.sessions.delete(session.id);
      expect(fs.existsSync(path.join(t.dataDir, 'blobs', released.snapshot!.key))).toBe(false);
      // Nothing of the session is left in the state table: not its usage, cursor, lease, signal or sandbox records.
      expect(await partition()).toEqual([]);
    } finally {
      await t.close();
    }
  }, 180_000);

  it('stops a sandbox nobody used for CORRAL_SANDBOX_IDLE_MS, and the next call gets a fresh one', async () => {
    const t = await startTestRuntime({ runtime: { sandboxIdleMs: 300, sandboxIsolation: 'none' } });
    try {
      const { agent, environment } = await createAgentAndEnvironment(t.client);
      const session = await t.client.beta.sessions.create({ agent: agent.id, environment_id: environment.id });
      t.fake.push({ kind: 'tool_use', calls: [{ name: 'bash', input: { command: 'echo one' } }] }, { kind: 'text', text: 'x' });
      const stream = await t.client.beta.sessions.events.stream(session.id);
      await t.client.beta.sessions.events.send(session.id, { events: [{ type: 'user.message', content: text('first') }] });
      await collectUntil(stream, isIdle);
      const first = (await t.runtime.services.sandboxes.get(session.id, 'default'))!;
      await waitFor(async () => (await t.runtime.services.sandboxes.get(session.id, 'default'))?.state === 'released', 'the reaper');
      await waitFor(async () => !processAlive(Number(first.ref)), 'the sandbox to stop');

      t.fake.push({ kind: 'tool_use', calls: [{ name: 'bash', input: { command: 'echo two' } }] }, { kind: 'text', text: 'x' });
      await t.client.beta.sessions.events.send(session.id, { events: [{ type: 'user.message', content: text('second') }] });
      const seen = (await collectUntil(stream, isIdle)) as Ev[];
      expect(resultText(seen.find((e) => e.type === 'agent.tool_result')!)).toMatch(/^\[corral\] sandbox "default": it had been stopped \(unused for more than 300 ms\); .*\ntwo\n$/);
    } finally {
      await t.close();
    }
  });
});
