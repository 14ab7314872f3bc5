import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ProcessSandboxProvider, bwrapAvailable, safeSegment, type ProcessSandboxLogger } from '../../lambdas/adapters/local/process-sandbox.js';
import { SandboxClient } from '../../lambdas/core/sandbox/client.js';
import { SandboxUnavailableError, type ProvisionedSandbox, type SandboxRecipe } from '../../lambdas/core/sandbox/types.js';
import { REPO_ROOT, processAlive, tempDir, until } from './helpers.js';

const recipe: SandboxRecipe = { environmentId: 'env_test', packages: {}, repositories: [] };
const HAS_BWRAP = await bwrapAvailable();
// Outside CI a machine without bubblewrap skips the isolation tests with this warning; in CI
// (which installs it) a missing bwrap fails the file, so the isolation is never silently untested.
if (!HAS_BWRAP && process.env.CI) throw new Error('bubblewrap (bwrap) is required for the sandbox isolation tests in CI');
if (!HAS_BWRAP) console.warn('bubblewrap unavailable: skipping bwrap isolation tests');

const quietLogger = (): ProcessSandboxLogger & { warnings: string[] } => {
  const warnings: string[] = [];
  return { warnings, warn: (m: string) => void warnings.push(m) };
};

let dataRoot: string;
let server: net.Server;
let port: number;
let connections = 0;
const providers: ProcessSandboxProvider[] = [];

function provider(opts: Partial<ConstructorParameters<typeof ProcessSandboxProvider>[0]> = {}) {
  const p = new ProcessSandboxProvider({ dataDir: path.join(dataRoot, `p${providers.length}`), logger: quietLogger(), ...opts });
  providers.push(p);
  return p;
}

