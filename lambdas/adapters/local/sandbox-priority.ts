/**
 * The CPU and I/O priority of local sandboxes: a sandbox starting or working beside the harness
 * (same machine, same cores) must not starve it. Applied once, when the sandbox starts, to the
 * first process (the wrapper chain below execs into bubblewrap, keeping its pid), so the agent and
 * every tool inherit it; nothing inside the sandbox can raise it back (see each setting).
 *
 * - `cpu_shares`: the sandboxes go into one cgroup (v1 `cpu` controller) beside this process's
 *   own, with this weight against the 1024 of everything else there. This is the setting that
 *   works when the kernel groups processes by session (`CONFIG_SCHED_AUTOGROUP`, on by default on
 *   most distributions): bubblewrap and every tool call `setsid`, each new session is a scheduling
 *   group of its own at weight 1024, and a process's nice value then only orders it within its
 *   group, not against the harness. Tasks in a non-root cgroup are not autogrouped. Needs root
 *   and a writable v1 `cpu` hierarchy; otherwise skipped (with one warning). Nothing in a sandbox
 *   sees /sys, and its tools are not root: it cannot leave the group. 0 turns it off.
 * - `nice` (0-19): the nice value. Lowering it needs CAP_SYS_NICE, which no sandbox process has
 *   (bubblewrap drops every capability but the agent's four), and RLIMIT_NICE is set to 0 (hard)
 *   so that a host where it was raised gives the sandbox no room either.
 * - `sched`: `batch` (SCHED_BATCH: no wake-up preemption of others), `idle` (SCHED_IDLE: runs only
 *   when nothing else wants the CPU; with RLIMIT_NICE 0 a process cannot leave it) or `other`.
 *   A process may switch itself from `batch` back to `other` (the kernel allows that without
 *   privilege); its nice value and cgroup still hold.
 * - `io_class` / `io_level`: `ionice(1)`: `best-effort` at `io_level` (0-7, 7 the lowest), `idle`,
 *   or `none`. Linux lets a process raise its own I/O priority within best-effort without privilege
 *   (never to real-time), so this one is advisory; it only acts with an I/O scheduler that honours
 *   priorities (mq-deadline, bfq).
 *
 * On Fargate each sandbox is a task of its own (its own CPU and disk): none of this applies there.
 * Operator setting: `CORRAL_SANDBOX_PRIORITY`, e.g. `cpu_shares=512,nice=10,sched=batch,io_class=best-effort,io_level=7`.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

export interface SandboxPriority {
  /** Weight of the sandboxes' cgroup against 1024 for everything else beside it (0: no cgroup). */
  cpu_shares: number;
  /** Nice value of every sandbox process (0-19). */
  nice: number;
  sched: 'other' | 'batch' | 'idle';
  io_class: 'none' | 'best-effort' | 'idle';
  /** Best-effort I/O level, 0 (highest) to 7 (lowest). */
  io_level: number;
}

export const SANDBOX_PRIORITY_ENV = 'CORRAL_SANDBOX_PRIORITY';

export const DEFAULT_SANDBOX_PRIORITY: SandboxPriority = {
  cpu_shares: 512,
  nice: 10,
  sched: 'batch',
  io_class: 'best-effort',
  io_level: 7,
};

/** The name of the cgroup local sandboxes share, under this process's own `cpu` cgroup. */
export const SANDBOX_CGROUP = 'corral-sandboxes';

const NUMBERS = { cpu_shares: [0, 262_144], nice: [0, 19], io_level: [0, 7] } as const;
const CHOICES = { sched: ['other', 'batch', 'idle'], io_class: ['none', 'best-effort', 'idle'] } as const;
const NAMES = Object.keys(DEFAULT_SANDBOX_PRIORITY) as Array<keyof SandboxPriority>;

/** `cpu_shares=512,nice=10,sched=batch,io_class=best-effort,io_level=7` (any subset) -> priority. */
export function parseSandboxPriority(text: string | undefined): Partial<SandboxPriority> {
  const out: Record<string, unknown> = {};
  if (!text?.trim()) return out as Partial<SandboxPriority>;
  for (const part of text.split(',')) {
    const m = /^\s*([a-z_]+)\s*=\s*([a-z0-9-]+)\s*$/i.exec(part);
    const name = m?.[1] as keyof SandboxPriority | undefined;
    if (!m || !name || !NAMES.includes(name)) throw new Error(`${JSON.stringify(part.trim())}: use name=value with a name among ${NAMES.join(', ')}`);
    out[name] = name in NUMBERS ? Number(m[2]) : m[2];
  }
  resolveSandboxPriority(out as Partial<SandboxPriority>);
  return out as Partial<SandboxPriority>;
}

