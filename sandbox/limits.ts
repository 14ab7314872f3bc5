/**
 * Resource limits of a sandbox's tools: what the model's commands may use. The operator sets them
 * for the deployment (`CORRAL_SANDBOX_LIMITS`, the local runtime's `sandboxLimits`); the Managed
 * Agents environment config has no field for them, and Corral does not add one to that schema.
 *
 * Locally they are enforced per sandbox with rlimits (`prlimit(1)` in front of every tool
 * process, which runs as the sandbox's own uid): `processes` is RLIMIT_NPROC of that uid (all the
 * sandbox's processes together), `memory` is RLIMIT_DATA per process, `file_size` RLIMIT_FSIZE,
 * `cpu_seconds` RLIMIT_CPU per process; `disk` is checked by the agent after every tool call (the
 * workspace's size). On Fargate the task size bounds memory and CPU as a whole.
 *
 * Node built-ins only (it is bundled into the agent).
 */

export interface SandboxLimits {
  /** Processes (and threads) of the sandbox's user at once. */
  processes: number;
  /** Bytes of data (heap) per process. */
  memory: number;
  /** Largest file a process may write, in bytes. */
  file_size: number;
  /** CPU seconds per process. */
  cpu_seconds: number;
  /** Bytes the workspace may hold. */
  disk: number;
}

export const SANDBOX_LIMITS_ENV = 'CORRAL_SANDBOX_LIMITS';

const GiB = 1024 ** 3;
export const DEFAULT_SANDBOX_LIMITS: SandboxLimits = {
  processes: 256,
  memory: 1 * GiB,
  file_size: 1 * GiB,
  cpu_seconds: 3600,
  disk: 10 * GiB,
};

const NAMES = Object.keys(DEFAULT_SANDBOX_LIMITS) as Array<keyof SandboxLimits>;
const SIZES = new Set<keyof SandboxLimits>(['memory', 'file_size', 'disk']);
const UNITS: Record<string, number> = { '': 1, k: 1024, m: 1024 ** 2, g: GiB, t: 1024 ** 4 };

/** `processes=256,memory=2g,file_size=1g,cpu_seconds=3600,disk=10g` (any subset) -> limits. */
export function parseSandboxLimits(text: string | undefined): Partial<SandboxLimits> {
  const out: Partial<SandboxLimits> = {};
  if (!text?.trim()) return out;
  for (const part of text.split(',')) {
    const m = /^\s*([a-z_]+)\s*=\s*(\d+)\s*([kmgt]?)i?b?\s*$/i.exec(part);
    const name = m?.[1] as keyof SandboxLimits | undefined;
    if (!m || !name || !NAMES.includes(name)) throw new Error(`${JSON.stringify(part.trim())}: use name=value with a name among ${NAMES.join(', ')}`);
    const unit = m[3].toLowerCase();
    if (unit && !SIZES.has(name)) throw new Error(`${name} takes a plain number`);
    const value = Number(m[2]) * UNITS[unit];
    if (!Number.isSafeInteger(value) || value < 1) throw new Error(`${name} must be a positive number`);
    out[name] = value;
  }
  return out;
}

/** Defaults filled in; every value a positive integer. */
export function resolveSandboxLimits(partial: Partial<SandboxLimits> | undefined): SandboxLimits {
  const limits = { ...DEFAULT_SANDBOX_LIMITS, ...partial };
  for (const name of NAMES) {
    if (!Number.isSafeInteger(limits[name]) || limits[name] < 1) throw new Error(`sandbox limit ${name} must be a positive integer`);
  }
  return limits;
}

export function formatSandboxLimits(l: SandboxLimits): string {
  return NAMES.map((n) => `${n}=${l[n]}`).join(',');
}

/** The `prlimit(1)` arguments that put the limits on a command (before `--`). */
export function prlimitArgs(l: SandboxLimits): string[] {
  return [`--nproc=${l.processes}`, `--data=${l.memory}`, `--fsize=${l.file_size}`, `--cpu=${l.cpu_seconds}`];
}

export function humanBytes(n: number): string {
  for (const [unit, size] of [['GiB', GiB], ['MiB', 1024 ** 2], ['KiB', 1024]] as const) {
    if (n >= size) return `${Number((n / size).toFixed(1))} ${unit}`;
  }
  return `${n} bytes`;
}

/**
 * Which limit a finished command most likely ran into, from how it ended and what it printed, or
 * null. The model is told which one (and its value), so it can change course instead of retrying.
 */
export function limitHit(l: SandboxLimits, exit: { code: number | null; signal: string | null }, output: string): string | null {
  const tail = output.slice(-20_000);
  if (exit.signal === 'SIGXFSZ' || exit.code === 128 + 25 || /File size limit exceeded/.test(tail)) {
    return `the sandbox's file size limit (${humanBytes(l.file_size)} per file) was reached`;
  }
  if (exit.signal === 'SIGXCPU' || exit.code === 128 + 24 || /CPU time limit exceeded/.test(tail)) {
    return `the sandbox's CPU time limit (${l.cpu_seconds} CPU seconds per process) was reached`;
  }
  if (/fork: (retry: )?Resource temporarily unavailable|Cannot fork|can't fork|fork failed|EAGAIN.*(spawn|fork)|(spawn|fork).*EAGAIN/i.test(tail)) {
    return `the sandbox's process limit (${l.processes} processes and threads) was reached`;
  }
  if (/Cannot allocate memory|out of memory|MemoryError|std::bad_alloc|memory exhausted|ENOMEM|allocation failed/i.test(tail)) {
    return `the sandbox's memory limit (${humanBytes(l.memory)} per process) was reached`;
  }
  return null;
}
