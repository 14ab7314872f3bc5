/**
 * Limits and privileges: who a command runs as and under which limits, how its process group is
 * killed, and the workspace's disk limit.
 *
 * With a `RunAs`, every tool runs as that user: bash directly, and the file tools in a
 * long-lived child process of the agent (tool-server.ts). The agent itself keeps its own uid, so nothing the model
 * runs can read its memory or `/proc/<agent>/environ`. Switching uid needs CAP_SETUID/CAP_SETGID:
 * an agent running as root has them; an agent running as an ordinary user (the image) goes
 * through `setpriv`, a setpriv(1) that only the agent's group may execute and that carries those
 * two file capabilities. The same helper runs package installation as root.
 *
 * With `SandboxLimits` (see ../limits.ts), every tool process starts under `prlimit(1)`.
 */
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { humanBytes, prlimitArgs, type SandboxLimits } from '../limits.js';

/** The PATH every command of the sandbox gets. */
export const SANDBOX_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** The user tools run as. */
export interface RunAs {
  uid: number;
  gid: number;
  /** A setpriv(1) the agent may use to switch uid when it is not root itself. */
  setpriv?: string;
}

/** Who a command runs as: the tools' user, or root (the recipe's package installation). */
export type Principal = 'sandbox' | 'root';

export class Confinement {
  constructor(
    readonly runAs: RunAs | undefined,
    readonly limits: SandboxLimits | undefined,
    /**
     * Variables every command gets on top of the ones it is started with (the egress proxy's
     * `HTTP_PROXY` and friends): set here, where every process starts, so no tool can miss them.
     */
    readonly extraEnv: Readonly<Record<string, string>> = {},
  ) {}

  /**
   * Runs a short command as the tools' user (the agent's file operations that must not follow a
   * link the tools planted): `stdin` in, its stdout out, up to `maxBytes` (more is `overflowed`,
   * and the command is killed); killed after 30 s.
   */
  capture(argv: string[], maxBytes: number, stdin: Buffer | null = null): Promise<{ code: number | null; stdout: Buffer; overflowed: boolean }> {
    return new Promise((resolve, reject) => {
      const child = this.spawn(argv[0], argv.slice(1), { cwd: '/', env: { PATH: SANDBOX_PATH, LANG: 'C.UTF-8' }, stdio: [stdin ? 'pipe' : 'ignore', 'pipe', 'ignore'], detached: true });
      const chunks: Buffer[] = [];
      let size = 0;
      let overflowed = false;
      const timer = setTimeout(() => this.killGroup(child), 30_000);
      child.stdout!.on('data', (c: Buffer) => {
        if (overflowed) return;
        size += c.length;
        if (size > maxBytes) {
          overflowed = true;
          this.killGroup(child);
        } else chunks.push(c);
      });
      if (stdin) {
        child.stdin!.on('error', () => undefined);
        child.stdin!.end(stdin);
      }
      child.on('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
      child.on('close', (code) => {
        clearTimeout(timer);
        resolve({ code, stdout: Buffer.concat(chunks), overflowed });
      });
    });
  }

  /** Whether this process can start commands as root (for package installation). */
  canBecomeRoot(): boolean {
    return Boolean(this.runAs?.setpriv) || process.getuid?.() === 0;
  }

  /**
   * Spawns a command as the tools' user (or as root, for the recipe's package installation).
   * Without `runAs` it runs as the agent's own user.
   */
  spawn(command: string, args: string[], options: SpawnOptions, as: Principal = 'sandbox'): ChildProcess {
    const ra = this.runAs;
    if (Object.keys(this.extraEnv).length) options = { ...options, env: { ...(options.env ?? process.env), ...this.extraEnv } };
    if (as === 'sandbox' && this.limits) {
      // The limits go on first, so everything the command starts inherits them.
      args = [...prlimitArgs(this.limits), '--', command, ...args];
      command = 'prlimit';
    }
    if (as === 'root') {
      if (ra?.setpriv && process.getuid?.() !== 0) return spawn(ra.setpriv, ['--reuid=0', '--regid=0', '--clear-groups', '--', command, ...args], options);
      return spawn(command, args, options);
    }
    if (!ra) return spawn(command, args, options);
    if (ra.setpriv) {
      return spawn(
        ra.setpriv,
        [`--reuid=${ra.uid}`, `--regid=${ra.gid}`, '--clear-groups', '--inh-caps=-all', '--no-new-privs', '--', command, ...args],
        options,
      );
    }
    return spawn(command, args, { ...options, uid: ra.uid, gid: ra.gid });
  }

  /** Kills a command's process group, also when it runs as another user. */
  killGroup(child: ChildProcess): void {
    if (child.pid === undefined) return;
    try {
      process.kill(-child.pid, 'SIGKILL');
      return;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ESRCH') return;
    }
    if (this.runAs) {
      // Not allowed to signal the tools' user: let that user do it.
      try {
        const killer = this.spawn('/bin/bash', ['-c', 'kill -s KILL -- "-$1" 2>/dev/null || kill -s KILL -- "$1"', 'bash', String(child.pid)], {
          stdio: 'ignore',
          env: { PATH: SANDBOX_PATH },
        });
        killer.on('error', () => {});
        return;
      } catch {
        // fall through
      }
    }
    try {
      child.kill('SIGKILL');
    } catch {
      // already gone
    }
  }

  /**
   * Whether the workspace is over its disk limit: a walk that never follows links (the agent
   * may read every directory, so nothing is hidden from it by permissions), stopped as soon as
   * the limit is passed.
   */
  async overDiskLimit(workspace: string): Promise<string | null> {
    const limit = this.limits?.disk;
    if (!limit) return null;
    let used = 0;
    const stack = [workspace];
    while (stack.length && used <= limit) {
      const dir = stack.pop()!;
      let entries: fs.Dirent[];
      try {
        entries = await fsp.readdir(dir, { withFileTypes: true });
      } catch {
        continue;
      }
      for (const e of entries) {
        const p = path.join(dir, e.name);
        try {
          const st = await fsp.lstat(p);
          used += st.blocks * 512;
          if (st.isDirectory()) stack.push(p);
        } catch {
          // gone meanwhile
        }
      }
    }
    return used > limit ? `the sandbox's disk limit (${humanBytes(limit)} in the workspace) is exceeded: remove files before going on` : null;
  }
}

/** `--run-as-uid`, `--run-as-gid` and `--setpriv` as a `RunAs` (none when neither id is given). */
export function parseRunAs(uid: string | undefined, gid: string | undefined, setpriv: string | undefined): RunAs | undefined {
  if (uid === undefined && gid === undefined) {
    if (setpriv !== undefined) throw new Error('--setpriv needs --run-as-uid and --run-as-gid');
    return undefined;
  }
  const u = Number(uid);
  const g = Number(gid);
  if (!Number.isInteger(u) || u <= 0 || !Number.isInteger(g) || g <= 0) {
    throw new Error('--run-as-uid and --run-as-gid must both be given, as positive integers (never root)');
  }
  return { uid: u, gid: g, setpriv: setpriv ? path.resolve(setpriv) : undefined };
}
