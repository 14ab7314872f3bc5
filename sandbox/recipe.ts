/**
 * What a new sandbox starts with, applied once when it starts: the applying side of the recipe.
 * The recipe is planned in the core (`lambdas/core/sandbox/recipe.ts`: which repositories, where,
 * through which channel, which packages; what a provider cannot deliver is decided and reported
 * there), and a provider hands the sandbox agent the part it delivers in `CORRAL_SANDBOX_RECIPE`
 * (`wireRecipeOf`). The agent applies it after it starts listening, reporting progress and
 * failures on `GET /health`:
 * - in the sandbox image (Fargate), mount paths are real paths and packages are installed;
 * - in a local sandbox (`--local-mounts`), every mount path is inside the workspace directory and
 *   repositories come through the credential proxy's git channel (the sandbox is offline).
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
  /**
   * The prefix managers' packages (`PREFIX_MANAGERS`) come from the environment's package cache:
   * the sandbox manager restores them into the packages directory once the agent is ready, so
   * the agent does not install them (the others, apt, are installed as usual).
   */
  packages_cached?: true;
}

/**
 * The package managers whose packages go into the sandbox's packages directory (a prefix of its
 * own, never the system's), as the tools' user: what can be packed and restored from the cache.
 */
export const PREFIX_MANAGERS = ['pip', 'npm'] as const;

/** Where the packages directory is in the sandbox image (Fargate); a local sandbox is given its own. */
export const IMAGE_PACKAGES_DIR = '/opt/corral/packages';

/**
 * The variables that make the packages directory's packages found by the model's commands: their
 * executables on PATH, pip's in PYTHONPATH, npm's in NODE_PATH. `basePath` is the PATH they extend.
 */
