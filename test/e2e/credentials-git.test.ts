import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bwrapAvailable } from '../../lambdas/adapters/local/process-sandbox.js';
import { collectUntil, isIdle, listAll, startTestRuntime, type TestRuntime } from '../helpers/runtime.js';
import { logOf, makeBareRepo, startTestGitServer, type TestGitServer } from '../credential-proxy/fixtures/git-server.js';

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';

/**
 * Credential isolation needs bubblewrap (CI installs it): without it a sandbox is a plain process.
 * Outside CI the suite is skipped with a warning; in CI a missing bwrap fails it.
 */
const HAS_BWRAP = await bwrapAvailable();
if (!HAS_BWRAP && process.env.CI) throw new Error('bubblewrap (bwrap) is required for the git credential tests in CI');
if (!HAS_BWRAP) console.warn('bubblewrap unavailable: skipping the git credential tests');

const text = (t: string) => [{ type: 'text' as const, text: t }];

/**
 * Git through the credential proxy, end to end: a private repository on a real git server
 * (`git http-backend` on loopback, basic auth with the token), a session whose
 * `github_repository` resource carries the token, and an agent that clones (at provision),
 * commits and pushes from its offline sandbox. The push lands on the server; the token is never
 * in the session, its resources, the log, or the sandbox.
 */
