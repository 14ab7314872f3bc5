import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { SandboxEndpoint } from '../../lambdas/core/sandbox/types.js';
import { fitRecipe, planRecipe, type RecipePlan, type RecipeSupport, type SandboxRecipe } from '../../lambdas/core/sandbox/recipe.js';
import { waitHealthy } from '../../lambdas/core/sandbox/client.js';

interface PlanInputs {
  resources?: unknown[];
  /** The environment's config. @default { type: 'cloud' } */
  config?: unknown;
  /** Repositories the session holds a credential for. @default none */
  credentials?: Array<{ url: string }>;
  environmentId?: string;
}

/** A session's recipe plan, as the harness plans it, from session resources and an environment config. */
export function planFor(p: PlanInputs = {}): RecipePlan {
  return planRecipe({
    session: { environment_id: p.environmentId ?? 'env_test', resources: p.resources ?? [] },
    environment: { config: p.config ?? { type: 'cloud' } },
    credentials: p.credentials ?? [],
  });
}

/** What the sandbox manager hands a provider that supports `support` for that plan (`fitRecipe`). */
export function recipeFor(support: RecipeSupport, p: PlanInputs = {}): SandboxRecipe {
  return fitRecipe(planFor(p), support).recipe;
}

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const AGENT = path.join(REPO_ROOT, 'sandbox', 'agent.ts');
const TSX = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;

export function tempDir(prefix = 'corral-sbx-'): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

export interface AgentHandle {
  endpoint: SandboxEndpoint;
  workspace: string;
  stateDir: string;
  child: ChildProcess;
  stderr: () => string;
  stop: () => Promise<void>;
}

/**
 * Starts a real agent process. Unix mode: capability on stdin (the local provider's way).
 * TCP mode: capability in CORRAL_SANDBOX_CAPABILITY (the container's way), port chosen by the OS.
 */
export async function startAgent(opts: {
  root: string;
  mode?: 'unix' | 'tcp';
  capability?: string;
  workspace?: string;
  stateDir?: string;
  env?: Record<string, string>;
  /** TCP port (default: chosen by the OS). */
  port?: number;
  /** More agent arguments (`--run-as-uid`, ...). */
  args?: string[];
  /** Run the agent process itself as this user (the test runs as root). */
  user?: { uid: number; gid: number };
  /** The agent program: default `sandbox/agent.ts` under tsx; a `.mjs` bundle runs on plain node. */
  program?: string;
  /** Wait until `/health` says ready (default true). */
  waitReady?: boolean;
}): Promise<AgentHandle> {
  const capability = opts.capability ?? crypto.randomBytes(32).toString('base64url');
  const workspace = opts.workspace ?? path.join(opts.root, 'workspace');
  const stateDir = opts.stateDir ?? path.join(opts.root, 'state');
  fs.mkdirSync(workspace, { recursive: true });
  const socketPath = path.join(opts.root, `agent-${crypto.randomBytes(4).toString('hex')}.sock`);
  const mode = opts.mode ?? 'unix';
  const listen = mode === 'unix' ? ['--socket', socketPath] : ['--port', String(opts.port ?? 0), '--host', '127.0.0.1'];
  const env: Record<string, string> = { PATH: process.env.PATH ?? '/usr/bin:/bin', ...opts.env };
  if (mode === 'tcp') env.CORRAL_SANDBOX_CAPABILITY = capability;
  const program = opts.program ?? AGENT;
  const loader = program.endsWith('.ts') ? ['--import', TSX] : [];
  const child = spawn(process.execPath, [...loader, program, ...listen, '--workspace', workspace, '--state-dir', stateDir, ...(opts.args ?? [])], {
    env,
    cwd: opts.root,
    stdio: [mode === 'unix' ? 'pipe' : 'ignore', 'ignore', 'pipe'],
    ...(opts.user ? { uid: opts.user.uid, gid: opts.user.gid } : {}),
  });
  let stderr = '';
  let port: number | undefined;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const listening = new Promise<void>((resolve, reject) => {
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (chunk: string) => {
      stderr += chunk;
      for (const line of stderr.split('\n')) {
        if (!line.startsWith('{')) continue;
        try {
          const entry = JSON.parse(line) as { msg?: string; port?: number };
          if (entry.msg === 'listening') {
            port = entry.port;
            resolve();
          }
        } catch {
          // partial line
        }
      }
    });
    void exited.then(() => reject(new Error(`agent exited during startup: ${stderr}`)));
  });
  if (mode === 'unix') {
    child.stdin!.on('error', () => {});
    child.stdin!.write(`${capability}\n`);
  }
  await listening;
  const endpoint: SandboxEndpoint =
    mode === 'unix' ? { kind: 'unix', socketPath, capability } : { kind: 'tcp', host: '127.0.0.1', port: port!, capability };
  if (opts.waitReady !== false) await waitHealthy(endpoint, { timeoutMs: 30_000 });
  return {
    endpoint,
    workspace,
    stateDir,
    child,
    stderr: () => stderr,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGKILL');
        await exited;
      }
    },
  };
}

