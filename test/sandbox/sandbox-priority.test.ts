/**
 * Local sandboxes run at a lower CPU and I/O priority than the harness beside them, set once at
 * start, inherited by every tool, and not undoable from inside. Real bubblewrapped sandboxes; the
 * cgroup part needs root and a v1 `cpu` hierarchy (this machine's), and is skipped elsewhere.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ProcessSandboxProvider, bwrapAvailable, type ProcessSandboxLogger } from '../../lambdas/adapters/local/process-sandbox.js';
import {
  DEFAULT_SANDBOX_PRIORITY,
  SANDBOX_CGROUP,
  parseSandboxPriority,
  priorityCommand,
  resolveSandboxPriority,
} from '../../lambdas/adapters/local/sandbox-priority.js';
import { SandboxClient } from '../../lambdas/core/sandbox/client.js';
import type { ProvisionedSandbox, SandboxRecipe } from '../../lambdas/core/sandbox/types.js';
import { tempDir } from './helpers.js';

const recipe: SandboxRecipe = { environmentId: 'env_test', packages: {}, repositories: [] };
const HAS_BWRAP = await bwrapAvailable();
if (!HAS_BWRAP && process.env.CI) throw new Error('bubblewrap (bwrap) is required for the sandbox priority tests in CI');
const HAS_CGROUP = process.getuid?.() === 0 && fs.existsSync('/sys/fs/cgroup/cpu/cpu.shares');
if (!HAS_CGROUP) console.warn('not root or no cgroup v1 cpu hierarchy: skipping the sandbox cgroup checks');

const quietLogger = (): ProcessSandboxLogger & { warnings: string[] } => {
  const warnings: string[] = [];
  return { warnings, warn: (m: string) => void warnings.push(m) };
};

const CAP_SYS_NICE = 1n << 23n;

/** `/proc/<pid>/stat` fields after the command name: nice is field 19, the policy field 41. */
function statOf(text: string): { nice: number; policy: number } {
  const fields = text.slice(text.lastIndexOf(')') + 2).trim().split(/\s+/);
  return { nice: Number(fields[19 - 3]), policy: Number(fields[41 - 3]) };
}

/** The pids below `pid` (children of every thread), recursively. */
function descendants(pid: number): number[] {
  const out: number[] = [];
  for (const task of fs.readdirSync(`/proc/${pid}/task`)) {
    const kids = fs.readFileSync(`/proc/${pid}/task/${task}/children`, 'utf8').trim();
    for (const k of kids ? kids.split(/\s+/).map(Number) : []) out.push(k, ...descendants(k));
  }
  return out;
}

describe('sandbox priority settings', () => {
  it('parses CORRAL_SANDBOX_PRIORITY and refuses what it cannot apply', () => {
    expect(parseSandboxPriority('nice=19, sched=idle,io_class=idle,cpu_shares=64')).toEqual({ nice: 19, sched: 'idle', io_class: 'idle', cpu_shares: 64 });
    expect(parseSandboxPriority(undefined)).toEqual({});
    expect(() => parseSandboxPriority('nice=-5')).toThrow(/nice/);
    expect(() => parseSandboxPriority('nice=20')).toThrow(/nice must be an integer from 0 to 19/);
    expect(() => parseSandboxPriority('sched=fifo')).toThrow(/sched must be one of other, batch, idle/);
    expect(() => parseSandboxPriority('io_level=8')).toThrow(/io_level/);
    expect(() => parseSandboxPriority('cpu_shares=1')).toThrow(/cpu_shares/);
    expect(() => parseSandboxPriority('priority=high')).toThrow(/name among/);
  });

  it('asks for nothing when everything is off, and always pins RLIMIT_NICE with a nice value', () => {
    expect(priorityCommand(resolveSandboxPriority({ nice: 0, sched: 'other', io_class: 'none' }))).toEqual([]);
    const chain = priorityCommand(DEFAULT_SANDBOX_PRIORITY);
    expect(chain.slice(0, 3)).toEqual(['prlimit', '--nice=0', '--']);
    expect(chain).toEqual(expect.arrayContaining(['nice', 'ionice', 'chrt', '--batch']));
  });
});

