/**
 * The benchmark's peer is its own npm package, `bench/peers/package.json` (with its own lock):
 * LangGraph.js, its SQLite checkpointer and the native `better-sqlite3`, which compiles from
 * source where no prebuilt binary downloads (minutes on 2 cores). The root `npm ci`, and so CI,
 * never installs it; `npm run bench` installs it on demand when the peer suite runs, and
 * `test/bench/bench.test.ts` runs the peer only where it is installed.
 *
 * Nothing outside `bench/peers/` imports those packages, and the root TypeScript project does not
 * include `bench/peers/` (it has its own tsconfig): the peer is loaded with a dynamic import of a
 * computed path, typed by the interfaces below, so the root type check passes without it.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { nowMs, round } from './stats.js';

/** `bench/peers/`: the peer's package.json, lock, tsconfig and code. */
export const PEER_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'peers');

/** The command that installs the peer, as a user would type it from the repository's root. */
export const PEER_INSTALL_COMMAND = 'npm ci --prefix bench/peers';

export interface PeerTurn {
  /** From `invoke` to the final state (the final answer). */
  ms: number;
  /** The text of the last AI message. */
  finalText: string;
  /** Tool calls made this turn, and what they printed. */
  toolOutputs: string[];
  /** Milliseconds spent inside the bash tool (spawn to exit), summed over the turn. */
  toolMs: number;
}

export interface LangGraphPeer {
  /** Where the checkpoints are (a SQLite file). */
  dbPath: string;
  /** One turn on a thread (a thread is the peer's session): a user message in, the final answer out. */
  runTurn(threadId: string, text: string): Promise<PeerTurn>;
  /** Checkpoints stored for a thread (to show the state is on disk). */
  checkpointCount(threadId: string): Promise<number>;
  /** How the SQLite file is written (the checkpointer switches it to WAL on first use). */
  sqliteSettings(): { journal_mode: string; synchronous: string };
  close(): Promise<void>;
}

/** What `bench/peers/langgraph.ts` exports. */
export interface LangGraphPeerModule {
  startLangGraphPeer(opts: { modelUrl: string; dir: string; model?: string }): Promise<LangGraphPeer>;
}

export type PeerPackageStatus = { installed: true; versions: Record<string, string> } | { installed: false; reason: string };

const readJson = (file: string) => JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, unknown>;

/**
 * Whether `bench/peers/node_modules` holds every dependency of `bench/peers/package.json` at the
 * version pinned there, and `better-sqlite3`'s compiled binding (a failed or skipped build leaves
 * the package without it). A stale install (the pins changed) counts as not installed.
 */
export function peerPackageStatus(dir = PEER_DIR): PeerPackageStatus {
  const modules = path.join(dir, 'node_modules');
  if (!fs.existsSync(modules)) return { installed: false, reason: `${path.relative(process.cwd(), modules) || modules} does not exist (\`${PEER_INSTALL_COMMAND}\` installs it)` };
  const pins = (readJson(path.join(dir, 'package.json')).dependencies ?? {}) as Record<string, string>;
  const versions: Record<string, string> = {};
  for (const [name, pin] of Object.entries(pins)) {
    let version: string;
    try {
      version = String(readJson(path.join(modules, ...name.split('/'), 'package.json')).version);
    } catch {
      return { installed: false, reason: `${name} is missing from bench/peers/node_modules (\`${PEER_INSTALL_COMMAND}\` installs it)` };
    }
    if (version !== pin) return { installed: false, reason: `bench/peers/node_modules has ${name} ${version}, the package pins ${pin} (\`${PEER_INSTALL_COMMAND}\` reinstalls it)` };
    versions[name] = version;
  }
  if (!fs.existsSync(path.join(modules, 'better-sqlite3', 'build', 'Release', 'better_sqlite3.node'))) {
    return { installed: false, reason: `better-sqlite3's native binding was not built (\`${PEER_INSTALL_COMMAND}\` builds it)` };
  }
  return { installed: true, versions };
}