/** Defaults filled in; every value checked. */
export function resolveSandboxPriority(partial: Partial<SandboxPriority> | undefined): SandboxPriority {
  const p = { ...DEFAULT_SANDBOX_PRIORITY, ...partial };
  for (const [name, [lo, hi]] of Object.entries(NUMBERS)) {
    const v = p[name as keyof typeof NUMBERS];
    if (!Number.isInteger(v) || v < lo || v > hi) throw new Error(`sandbox priority ${name} must be an integer from ${lo} to ${hi}`);
  }
  if (p.cpu_shares === 1) throw new Error('sandbox priority cpu_shares must be 0 (off) or at least 2');
  for (const [name, allowed] of Object.entries(CHOICES)) {
    const v = p[name as keyof typeof CHOICES];
    if (!(allowed as readonly string[]).includes(v)) throw new Error(`sandbox priority ${name} must be one of ${allowed.join(', ')}`);
  }
  return p;
}

export function formatSandboxPriority(p: SandboxPriority): string {
  return NAMES.map((n) => `${n}=${p[n]}`).join(',');
}

/**
 * The commands in front of the sandbox's own (`prlimit`, `nice`, `ionice`, `chrt`, each exec'ing
 * the next, so the pid stays the sandbox's): empty when the priority asks for nothing.
 */
export function priorityCommand(p: SandboxPriority): string[] {
  const out: string[] = [];
  if (p.nice > 0 || p.sched !== 'other') out.push('prlimit', '--nice=0', '--');
  if (p.nice > 0) out.push('nice', '-n', String(p.nice), '--');
  if (p.io_class === 'best-effort') out.push('ionice', '-c', '2', '-n', String(p.io_level), '--');
  if (p.io_class === 'idle') out.push('ionice', '-c', '3', '--');
  // chrt takes no `--`: the command follows the priority.
  if (p.sched !== 'other') out.push('chrt', `--${p.sched}`, '0');
  return out;
}

/**
 * The `cgroup.procs` file of the sandboxes' cgroup, created (with its weight) beside this
 * process's own `cpu` cgroup; null when there is no writable v1 `cpu` hierarchy (not root, cgroup
 * v2 only, a container without it). The reason is thrown, for the caller's one warning.
 */
export function prepareSandboxCgroup(shares: number, root = '/sys/fs/cgroup/cpu'): string {
  if (!fs.existsSync(path.join(root, 'cpu.shares'))) throw new Error(`no cgroup v1 cpu controller at ${root}`);
  const own = /^\d+:(?:[^:]*,)?cpu(?:,[^:]*)?:(.*)$/m.exec(fs.readFileSync('/proc/self/cgroup', 'utf8'))?.[1] ?? '/';
  const dir = path.join(root, own, SANDBOX_CGROUP);
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'cpu.shares'), String(shares));
  const procs = path.join(dir, 'cgroup.procs');
  fs.accessSync(procs, fs.constants.W_OK);
  return procs;
}

/**
 * The whole wrapper: `sh` moves itself into the cgroup (when there is one) and execs the priority
 * commands, which exec the sandbox. A failed move fails the start (exit 125) rather than run a
 * sandbox with less than was configured.
 */
export function wrapWithPriority(p: SandboxPriority, cgroupProcs: string | null, command: string, args: string[]): { command: string; args: string[] } {
  const chain = [...priorityCommand(p), command, ...args];
  if (cgroupProcs) return { command: '/bin/sh', args: ['-c', 'echo $$ > "$0" || exit 125; exec "$@"', cgroupProcs, ...chain] };
  return { command: chain[0], args: chain.slice(1) };
}

/** Whether the priority commands run here (probed once per setting): they are util-linux and coreutils. */
const probes = new Map<string, Promise<boolean>>();
export function priorityCommandsAvailable(p: SandboxPriority, env: Record<string, string>): Promise<boolean> {
  const chain = priorityCommand(p);
  if (!chain.length) return Promise.resolve(true);
  const key = chain.join(' ');
  let probe = probes.get(key);
  if (!probe) {
    probe = new Promise<boolean>((resolve) => {
      try {
        const child = spawn(chain[0], [...chain.slice(1), 'true'], { stdio: 'ignore', env });
        child.on('error', () => resolve(false));
        child.on('exit', (code) => resolve(code === 0));
      } catch {
        resolve(false);
      }
    });
    probes.set(key, probe);
  }
  return probe;
}