describe.skipIf(!HAS_BWRAP)('a bubblewrapped sandbox at the default priority', () => {
  let root: string;
  let p: ProcessSandboxProvider;
  let sb: ProvisionedSandbox;
  let c: SandboxClient;
  const bash = async (command: string) => c.execute('bash', { command });

  beforeAll(async () => {
    root = tempDir('corral-prio-');
    p = new ProcessSandboxProvider({ dataDir: root, isolation: 'bwrap', logger: quietLogger(), healthTimeoutMs: 120_000 });
    sb = await p.provision({ sessionId: 'sesn_prio', name: 'default', recipe });
    c = new SandboxClient(sb.endpoint);
    // A sandbox yields to everything else on a busy machine: its start may take long there.
  }, 130_000);

  afterAll(async () => {
    await p?.close();
    if (root) fs.rmSync(root, { recursive: true, force: true });
  });

  it("shows the nice value and SCHED_BATCH in a tool process's /proc/self/stat, and I/O best-effort 7", async () => {
    const out = await bash('cat /proc/self/stat; ionice -p $$');
    const [stat, io] = out.output.trim().split('\n');
    expect(statOf(stat)).toEqual({ nice: DEFAULT_SANDBOX_PRIORITY.nice, policy: 3 /* SCHED_BATCH */ });
    expect(io).toBe('best-effort: prio 7');
  });

  it('cannot lower its nice value: nice -n -5 and renice do not take, and the tools hold no CAP_SYS_NICE', async () => {
    const out = await bash(
      [
        'nice -n -5 cat /proc/self/stat',
        'renice -n 0 -p $$ >/dev/null 2>&1; echo "renice=$?"',
        'cat /proc/self/stat',
        'grep -E "^(Cap(Inh|Prm|Eff|Amb)|NoNewPrivs):" /proc/self/status',
        'grep "Max nice" /proc/self/limits',
      ].join('; '),
    );
    const lines = out.output.trim().split('\n');
    // GNU nice runs the command anyway, at the value it could not lower.
    expect(statOf(lines.find((l) => l.includes('(cat)'))!).nice).toBe(DEFAULT_SANDBOX_PRIORITY.nice);
    expect(lines).toContain('renice=1');
    expect(statOf(lines.filter((l) => l.includes('(cat)'))[1]).nice).toBe(DEFAULT_SANDBOX_PRIORITY.nice);
    // No capability set holds CAP_SYS_NICE, and none can gain it (no setuid or file capabilities).
    const caps = lines.filter((l) => l.startsWith('Cap'));
    expect(caps).toHaveLength(4);
    for (const line of caps) expect(BigInt(`0x${line.split(/\s+/)[1]}`) & CAP_SYS_NICE).toBe(0n);
    expect(lines).toContain('NoNewPrivs:\t1');
    expect(lines.find((l) => l.startsWith('Max nice'))).toMatch(/^Max nice priority\s+0\s+0\s*$/);
  });

  it('the agent itself runs at that priority, without CAP_SYS_NICE in any set', () => {
    const pids = [Number(sb.ref), ...descendants(Number(sb.ref))];
    const agent = pids.find((pid) => fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('agent.ts'));
    expect(agent).toBeDefined();
    expect(statOf(fs.readFileSync(`/proc/${agent}/stat`, 'utf8'))).toEqual({ nice: DEFAULT_SANDBOX_PRIORITY.nice, policy: 3 });
    const status = fs.readFileSync(`/proc/${agent}/status`, 'utf8');
    for (const set of ['CapInh', 'CapPrm', 'CapEff', 'CapAmb']) {
      expect(BigInt(`0x${new RegExp(`^${set}:\\s+([0-9a-f]+)$`, 'm').exec(status)![1]}`) & CAP_SYS_NICE).toBe(0n);
    }
    expect(status).toMatch(/^NoNewPrivs:\s+1$/m);
  });

  it.skipIf(!HAS_CGROUP)('puts the whole sandbox into the low-weight cgroup, and this process stays out of it', () => {
    const pids = [Number(sb.ref), ...descendants(Number(sb.ref))];
    expect(pids.length).toBeGreaterThanOrEqual(2);
    const cpuLine = (pid: number | 'self') => fs.readFileSync(`/proc/${pid}/cgroup`, 'utf8').split('\n').find((l) => /^\d+:(?:[^:]*,)?cpu(?:,[^:]*)?:/.test(l))!;
    for (const pid of pids) expect(cpuLine(pid)).toMatch(new RegExp(`/${SANDBOX_CGROUP}$`));
    expect(cpuLine('self')).not.toContain(SANDBOX_CGROUP);
    const own = cpuLine('self').split(':')[2];
    expect(fs.readFileSync(path.join('/sys/fs/cgroup/cpu', own, SANDBOX_CGROUP, 'cpu.shares'), 'utf8').trim()).toBe(String(DEFAULT_SANDBOX_PRIORITY.cpu_shares));
  });
});

describe.skipIf(!HAS_BWRAP)('a sandbox with a configured priority', () => {
  it('applies SCHED_IDLE, nice 19 and idle I/O, and a process cannot leave SCHED_IDLE', async () => {
    const root = tempDir('corral-prio-idle-');
    const p = new ProcessSandboxProvider({ dataDir: root, isolation: 'bwrap', logger: quietLogger(), healthTimeoutMs: 120_000, priority: { nice: 19, sched: 'idle', io_class: 'idle', cpu_shares: 0 } });
    try {
      const sb = await p.provision({ sessionId: 'sesn_idle', name: 'default', recipe });
      const out = await new SandboxClient(sb.endpoint).execute('bash', {
        command: 'cat /proc/self/stat; ionice -p $$; chrt --other -p 0 $$ >/dev/null 2>&1; echo "chrt=$?"; cat /proc/self/stat',
      });
      const lines = out.output.trim().split('\n');
      expect(statOf(lines[0]).policy).toBe(5 /* SCHED_IDLE */);
      expect(lines[1]).toBe('idle');
      expect(lines[2]).toBe('chrt=1');
      expect(statOf(lines[3]).policy).toBe(5);
    } finally {
      await p.close();
      fs.rmSync(root, { recursive: true, force: true });
    }
  }, 130_000);
});
