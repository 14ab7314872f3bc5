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
  async function runBash(resources: Anthropic.Beta.Sessions.SessionCreateParams['resources'], command: string): Promise<{ sessionId: string; output: string; system: string; resultAt: string }> {
    const session = await c.beta.sessions.create({ agent: agentId, environment_id: environmentId, resources });
    t.fake.push({ kind: 'tool_use', calls: [{ name: 'bash', input: { command } }] }, { kind: 'text', text: 'done' });
    const stream = await c.beta.sessions.events.stream(session.id);
    await c.beta.sessions.events.send(session.id, { events: [{ type: 'user.message', content: [{ type: 'text', text: 'go' }] }] });
    await collectUntil(stream, isIdle);
    stream.controller.abort();
    const events = (await listAll(c, session.id)) as Array<{ type: string; content?: unknown; processed_at?: string }>;
    const result = events.find((e) => e.type === 'agent.tool_result');
    const system = JSON.stringify(t.fake.requests.at(-1)?.body.system ?? '');
    return { sessionId: session.id, output: JSON.stringify(result?.content ?? null), system, resultAt: String(result?.processed_at) };
  }

  it('a memory written in one session is read in the next; a redacted version is gone from every read', async () => {
    const store = await c.beta.memoryStores.create({ name: 'User Prefs', description: 'What the user likes.' });
    const session = await c.beta.sessions.create({ agent: agentId, environment_id: environmentId, resources: [{ type: 'memory_store', memory_store_id: store.id }] });
    expect(session.resources).toEqual([expect.objectContaining({ type: 'memory_store', memory_store_id: store.id, access: 'read_write', mount_path: '/mnt/memory/user-prefs', name: 'User Prefs' })]);
    await c.beta.sessions.delete(session.id);

    // Session 1 writes with bash; the tool's result comes back once the write is a memory version.
    const first = await runBash([{ type: 'memory_store', memory_store_id: store.id }], 'mkdir -p /mnt/memory/user-prefs/user && printf "drinks: secret-tea" > /mnt/memory/user-prefs/user/drinks.md && echo wrote');
    expect(first.output).toContain('wrote');
    expect(first.system).toContain('/mnt/memory/user-prefs (read-write)');
    const listed = await c.beta.memoryStores.memories.list(store.id);
    expect(listed.data.map((m) => m.path)).toEqual(['/user/drinks.md']);
    const memory = await c.beta.memoryStores.memories.retrieve((listed.data[0] as { id: string }).id, { memory_store_id: store.id });
    expect(memory.content).toBe('drinks: secret-tea');
    const written = await c.beta.memoryStores.memoryVersions.list(store.id, { session_id: first.sessionId });
    expect(written.data).toEqual([expect.objectContaining({ operation: 'created', created_by: { type: 'session_actor', session_id: first.sessionId } })]);
    // Recorded before the tool's result was: the log is never ahead of the store.
    expect(Date.parse(written.data[0].created_at)).toBeLessThanOrEqual(Date.parse(first.resultAt));

    // Session 2 reads it.
    const second = await runBash([{ type: 'memory_store', memory_store_id: store.id }], 'cat /mnt/memory/user-prefs/user/drinks.md');
    expect(second.output).toContain('drinks: secret-tea');

    // The user replaces it and redacts the first version: gone from the version reads, the memory and the next sandbox.
    await c.beta.memoryStores.memories.update(memory.id, { memory_store_id: store.id, content: 'drinks: coffee' });
    await c.beta.memoryStores.memoryVersions.redact(memory.memory_version_id, { memory_store_id: store.id });
    const version = await c.beta.memoryStores.memoryVersions.retrieve(memory.memory_version_id, { memory_store_id: store.id });
    expect(version).toMatchObject({ content: null, path: null, content_sha256: null, redacted_at: expect.any(String) });
    const versions = await c.beta.memoryStores.memoryVersions.list(store.id, { view: 'full' });
    expect(JSON.stringify(versions.data)).not.toContain('secret-tea');
    expect(JSON.stringify(await c.beta.memoryStores.memories.retrieve(memory.id, { memory_store_id: store.id }))).not.toContain('secret-tea');
    const third = await runBash([{ type: 'memory_store', memory_store_id: store.id }], 'grep -r . /mnt/memory/ ; true');
    expect(third.output).toContain('drinks: coffee');
    expect(third.output).not.toContain('secret-tea');
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
