/**
 * What a new sandbox starts with: the environment's `config.packages` and the session's
 * `resources` (`github_repository`, `file`), applied once when the sandbox starts.
 *
 * The same code runs in two places:
 * - inside the sandbox image, where the agent reads the recipe from `CORRAL_SANDBOX_RECIPE`
 *   (written by the Fargate provider) and applies it after it starts listening, reporting
 *   progress and failures on `GET /health`;
 * - on the host, where the local provider applies it to the workspace directory before it starts
 *   the (bubblewrapped, offline) agent. Locally, packages are never installed: local sandboxes
 *   use the host's tools.
 *
 * Node built-ins only (it is bundled into the agent).
 */
import fs from 'node:fs';
import path from 'node:path';

export const RECIPE_ENV = 'CORRAL_SANDBOX_RECIPE';
/** Where the workspace is inside a sandbox, and what `mount_path`s are relative to. */
export const WORKSPACE_MOUNT = '/workspace';

const PACKAGE_MANAGERS = ['apt', 'pip', 'npm', 'cargo', 'gem', 'go'] as const;
type PackageManager = (typeof PACKAGE_MANAGERS)[number];

export type WireResource =
  | { type: 'github_repository'; url: string; mount_path?: string; checkout?: { type: 'branch'; name: string } | { type: 'commit'; sha: string } }
  | { type: 'file'; file_id: string; mount_path?: string }
  | { type: string; [k: string]: unknown };

/** The recipe as it travels to a sandbox: no credentials, only what the sandbox applies. */
export interface WireRecipe {
  v: 1;
  packages: Partial<Record<PackageManager, string[]>>;
  resources: WireResource[];
}

export type RecipeErrorType = 'repository_clone_error' | 'repository_checkout_error' | 'package_install_error' | 'invalid_recipe';

export class RecipeError extends Error {
  constructor(
    readonly type: RecipeErrorType,
    message: string,
  ) {
    super(message);
    this.name = 'RecipeError';
  }
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * The recipe a sandbox needs, from the environment's config and the session's resources.
 * Credentials (`authorization_token`) are dropped: the recipe ends up in places (task overrides,
 * process environments) that must not hold secrets. Private repositories go through the
 * credential proxy once it exists.
 */
export function toWireRecipe(recipe: { config: unknown; resources: unknown[] }): WireRecipe {
  const packages: WireRecipe['packages'] = {};
  const rawPackages = isObject(recipe.config) ? recipe.config.packages : undefined;
  if (isObject(rawPackages)) {
    for (const pm of PACKAGE_MANAGERS) {
      const list = rawPackages[pm];
      if (Array.isArray(list) && list.length) packages[pm] = list.map(String);
    }
  }
  const resources: WireResource[] = [];
  for (const r of recipe.resources ?? []) {
    if (!isObject(r) || typeof r.type !== 'string') continue;
    if (r.type === 'github_repository') {
      const out: Record<string, unknown> = { type: r.type, url: String(r.url ?? '') };
      if (typeof r.mount_path === 'string' && r.mount_path) out.mount_path = r.mount_path;
      const c = r.checkout;
      if (isObject(c) && c.type === 'branch' && typeof c.name === 'string') out.checkout = { type: 'branch', name: c.name };
      if (isObject(c) && c.type === 'commit' && typeof c.sha === 'string') out.checkout = { type: 'commit', sha: c.sha };
      resources.push(out as WireResource);
    } else if (r.type === 'file') {
      const out: Record<string, unknown> = { type: r.type, file_id: String(r.file_id ?? '') };
      if (typeof r.mount_path === 'string' && r.mount_path) out.mount_path = r.mount_path;
      resources.push(out as WireResource);
    } else {
      resources.push({ type: r.type });
    }
  }
  return { v: 1, packages, resources };
}

export function encodeRecipe(recipe: { config: unknown; resources: unknown[] }): string {
  return JSON.stringify(toWireRecipe(recipe));
}

export function decodeRecipe(text: string): WireRecipe {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new RecipeError('invalid_recipe', `${RECIPE_ENV} is not valid JSON`);
  }
  if (!isObject(parsed) || parsed.v !== 1 || !isObject(parsed.packages) || !Array.isArray(parsed.resources)) {
    throw new RecipeError('invalid_recipe', `${RECIPE_ENV} is not a version 1 recipe`);
  }
  return parsed as unknown as WireRecipe;
}

