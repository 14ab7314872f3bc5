import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestRuntime, type TestRuntime } from '../helpers/runtime.js';
import { cli } from './helpers.js';

/** `corral memory-stores`: list, show, memories, one memory, versions, redact. */
describe('corral memory-stores', () => {
  let t: TestRuntime;
  let env: Record<string, string>;
  beforeAll(async () => {
    t = await startTestRuntime();
    env = { CORRAL_URL: t.runtime.url, CORRAL_API_KEY: t.runtime.apiKey };
  });
  afterAll(() => t?.close());

  it('shows stores, memories and versions, and redacts one', async () => {
    const store = await t.client.beta.memoryStores.create({ name: 'prefs', description: 'what the user likes' });
    const memory = await t.client.beta.memoryStores.memories.create(store.id, { path: '/user/tea.md', content: 'green-secret' });
    await t.client.beta.memoryStores.memories.update(memory.id, { memory_store_id: store.id, content: 'black' });

    const list = await cli(['memory-stores', 'list'], { env });
    expect(list).toMatchObject({ code: 0, stdout: expect.stringMatching(/^ID\s+NAME\s+CREATED\s+ARCHIVED\n/) });
    expect(list.stdout).toContain(store.id);
    expect((await cli(['memory-stores', 'show', store.id], { env })).stdout).toContain('what the user likes');
    const memories = await cli(['memory-stores', 'memories', store.id, '--prefix', '/user/'], { env });
    expect(memories.stdout).toMatch(new RegExp(`${memory.id}\\s+/user/tea.md\\s+5\\s`));
    expect((await cli(['memory-stores', 'memory', store.id, memory.id], { env })).stdout).toBe('black\n');

    const redacted = await cli(['memory-stores', 'redact', store.id, memory.memory_version_id], { env });
    expect(redacted).toMatchObject({ code: 0, stdout: `redacted ${memory.memory_version_id} (memory ${memory.id})\n` });
    const versions = await cli(['memory-stores', 'versions', store.id, '--memory', memory.id], { env });
    expect(versions.stdout).toMatch(/modified\s+\/user\/tea.md\s+api/);
    expect(versions.stdout).toMatch(new RegExp(`${memory.memory_version_id}\\s+${memory.id}\\s+created \\(redacted\\)\\s+-`));
    expect((await cli(['memory-stores', 'versions', store.id, '--json'], { env })).stdout).not.toContain('green-secret');
    // The live memory's current version cannot be redacted: a clear error, exit 1.
    const current = (await t.client.beta.memoryStores.memories.retrieve(memory.id, { memory_store_id: store.id })).memory_version_id;
    expect(await cli(['memory-stores', 'redact', store.id, current], { env })).toMatchObject({ code: 1, stderr: expect.stringContaining('update or delete the memory first') });
  });
});
