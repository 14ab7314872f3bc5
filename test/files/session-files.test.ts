/**
 * Files in and out of a session, end to end on the local runtime through the official SDK
 * (SDK -> API -> harness -> scripted fake model -> a real bubblewrapped sandbox): an uploaded
 * file is mounted read-only, the agent reads it with bash, writes an output, and the output
 * downloads with the same bytes; resources added to and removed from a running sandbox; what the
 * edge refuses; and that another tenant sees none of it.
 */
import fs from 'node:fs';
import Anthropic, { toFile } from '@anthropic-ai/sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ProcessSandboxProvider } from '../../lambdas/adapters/local/process-sandbox.js';
import { collectUntil, createAgentAndEnvironment, isIdle, startTestRuntime, type TestRuntime } from '../helpers/runtime.js';
import { tempDir } from '../sandbox/helpers.js';

type Ev = { type: string; [k: string]: unknown };
const text = (t: string) => [{ type: 'text' as const, text: t }];
const resultText = (e: Ev) => (e.content as Array<{ text: string }>)[0]!.text;

describe('file resources and outputs (local runtime, bubblewrap)', () => {
  let t: TestRuntime;
  let provider: ProcessSandboxProvider;
  let root: string;
  let agentId: string;
  let envId: string;
  let other: Anthropic;

  beforeAll(async () => {
    root = tempDir('corral-files-');
    provider = new ProcessSandboxProvider({ dataDir: root, isolation: 'bwrap', logger: { warn: () => {} } });
    t = await startTestRuntime({ runtime: { sandboxProvider: provider } });
    ({ agent: { id: agentId }, environment: { id: envId } } = await createAgentAndEnvironment(t.client));
    await t.runtime.services.tenants.addKey('tenant-files-other', 'files-key-of-the-other-tenant-0123');
    other = new Anthropic({ baseURL: t.runtime.url, apiKey: 'files-key-of-the-other-tenant-0123', maxRetries: 0 });
  });
  afterAll(async () => {
    await t?.close();
    await provider?.close();
    fs.rmSync(root, { recursive: true, force: true });
  });

  /** One turn whose model makes one bash call, then ends; the bash result's text. */
  async function bash(sessionId: string, command: string): Promise<string> {
    t.fake.push({ kind: 'tool_use', calls: [{ name: 'bash', input: { command } }] }, { kind: 'text', text: 'done' });
    const stream = await t.client.beta.sessions.events.stream(sessionId);
    await t.client.beta.sessions.events.send(sessionId, { events: [{ type: 'user.message', content: text('go') }] });
    const events = (await collectUntil(stream, isIdle)) as Ev[];
    const result = events.find((e) => e.type === 'agent.tool_result');
    expect(result, JSON.stringify(events.map((e) => e.type))).toBeDefined();
    return resultText(result!);
  }

  it('mounts an upload read-only, and catalogues what the agent writes under /mnt/session/outputs', async () => {
    const input = await t.client.beta.files.upload({ file: await toFile(Buffer.from('rows from the user\n'), 'input.csv', { type: 'text/csv' }) });
    const session = await t.client.beta.sessions.create({ agent: agentId, environment_id: envId, resources: [{ type: 'file', file_id: input.id }] });
    expect(session.resources).toEqual([expect.objectContaining({ type: 'file', file_id: input.id, mount_path: `/mnt/session/uploads/${input.id}` })]);
    const at = `/mnt/session/uploads/${input.id}`;
    const out = await bash(
      session.id,
      [
        `cat ${at}`,
        `(echo tampered >> ${at}) 2>/dev/null && echo WROTE || echo NOT-WRITABLE`,
        `rm -f ${at} 2>/dev/null; mv ${at} /tmp/x 2>/dev/null; chmod 666 ${at} 2>/dev/null; test -f ${at} && echo STILL-THERE`,
        `cat ${at}`,
        "printf 'answer: 42\\n' > /mnt/session/outputs/answer.txt",
        'mkdir -p /mnt/session/outputs/deep && head -c 3000 /dev/urandom > /mnt/session/outputs/deep/blob.bin && sha256sum /mnt/session/outputs/deep/blob.bin',
        'echo scratch > scratch.txt',
      ].join('; '),
    );
    expect(out).toContain('rows from the user\nNOT-WRITABLE\nSTILL-THERE\nrows from the user\n');
    expect(out).not.toContain('tampered');

    const outputs: Anthropic.Beta.BetaFileMetadata[] = [];
    for await (const f of t.client.beta.files.list({ scope_id: session.id })) outputs.push(f);
    expect(outputs.map((f) => f.filename).sort()).toEqual(['answer.txt', 'deep/blob.bin']); // not scratch.txt (the workspace)
    for (const f of outputs) expect(f.scope).toEqual({ type: 'session', id: session.id });
    const answer = outputs.find((f) => f.filename === 'answer.txt')!;
    expect(answer.mime_type).toBe('text/plain');
    expect(await (await t.client.beta.files.download(answer.id)).text()).toBe('answer: 42\n');
    const blob = outputs.find((f) => f.filename === 'deep/blob.bin')!;
    const bytes = Buffer.from(await (await t.client.beta.files.download(blob.id)).arrayBuffer());
    const { createHash } = await import('node:crypto');
    expect(out).toContain(createHash('sha256').update(bytes).digest('hex'));
    expect(bytes.length).toBe(3000);

    // A changed output keeps its id and gets the new bytes; an unchanged one is not copied again.
    await bash(session.id, "printf 'answer: 43\\n' > /mnt/session/outputs/answer.txt");
    const after = (await t.client.beta.files.list({ scope_id: session.id })).data;
    expect(after.map((f) => f.id).sort()).toEqual(outputs.map((f) => f.id).sort());
    expect(await (await t.client.beta.files.download(answer.id)).text()).toBe('answer: 43\n');

    // Another tenant sees none of it.
    expect((await other.beta.files.list({ scope_id: session.id })).data).toEqual([]);
    await expect(other.beta.files.download(answer.id)).rejects.toBeInstanceOf(Anthropic.NotFoundError);
  });

  it('adds a file to a running sandbox at its mount_path, and removes it', async () => {
    const session = await t.client.beta.sessions.create({ agent: agentId, environment_id: envId });
    expect(await bash(session.id, 'ls /mnt/session/uploads | wc -l')).toContain('0');
    const f = await t.client.beta.files.upload({ file: await toFile(Buffer.from('second file'), 'second.txt', { type: 'text/plain' }) });
    const added = await t.client.beta.sessions.resources.add(session.id, { type: 'file', file_id: f.id, mount_path: '/mnt/session/uploads/data/second.txt' });
    expect(added).toMatchObject({ type: 'file', file_id: f.id, mount_path: '/mnt/session/uploads/data/second.txt' });
    expect(await t.client.beta.sessions.resources.retrieve(added.id, { session_id: session.id })).toEqual(added);
    expect(await bash(session.id, 'cat /mnt/session/uploads/data/second.txt')).toContain('second file');
    expect(await t.client.beta.sessions.resources.delete(added.id, { session_id: session.id })).toEqual({ id: added.id, type: 'session_resource_deleted' });
    expect(await bash(session.id, 'cat /mnt/session/uploads/data/second.txt 2>&1 || echo GONE')).toContain('GONE');
    expect((await t.client.beta.files.retrieveMetadata(f.id)).id).toBe(f.id); // the file stays
  });

  it('takes a file deleted from the Files API out of a running sandbox at its next call', async () => {
    const f = await t.client.beta.files.upload({ file: await toFile(Buffer.from('soon deleted'), 'doomed.txt', { type: 'text/plain' }) });
    const session = await t.client.beta.sessions.create({ agent: agentId, environment_id: envId, resources: [{ type: 'file', file_id: f.id }] });
    const at = `/mnt/session/uploads/${f.id}`;
    expect(await bash(session.id, `cat ${at}`)).toContain('soon deleted');
    await t.client.beta.files.delete(f.id);
    const after = await bash(session.id, `cat ${at} 2>&1 || echo GONE`);
    expect(after).toContain('GONE');
    expect(after).toContain(`file ${f.id} was deleted from the Files API (or expired): it was removed from ${at}`);
    // Told once: the next call is quiet about it.
    expect(await bash(session.id, 'echo quiet')).not.toContain(f.id);
  });

  it('refuses bad mount paths (400) and files it does not have (404)', async () => {
    const f = await t.client.beta.files.upload({ file: await toFile(Buffer.from('x'), 'x.txt') });
    const session = await t.client.beta.sessions.create({ agent: agentId, environment_id: envId });
    for (const mount_path of ['/etc/passwd', '/mnt/session/uploads/../../etc/x', '/mnt/session/uploads/', 'relative/path', '/mnt/session/uploads/a//b', '/mnt/session/outputs/x', '/mnt/session/uploads/a\u0000b']) {
      await expect(t.client.beta.sessions.resources.add(session.id, { type: 'file', file_id: f.id, mount_path }), mount_path).rejects.toBeInstanceOf(Anthropic.BadRequestError);
      await expect(t.client.beta.sessions.create({ agent: agentId, environment_id: envId, resources: [{ type: 'file', file_id: f.id, mount_path }] }), mount_path).rejects.toBeInstanceOf(
        Anthropic.BadRequestError,
      );
    }
    await expect(t.client.beta.sessions.resources.add(session.id, { type: 'file', file_id: 'file_01NOSUCHFILE' })).rejects.toBeInstanceOf(Anthropic.NotFoundError);
    await expect(t.client.beta.sessions.create({ agent: agentId, environment_id: envId, resources: [{ type: 'file', file_id: 'file_01NOSUCHFILE' }] })).rejects.toBeInstanceOf(
      Anthropic.NotFoundError,
    );
    // Another tenant's file is as unknown as a missing one.
    const theirs = await other.beta.files.upload({ file: await toFile(Buffer.from('theirs'), 'theirs.txt') });
    await expect(t.client.beta.sessions.resources.add(session.id, { type: 'file', file_id: theirs.id })).rejects.toBeInstanceOf(Anthropic.NotFoundError);
    // Two files on one path, or one on another's directory.
    await t.client.beta.sessions.resources.add(session.id, { type: 'file', file_id: f.id, mount_path: '/mnt/session/uploads/a' });
    await expect(t.client.beta.sessions.resources.add(session.id, { type: 'file', file_id: f.id, mount_path: '/mnt/session/uploads/a/b' })).rejects.toBeInstanceOf(
      Anthropic.BadRequestError,
    );
  });
});
