import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bwrapAvailable } from '../../lambdas/adapters/local/process-sandbox.js';
import { SandboxClient } from '../../lambdas/core/sandbox/client.js';
import { collectUntil, isIdle, startTestRuntime, type TestRuntime } from '../helpers/runtime.js';
import { makeBareRepo, startTestGitServer, type TestGitServer } from '../credential-proxy/fixtures/git-server.js';

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';

/**
 * The sandbox boundary under attack (issue 13): one tenant's API key and a scripted model running
 * the attacker's commands in real bubblewrap sandboxes, against real git servers. Each test makes
 * the attack as it was found and asserts it fails. See docs/SECURITY.md.
 *
 * Without bubblewrap these tests cannot mean anything; in CI (`CI` set) that is a failure, not a skip.
 */
const HAS_BWRAP = await bwrapAvailable();
if (!HAS_BWRAP && process.env.CI) throw new Error('bubblewrap (bwrap) is required for the security tests in CI');

const text = (t: string) => [{ type: 'text' as const, text: t }];
const TOKEN = `ghp_sec_${crypto.randomBytes(8).toString('hex')}`;

describe.skipIf(!HAS_BWRAP)('the sandbox boundary (issue 13 attacks)', { timeout: 60_000 }, () => {
  let t: TestRuntime;
  let git: TestGitServer;
  let root: string;
  /** A host directory standing for one the attacker must not write into (an ~/.ssh, say). */
  let victim: string;
  /** A host service on loopback that must never be reached from a sandbox. */
  let internal: http.Server;
  let internalHits: string[];
  let internalUrl: string;

  beforeAll(async () => {
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'corral-sec-'));
    makeBareRepo(root, 'repo', 'repo content\n');
    makeBareRepo(root, 'private', 'private content\n');
    victim = fs.mkdtempSync(path.join(os.tmpdir(), 'corral-victim-'));
    git = await startTestGitServer({ root, token: TOKEN });
    internalHits = [];
    internal = http.createServer((req, res) => {
      internalHits.push(`${req.method} ${req.url}`);
      res.end('internal\n');
    });
    await new Promise<void>((r) => internal.listen(0, '127.0.0.1', r));
    internalUrl = `http://127.0.0.1:${(internal.address() as AddressInfo).port}`;
    t = await startTestRuntime({
      runtime: {
        // The test git server is on loopback over http: allowed explicitly, as an operator would.
        repositoryUrlAllow: [new URL(git.urlOf('repo')).origin],
        sandboxLimits: { processes: 64, memory: 256 * 1024 ** 2, file_size: 8 * 1024 ** 2, disk: 64 * 1024 ** 2 },
      },
    });
  });
  afterAll(async () => {
    await t?.close();
    await git?.close();
    await new Promise<void>((r) => (internal ? internal.close(() => r()) : r()));
    for (const d of [root, victim]) if (d) fs.rmSync(d, { recursive: true, force: true });
  });

  async function newSession(resources: unknown[]) {
    const agent = await t.client.beta.agents.create({ name: 'attacker', model: 'claude-sonnet-4-6', tools: [{ type: 'agent_toolset_20260401' }] });
    const env = await t.client.beta.environments.create({ name: 'attacker-env' });
    return t.client.beta.sessions.create({ agent: agent.id, environment_id: env.id, resources: resources as never });
  }

  /** One turn in which the (scripted) model runs `command` in the session's sandbox. */
  async function bash(sessionId: string, command: string) {
    t.fake.push({ kind: 'tool_use', calls: [{ name: 'bash', input: { command } }] }, { kind: 'text', text: 'done' });
    const stream = await t.client.beta.sessions.events.stream(sessionId);
    await t.client.beta.sessions.events.send(sessionId, { events: [{ type: 'user.message', content: text('run it') }] });
    const seen = await collectUntil(stream, isIdle);
    const result = seen.find((e) => e.type === 'agent.tool_result') as { content?: Array<{ text?: string }>; is_error?: boolean } | undefined;
    return { output: (result?.content ?? []).map((c) => c.text ?? '').join(''), isError: result?.is_error };
  }

  const repoResource = (name = 'repo', extra: Record<string, unknown> = {}) => ({
    type: 'github_repository',
    url: git.urlOf(name),
    authorization_token: TOKEN,
    mount_path: `/workspace/${name}`,
    ...extra,
  });

  /** Stop the session's sandbox from outside, as the idle reaper or a crash would. */
  async function stopSandbox(sessionId: string) {
    const record = await t.runtime.services.sandboxes.get(sessionId, 'default');
    if (record) await t.runtime.sandboxProvider.release(sessionId, 'default', record.ref);
  }

  it('attack 1: a symlink in the workspace does not make a re-provision write into a host directory', async () => {
    // Local paths and file:// are refused outright...
    for (const url of [path.join(root, 'repo.git'), `file://${path.join(root, 'repo.git')}`, `ssh://127.0.0.1${root}/repo.git`]) {
      await expect(newSession([{ type: 'github_repository', url, mount_path: '/workspace/y' }])).rejects.toMatchObject({ status: 400 });
    }
    // ...and the attack, with a repository that is allowed: replace it by a link to a host
    // directory, kill the agent, and make the next call provision again.
    const session = await newSession([repoResource('repo', { mount_path: '/workspace/y' })]);
    const first = await bash(session.id, 'ls y');
    expect(first.output).toContain('README');
    const attack = await bash(session.id, `rm -rf y; ln -s ${victim} y; ls -l y; kill -9 2 2>&1; echo KILL_RC=$?`);
    expect(attack.output).toContain(`y -> ${victim}`);
    await stopSandbox(session.id);
    await bash(session.id, 'true'); // finds the sandbox gone
    // The new sandbox clones inside itself, where the link points nowhere: its own setup fails
    // (or, had the link been removed, it lists the repository). Either way it ran.
    const again = await bash(session.id, 'ls -la y/ 2>&1; echo LISTED');
    expect(again.output).toMatch(/LISTED|repository_clone_error/);
    // Whatever happened inside, nothing landed in the host directory.
    expect(fs.readdirSync(victim)).toEqual([]);
  });

  it('attack 2: files of the host cannot be changed through hard links (the sandbox is not root)', async () => {
    const session = await newSession([repoResource('repo')]);
    const run = await bash(session.id, 'id -u; ls repo');
    expect(run.output).toContain('README');
    expect(run.output.split('\n')[0]).not.toBe('0');
    // The clone has objects of its own: none is a hard link to the server's.
    const workspace = t.runtime.sandboxProvider instanceof Object && 'workspaceDir' in t.runtime.sandboxProvider
      ? (t.runtime.sandboxProvider as unknown as { workspaceDir(s: string, n: string): string }).workspaceDir(session.id, 'default')
      : '';
    const serverObjects = execFileSync('find', [path.join(root, 'repo.git', 'objects'), '-type', 'f']).toString().trim().split('\n');
    const inodes = new Set(serverObjects.map((f) => fs.statSync(f).ino));
    const cloneObjects = execFileSync('find', [path.join(workspace, 'repo', '.git', 'objects'), '-type', 'f']).toString().trim().split('\n');
    expect(cloneObjects.length).toBeGreaterThan(0);
    expect(cloneObjects.filter((f) => inodes.has(fs.statSync(f).ino))).toEqual([]);
    // And a host file that is hard-linked into the workspace anyway cannot be changed from inside.
    const hostFile = path.join(victim, '..', `corral-host-file-${crypto.randomBytes(4).toString('hex')}`);
    fs.writeFileSync(hostFile, 'host content\n', { mode: 0o444 });
    try {
      fs.linkSync(hostFile, path.join(workspace, 'linked'));
      const attack = await bash(session.id, 'chmod u+w linked 2>&1; echo tampered >> linked 2>&1; cat linked');
      expect(attack.output).toMatch(/Operation not permitted|Permission denied/);
      expect(fs.readFileSync(hostFile, 'utf8')).toBe('host content\n');
      expect(fs.statSync(hostFile).mode & 0o777).toBe(0o444);
    } finally {
      fs.rmSync(hostFile, { force: true });
    }
  });

  it('attack 3: no repository is read from the host: local paths, file:// and another session’s workspace', async () => {
    const other = await newSession([repoResource('private')]);
    expect((await bash(other.id, 'cat private/README')).output).toContain('private content');
    const otherWorkspace = (t.runtime.sandboxProvider as unknown as { workspaceDir(s: string, n: string): string }).workspaceDir(other.id, 'default');
    for (const url of [path.join(root, 'private.git'), `file://${path.join(otherWorkspace, 'private')}`, `file://${path.join(root, 'private.git')}`]) {
      await expect(newSession([{ type: 'github_repository', url }])).rejects.toMatchObject({ status: 400 });
    }
    // From inside a sandbox, neither the host's repositories nor the other workspace are there.
    const session = await newSession([]);
    const run = await bash(
      session.id,
      [
        `git clone -q file://${path.join(otherWorkspace, 'private')} stolen 2>&1 || echo CLONE1_FAILED`,
        `git clone -q ${path.join(root, 'private.git')} stolen2 2>&1 || echo CLONE2_FAILED`,
        `cat ${path.join(otherWorkspace, 'private', 'README')} 2>&1 || echo READ_FAILED`,
      ].join('; '),
    );
    expect(run.output).toContain('CLONE1_FAILED');
    expect(run.output).toContain('CLONE2_FAILED');
    expect(run.output).toContain('READ_FAILED');
    expect(run.output).not.toContain('private content');
  });

  it('attack 4 (SSRF): no git channel for a repository that is not cloned; internal hosts are refused', async () => {
    const target = `${internalUrl}/x.git`;
    // The same mount path twice, the second on an internal service: refused at create.
    await expect(newSession([repoResource('repo', { mount_path: '/workspace/y' }), { type: 'github_repository', url: target, mount_path: '/workspace/y' }])).rejects.toMatchObject({
      status: 400,
    });
    // Internal addresses over https too, unless the operator allowed them.
    for (const url of ['https://127.0.0.1/x.git', 'https://169.254.169.254/latest.git', 'https://10.0.0.1/x.git', 'https://localhost/x.git']) {
      await expect(newSession([{ type: 'github_repository', url }])).rejects.toMatchObject({ status: 400 });
    }
    // The channel of a sandbox reaches its cloned repository and nothing else.
    const session = await newSession([repoResource('repo', { mount_path: '/workspace/y' })]);
    const run = await bash(
      session.id,
      [
        'P=$(git -C y remote get-url origin | sed -E "s#http://127.0.0.1:([0-9]+)/.*#\\1#")',
        'for n in 1 2 3; do curl -s -o /dev/null -w "%{http_code}\\n" "http://127.0.0.1:$P/r/$n/x.git/info/refs?service=git-upload-pack"; done',
        'curl -s -o /dev/null -w "%{http_code}\\n" -X POST "http://127.0.0.1:$P/r/1/x.git/git-upload-pack"',
        `curl -s -m 3 -o /dev/null -w "%{http_code}\\n" ${internalUrl}/direct || echo DIRECT_FAILED`,
      ].join('; '),
    );
    expect(run.output).toContain('DIRECT_FAILED');
    expect(run.output).not.toMatch(/^200$/m);
    expect(internalHits).toEqual([]);
  });

  it('attack 5: processes, memory, file size and disk are bounded, and the tool error says which limit', { timeout: 120_000 }, async () => {
    const session = await newSession([]);
    const procs = await bash(
      session.id,
      `perl -e 'my @k; for (1..500) { my $p = fork(); if (!defined $p) { print "fork failed: $!\\n"; kill 9, @k; exit 1 } if (!$p) { close STDOUT; close STDERR; sleep 30; exit } push @k, $p } kill 9, @k; print "STARTED 500\\n"'`,
    );
    expect(procs.isError).toBe(true);
    expect(procs.output).toMatch(/process limit \(64 processes/);
    const memory = await bash(session.id, 'perl -e \'$x = "x" x (1024*1024*1024); print length($x), "\\n"\' 2>&1');
    expect(memory.isError).toBe(true);
    expect(memory.output).toMatch(/memory limit \(256 MiB per process\)/);
    const file = await bash(session.id, 'head -c 20000000 /dev/zero > big && ls -l big');
    expect(file.isError).toBe(true);
    expect(file.output).toMatch(/file size limit \(8 MiB per file\)/);
    const disk = await bash(session.id, 'rm -f big; for i in $(seq 10); do head -c 7000000 /dev/urandom > f$i; done; echo WROTE');
    expect(disk.isError).toBe(true);
    expect(disk.output).toMatch(/disk limit \(64 MiB in the workspace\)/);
    const limits = await bash(session.id, 'rm -f f*; ulimit -u; ulimit -f');
    expect(limits.output).toMatch(/^64$/m);
  });

  it('attack 6: a handoff does not carry git access, capabilities are not usable from the table, delete removes the files', async () => {
    const source = await newSession([repoResource('private')]);
    const target = await newSession([]);
    expect((await bash(source.id, 'git -C private ls-remote origin >/dev/null && echo SOURCE_OK')).output).toContain('SOURCE_OK');
    // Capabilities at rest: the state table's copy does not open the sandbox.
    const item = await t.runtime.services.table.get(`session#${source.id}`, 'sandbox#default');
    const stored = (item!.record as { endpoint: { kind: 'unix'; socketPath: string; capability: string } }).endpoint;
    await expect(new SandboxClient(stored).execute('bash', { command: 'echo IN' })).rejects.toThrow(/401|capability|unavailable|refused/i);
    // Handoff: the sandbox moves, the source's repository access does not.
    const res = await fetch(`${t.runtime.url}/v1/sessions/${source.id}/sandboxes/default/handoff`, {
      method: 'POST',
      headers: { 'x-api-key': t.runtime.apiKey, 'anthropic-beta': 'managed-agents-2026-04-01', 'content-type': 'application/json' },
      body: JSON.stringify({ to_session_id: target.id }),
    });
    expect(res.status).toBe(200);
    const after = await bash(target.id, 'cat private/README; git -C private ls-remote origin 2>&1 && echo STILL_OK || echo GIT_REFUSED');
    expect(after.output).toContain('private content');
    expect(after.output).toContain('GIT_REFUSED');
    expect(after.output).not.toContain('STILL_OK');
    // Delete: the sandbox and its files go.
    const dir = (t.runtime.sandboxProvider as unknown as { workspaceDir(s: string, n: string): string }).workspaceDir(target.id, 'default');
    expect(fs.existsSync(dir)).toBe(true);
    await t.client.beta.sessions.delete(target.id);
    await t.client.beta.sessions.delete(source.id);
    expect(fs.existsSync(dir)).toBe(false);
    expect(fs.readdirSync(path.join(t.dataDir, 'sandboxes')).filter((d) => d.includes(source.id) || d.includes(target.id))).toEqual([]);
  });
});