export function recipeIsEmpty(recipe: WireRecipe): boolean {
  return recipe.resources.length === 0 && Object.values(recipe.packages).every((l) => !l?.length);
}

export interface RunResult {
  code: number | null;
  output: string;
}

export interface RecipeContext {
  /** The directory that stands for `/workspace`. */
  workspace: string;
  /**
   * `image`: the sandbox's own filesystem, absolute mount paths are real paths.
   * `local`: a workspace directory on the host; every mount path is placed inside it.
   */
  mode: 'image' | 'local';
  /** Install the environment's packages (the image) or only say they were not (local). */
  installPackages: boolean;
  /** Runs a command without a shell, as the sandbox's user or as root (package installation). */
  run(argv: string[], opts: { as: 'sandbox' | 'root'; cwd?: string; env?: Record<string, string>; timeoutMs: number }): Promise<RunResult>;
  /** Creates a directory outside the workspace that the sandbox's user may write (image only). */
  makeWritableDir?(dir: string): Promise<void>;
  /**
   * The remote to use for a repository instead of its URL: the sandbox's git forwarder (a
   * loopback address that reaches the credential proxy), or undefined to clone directly. The
   * repository's `origin` is set to it, so pulls and pushes go the same way.
   */
  gitRemote?(url: string): string | undefined;
}

const GIT_TIMEOUT_MS = 10 * 60_000;
const PACKAGE_TIMEOUT_MS = 15 * 60_000;

/** `https://user:secret@host/...` -> `https://***@host/...` in anything shown to anyone. */
export function redactUrls(text: string): string {
  return text.replace(/([a-z][a-z0-9+.-]*:\/\/)[^/\s@]+@/gi, '$1***@');
}

function tail(text: string, max = 1500): string {
  const t = redactUrls(text.trim());
  return t.length > max ? `...${t.slice(-max)}` : t;
}

