/**
 * The sandbox agent's uid separation (the image's model: agent and tools under different users),
 * its capability rotation, and its recipe setup in container mode. Everything runs for real:
 * processes under other uids (the suite runs as root here), a setpriv copy with file
 * capabilities, git clones from a bare repository on disk, and the agent bundled with esbuild as
 * the Dockerfile bundles it.
 */
import { spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SandboxClient, waitHealthy } from '../../lambdas/core/sandbox/client.js';
import { SandboxSetupError, SandboxUnavailableError } from '../../lambdas/core/sandbox/types.js';
import { encodeRecipe } from '../../sandbox/recipe.js';
import { REPO_ROOT, makeGitFixture, processAlive, rawCall, run, startAgent, tempDir, until, type AgentHandle, type GitFixture } from './helpers.js';

const IS_ROOT = process.getuid?.() === 0;
const HAS_SETCAP = spawnSync('sh', ['-c', 'command -v setcap && command -v setpriv'], { encoding: 'utf8' }).status === 0;
if (!IS_ROOT) console.warn('not root: skipping the uid-separation tests of the sandbox agent');

const AGENT_UID = 47101;
const AGENT_GID = 47100;
const TOOLS_UID = 47102;

let root: string;
let repo: GitFixture;

beforeAll(() => {
  root = tempDir('corral-priv-');
  fs.chmodSync(root, 0o755);
  repo = makeGitFixture(root);
  // other users must be able to clone it
  run('chmod', ['-R', 'a+rX', root]);
});

afterAll(() => {
  fs.rmSync(root, { recursive: true, force: true });
});

function dirFor(name: string, owner?: number) {
  const d = path.join(root, name);
  fs.mkdirSync(d, { recursive: true, mode: 0o755 });
  if (owner !== undefined) fs.chownSync(d, owner, owner);
  return d;
}

const bashOf = (c: SandboxClient) => (command: string, extra: Record<string, unknown> = {}) => c.execute('bash', { command, ...extra });

