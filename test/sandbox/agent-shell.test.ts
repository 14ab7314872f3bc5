/**
 * The persistent bash session of the sandbox agent (sandbox/agent/shell.ts), on a real agent
 * process: state carries over between calls, stdin is not the command channel, a timeout or a
 * dead shell is reported and the next call works in a fresh shell, calls are serialized, output
 * stays bounded, and a repeated tool_use id does not run again.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { SandboxClient } from '../../lambdas/core/sandbox/client.js';
import { processAlive, startAgent, tempDir, until, type AgentHandle } from './helpers.js';

let root: string;
let agent: AgentHandle;
let client: SandboxClient;
let ws: string;

const bash = (command: string, extra: Record<string, unknown> = {}) => client.execute('bash', { command, ...extra });
const RESTARTED = /^\[the shell was restarted \([^)]*\); working directory and environment were reset\]\n/;

beforeAll(async () => {
  root = tempDir('corral-shell-');
  agent = await startAgent({ root });
  client = new SandboxClient(agent.endpoint);
  ws = agent.workspace;
});

afterAll(async () => {
  await agent?.stop();
  fs.rmSync(root, { recursive: true, force: true });
});

// Every test starts from a fresh shell, asked for (so not reported as a restart).
beforeEach(async () => {
  expect((await client.execute('bash', { restart: true })).isError).toBe(false);
});

describe('sandbox agent: the persistent bash session', () => {
  it('keeps the working directory, variables, functions and options between calls', async () => {
    const set = await bash('mkdir -p sub/dir && cd sub/dir && export EXPORTED=e1 && PLAIN=p1 && declare DECLARED=d1 && greet() { echo "hi $1"; } && shopt -s extglob');
    expect(set).toEqual({ output: '', isError: false });
    const get = await bash('pwd; echo "$EXPORTED $PLAIN $DECLARED"; greet you; shopt extglob; sh -c \'echo "child sees ${EXPORTED:-nothing} ${PLAIN:-nothing}"\'');
    expect(get).toEqual({ output: `${ws}/sub/dir\ne1 p1 d1\nhi you\nextglob        \ton\nchild sees e1 nothing\n`, isError: false });
  });

  it('gives commands /dev/null as stdin: a command reading stdin neither hangs nor eats the next command', async () => {
    const read = await bash('cat > eaten.txt; read -r line; echo "read=[$line] rc=$?"', { timeout_ms: 10_000 });
    expect(read).toEqual({ output: 'read=[] rc=1\n', isError: false });
    expect(fs.readFileSync(path.join(ws, 'eaten.txt'), 'utf8')).toBe('');
    expect(await bash('echo next')).toEqual({ output: 'next\n', isError: false });
  });

  it('reports the exit status of the command, not of the shell, and survives syntax errors', async () => {
    expect(await bash('echo partial; false')).toEqual({ output: 'partial\n[exit code 1]', isError: true });
    const syntax = await bash('echo "unterminated');
    expect(syntax.isError).toBe(true);
    expect(syntax.output).toMatch(/unexpected EOF[\s\S]*\[exit code 2\]$/);
    expect(await bash('printf no-newline')).toEqual({ output: 'no-newline', isError: false });
    expect(await bash("echo '__CORRAL_DONE_x_0__'; echo after")).toEqual({ output: '__CORRAL_DONE_x_0__\nafter\n', isError: false });
    expect(await bash('break; continue; return 2>/dev/null; echo still')).toMatchObject({ output: expect.stringMatching(/still\n$/) });
    expect(await bash('echo alive')).toEqual({ output: 'alive\n', isError: false });
  });

  it('kills a command at its timeout with its background jobs, says so, and the next call works in a fresh shell', async () => {
    await bash('cd / && export GONE=1');
    const out = await bash('sleep 60 & echo $! > $HOME/bg.pid; echo started; sleep 60', { timeout_ms: 1000 });
    expect(out.isError).toBe(true);
    expect(out.output).toMatch(/^started\n\[command timed out after 1000 ms; it was killed with its shell/);
    const bgPid = Number(fs.readFileSync(path.join(ws, 'bg.pid'), 'utf8'));
    await until(() => !processAlive(bgPid), 10_000, 'the background sleep to die');
    const next = await bash('pwd; echo "GONE=${GONE:-unset}"');
    expect(next.isError).toBe(false);
    expect(next.output).toMatch(RESTARTED);
    expect(next.output).toMatch(/timed out/);
    expect(next.output.replace(RESTARTED, '')).toBe(`${ws}\nGONE=unset\n`);
    // Reported once.
    expect(await bash('echo once')).toEqual({ output: 'once\n', isError: false });
  });

  it('reports a shell that exits or is killed, and the next call starts a fresh one and says so', async () => {
    await bash('cd / && export GONE=1');
    const exited = await bash('echo bye; exit 3');
    expect(exited).toEqual({ output: 'bye\n[exit code 3; the shell exited: the next command runs in a fresh shell]', isError: true });
    const after = await bash('pwd; echo "GONE=${GONE:-unset}"');
    expect(after).toEqual({ output: `[the shell was restarted (the previous one exited with code 3); working directory and environment were reset]\n${ws}\nGONE=unset\n`, isError: false });

    const killed = await bash('echo $$ > shell.pid; kill -9 $$');
    expect(killed.isError).toBe(true);
    expect(killed.output).toMatch(/killed by signal SIGKILL; the shell exited/);
    const shellPid = Number(fs.readFileSync(path.join(ws, 'shell.pid'), 'utf8'));
    expect(processAlive(shellPid)).toBe(false);
    const again = await bash('echo $$');
    expect(again.output).toMatch(/^\[the shell was restarted \(the previous one was killed by signal SIGKILL\)/);
    expect(Number(again.output.replace(RESTARTED, ''))).not.toBe(shellPid);
  });

  it('reports a shell that died between calls', async () => {
    const pid = (await bash('echo $$')).output.trim();
    await bash(`(sleep 0.2; kill -9 ${pid}) >/dev/null 2>&1 &`);
    // Gone from /proc: reaped by the agent, which has then seen it exit.
    await until(() => !fs.existsSync(`/proc/${pid}`), 10_000, 'the shell to die and be reaped');
    const next = await bash('echo fresh');
    expect(next.output).toMatch(RESTARTED);
    expect(next.output.replace(RESTARTED, '')).toBe('fresh\n');
  });

  it('restarts on request: state reset, background jobs killed, no restart notice afterwards', async () => {
    await bash('cd / && export KEPT=1');
    const bg = await bash('sleep 60 >/dev/null 2>&1 & echo $!');
    const bgPid = Number(bg.output.trim());
    expect(processAlive(bgPid)).toBe(true);
    const restarted = await client.execute('bash', { restart: true });
    expect(restarted).toEqual({ output: expect.stringMatching(/restarted/), isError: false });
    await until(() => !processAlive(bgPid), 10_000, 'the background sleep to die');
    expect(await bash('pwd; echo "KEPT=${KEPT:-unset}"')).toEqual({ output: `${ws}\nKEPT=unset\n`, isError: false });
    // restart with a command: the command runs in the fresh shell.
    await bash('cd /');
    expect(await client.execute('bash', { restart: true, command: 'pwd' })).toEqual({ output: `${ws}\n`, isError: false });
    // A bad input restarts nothing.
    await bash('export STAYS=1');
    expect((await client.execute('bash', { restart: true, command: 42 })).isError).toBe(true);
    expect((await client.execute('bash', { restart: 'yes' })).isError).toBe(true);
    expect((await bash('echo $STAYS')).output).toBe('1\n');
  });

  it('runs concurrent calls one after another', async () => {
    const calls = Array.from({ length: 6 }, (_, i) => bash(`echo start-${i} >> order.txt; sleep 0.05; echo end-${i} >> order.txt; echo ${i}`));
    const results = await Promise.all(calls);
    results.forEach((r, i) => expect(r).toEqual({ output: `${i}\n`, isError: false }));
    const lines = fs.readFileSync(path.join(ws, 'order.txt'), 'utf8').trim().split('\n');
    expect(lines).toHaveLength(12);
    for (let k = 0; k < lines.length; k += 2) {
      expect(lines[k + 1]).toBe(lines[k]!.replace('start', 'end'));
    }
  });

  it('bounds huge output, and the next call sees only its own', async () => {
    const big = await bash('seq 1 1000000; cd /tmp');
    expect(big.output.length).toBeLessThanOrEqual(100_000);
    expect(big.output).toMatch(/characters truncated/);
    expect(big.output.endsWith('999999\n1000000\n')).toBe(true);
    expect(await bash('pwd')).toEqual({ output: '/tmp\n', isError: false });
  });

  it('shows what background jobs printed between calls at the start of the next call', async () => {
    await bash('(sleep 0.2; echo late) &');
    await new Promise((r) => setTimeout(r, 700));
    expect(await bash('echo now')).toEqual({ output: 'late\nnow\n', isError: false });
  });

  it('returns the first result for a repeated tool_use id without running the command again', async () => {
    const a = await client.execute('bash', { command: 'echo x >> idem.txt; cd /; cat $HOME/idem.txt' }, { idempotencyKey: 'toolu_shell_1' });
    const b = await client.execute('bash', { command: 'echo x >> idem.txt; cd /; cat $HOME/idem.txt' }, { idempotencyKey: 'toolu_shell_1' });
    expect(a).toEqual({ output: 'x\n', isError: false });
    expect(b).toEqual(a);
    expect(fs.readFileSync(path.join(ws, 'idem.txt'), 'utf8')).toBe('x\n');
  });
});