/** `https://github.com/org/repo.git` -> `repo`. */
export function repositoryName(url: string): string {
  const trimmed = url.replace(/[?#].*$/, '').replace(/\/+$/, '');
  const last = trimmed.split(/[/:]/).pop() ?? '';
  const name = last.replace(/\.git$/, '');
  return /^[A-Za-z0-9._-]+$/.test(name) && name !== '.' && name !== '..' ? name : 'repository';
}

/** Where a mount path lands: the path inside the sandbox, and the real directory. */
export function resolveMount(mountPath: string, ctx: Pick<RecipeContext, 'workspace' | 'mode'>): { shown: string; dir: string } {
  const normalized = path.posix.normalize(mountPath.startsWith('/') ? mountPath : `${WORKSPACE_MOUNT}/${mountPath}`);
  if (mountPath.split('/').includes('..') || mountPath.includes('\0') || normalized === '/') {
    throw new RecipeError('invalid_recipe', `mount_path ${JSON.stringify(mountPath)} is not a usable directory`);
  }
  const inWorkspace = normalized === WORKSPACE_MOUNT || normalized.startsWith(`${WORKSPACE_MOUNT}/`);
  if (ctx.mode === 'image') {
    const dir = inWorkspace ? path.join(ctx.workspace, normalized.slice(WORKSPACE_MOUNT.length)) : normalized;
    return { shown: normalized, dir };
  }
  // Locally every mount path is inside the workspace directory.
  const rel = inWorkspace ? normalized.slice(WORKSPACE_MOUNT.length) : normalized;
  return { shown: normalized, dir: path.join(ctx.workspace, rel) };
}

function nonEmptyDir(dir: string): boolean {
  try {
    return fs.readdirSync(dir).length > 0;
  } catch {
    return false;
  }
}

const GIT_ENV = { GIT_TERMINAL_PROMPT: '0', GIT_ASKPASS: '/bin/false', GIT_CONFIG_NOSYSTEM: '1' };

async function cloneRepository(r: Extract<WireResource, { type: 'github_repository' }>, ctx: RecipeContext, notes: string[]) {
  const url = String(r.url ?? '');
  if (!url || url.startsWith('-') || /\s/.test(url)) throw new RecipeError('repository_clone_error', `repository url ${JSON.stringify(redactUrls(url))} is not valid`);
  const { shown, dir } = resolveMount(r.mount_path ?? `${WORKSPACE_MOUNT}/${repositoryName(url)}`, ctx);
  // A local sandbox has no /workspace: its working directory stands for it.
  const where = ctx.mode === 'local' ? `./${path.relative(ctx.workspace, dir)}` : shown;
  const remote = ctx.gitRemote?.(url) ?? url;
  const via = remote !== url ? ' through the credential proxy' : '';
  if (nonEmptyDir(dir)) {
    if (fs.existsSync(path.join(dir, '.git'))) {
      // This sandbox's forwarder may listen elsewhere than the last one's: point origin at it.
      if (via) await ctx.run(['git', 'remote', 'set-url', 'origin', remote], { as: 'sandbox', cwd: dir, env: GIT_ENV, timeoutMs: 30_000 });
      notes.push(`repository ${redactUrls(url)} is already at ${where} (kept from an earlier sandbox of this session); it was not cloned again`);
      return;
    }
    throw new RecipeError('repository_clone_error', `cannot clone ${redactUrls(url)} into ${shown}: the directory is not empty`);
  }
  const parent = path.dirname(dir);
  if (ctx.mode === 'image' && !dir.startsWith(ctx.workspace + path.sep) && ctx.makeWritableDir) await ctx.makeWritableDir(dir);
  else if (path.relative(ctx.workspace, parent)) {
    // As the sandbox's user: the workspace is theirs (and whatever is in it, links included).
    const made = await ctx.run(['mkdir', '-p', '--', path.relative(ctx.workspace, parent)], { as: 'sandbox', cwd: ctx.workspace, env: GIT_ENV, timeoutMs: 30_000 });
    if (made.code !== 0) throw new RecipeError('repository_clone_error', `cannot create ${path.dirname(shown)}: ${tail(made.output) || `exit code ${made.code}`}`);
  }
  // Relative to its parent: the sandbox's user may not be able to look at the directories above.
  const clone = await ctx.run(['git', 'clone', '--quiet', '--', remote, path.basename(dir)], { as: 'sandbox', cwd: parent, env: GIT_ENV, timeoutMs: GIT_TIMEOUT_MS });
  if (clone.code !== 0) {
    throw new RecipeError('repository_clone_error', `git clone of ${redactUrls(url)}${via} into ${shown} failed: ${tail(clone.output) || `exit code ${clone.code}`}`);
  }
  if (via) notes.push(`repository ${redactUrls(url)} is at ${where}; its origin (${remote}) reaches it through the credential proxy, so fetch, pull and push work without credentials in the sandbox`);
  else if (ctx.mode === 'local') notes.push(`repository ${redactUrls(url)} is at ${where} (in a local sandbox the working directory stands for /workspace)`);
  const checkout = r.checkout;
  if (!checkout) return;
  let ref: string;
  let argv: string[];
  if (checkout.type === 'branch') {
    ref = checkout.name;
    if (!ref || ref.startsWith('-') || /[\s\0]/.test(ref)) throw new RecipeError('repository_checkout_error', `branch name ${JSON.stringify(ref)} is not valid`);
    argv = ['git', '-c', 'advice.detachedHead=false', 'checkout', '--quiet', ref, '--'];
  } else if (checkout.type === 'commit') {
    ref = checkout.sha;
    if (!/^[0-9a-fA-F]{4,64}$/.test(ref)) throw new RecipeError('repository_checkout_error', `commit ${JSON.stringify(ref)} is not a hexadecimal SHA`);
    argv = ['git', '-c', 'advice.detachedHead=false', 'checkout', '--quiet', '--detach', ref, '--'];
  } else {
    return;
  }
  let result = await ctx.run(argv, { as: 'sandbox', cwd: dir, env: GIT_ENV, timeoutMs: GIT_TIMEOUT_MS });
  if (result.code !== 0 && checkout.type === 'commit') {
    // A commit no branch reaches: fetch it by id (servers that allow it), then check it out.
    const fetched = await ctx.run(['git', 'fetch', '--quiet', 'origin', ref], { as: 'sandbox', cwd: dir, env: GIT_ENV, timeoutMs: GIT_TIMEOUT_MS });
    if (fetched.code === 0) result = await ctx.run(argv, { as: 'sandbox', cwd: dir, env: GIT_ENV, timeoutMs: GIT_TIMEOUT_MS });
  }
  if (result.code !== 0) {
    throw new RecipeError(
      'repository_checkout_error',
      `checking out ${checkout.type} ${ref} of ${redactUrls(url)} in ${shown} failed: ${tail(result.output) || `exit code ${result.code}`}`,
    );
  }
}

const INSTALLERS: Partial<Record<PackageManager, (pkgs: string[]) => string[][]>> = {
  apt: (pkgs) => [
    ['apt-get', 'update', '-q'],
    ['apt-get', 'install', '-y', '-q', '--no-install-recommends', ...pkgs],
  ],
  pip: (pkgs) => [['python3', '-m', 'pip', 'install', '--quiet', '--no-cache-dir', '--break-system-packages', ...pkgs]],
  npm: (pkgs) => [['npm', 'install', '--global', '--no-audit', '--no-fund', '--loglevel=error', ...pkgs]],
};

async function installPackages(recipe: WireRecipe, ctx: RecipeContext, notes: string[]) {
  const listed = PACKAGE_MANAGERS.filter((pm) => recipe.packages[pm]?.length);
  if (!listed.length) return;
  if (!ctx.installPackages) {
    const what = listed.map((pm) => `${pm}: ${recipe.packages[pm]!.join(', ')}`).join('; ');
    notes.push(`the environment's packages (${what}) are not installed in a local sandbox; it uses the tools of the host`);
    return;
  }
  for (const pm of listed) {
    const pkgs = recipe.packages[pm]!;
    const bad = pkgs.find((p) => !p || p.startsWith('-') || /[\s\0]/.test(p));
    if (bad !== undefined) throw new RecipeError('package_install_error', `${pm} package ${JSON.stringify(bad)} is not a valid package name`);
    const installer = INSTALLERS[pm];
    if (!installer) {
      notes.push(`${pm} packages (${pkgs.join(', ')}) were not installed: the Corral sandbox image has no ${pm}; install its toolchain with apt packages or use a derived image`);
      continue;
    }
    for (const argv of installer(pkgs)) {
      const result = await ctx.run(argv, {
        as: 'root',
        env: { DEBIAN_FRONTEND: 'noninteractive', HOME: '/root', PIP_DISABLE_PIP_VERSION_CHECK: '1' },
        timeoutMs: PACKAGE_TIMEOUT_MS,
      });
      if (result.code !== 0) {
        throw new RecipeError(
          'package_install_error',
          `${argv.slice(0, 2).join(' ')} for ${pm} packages ${pkgs.join(', ')} failed: ${tail(result.output) || `exit code ${result.code}`}`,
        );
      }
    }
  }
}

/**
 * Apply a recipe: packages first (a repository's tools may come from them), then repositories,
 * then notes for what is not supported. Throws `RecipeError` on the first failure.
 */
export async function applyRecipe(recipe: WireRecipe, ctx: RecipeContext): Promise<{ notes: string[] }> {
  const notes: string[] = [];
  await installPackages(recipe, ctx, notes);
  for (const r of recipe.resources) {
    if (r.type === 'github_repository') {
      await cloneRepository(r as Extract<WireResource, { type: 'github_repository' }>, ctx, notes);
    } else if (r.type === 'file') {
      const f = r as { file_id?: string; mount_path?: string };
      notes.push(`file resource ${f.file_id ?? ''}${f.mount_path ? ` (${f.mount_path})` : ''} was not mounted: the Files API is not in Corral yet`);
    } else {
      notes.push(`${r.type} resources are not supported by Corral sandboxes yet; it was skipped`);
    }
  }
  return { notes };
}