export function packagesEnvironment(dir: string, basePath: string): Record<string, string> {
  return {
    PATH: `${dir}/npm/bin:${dir}/python/bin:${basePath}`,
    PYTHONPATH: `${dir}/python`,
    NODE_PATH: `${dir}/npm/lib/node_modules`,
  };
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
 * The recipe a sandbox needs, straight from an environment's config and a session's resources
 * (tests that start an agent by hand; Corral's providers send `wireRecipeOf` the planned recipe).
 * Credentials (`authorization_token`) are dropped: the recipe ends up in places (task overrides,
 * process environments) that must not hold secrets.
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

/**
 * A planned recipe (`SandboxRecipe` of lambdas/core/sandbox/recipe.ts, declared here by shape so
 * that the agent's bundle needs nothing of the core) on the wire: its packages and repositories.
 */
export function wireRecipeOf(recipe: {
  packages: Partial<Record<PackageManager, string[]>>;
  repositories: ReadonlyArray<{ url: string; mountPath: string; checkout: { type: 'branch'; name: string } | { type: 'commit'; sha: string } | null }>;
  packagesCached?: boolean;
}): WireRecipe {
  const packages: WireRecipe['packages'] = {};
  for (const pm of PACKAGE_MANAGERS) if (recipe.packages[pm]?.length) packages[pm] = [...recipe.packages[pm]!];
  const resources: WireResource[] = recipe.repositories.map((r) => ({
    type: 'github_repository',
    url: r.url,
    mount_path: r.mountPath,
    ...(r.checkout ? { checkout: r.checkout } : {}),
  }));
  return { v: 1, packages, resources, ...(recipe.packagesCached ? { packages_cached: true as const } : {}) };
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
  /** Install the environment's packages, or only say they were not (a sandbox started without `--install-packages`). */
  installPackages: boolean;
  /**
   * The packages directory: pip's and npm's packages go there (`--target`, `--prefix`), as the
   * sandbox's user, never into the system. Without it they are installed system-wide as root
   * (an image without the directory).
   */
  packagesDir?: string;
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

/** The commands that install a manager's packages: into the packages directory when there is one. */
function installCommands(pm: PackageManager, pkgs: string[], dir: string | undefined): { as: 'sandbox' | 'root'; argv: string[] }[] | undefined {
  switch (pm) {
    case 'apt':
      return [
        { as: 'root', argv: ['apt-get', 'update', '-q'] },
        { as: 'root', argv: ['apt-get', 'install', '-y', '-q', '--no-install-recommends', ...pkgs] },
      ];
    case 'pip':
      return dir
        ? [{ as: 'sandbox', argv: ['python3', '-m', 'pip', 'install', '--quiet', '--no-cache-dir', '--no-warn-script-location', '--target', `${dir}/python`, ...pkgs] }]
        : [{ as: 'root', argv: ['python3', '-m', 'pip', 'install', '--quiet', '--no-cache-dir', '--break-system-packages', ...pkgs] }];
    case 'npm':
      return [{ as: dir ? 'sandbox' : 'root', argv: ['npm', 'install', '--global', ...(dir ? ['--prefix', `${dir}/npm`] : []), '--no-audit', '--no-fund', '--loglevel=error', ...pkgs] }];
    default:
      return undefined;
  }
}

/** How the environment's packages got into a sandbox, and how long each manager took. */
export interface PackagesReport {
  /** Milliseconds each manager's install took, by manager (those installed here). */
  installed: Partial<Record<PackageManager, number>>;
  /** The prefix managers' packages are to be restored from the cache (not installed here). */
  cached: boolean;
}

async function installPackages(recipe: WireRecipe, ctx: RecipeContext, notes: string[]): Promise<PackagesReport | undefined> {
  const listed = PACKAGE_MANAGERS.filter((pm) => recipe.packages[pm]?.length);
  if (!listed.length) return undefined;
  if (!ctx.installPackages) {
    const what = listed.map((pm) => `${pm}: ${recipe.packages[pm]!.join(', ')}`).join('; ');
    notes.push(`the environment's packages (${what}) are not installed in this sandbox; it uses the tools it has`);
    return undefined;
  }
  const cached = recipe.packages_cached === true && ctx.packagesDir !== undefined;
  const report: PackagesReport = { installed: {}, cached };
  for (const pm of listed) {
    const pkgs = recipe.packages[pm]!;
    const bad = pkgs.find((p) => !p || p.startsWith('-') || /[\s\0]/.test(p));
    if (bad !== undefined) throw new RecipeError('package_install_error', `${pm} package ${JSON.stringify(bad)} is not a valid package name`);
    if (cached && (PREFIX_MANAGERS as readonly string[]).includes(pm)) continue;
    const commands = installCommands(pm, pkgs, ctx.packagesDir);
    if (!commands) {
      notes.push(`${pm} packages (${pkgs.join(', ')}) were not installed: the Corral sandbox image has no ${pm}; install its toolchain with apt packages or use a derived image`);
      continue;
    }
    const started = Date.now();
    for (const { as, argv } of commands) {
      const result = await ctx.run(argv, {
        as,
        // npm's download cache in /tmp: the packages directory holds only what is installed.
        env: { DEBIAN_FRONTEND: 'noninteractive', PIP_DISABLE_PIP_VERSION_CHECK: '1', npm_config_cache: '/tmp/.corral-npm-cache', npm_config_update_notifier: 'false', ...(as === 'root' ? { HOME: '/root' } : {}) },
        timeoutMs: PACKAGE_TIMEOUT_MS,
      });
      if (result.code !== 0) {
        throw new RecipeError(
          'package_install_error',
          `${argv.slice(0, 2).join(' ')} for ${pm} packages ${pkgs.join(', ')} failed: ${tail(result.output) || `exit code ${result.code}`}`,
        );
      }
    }
    report.installed[pm] = Date.now() - started;
  }
  return report;
}

/**
 * Apply a recipe: packages first (a repository's tools may come from them), then repositories,
 * then notes for what is not supported. Throws `RecipeError` on the first failure.
 */
export async function applyRecipe(recipe: WireRecipe, ctx: RecipeContext): Promise<{ notes: string[]; packages?: PackagesReport }> {
  const notes: string[] = [];
  if (ctx.installPackages && ctx.packagesDir && ctx.makeWritableDir && !fs.existsSync(ctx.packagesDir) && PREFIX_MANAGERS.some((pm) => recipe.packages[pm]?.length)) await ctx.makeWritableDir(ctx.packagesDir);
  const packages = await installPackages(recipe, ctx, notes);
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
  return packages ? { notes, packages } : { notes };
}
