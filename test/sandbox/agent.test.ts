import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SandboxClient } from '../../lambdas/core/sandbox/client.js';
import { SandboxUnavailableError } from '../../lambdas/core/sandbox/types.js';
import { processAlive, rawCall, startAgent, tempDir, until, type AgentHandle } from './helpers.js';

let root: string;
let agent: AgentHandle;
let client: SandboxClient;
let ws: string;

const bash = (command: string, extra: Record<string, unknown> = {}) => client.execute('bash', { command, ...extra });

beforeAll(async () => {
  root = tempDir();
  agent = await startAgent({ root, env: { SECRET_MARKER: 'parent-secret-123' } });
  client = new SandboxClient(agent.endpoint);
  ws = agent.workspace;
});

afterAll(async () => {
  await agent?.stop();
  fs.rmSync(root, { recursive: true, force: true });
});

describe('sandbox agent: protocol', () => {
  it('answers health without auth', async () => {
    const res = await rawCall(agent.endpoint.kind === 'unix' ? agent.endpoint.socketPath : '', { method: 'GET', path: '/health' });
    expect(res.status).toBe(200);
    expect(JSON.parse(res.body)).toEqual({ ok: true });
    expect(await client.health()).toBe(true);
  });

  it('rejects missing and wrong capabilities with 401 JSON', async () => {
    const sock = (agent.endpoint as { socketPath: string }).socketPath;
    const body = JSON.stringify({ tool: 'bash', input: { command: 'touch pwned' } });
    const missing = await rawCall(sock, { body });
    expect(missing.status).toBe(401);
    expect(JSON.parse(missing.body).error).toBeTypeOf('string');
    const wrong = await rawCall(sock, { body, headers: { authorization: 'Bearer nope' } });
    expect(wrong.status).toBe(401);
    expect(fs.existsSync(path.join(ws, 'pwned'))).toBe(false);

    const bad = new SandboxClient({ ...agent.endpoint, capability: 'not-the-capability' });
    const err = await bad.execute('bash', { command: 'true' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SandboxUnavailableError);
    expect((err as Error).message).toMatch(/capability rejected/);
    expect((err as Error).message).not.toContain('not-the-capability');
  });

  it('answers 400 to malformed bodies and unknown tools', async () => {
    const sock = (agent.endpoint as { socketPath: string }).socketPath;
    const headers = { authorization: `Bearer ${agent.endpoint.capability}` };
    for (const body of ['not json', '[]', '{"tool":"rm"}', '{"tool":"bash","input":[]}', '{"tool":"bash","input":{},"timeout_ms":-1}']) {
      const res = await rawCall(sock, { body, headers });
      expect(res.status, body).toBe(400);
      expect(JSON.parse(res.body).error).toBeTypeOf('string');
    }
    const viaClient = await client.execute('teleport', {});
    expect(viaClient.isError).toBe(true);
    expect(viaClient.output).toMatch(/unknown tool/);
  });

  it('refuses bodies over the 8 MB limit', async () => {
    const sock = (agent.endpoint as { socketPath: string }).socketPath;
    const body = JSON.stringify({ tool: 'write', input: { file_path: 'big.txt', content: 'a'.repeat(9 * 1024 * 1024) } });
    const res = await rawCall(sock, { body, headers: { authorization: `Bearer ${agent.endpoint.capability}` } });
    expect(res.status).toBe(413);
    expect(JSON.parse(res.body).error).toMatch(/larger than/);
    const out = await client.execute('write', { file_path: 'big.txt', content: 'a'.repeat(9 * 1024 * 1024) });
    expect(out.isError).toBe(true);
    expect(out.output).toMatch(/larger than/);
    expect(fs.existsSync(path.join(ws, 'big.txt'))).toBe(false);
    expect(await client.health()).toBe(true);
  });

  it('survives garbage tool inputs and keeps serving', async () => {
    const cases: Array<[string, unknown]> = [
      ['bash', {}],
      ['bash', { command: 42 }],
      ['bash', { command: 'a\u0000b' }],
      ['read', { file_path: null }],
      ['read', { file_path: 'x', view_range: 'all' }],
      ['read', { file_path: '\u0000' }],
      ['write', { file_path: 'x' }],
      ['write', { file_path: '', content: 'x' }],
      ['edit', { file_path: 'nope', old_string: '', new_string: 'x' }],
      ['glob', { pattern: '' }],
      ['glob', { pattern: '[', path: '/definitely/missing' }],
      ['grep', { pattern: '(' }],
      ['grep', { pattern: 'x', path: '/definitely/missing' }],
      ['read', { file_path: '/proc/self/mem' }],
    ];
    for (const [tool, input] of cases) {
      const out = await client.execute(tool, input);
      expect(out.isError, `${tool} ${JSON.stringify(input)}`).toBe(true);
    }
    expect(await client.health()).toBe(true);
  });

  it('accepts the capability from the environment over TCP and removes it from children', async () => {
    const tcpRoot = tempDir();
    const tcp = await startAgent({ root: tcpRoot, mode: 'tcp', env: { SECRET_MARKER: 'parent-secret-123' } });
    try {
      expect(tcp.endpoint.kind).toBe('tcp');
      const out = await new SandboxClient(tcp.endpoint).execute('bash', { command: 'env' });
      expect(out.isError).toBe(false);
      expect(out.output).toContain('PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin');
      expect(out.output).not.toContain('CORRAL_SANDBOX_CAPABILITY');
      expect(out.output).not.toContain(tcp.endpoint.capability);
      expect(tcp.stderr()).not.toContain(tcp.endpoint.capability);
    } finally {
      await tcp.stop();
      fs.rmSync(tcpRoot, { recursive: true, force: true });
    }
  });
});

describe('sandbox agent: bash', () => {
  it('runs in the workspace with a clean environment, stdout and stderr in order', async () => {
    const out = await bash('echo one; echo two >&2; echo three; pwd; echo "HOME=$HOME"; env');
    expect(out.isError).toBe(false);
    expect(out.output.startsWith(`one\ntwo\nthree\n${ws}\nHOME=${ws}\n`)).toBe(true);
    expect(out.output).toContain('LANG=C.UTF-8');
    expect(out.output).toContain('TERM=dumb');
    expect(out.output).not.toContain('SECRET_MARKER');
    expect(out.output).not.toContain(agent.endpoint.capability);
    expect(agent.stderr()).not.toContain(agent.endpoint.capability);
  });

  it('has no stdin', async () => {
    const out = await bash('cat; echo done');
    expect(out).toEqual({ output: 'done\n', isError: false });
  });

  it('reports a non-zero exit code as an error with a trailing [exit code N] line', async () => {
    const out = await bash('echo partial; (exit 3)');
    expect(out.isError).toBe(true);
    expect(out.output).toBe('partial\n[exit code 3]');
  });

  it('kills the whole process group on timeout and returns the output so far', async () => {
    const out = await bash('sleep 60 & echo $! > bg.pid; echo started; wait', { timeout_ms: 1000 });
    expect(out.isError).toBe(true);
    expect(out.output).toContain('started');
    expect(out.output).toMatch(/timed out after 1000 ms/);
    const bgPid = Number(fs.readFileSync(path.join(ws, 'bg.pid'), 'utf8'));
    await until(() => !processAlive(bgPid), 10_000, 'background sleep to die');
  });

  it('accepts restart without a command', async () => {
    const out = await client.execute('bash', { restart: true });
    expect(out.isError).toBe(false);
    expect(out.output).toMatch(/restart/i);
  });

  it('truncates huge output to 100k characters keeping head and tail', async () => {
    // seq 1 1000000 prints 6,888,896 characters.
    const out = await bash('seq 1 1000000');
    expect(out.isError).toBe(false);
    expect(out.output.length).toBeLessThanOrEqual(100_000);
    expect(out.output.startsWith('1\n2\n3\n')).toBe(true);
    expect(out.output.endsWith('999999\n1000000\n')).toBe(true);
    const m = /\[\.\.\. (\d+) characters truncated \.\.\.\]/.exec(out.output);
    expect(m).not.toBeNull();
    const marker = `\n${m![0]}\n`;
    expect(Number(m![1]) + out.output.length - marker.length).toBe(6_888_896);
  });

  it('truncates ~5 MB of output from a failing command and still reports the exit code', async () => {
    const out = await bash("head -c 5000000 /dev/zero | tr '\\0' a; (exit 2)");
    expect(out.isError).toBe(true);
    expect(out.output.length).toBeLessThanOrEqual(100_000);
    expect(out.output).toMatch(/characters truncated/);
    expect(out.output.endsWith('[exit code 2]')).toBe(true);
  });
});

describe('sandbox agent: files', () => {
  it('writes (creating parents), reads with line numbers and ranges', async () => {
    const w = await client.execute('write', { file_path: 'dir/sub/f.txt', content: 'alpha\nbeta\ngamma\ndelta\n' });
    expect(w).toEqual({ output: 'Wrote 23 bytes to dir/sub/f.txt', isError: false });
    expect(fs.readFileSync(path.join(ws, 'dir/sub/f.txt'), 'utf8')).toBe('alpha\nbeta\ngamma\ndelta\n');

    const all = await client.execute('read', { file_path: 'dir/sub/f.txt' });
    expect(all).toEqual({ output: '     1\talpha\n     2\tbeta\n     3\tgamma\n     4\tdelta', isError: false });
    const abs = await client.execute('read', { file_path: path.join(ws, 'dir/sub/f.txt'), view_range: [2, 3] });
    expect(abs.output).toBe('     2\tbeta\n     3\tgamma');
    const toEnd = await client.execute('read', { file_path: 'dir/sub/f.txt', view_range: [3, -1] });
    expect(toEnd.output).toBe('     3\tgamma\n     4\tdelta');
  });

  it('reports read errors: missing file, directory, bad range', async () => {
    const missing = await client.execute('read', { file_path: 'nope.txt' });
    expect(missing.isError).toBe(true);
    expect(missing.output).toMatch(/no such file/);
    const dir = await client.execute('read', { file_path: 'dir' });
    expect(dir.isError).toBe(true);
    expect(dir.output).toMatch(/is a directory/);
    const range = await client.execute('read', { file_path: 'dir/sub/f.txt', view_range: [3, 2] });
    expect(range.isError).toBe(true);
    const beyond = await client.execute('read', { file_path: 'dir/sub/f.txt', view_range: [10, -1] });
    expect(beyond.isError).toBe(true);
  });

  it('edits: unique replacement, not found, ambiguous, replace_all', async () => {
    await client.execute('write', { file_path: 'e.txt', content: 'foo bar foo $& baz' });
    const ambiguous = await client.execute('edit', { file_path: 'e.txt', old_string: 'foo', new_string: 'x' });
    expect(ambiguous.isError).toBe(true);
    expect(ambiguous.output).toMatch(/2 times/);
    const missing = await client.execute('edit', { file_path: 'e.txt', old_string: 'qux', new_string: 'x' });
    expect(missing.isError).toBe(true);
    expect(missing.output).toMatch(/not found/);
    const one = await client.execute('edit', { file_path: 'e.txt', old_string: 'bar', new_string: '$1' });
    expect(one).toEqual({ output: 'Replaced 1 occurrence in e.txt', isError: false });
    const all = await client.execute('edit', { file_path: 'e.txt', old_string: 'foo', new_string: 'Q', replace_all: true });
    expect(all).toEqual({ output: 'Replaced 2 occurrences in e.txt', isError: false });
    expect(fs.readFileSync(path.join(ws, 'e.txt'), 'utf8')).toBe('Q $1 Q $& baz');
    const noFile = await client.execute('edit', { file_path: 'absent.txt', old_string: 'a', new_string: 'b' });
    expect(noFile.isError).toBe(true);
  });
});

describe('sandbox agent: glob and grep', () => {
  beforeAll(() => {
    const g = path.join(ws, 'g');
    for (const f of ['a.ts', 'b.js', 'src/c.ts', 'src/d.js', 'src/deep/e.ts', 'src/deep/f.md', '.git/h.ts', 'node_modules/m/i.ts', 'x1.ts', 'x22.ts']) {
      fs.mkdirSync(path.dirname(path.join(g, f)), { recursive: true });
      fs.writeFileSync(path.join(g, f), `// ${f}\nconst needle = 1;\n`);
    }
    fs.writeFileSync(path.join(g, 'src/bin.dat'), Buffer.from([0x6e, 0x65, 0x65, 0x64, 0x6c, 0x65, 0, 1, 2]));
    fs.mkdirSync(path.join(ws, 'many'));
    for (let i = 0; i < 1005; i++) fs.writeFileSync(path.join(ws, 'many', `f${String(i).padStart(4, '0')}.txt`), '');
  });

  it('matches **, *, ?, {a,b} relative to the search root, sorted, skipping .git and node_modules', async () => {
    const glob = async (pattern: string, p = 'g') => (await client.execute('glob', { pattern, path: p })).output.split('\n');
    expect(await glob('**/*.ts')).toEqual(['a.ts', 'src/c.ts', 'src/deep/e.ts', 'x1.ts', 'x22.ts']);
    expect(await glob('src/*.{ts,js}')).toEqual(['src/c.ts', 'src/d.js']);
    expect(await glob('x?.ts')).toEqual(['x1.ts']);
    expect(await glob('src/**')).toEqual(['src/bin.dat', 'src/c.ts', 'src/d.js', 'src/deep/e.ts', 'src/deep/f.md']);
    expect(await glob('*.md', 'g/src/deep')).toEqual(['f.md']);
    expect(await glob('node_modules/**/*.ts')).toEqual(['node_modules/m/i.ts']);
    const none = await client.execute('glob', { pattern: '*.nothing', path: 'g' });
    expect(none.isError).toBe(false);
    expect(none.output).toMatch(/No files matched/);
  });

  it('caps glob results at 1000 with a note', async () => {
    const out = await client.execute('glob', { pattern: 'many/*.txt' });
    const lines = out.output.split('\n');
    expect(lines.length).toBe(1001);
    expect(lines[0]).toBe('many/f0000.txt');
    expect(lines[999]).toBe('many/f0999.txt');
    expect(lines[1000]).toMatch(/first 1000 of 1005/);
  });

  it('greps with path:line:text, skipping binaries, .git and node_modules', async () => {
    const out = await client.execute('grep', { pattern: 'need+le', path: 'g' });
    expect(out.isError).toBe(false);
    expect(out.output.split('\n')).toEqual([
      'a.ts:2:const needle = 1;',
      'b.js:2:const needle = 1;',
      'src/c.ts:2:const needle = 1;',
      'src/d.js:2:const needle = 1;',
      'src/deep/e.ts:2:const needle = 1;',
      'src/deep/f.md:2:const needle = 1;',
      'x1.ts:2:const needle = 1;',
      'x22.ts:2:const needle = 1;',
    ]);
    const file = await client.execute('grep', { pattern: '^//', path: 'g/src/c.ts' });
    expect(file.output).toBe('g/src/c.ts:1:// src/c.ts');
    const none = await client.execute('grep', { pattern: 'zzz_absent', path: 'g' });
    expect(none).toEqual({ output: 'No matches for /zzz_absent/', isError: false });
    const bad = await client.execute('grep', { pattern: '(unclosed' });
    expect(bad.isError).toBe(true);
    expect(bad.output).toMatch(/invalid regular expression/);
  });

  it('stops a catastrophic regex at the time limit without blocking the agent', async () => {
    fs.writeFileSync(path.join(ws, 'redos.txt'), `${'a'.repeat(40)}!\n`);
    const out = await client.execute('grep', { pattern: '^(a+)+$', path: 'redos.txt' }, { timeoutMs: 1500 });
    expect(out.isError).toBe(true);
    expect(out.output).toMatch(/timed out/);
    expect(await client.health()).toBe(true);
  });
});

describe('sandbox agent: idempotency', () => {
  it('runs a repeated key once and returns the first result', async () => {
    const a = await client.execute('bash', { command: 'echo x >> idem.txt; cat idem.txt' }, { idempotencyKey: 'toolu_1' });
    const b = await client.execute('bash', { command: 'echo x >> idem.txt; cat idem.txt' }, { idempotencyKey: 'toolu_1' });
    expect(a).toEqual({ output: 'x\n', isError: false });
    expect(b).toEqual(a);
    expect(fs.readFileSync(path.join(ws, 'idem.txt'), 'utf8')).toBe('x\n');
    const c = await client.execute('bash', { command: 'echo x >> idem.txt' }, { idempotencyKey: 'toolu_2' });
    expect(c.isError).toBe(false);
    expect(fs.readFileSync(path.join(ws, 'idem.txt'), 'utf8')).toBe('x\nx\n');
  });

  it('runs concurrent requests with the same key once', async () => {
    // The command blocks until `go` exists, so the first request is still running when the
    // second arrives; both must get the single run's result.
    const command = 'echo run >> conc.txt; while [ ! -f go ]; do sleep 0.02; done; echo finished';
    const first = client.execute('bash', { command }, { idempotencyKey: 'toolu_conc' });
    await until(() => fs.existsSync(path.join(ws, 'conc.txt')), 10_000, 'first run to start');
    const second = client.execute('bash', { command }, { idempotencyKey: 'toolu_conc' });
    const third = client.execute('bash', { command }, { idempotencyKey: 'toolu_conc' });
    await new Promise((r) => setTimeout(r, 200));
    fs.writeFileSync(path.join(ws, 'go'), '');
    const results = await Promise.all([first, second, third]);
    for (const r of results) expect(r).toEqual({ output: 'finished\n', isError: false });
    expect(fs.readFileSync(path.join(ws, 'conc.txt'), 'utf8')).toBe('run\n');
  });

  it('remembers keys across an agent restart over the same workspace', async () => {
    const r = tempDir();
    try {
      const first = await startAgent({ root: r });
      const c1 = new SandboxClient(first.endpoint);
      const a = await c1.execute('bash', { command: 'echo y >> p.txt; cat p.txt' }, { idempotencyKey: 'toolu_persist' });
      await first.stop();
      const second = await startAgent({ root: r, workspace: first.workspace, stateDir: first.stateDir });
      try {
        const b = await new SandboxClient(second.endpoint).execute('bash', { command: 'echo y >> p.txt' }, { idempotencyKey: 'toolu_persist' });
        expect(b).toEqual(a);
        expect(fs.readFileSync(path.join(first.workspace, 'p.txt'), 'utf8')).toBe('y\n');
      } finally {
        await second.stop();
      }
    } finally {
      fs.rmSync(r, { recursive: true, force: true });
    }
  });
});

describe('sandbox client against a dead agent', () => {
  it('throws SandboxUnavailableError when the process is killed or the socket is missing', async () => {
    const r = tempDir();
    try {
      const a = await startAgent({ root: r });
      const c = new SandboxClient(a.endpoint);
      expect((await c.execute('bash', { command: 'echo hi' })).output).toBe('hi\n');
      await a.stop();
      const err = await c.execute('bash', { command: 'echo hi' }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(SandboxUnavailableError);
      expect((err as Error).message).not.toContain(a.endpoint.capability);
      expect(await c.health()).toBe(false);
      const missing = new SandboxClient({ kind: 'unix', socketPath: path.join(r, 'missing.sock'), capability: 'c' });
      await expect(missing.execute('read', { file_path: 'x' })).rejects.toBeInstanceOf(SandboxUnavailableError);
      const tcp = new SandboxClient({ kind: 'tcp', host: '127.0.0.1', port: 1, capability: 'c' });
      await expect(tcp.execute('read', { file_path: 'x' })).rejects.toThrow(/connection refused/);
    } finally {
      fs.rmSync(r, { recursive: true, force: true });
    }
  });
});
