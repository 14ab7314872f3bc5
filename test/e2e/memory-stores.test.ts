import type Anthropic from '@anthropic-ai/sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { collectUntil, createAgentAndEnvironment, isIdle, listAll, startTestRuntime, type TestRuntime } from '../helpers/runtime.js';

/**
 * Memory stores through the official SDK on the local runtime (bubblewrapped sandboxes): a
 * session's agent writes a memory with bash into its read-write mount, the next session reads it;
 * a redacted version is gone from every read, the sandbox mount included; a read-only mount
 * refuses writes.
 */
describe('memory stores', () => {
  let t: TestRuntime;
  let c: Anthropic;
  let agentId: string;
  let environmentId: string;
  beforeAll(async () => {
    t = await startTestRuntime();
    c = t.client;
    const { agent, environment } = await createAgentAndEnvironment(c);
    agentId = agent.id;
    environmentId = environment.id;
  });
  afterAll(() => t?.close());

  /** One session that runs `command` with bash and ends; the tool result's text. */
  async function runBash(resources: Anthropic.Beta.Sessions.SessionCreateParams['resources'], ...commands: string[]): Promise<{ sessionId: string; output: string; system: string; resultAt: string }> {
    const session = await c.beta.sessions.create({ agent: agentId, environment_id: environmentId, resources });
    t.fake.push(...commands.map((command) => ({ kind: 'tool_use' as const, calls: [{ name: 'bash', input: { command } }] })), { kind: 'text', text: 'done' });
    const stream = await c.beta.sessions.events.stream(session.id);
    await c.beta.sessions.events.send(session.id, { events: [{ type: 'user.message', content: [{ type: 'text', text: 'go' }] }] });
    await collectUntil(stream, isIdle);
    stream.controller.abort();
    const events = (await listAll(c, session.id)) as Array<{ type: string; content?: unknown; processed_at?: string }>;
    const results = events.filter((e) => e.type === 'agent.tool_result');
    const system = JSON.stringify(t.fake.requests.at(-1)?.body.system ?? '');
    return { sessionId: session.id, output: JSON.stringify(results.map((r) => r.content)), system, resultAt: String(results[0]?.processed_at) };
  }

  it('a memory written in one session is read in the next; a redacted version is gone from every read', async () => {
    const store = await c.beta.memoryStores.create({ name: 'User Prefs', description: 'What the user likes.' });
    const session = await c.beta.sessions.create({ agent: agentId, environment_id: environmentId, resources: [{ type: 'memory_store', memory_store_id: store.id }] });
    expect(session.resources).toEqual([expect.objectContaining({ type: 'memory_store', memory_store_id: store.id, access: 'read_write', mount_path: '/mnt/memory/user-prefs', name: 'User Prefs' })]);
    await c.beta.sessions.delete(session.id);

    // Session 1 writes with bash, then corrects itself; each tool result comes back once its write is a memory version.
    const first = await runBash(
      [{ type: 'memory_store', memory_store_id: store.id }],
      'mkdir -p /mnt/memory/user-prefs/user && printf "drinks: secret-tea" > /mnt/memory/user-prefs/user/drinks.md && echo wrote',
      'printf "drinks: coffee" > /mnt/memory/user-prefs/user/drinks.md',
    );
    expect(first.output).toContain('wrote');
    expect(first.system).toContain('/mnt/memory/user-prefs (read-write)');
    const listed = await c.beta.memoryStores.memories.list(store.id);
    expect(listed.data.map((m) => m.path)).toEqual(['/user/drinks.md']);
    const memoryId = (listed.data[0] as { id: string }).id;
    const written = await c.beta.memoryStores.memoryVersions.list(store.id, { session_id: first.sessionId, view: 'full' });
    const actor = { type: 'session_actor', session_id: first.sessionId };
    expect(written.data).toEqual([
      expect.objectContaining({ operation: 'modified', content: 'drinks: coffee', created_by: actor }),
      expect.objectContaining({ operation: 'created', content: 'drinks: secret-tea', created_by: actor }),
    ]);
    // Recorded before the tool's result was: the log is never ahead of the store.
    expect(Date.parse(written.data[1].created_at)).toBeLessThanOrEqual(Date.parse(first.resultAt));

    // The first version is redacted: gone from the version reads and from the memory.
    const secret = written.data[1].id;
    await c.beta.memoryStores.memoryVersions.redact(secret, { memory_store_id: store.id });
    expect(await c.beta.memoryStores.memoryVersions.retrieve(secret, { memory_store_id: store.id })).toMatchObject({
      content: null, path: null, content_sha256: null, redacted_at: expect.any(String),
    });
    const versions = await c.beta.memoryStores.memoryVersions.list(store.id, { view: 'full' });
    expect(versions.data).toHaveLength(2);
    expect(JSON.stringify(versions.data)).not.toContain('secret-tea');
    expect((await c.beta.memoryStores.memories.retrieve(memoryId, { memory_store_id: store.id })).content).toBe('drinks: coffee');

    // Session 2 reads what session 1 wrote, and nothing of the redacted version is in its mount.
    const second = await runBash([{ type: 'memory_store', memory_store_id: store.id }], 'grep -r . /mnt/memory/ ; true');
    expect(second.output).toContain('drinks: coffee');
    expect(second.output).not.toContain('secret-tea');
  });

  it('a read-only mount refuses writes, and nothing reaches the store', async () => {
    const store = await c.beta.memoryStores.create({ name: 'rules' });
    await c.beta.memoryStores.memories.create(store.id, { path: '/style.md', content: 'be brief' });
    const run = await runBash(
      [{ type: 'memory_store', memory_store_id: store.id, access: 'read_only' }],
      'cat /mnt/memory/rules/style.md; echo changed > /mnt/memory/rules/style.md || echo REFUSED-1; echo new > /mnt/memory/rules/new.md || echo REFUSED-2; ln -s /etc/passwd /mnt/memory/rules/link || echo REFUSED-3',
    );
    expect(run.output).toContain('be brief');
    expect(run.output).toContain('REFUSED-1');
    expect(run.output).toContain('REFUSED-2');
    expect(run.output).toContain('REFUSED-3');
    const memories = await c.beta.memoryStores.memories.list(store.id, { view: 'full' });
    expect(memories.data.map((m) => [m.path, (m as { content?: string | null }).content])).toEqual([['/style.md', 'be brief']]);
  });

  it('what the agent writes outside the rules (a link out, a .. name, too large) is not kept', async () => {
    const store = await c.beta.memoryStores.create({ name: 'scratch' });
    const run = await runBash(
      [{ type: 'memory_store', memory_store_id: store.id }],
      'cd /mnt/memory/scratch && ln -s /etc/passwd passwd && ln -s /etc etc && head -c 200000 /dev/zero | tr "\\0" a > big.md && echo ok > fine.md && echo done',
    );
    expect(run.output).toContain('done');
    expect(run.output).toContain('big.md is larger than');
    const memories = await c.beta.memoryStores.memories.list(store.id, { view: 'full' });
    expect(memories.data.map((m) => [m.path, (m as { content?: string | null }).content])).toEqual([['/fine.md', 'ok\n']]);
  });
});