beforeAll(async () => {
  dataRoot = tempDir('corral-psb-');
  process.env.SECRET_MARKER = 'parent-secret-456';
  // A host TCP server: reachable from an unisolated sandbox, not from a bubblewrapped one.
  server = net.createServer((s) => {
    connections++;
    s.destroy();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  port = (server.address() as net.AddressInfo).port;
});

afterEach(async () => {
  await Promise.all(providers.map((p) => p.close()));
});

afterAll(async () => {
  delete process.env.SECRET_MARKER;
  await new Promise((r) => server.close(r));
  fs.rmSync(dataRoot, { recursive: true, force: true });
});

describe('ProcessSandboxProvider (no isolation)', () => {
  it('does nothing until provision, then starts an agent in a per-session workspace', async () => {
    const p = provider({ isolation: 'none' });
    const dataDir = path.join(dataRoot, `p${providers.length - 1}`);
    expect(fs.existsSync(dataDir)).toBe(false);
    const sb = await p.provision({ sessionId: 'sesn_A', name: 'default', recipe });
    expect(sb.endpoint.kind).toBe('unix');
    expect(sb.endpoint.capability).toMatch(/^[A-Za-z0-9_-]{43}$/);
    const ws = p.workspaceDir('sesn_A', 'default');
    expect(ws).toBe(path.join(dataDir, 'sandboxes', 'sesn_A', 'default', 'workspace'));
    expect((sb.endpoint as { socketPath: string }).socketPath).toBe(path.join(dataDir, 'sandboxes', 'sesn_A', 'default', 'run', 'agent.sock'));
    const c = new SandboxClient(sb.endpoint);
    const out = await c.execute('bash', { command: 'pwd; env; echo hi > made.txt' });
    expect(out.isError).toBe(false);
    expect(out.output.split('\n')[0]).toBe(ws);
    expect(out.output).not.toContain('SECRET_MARKER');
    expect(out.output).not.toContain('CORRAL_SANDBOX_CAPABILITY');
    expect(out.output).not.toContain(sb.endpoint.capability);
    expect(fs.readFileSync(path.join(ws, 'made.txt'), 'utf8')).toBe('hi\n');
    // Control for the isolation test below: without bwrap the host network is reachable.
    const net = await c.execute('bash', { command: `echo > /dev/tcp/127.0.0.1/${port} && echo connected` });
    expect(net).toEqual({ output: 'connected\n', isError: false });
  });

  it('sanitizes ids used in paths', async () => {
    expect(safeSegment('sesn_01ABC')).toBe('sesn_01ABC');
    expect(safeSegment('..')).not.toMatch(/^\.+$/);
    expect(safeSegment('../../etc')).not.toContain('/');
    expect(safeSegment('a/b')).not.toBe(safeSegment('a_b'));
    const p = provider({ isolation: 'none' });
    const sb = await p.provision({ sessionId: '../../escape', name: 'x/y', recipe });
    const ws = p.workspaceDir('../../escape', 'x/y');
    expect(ws.startsWith(path.join(dataRoot, `p${providers.length - 1}`, 'sandboxes') + path.sep)).toBe(true);
    expect((await new SandboxClient(sb.endpoint).execute('bash', { command: 'pwd' })).output).toBe(`${ws}\n`);
  });

  it('uses a short socket path when the sandbox directory is too deep for a Unix socket', async () => {
    const p = provider({ isolation: 'none' });
    const sessionId = `sesn_${'x'.repeat(60)}`;
    const sb = await p.provision({ sessionId, name: 'default', recipe });
    const socketPath = (sb.endpoint as { socketPath: string }).socketPath;
    expect(Buffer.byteLength(socketPath)).toBeLessThanOrEqual(100);
    expect((await new SandboxClient(sb.endpoint).execute('bash', { command: 'pwd' })).output).toBe(`${p.workspaceDir(sessionId, 'default')}\n`);
    await p.release(sessionId, 'default', sb.ref);
    expect(fs.existsSync(path.dirname(socketPath))).toBe(false);
  });

  it('release kills the agent, removes the socket, leaves the workspace on disk, and is idempotent; the next sandbox starts empty', async () => {
    const p = provider({ isolation: 'none' });
    const sb = await p.provision({ sessionId: 'sesn_R', name: 'default', recipe });
    const c = new SandboxClient(sb.endpoint);
    await c.execute('write', { file_path: 'keep.txt', content: 'kept' });
    await p.release('sesn_R', 'default', sb.ref);
    expect(processAlive(Number(sb.ref))).toBe(false);
    expect(fs.existsSync((sb.endpoint as { socketPath: string }).socketPath)).toBe(false);
    expect(fs.readFileSync(path.join(p.workspaceDir('sesn_R', 'default'), 'keep.txt'), 'utf8')).toBe('kept');
    await expect(c.execute('bash', { command: 'true' })).rejects.toBeInstanceOf(SandboxUnavailableError);
    expect(await c.health()).toBe(false);
    await p.release('sesn_R', 'default', sb.ref);
    await p.release('sesn_unknown', 'default', '999999');
    // The next sandbox of that name starts empty, as a Fargate task does (its files come back
    // only through the core's snapshot and restore: docs/WORKSPACES.md).
    const next = await p.provision({ sessionId: 'sesn_R', name: 'default', recipe });
    expect((await new SandboxClient(next.endpoint).execute('bash', { command: 'ls -A' })).output).toBe('');
    await p.release('sesn_R', 'default', next.ref);
  });

  it('a stale ref does not release the current sandbox; provisioning again replaces the old one', async () => {
    const p = provider({ isolation: 'none' });
    const first = await p.provision({ sessionId: 'sesn_S', name: 'default', recipe });
    const second = await p.provision({ sessionId: 'sesn_S', name: 'default', recipe });
    expect(processAlive(Number(first.ref))).toBe(false);
    await p.release('sesn_S', 'default', first.ref);
    expect(await new SandboxClient(second.endpoint).health()).toBe(true);
    await expect(new SandboxClient(first.endpoint).execute('bash', { command: 'true' })).rejects.toBeInstanceOf(SandboxUnavailableError);
  });

  it('a killed agent makes execute throw SandboxUnavailableError; releaseAll stops a session', async () => {
    const p = provider({ isolation: 'none' });
    const a = await p.provision({ sessionId: 'sesn_K', name: 'default', recipe });
    const b = await p.provision({ sessionId: 'sesn_K', name: 'second', recipe });
    const other = await p.provision({ sessionId: 'sesn_other', name: 'default', recipe });
    process.kill(Number(a.ref), 'SIGKILL');
    await until(() => !processAlive(Number(a.ref)), 10_000, 'agent to die');
    await expect(new SandboxClient(a.endpoint).execute('bash', { command: 'true' })).rejects.toBeInstanceOf(SandboxUnavailableError);
    await p.releaseAll('sesn_K');
    expect(processAlive(Number(b.ref))).toBe(false);
    expect(await new SandboxClient(other.endpoint).health()).toBe(true);
  });

  it("falls back to no isolation with one warning in 'auto' mode, and refuses in 'bwrap' mode", async () => {
    const logger = quietLogger();
    const auto = provider({ isolation: 'auto', bwrapPath: '/nonexistent/bwrap', logger });
    expect(await auto.isolationMode()).toBe('none');
    expect(await auto.isolationMode()).toBe('none');
    expect(logger.warnings).toHaveLength(1);
    const strict = provider({ isolation: 'bwrap', bwrapPath: '/nonexistent/bwrap' });
    await expect(strict.provision({ sessionId: 'sesn_B', name: 'default', recipe })).rejects.toThrow(/bubblewrap/);
  });
});

describe.skipIf(!HAS_BWRAP)('ProcessSandboxProvider (bubblewrap)', () => {
  let p: ProcessSandboxProvider;
  let sb: ProvisionedSandbox;
  let c: SandboxClient;

  beforeAll(async () => {
    p = new ProcessSandboxProvider({ dataDir: path.join(dataRoot, 'bwrap'), isolation: 'bwrap', logger: quietLogger() });
    sb = await p.provision({ sessionId: 'sesn_W', name: 'default', recipe });
    c = new SandboxClient(sb.endpoint);
  });

  afterAll(async () => {
    await p?.close();
  });

  it('uses bubblewrap', async () => {
    expect(await p.isolationMode()).toBe('bwrap');
    const out = await c.execute('bash', { command: 'cat /proc/1/cmdline | tr "\\0" " "' });
    expect(out.output).toMatch(/^bwrap /);
  });

  it('keeps one confined shell between calls, and a killed one is replaced by a fresh confined one', async () => {
    const ws = p.workspaceDir('sesn_W', 'default');
    await c.execute('bash', { command: 'mkdir -p persist && cd persist && export PERSISTED=yes' });
    const first = await c.execute('bash', { command: 'pwd; echo $PERSISTED; echo $$; ulimit -u; cat /proc/1/cmdline | tr "\\0" " "' });
    const [cwd, value, pid, nproc, init] = first.output.split('\n');
    expect([cwd, value]).toEqual([`${ws}/persist`, 'yes']);
    expect(Number(nproc)).toBe(p.limits.processes);
    expect(init).toMatch(/^bwrap /);
    expect((await c.execute('bash', { command: 'echo $$' })).output).toBe(`${pid}\n`);
    expect((await c.execute('bash', { command: 'kill -9 $$' })).isError).toBe(true);
    const after = await c.execute('bash', { command: 'pwd; echo "${PERSISTED:-unset}"; ulimit -u; cat /proc/1/cmdline | tr "\\0" " "' });
    const lines = after.output.split('\n');
    expect(lines[0]).toMatch(/^\[the shell was restarted/);
    expect(lines.slice(1, 4)).toEqual([ws, 'unset', String(p.limits.processes)]);
    expect(lines[4]).toMatch(/^bwrap /);
  });

  it('has no network', async () => {
    const before = connections;
    const out = await c.execute('bash', { command: `echo > /dev/tcp/127.0.0.1/${port} && echo connected` });
    expect(out.isError).toBe(true);
    expect(out.output).not.toContain('connected\n');
    expect(connections).toBe(before);
  });

  it('has a clean environment without the capability', async () => {
    const out = await c.execute('bash', { command: 'env; cat /proc/*/environ 2>/dev/null | tr "\\0" "\\n"' });
    expect(out.output).not.toContain('SECRET_MARKER');
    expect(out.output).not.toContain('parent-secret-456');
    expect(out.output).not.toContain('CORRAL_SANDBOX_CAPABILITY');
    expect(out.output).not.toContain(sb.endpoint.capability);
  });

  it('can write the workspace and /tmp, but nothing else reaches the host', async () => {
    const ws = p.workspaceDir('sesn_W', 'default');
    const probe = `corral-probe-${process.pid}`;
    const out = await c.execute('bash', {
      command: [
        `echo ws > ${ws}/in-ws.txt && echo ws-ok`,
        `echo tmp > /tmp/${probe} && echo tmp-ok`,
        `echo repo > ${REPO_ROOT}/${probe} || echo repo-denied`,
        `echo agent >> ${REPO_ROOT}/sandbox/agent.ts || echo agent-denied`,
        `touch /usr/${probe} || echo usr-denied`,
        `ls ${REPO_ROOT}/.git >/dev/null 2>&1 || echo no-git`,
      ].join('; '),
    });
    expect(out.output).toContain('ws-ok');
    expect(out.output).toContain('tmp-ok');
    // A checkout under /tmp sits in the sandbox's private /tmp, where the write succeeds without
    // reaching the host; anywhere else the write itself is refused. Either way the host file
    // must not exist (checked below).
    if (!REPO_ROOT.startsWith('/tmp/')) expect(out.output).toContain('repo-denied');
    expect(out.output).toContain('agent-denied');
    expect(out.output).toContain('usr-denied');
    expect(out.output).toContain('no-git');
    expect(fs.readFileSync(path.join(ws, 'in-ws.txt'), 'utf8')).toBe('ws\n');
    expect(fs.existsSync(path.join('/tmp', probe))).toBe(false);
    expect(fs.existsSync(path.join(REPO_ROOT, probe))).toBe(false);
    expect(fs.existsSync(path.join('/usr', probe))).toBe(false);
    expect(fs.readFileSync(path.join(REPO_ROOT, 'sandbox/agent.ts'), 'utf8')).not.toContain('\nagent\n');
  });

  it('works with a short socket path under /tmp', async () => {
    const sessionId = `sesn_${'y'.repeat(60)}`;
    const deep = await p.provision({ sessionId, name: 'default', recipe });
    const out = await new SandboxClient(deep.endpoint).execute('bash', { command: 'pwd; echo > /dev/null' });
    expect(out).toEqual({ output: `${p.workspaceDir(sessionId, 'default')}\n`, isError: false });
    await p.release(sessionId, 'default', deep.ref);
  });

  it('release kills it and the client then throws SandboxUnavailableError', async () => {
    const extra = await p.provision({ sessionId: 'sesn_W', name: 'extra', recipe });
    const ec = new SandboxClient(extra.endpoint);
    expect((await ec.execute('bash', { command: 'echo alive' })).output).toBe('alive\n');
    await p.release('sesn_W', 'extra', extra.ref);
    expect(processAlive(Number(extra.ref))).toBe(false);
    await expect(ec.execute('bash', { command: 'true' })).rejects.toBeInstanceOf(SandboxUnavailableError);
  });
});