describe('capability rotation', () => {
  let agent: AgentHandle;
  beforeAll(async () => {
    agent = await startAgent({ root: dirFor('rotate') });
  });
  afterAll(() => agent?.stop());

  it('replaces the capability: the old one is rejected, the new one works', async () => {
    const old = new SandboxClient(agent.endpoint);
    expect((await old.execute('bash', { command: 'echo before' })).output).toBe('before\n');
    const next = crypto.randomBytes(32).toString('base64url');
    const endpoint = await old.rotateCapability(next);
    expect(endpoint.capability).toBe(next);
    const err = await old.execute('bash', { command: 'echo old' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SandboxUnavailableError);
    expect((err as Error).message).toMatch(/capability rejected/);
    await expect(old.rotateCapability(crypto.randomBytes(32).toString('base64url'))).rejects.toBeInstanceOf(SandboxUnavailableError);
    expect((await new SandboxClient(endpoint).execute('bash', { command: 'echo after' })).output).toBe('after\n');

    const sock = (agent.endpoint as { socketPath: string }).socketPath;
    const headers = { authorization: `Bearer ${next}` };
    const short = await rawCall(sock, { path: '/capability', headers, body: JSON.stringify({ capability: 'short' }) });
    expect(short.status).toBe(400);
    const unauth = await rawCall(sock, { path: '/capability', body: JSON.stringify({ capability: 'x'.repeat(40) }) });
    expect(unauth.status).toBe(401);
    expect((await new SandboxClient(endpoint).execute('bash', { command: 'echo still' })).output).toBe('still\n');
  });
});

describe('recipe setup in container mode (CORRAL_SANDBOX_RECIPE)', () => {
  it('is healthy only once the repositories are cloned, and reports notes', async () => {
    const recipe = encodeRecipe({
      config: { type: 'cloud', packages: { apt: ['jq'] } },
      resources: [
        { type: 'github_repository', url: repo.url, checkout: { type: 'branch', name: 'feature' } },
        { type: 'file', file_id: 'file_1' },
      ],
    });
    const agent = await startAgent({ root: dirFor('setup-ok'), mode: 'tcp', env: { CORRAL_SANDBOX_RECIPE: recipe } });
    try {
      const health = await new SandboxClient(agent.endpoint).status();
      expect(health).toEqual({
        state: 'ready',
        notes: [expect.stringMatching(/packages \(apt: jq\) are not installed/), expect.stringMatching(/file resource file_1 was not mounted/)],
      });
      const c = new SandboxClient(agent.endpoint);
      expect((await c.execute('bash', { command: 'cat demo/feature.txt; env | grep -c CORRAL_ || true' })).output).toBe('feature\n0\n');
    } finally {
      await agent.stop();
    }
  });

  it('reports a clone that fails on /health, refuses tools, and waitHealthy fails fast with the type', async () => {
    const recipe = encodeRecipe({ config: {}, resources: [{ type: 'github_repository', url: path.join(root, 'missing.git') }] });
    const agent = await startAgent({ root: dirFor('setup-bad'), mode: 'tcp', env: { CORRAL_SANDBOX_RECIPE: recipe }, waitReady: false });
    try {
      const c = new SandboxClient(agent.endpoint);
      await until(async () => (await c.status()).state === 'failed', 20_000, 'setup to fail');
      expect(await c.status()).toMatchObject({ state: 'failed', error: { type: 'repository_clone_error', message: expect.stringMatching(/git clone of .*missing\.git/) } });
      const err = await waitHealthy(agent.endpoint, { timeoutMs: 5_000 }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(SandboxSetupError);
      expect(err).toMatchObject({ type: 'repository_clone_error' });
      await expect(c.execute('bash', { command: 'true' })).rejects.toBeInstanceOf(SandboxUnavailableError);
    } finally {
      await agent.stop();
    }
  });
});

describe.skipIf(!IS_ROOT)('tools as another uid (--run-as-uid/--run-as-gid, agent as root)', () => {
  let agent: AgentHandle;
  let c: SandboxClient;
  let ws: string;
  beforeAll(async () => {
    ws = dirFor('runas-ws', TOOLS_UID);
    agent = await startAgent({
      root: dirFor('runas'),
      mode: 'tcp',
      workspace: ws,
      args: ['--run-as-uid', String(TOOLS_UID), '--run-as-gid', String(TOOLS_UID)],
    });
    c = new SandboxClient(agent.endpoint);
  });
  afterAll(() => agent?.stop());

  it('runs bash and the file tools as that user, who cannot read the agent or its environment', async () => {
    const bash = bashOf(c);
    expect((await bash('id -u; id -g; id -G')).output).toBe(`${TOOLS_UID}\n${TOOLS_UID}\n${TOOLS_UID}\n`);
    const environ = await bash(`cat /proc/${agent.child.pid}/environ`);
    expect(environ.isError).toBe(true);
    expect(environ.output).toMatch(/Permission denied/);
    expect(environ.output).not.toContain(agent.endpoint.capability);
    // the file tools too: reading the agent's environment is refused
    const viaRead = await c.execute('read', { file_path: `/proc/${agent.child.pid}/environ` });
    expect(viaRead).toEqual({ output: expect.stringMatching(/permission denied/), isError: true });

    expect(await c.execute('write', { file_path: 'sub/made.txt', content: 'x' })).toMatchObject({ isError: false });
    const st = fs.statSync(path.join(ws, 'sub', 'made.txt'));
    expect([st.uid, st.gid]).toEqual([TOOLS_UID, TOOLS_UID]);
    expect(await c.execute('edit', { file_path: 'sub/made.txt', old_string: 'x', new_string: 'y' })).toMatchObject({ isError: false });
    expect(fs.readFileSync(path.join(ws, 'sub', 'made.txt'), 'utf8')).toBe('y');

    fs.writeFileSync(path.join(ws, 'root-only.txt'), 'secret', { mode: 0o600 });
    expect(await c.execute('read', { file_path: 'root-only.txt' })).toEqual({ output: expect.stringMatching(/permission denied/), isError: true });
    expect(await c.execute('write', { file_path: '/etc/corral-probe', content: 'x' })).toMatchObject({ isError: true });
    expect(fs.existsSync('/etc/corral-probe')).toBe(false);
    expect((await c.execute('glob', { pattern: '**/*.txt' })).output).toBe('root-only.txt\nsub/made.txt');
    expect((await c.execute('grep', { pattern: '^y$' })).output).toBe('sub/made.txt:1:y');
  });

  it('kills a command at its timeout', async () => {
    const out = await bashOf(c)('echo $$ > pid; exec sleep 30', { timeout_ms: 500 });
    expect(out).toMatchObject({ isError: true, output: expect.stringMatching(/timed out/) });
    const pid = Number(fs.readFileSync(path.join(ws, 'pid'), 'utf8'));
    await until(() => !processAlive(pid), 10_000, 'the command to die');
  });

  /** The tools' processes of this agent: `--tool-server` children with this workspace. */
  const toolServers = () =>
    fs
      .readdirSync('/proc')
      .filter((d) => /^\d+$/.test(d))
      .filter((d) => {
        try {
          const argv = fs.readFileSync(`/proc/${d}/cmdline`, 'utf8').split('\0');
          return argv.includes('--tool-server') && argv.includes(ws);
        } catch {
          return false;
        }
      })
      .map(Number);

  it('serves the file tools from one long-lived process as that user, replaced when it dies', async () => {
    expect((await c.execute('write', { file_path: 'served.txt', content: 'one\n' })).isError).toBe(false);
    const [first, ...others] = toolServers();
    expect(others).toEqual([]);
    expect(fs.readFileSync(`/proc/${first}/status`, 'utf8')).toMatch(new RegExp(`^Uid:\\s+${TOOLS_UID}\\s`, 'm'));
    for (let i = 0; i < 3; i++) expect((await c.execute('read', { file_path: 'served.txt' })).output).toBe('     1\tone');
    expect(toolServers()).toEqual([first]);
    // The tools' user may end it (it is theirs); the next call starts another.
    await bashOf(c)(`kill -9 ${first}`);
    await until(() => !fs.existsSync(`/proc/${first}`), 10_000, 'the tool process to die and be reaped');
    expect((await c.execute('glob', { pattern: 'served.*' })).output).toBe('served.txt');
    const [second] = toolServers();
    expect(second).toBeDefined();
    expect(second).not.toBe(first);
  });

  it('kills the file tools’ process when a call outlives its time limit, and the next call gets a fresh one', async () => {
    expect((await bashOf(c)('rm -f stuck.fifo; mkfifo stuck.fifo && echo made')).output).toBe('made\n');
    // Opening a FIFO with no reader blocks for ever: the call's limit (its timeout + 10 s) ends it.
    const ep = agent.endpoint as { host: string; port: number; capability: string };
    const res = await fetch(`http://${ep.host}:${ep.port}/execute`, {
      method: 'POST',
      headers: { authorization: `Bearer ${ep.capability}`, 'content-type': 'application/json' },
      body: JSON.stringify({ tool: 'write', input: { file_path: 'stuck.fifo', content: 'x' }, timeout_ms: 1 }),
    });
    expect(await res.json()).toMatchObject({ output: 'write: timed out after 10001 ms', is_error: true });
    await until(() => toolServers().length === 0, 10_000, 'the stuck tool process to be killed');
    expect((await c.execute('read', { file_path: 'served.txt' })).output).toBe('     1\tone');
    expect(toolServers()).toHaveLength(1);
  }, 30_000);

  it('keeps one shell as that user between calls, and restarts it as that user when it dies', async () => {
    const bash = bashOf(c);
    await bash('mkdir -p keep && cd keep && export KEPT=1');
    expect((await bash('pwd; echo $KEPT; id -u')).output).toMatch(new RegExp(`keep\n1\n${TOOLS_UID}\n$`));
    const shellPid = Number((await bash('echo $$')).output.replace(/^\[the shell[^\n]*\n/, ''));
    expect(fs.readFileSync(`/proc/${shellPid}/status`, 'utf8')).toMatch(new RegExp(`^Uid:\\s+${TOOLS_UID}\\s`, 'm'));
    expect((await bash('kill -9 $$')).output).toMatch(/killed by signal SIGKILL; the shell exited/);
    const after = await bash('pwd; echo "${KEPT:-unset}"; id -u');
    expect(after.output).toBe(`[the shell was restarted (the previous one was killed by signal SIGKILL); working directory and environment were reset]\n${ws}\nunset\n${TOOLS_UID}\n`);
  });
});

describe.skipIf(!IS_ROOT || !HAS_SETCAP)('the image model: agent as an ordinary user, tools through a setpriv with file capabilities', () => {
  let agent: AgentHandle;
  let c: SandboxClient;
  let ws: string;
  let helper: string;
  let mountRoot: string;
  beforeAll(async () => {
    const bin = dirFor('bin');
    fs.chownSync(bin, 0, AGENT_GID);
    fs.chmodSync(bin, 0o750);
    helper = path.join(bin, 'setpriv');
    fs.copyFileSync('/usr/bin/setpriv', helper);
    fs.chownSync(helper, 0, AGENT_GID);
    fs.chmodSync(helper, 0o750);
    run('setcap', ['cap_setuid,cap_setgid+ep', helper]);
    ws = dirFor('image-ws', TOOLS_UID);
    const state = dirFor('image-state', AGENT_UID);
    fs.chmodSync(state, 0o700);
    mountRoot = path.join(dirFor('image-mnt'), 'repos');
    // git refuses local repositories of other users ("dubious ownership"): give the tools user a copy
    const url = path.join(root, 'tools-copy', 'demo.git');
    fs.cpSync(repo.url, url, { recursive: true });
    run('chown', ['-R', `${TOOLS_UID}:${TOOLS_UID}`, path.dirname(url)]);
    const recipe = encodeRecipe({
      config: {},
      resources: [
        { type: 'github_repository', url },
        // outside /workspace: created by root through the helper, then cloned as the tools' user
        { type: 'github_repository', url, mount_path: `${mountRoot}/pinned`, checkout: { type: 'commit', sha: repo.mainSha } },
      ],
    });
    agent = await startAgent({
      root: dirFor('image'),
      mode: 'tcp',
      workspace: ws,
      stateDir: state,
      user: { uid: AGENT_UID, gid: AGENT_GID },
      env: { CORRAL_SANDBOX_RECIPE: recipe, HOME: state },
      args: ['--run-as-uid', String(TOOLS_UID), '--run-as-gid', String(TOOLS_UID), '--setpriv', helper, '--install-packages'],
    });
    c = new SandboxClient(agent.endpoint);
  });
  afterAll(() => agent?.stop());

  it('runs tools as the tools user without capabilities, and the agent as its own user', async () => {
    const agentStatus = fs.readFileSync(`/proc/${agent.child.pid}/status`, 'utf8');
    expect(agentStatus).toMatch(new RegExp(`^Uid:\\s+${AGENT_UID}\\s`, 'm'));
    expect(agentStatus).toMatch(/^CapEff:\s+0+$/m);
    const out = await bashOf(c)('id -u; id -g; grep -E "^(CapEff|CapPrm|CapAmb|NoNewPrivs)" /proc/self/status');
    expect(out.output.split('\n')).toEqual([
      String(TOOLS_UID),
      String(TOOLS_UID),
      expect.stringMatching(/^CapPrm:\s+0+$/),
      expect.stringMatching(/^CapEff:\s+0+$/),
      expect.stringMatching(/^CapAmb:\s+0+$/),
      expect.stringMatching(/^NoNewPrivs:\s+1$/),
      '',
    ]);
  });

  it('keeps the capability and the helper out of reach of the tools user', async () => {
    const bash = bashOf(c);
    const environ = await bash(`cat /proc/${agent.child.pid}/environ`);
    expect(environ.output).toMatch(/Permission denied/);
    expect(environ.output).not.toContain(agent.endpoint.capability);
    expect(await c.execute('read', { file_path: `/proc/${agent.child.pid}/environ` })).toMatchObject({ isError: true });
    const escalate = await bash(`${helper} --reuid=0 --regid=0 --clear-groups -- id -u`);
    expect(escalate.isError).toBe(true);
    expect(escalate.output).toMatch(/Permission denied/);
    expect((await bash(`kill -0 ${agent.child.pid} 2>&1 || echo cannot-signal`)).output).toContain('cannot-signal');
  });

  it('cloned the recipe as the tools user, creating a mount path outside the workspace as root', async () => {
    expect((await bashOf(c)('cat demo/README.md; stat -c %u demo/README.md')).output).toBe(`main\n${TOOLS_UID}\n`);
    const pinned = path.join(mountRoot, 'pinned');
    expect(fs.statSync(pinned).uid).toBe(TOOLS_UID);
    expect(fs.statSync(mountRoot).uid).toBe(0);
    expect(run('git', ['-C', pinned, 'rev-parse', 'HEAD'], { env: { GIT_CONFIG_PARAMETERS: `'safe.directory=*'` } }).trim()).toBe(repo.mainSha);
  });

  it('can kill the tools user’s commands at their timeout although it may not signal them itself', async () => {
    const out = await bashOf(c)('echo $$ > pid; exec sleep 30', { timeout_ms: 500 });
    expect(out).toMatchObject({ isError: true, output: expect.stringMatching(/timed out/) });
    const pid = Number(fs.readFileSync(path.join(ws, 'pid'), 'utf8'));
    await until(() => !processAlive(pid), 10_000, 'the command to die');
  });

  it('kills the tools user’s shell with a background job at a timeout, and the next call gets a fresh shell as that user', async () => {
    const bash = bashOf(c);
    await bash('cd / && export GONE=1');
    const out = await bash('sleep 60 & echo $! > $HOME/bg.pid; sleep 30', { timeout_ms: 500 });
    expect(out).toMatchObject({ isError: true, output: expect.stringMatching(/timed out/) });
    const bg = Number(fs.readFileSync(path.join(ws, 'bg.pid'), 'utf8'));
    await until(() => !processAlive(bg), 10_000, 'the background job to die');
    const next = await bash('pwd; echo "${GONE:-unset}"; id -u');
    expect(next.output).toMatch(new RegExp(`^\\[the shell was restarted \\(the previous command timed out[^\n]*\n${ws}\nunset\n${TOOLS_UID}\n$`));
  });
});

describe.skipIf(!IS_ROOT)('the agent bundled with esbuild, as the Dockerfile builds it', () => {
  it('runs from one file with node alone, including the file-tool child process', async () => {
    const out = path.join(dirFor('bundle'), 'agent.mjs');
    run(path.join(REPO_ROOT, 'node_modules', '.bin', 'esbuild'), [
      path.join(REPO_ROOT, 'sandbox', 'agent.ts'),
      '--bundle',
      '--platform=node',
      '--target=node20',
      '--format=esm',
      `--outfile=${out}`,
      '--log-level=warning',
    ]);
    fs.chmodSync(out, 0o644);
    const ws = dirFor('bundle-ws', TOOLS_UID);
    const agent = await startAgent({
      root: dirFor('bundle-run'),
      mode: 'tcp',
      program: out,
      workspace: ws,
      args: ['--run-as-uid', String(TOOLS_UID), '--run-as-gid', String(TOOLS_UID)],
    });
    try {
      const c = new SandboxClient(agent.endpoint);
      expect((await c.execute('bash', { command: 'id -u' })).output).toBe(`${TOOLS_UID}\n`);
      expect(await c.execute('write', { file_path: 'a.txt', content: 'bundled' })).toMatchObject({ isError: false });
      expect(await c.execute('read', { file_path: 'a.txt' })).toEqual({ output: '     1\tbundled', isError: false });
    } finally {
      await agent.stop();
    }
  });
});