/**
 * Installs the peer's package when it is not installed (`npm ci` in `bench/peers/`, its lock
 * exactly), showing npm's output and a line every 30 s while it runs (compiling `better-sqlite3`
 * is silent for minutes); a failure is an error that says what failed and what to do.
 * Returns how long the install took, or null when there was nothing to do.
 */
export async function ensurePeerPackage(opts: { log: (msg: string) => void; quiet: boolean; dir?: string }): Promise<number | null> {
  const dir = opts.dir ?? PEER_DIR;
  const before = peerPackageStatus(dir);
  if (before.installed) return null;
  opts.log(`peer: installing the peer's packages (${before.reason}): ${PEER_INSTALL_COMMAND}; better-sqlite3 compiles from source where no prebuilt binary downloads, which takes minutes`);
  const t0 = nowMs();
  // For the error: the first lines that say error (npm's reason, or the compiler's) and the last ones.
  const firstErrors: string[] = [];
  const tail: string[] = [];
  const code = await new Promise<number | string>((resolve) => {
    const child = spawn('npm', ['ci', '--prefix', dir, '--no-audit', '--no-fund', '--foreground-scripts'], {
      cwd: dir,
      // Quiet runs keep npm's output for the error only.
      stdio: ['ignore', opts.quiet ? 'pipe' : 2, opts.quiet ? 'pipe' : 2],
    });
    const keep = (chunk: Buffer) => {
      const lines = chunk.toString('utf8').split('\n').filter(Boolean);
      for (const line of lines) if (firstErrors.length < 8 && /\b(error|ERR!)\b/i.test(line) && /\S/.test(line.replace(/^npm error/, ''))) firstErrors.push(line);
      tail.push(...lines);
      tail.splice(0, Math.max(0, tail.length - 12));
    };
    child.stdout?.on('data', keep);
    child.stderr?.on('data', keep);
    const tick = setInterval(() => opts.log(`peer: still installing (${Math.round((nowMs() - t0) / 1000)} s)`), 30_000);
    child.on('error', (err) => {
      clearInterval(tick);
      resolve(err.message);
    });
    child.on('close', (c, signal) => {
      clearInterval(tick);
      resolve(c ?? `signal ${signal}`);
    });
  });
  const seconds = round((nowMs() - t0) / 1000, 1);
  const after = peerPackageStatus(dir);
  if (code !== 0 || !after.installed) {
    throw new Error(
      `the peer suite needs its own packages and installing them failed: \`${PEER_INSTALL_COMMAND}\` ` +
        `${code === 0 ? `exited 0 but ${(after as { reason: string }).reason}` : typeof code === 'number' ? `exited with code ${code}` : `did not run (${code})`} after ${seconds} s. ` +
        'better-sqlite3 needs python3, make and a C++ compiler to build from source. Run the command from the repository\'s root to see all of its output, ' +
        'or leave the peer out (`--only` with the other suites).' +
        (firstErrors.length ? `\nnpm's first errors:\n${firstErrors.join('\n')}` : '') +
        (tail.length ? `\nnpm's last lines:\n${tail.filter((l) => !firstErrors.includes(l)).join('\n')}` : ''),
    );
  }
  opts.log(`peer: installed in ${seconds} s`);
  return seconds;
}

/**
 * Imports `bench/peers/langgraph.ts` (the path is computed so that the root type check does not
 * follow it), with the versions of the peer's packages it runs on.
 */
export async function loadLangGraphPeer(dir = PEER_DIR): Promise<LangGraphPeerModule & { versions: Record<string, string> }> {
  const status = peerPackageStatus(dir);
  if (!status.installed) throw new Error(`the peer is not installed: ${status.reason}`);
  const mod = (await import(path.join(dir, 'langgraph.ts'))) as LangGraphPeerModule;
  return { startLangGraphPeer: mod.startLangGraphPeer, versions: status.versions };
}