/** Raw HTTP call to an agent over its Unix socket (for protocol-level tests). */
export async function rawCall(
  socketPath: string,
  opts: { method?: string; path?: string; headers?: Record<string, string>; body?: string },
): Promise<{ status: number; body: string }> {
  const http = await import('node:http');
  return new Promise((resolve, reject) => {
    const req = http.request(
      { socketPath, method: opts.method ?? 'POST', path: opts.path ?? '/execute', headers: opts.headers, agent: false },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
      },
    );
    req.on('error', reject);
    req.end(opts.body);
  });
}

/** True while a process id exists and is not a zombie. */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

/** Polls until `predicate` holds (a wait, not a timing assertion); throws after `timeoutMs`. */
export async function until(predicate: () => boolean | Promise<boolean>, timeoutMs = 10_000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** Runs a command (no shell) and returns its stdout; throws on a non-zero exit. */
export function run(cmd: string, args: string[], opts: { cwd?: string; env?: Record<string, string> } = {}): string {
  const r = spawnSync(cmd, args, { cwd: opts.cwd, env: { ...process.env, ...opts.env }, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status}): ${r.stderr}`);
  return r.stdout;
}

export interface GitFixture {
  /** Path of a bare repository (a valid clone URL). */
  url: string;
  /** Commit of the default branch (`main`), which has README.md = "main". */
  mainSha: string;
  /** Branch `feature`, one commit ahead of main, adds feature.txt. */
  featureSha: string;
  /** A commit no branch reaches (only a tag `hidden` does). */
  taggedSha: string;
}

/** A real bare repository on disk: main, a branch, and a commit only a tag reaches. */
export function makeGitFixture(root: string, name = 'demo'): GitFixture {
  const work = path.join(root, `${name}-src`);
  const bare = path.join(root, `${name}.git`);
  const git = (...args: string[]) => run('git', args, { cwd: work, env: { GIT_AUTHOR_NAME: 't', GIT_AUTHOR_EMAIL: 't@e', GIT_COMMITTER_NAME: 't', GIT_COMMITTER_EMAIL: 't@e', GIT_CONFIG_NOSYSTEM: '1', HOME: root } }).trim();
  fs.mkdirSync(work, { recursive: true });
  git('init', '--quiet', '--initial-branch=main');
  fs.writeFileSync(path.join(work, 'README.md'), 'main\n');
  git('add', '.');
  git('commit', '--quiet', '-m', 'main');
  const mainSha = git('rev-parse', 'HEAD');
  git('checkout', '--quiet', '-b', 'feature');
  fs.writeFileSync(path.join(work, 'feature.txt'), 'feature\n');
  git('add', '.');
  git('commit', '--quiet', '-m', 'feature');
  const featureSha = git('rev-parse', 'HEAD');
  git('checkout', '--quiet', '--detach', 'main');
  fs.writeFileSync(path.join(work, 'hidden.txt'), 'hidden\n');
  git('add', '.');
  git('commit', '--quiet', '-m', 'hidden');
  const taggedSha = git('rev-parse', 'HEAD');
  git('tag', 'hidden');
  git('checkout', '--quiet', 'main');
  run('git', ['clone', '--quiet', '--bare', work, bare]);
  return { url: bare, mainSha, featureSha, taggedSha };
}