describe.skipIf(!HAS_BWRAP)('git through the credential proxy', () => {
  let t: TestRuntime;
  let git: TestGitServer;
  let root: string;
  const TOKEN = `ghp_test_${Date.now()}_secret`;

  beforeAll(async () => {
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'corral-git-'));
    makeBareRepo(root, 'private-repo', 'private content\n');
    makeBareRepo(root, 'other-repo', 'other content\n');
    git = await startTestGitServer({ root, token: TOKEN });
    t = await startTestRuntime({ runtime: { repositoryUrlAllow: ['http://127.0.0.1'] } });
  });
  afterAll(async () => {
    await t?.close();
    await git?.close();
    fs.rmSync(root, { recursive: true, force: true });
  });

  async function newSession(resources: unknown[]) {
    const agent = await t.client.beta.agents.create({ name: 'git-agent', model: 'claude-sonnet-4-6', tools: [{ type: 'agent_toolset_20260401' }] });
    const env = await t.client.beta.environments.create({ name: 'git-env' });
    return t.client.beta.sessions.create({ agent: agent.id, environment_id: env.id, resources: resources as never });
  }

  async function bash(sessionId: string, command: string) {
    t.fake.push({ kind: 'tool_use', calls: [{ name: 'bash', input: { command } }] }, { kind: 'text', text: 'ok' });
    const stream = await t.client.beta.sessions.events.stream(sessionId);
    await t.client.beta.sessions.events.send(sessionId, { events: [{ type: 'user.message', content: text('go') }] });
    const seen = await collectUntil(stream, isIdle);
    const result = seen.find((e) => e.type === 'agent.tool_result') as { content?: Array<{ text?: string }>; is_error?: boolean } | undefined;
    return { seen, output: (result?.content ?? []).map((c) => c.text ?? '').join(''), isError: result?.is_error };
  }

  it('clones, commits and pushes a token-protected repository; the push lands on the server', async () => {
    const url = git.urlOf('private-repo');
    const session = await newSession([{ type: 'github_repository', url, authorization_token: TOKEN, mount_path: '/workspace/private-repo' }]);
    // The token is write-only: not in the session, not in its resources.
    expect(JSON.stringify(session)).not.toContain(TOKEN);
    const resources = await t.client.beta.sessions.resources.list(session.id);
    expect(resources.data).toEqual([
      expect.objectContaining({ type: 'github_repository', url, mount_path: '/workspace/private-repo', id: expect.stringMatching(/^sesrsc_/) }),
    ]);
    expect(JSON.stringify(resources)).not.toContain(TOKEN);
    expect(JSON.stringify(await t.client.beta.sessions.resources.retrieve((resources.data[0] as { id: string }).id, { session_id: session.id }))).not.toContain(TOKEN);

    const run = await bash(
      session.id,
      [
        'cd private-repo',
        'cat README',
        'git remote get-url origin',
        'echo "from the agent" >> README',
        'git -c user.name=agent -c user.email=agent@example.com commit -q -am "agent change"',
        'git push -q origin HEAD:main 2>&1 && echo PUSHED',
        'git pull -q origin main 2>&1 && echo PULLED',
      ].join(' && '),
    );
    expect(run.isError).toBe(false);
    expect(run.output).toContain('private content');
    expect(run.output).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/r\/0\/private-repo\.git$/m);
    expect(run.output).toContain('PUSHED');
    expect(run.output).toContain('PULLED');
    expect(logOf(path.join(root, 'private-repo.git'))).toEqual(['agent change', 'first']);
    // Every request the server saw carried the token (the proxy added it), none went without.
    expect(git.authorizations.length).toBeGreaterThan(3);
    expect(JSON.stringify(await listAll(t.client, session.id))).not.toContain(TOKEN);
  });

  it('only the repository named by the resource is reachable, and only with that session', async () => {
    const url = git.urlOf('private-repo');
    const session = await newSession([{ type: 'github_repository', url, authorization_token: TOKEN }]);
    const port = '$(git -C private-repo remote get-url origin | sed -E "s#http://127.0.0.1:([0-9]+)/.*#\\1#")';
    const run = await bash(
      session.id,
      [
        `P=${port}`,
        // another repository on the same server, through the forwarder: not on this channel
        'git ls-remote "http://127.0.0.1:$P/r/1/other-repo.git" >/dev/null 2>&1 && echo OTHER_OK || echo OTHER_REFUSED',
        'git ls-remote "http://127.0.0.1:$P/r/0/other-repo.git/../../other-repo.git" >/dev/null 2>&1 && echo TRAVERSAL_OK || echo TRAVERSAL_REFUSED',
        // the proxy socket without the capability the forwarder adds (the tools' own uid cannot
        // even connect to it: 000; a sandbox running as Corral's user gets a 403)
        'curl -s -o /dev/null -w "%{http_code}" --unix-socket /run/corral-git/git.sock "http://x/r/0/private-repo.git/info/refs?service=git-upload-pack"; echo',
        // the dumb protocol is not proxied
        'curl -s -o /dev/null -w "%{http_code}" "http://127.0.0.1:$P/r/0/private-repo.git/HEAD"; echo',
        // and the socket cannot be replaced from inside
        'rm -f /run/corral-git/git.sock 2>&1',
        'ls /run/corral-git',
      ].join('; '),
    );
    expect(run.output).toContain('OTHER_REFUSED');
    expect(run.output).toContain('TRAVERSAL_REFUSED');
    expect(run.output).toMatch(/^(000|403)$/m);
    expect(run.output).toMatch(/^40[04]$/m);
    expect(fs.statSync(path.join(t.runtime.credentialProxy!.gitSocketDir, 'git.sock')).isSocket()).toBe(true);
    expect(logOf(path.join(root, 'other-repo.git'))).toEqual(['first']);
  });

  it('a private repository without a token: the server refuses the clone, and the tool result says why', async () => {
    const url = git.urlOf('private-repo');
    const agent = await t.client.beta.agents.create({ name: 'g', model: 'claude-sonnet-4-6', tools: [{ type: 'agent_toolset_20260401' }] });
    const env = await t.client.beta.environments.create({ name: 'g' });
    const session = await t.client.beta.sessions.create({ agent: agent.id, environment_id: env.id, resources: [{ type: 'github_repository', url }] });
    t.fake.push({ kind: 'tool_use', calls: [{ name: 'bash', input: { command: 'ls' } }] }, { kind: 'text', text: 'ok' });
    const stream = await t.client.beta.sessions.events.stream(session.id);
    await t.client.beta.sessions.events.send(session.id, { events: [{ type: 'user.message', content: text('go') }] });
    const seen = await collectUntil(stream, isIdle);
    const result = seen.find((e) => e.type === 'agent.tool_result') as unknown as { content: Array<{ text: string }>; is_error: boolean };
    expect(result.is_error).toBe(true);
    expect(result.content.map((c) => c.text).join('')).toMatch(/repository_clone_error/);
  });

  it('rotating the token (POST /v1/sessions/{id}/resources/{rid}) is write-only too', async () => {
    const url = git.urlOf('private-repo');
    const session = await newSession([{ type: 'github_repository', url, authorization_token: 'stale-token' }]);
    const [resource] = (await t.client.beta.sessions.resources.list(session.id)).data;
    const updated = await t.client.beta.sessions.resources.update((resource as { id: string }).id, { session_id: session.id, authorization_token: TOKEN });
    expect(JSON.stringify(updated)).not.toContain(TOKEN);
    const run = await bash(session.id, 'git -C private-repo log --format=%s | head -1');
    expect(run.isError).toBe(false);
    expect(run.output).toContain('agent change');
  });
});
