/**
 * The recipe of a new sandbox, planned once: what it starts with, from the session (its
 * `github_repository` and `file` resources), its environment (`config.packages`) and the vault
 * (which repositories the session holds a credential for). Providers only deliver what is planned
 * here; the applying side (cloning, installing) is `sandbox/recipe.ts`, inside the sandbox.
 *
 * Three steps, all pure but the first:
 * - `loadRecipePlan` reads what the plan needs (the environment, the session's credential refs);
 * - `planRecipe` turns it into a `RecipePlan`: each repository with its mount path, checkout and
 *   channel (`public`, or `credential_proxy` when the session holds a credential for it, which
 *   only the credential proxy's git channel can add), the package lists, the files, the egress
 *   policy (`egress.ts`: the environment's `networking` and the agent's MCP servers), and what
 *   Corral cannot use whatever the provider (a resource type it does not know, a mount path that
 *   is not usable or is taken);
 * - `fitRecipe` splits a plan by what a provider can deliver (`RecipeSupport`) into the
 *   `SandboxRecipe` the provider is handed and the issues the sandbox manager reports: `skipped`
 *   (the sandbox starts without it; the model is told before the first tool result) or
 *   `refused` (no sandbox starts: a tool error and a `session.error` of `errorType`).
 *
 * No credential is ever in a plan: a repository says only which channel it needs.
 */
import path from 'node:path';
import { plannedMemoryStore, type PlannedMemoryStore } from '../memory/planned.js';
import { normalizeRepositoryUrl } from '../vault/types.js';
import { planEgress, type EgressPolicy } from './egress.js';
import type { SystemPrincipal } from '../storage/principal.js';

/** Where the workspace is inside a sandbox, and what a relative `mount_path` is relative to. */
export const WORKSPACE_MOUNT = '/workspace';

/** Where a session's `file` resources are mounted (read-only) inside a sandbox, and the only root a `mount_path` may name. */
export const FILE_MOUNT_ROOT = '/mnt/session/uploads';
/** Where the agent writes what should come out of the session as files (`files.list({ scope_id })`). */
export const OUTPUTS_MOUNT = '/mnt/session/outputs';

/** The default mount path of a file resource. */
export const defaultFileMountPath = (fileId: string) => `${FILE_MOUNT_ROOT}/${fileId}`;

/**
 * Why a file resource's `mount_path` is not usable, or null: it must be absolute and normalized,
 * strictly under `/mnt/session/uploads/`, without `.` or `..` or empty segments or control
 * characters, and at most 1024 bytes. Checked at the API's edge and again by the sandbox agent.
 */
export function fileMountPathProblem(mountPath: string): string | null {
  // eslint-disable-next-line no-control-regex
  if (Buffer.byteLength(mountPath) > 1024 || /[\x00-\x1f\x7f]/.test(mountPath)) return 'must be at most 1024 bytes without control characters';
  if (!mountPath.startsWith(`${FILE_MOUNT_ROOT}/`)) return `must be an absolute path under ${FILE_MOUNT_ROOT}/`;
  if (mountPath.slice(FILE_MOUNT_ROOT.length + 1).split('/').some((s) => s === '' || s === '.' || s === '..')) {
    return 'must be normalized: no empty, . or .. segments, no trailing /';
  }
  return null;
}

export const PACKAGE_MANAGERS = ['apt', 'pip', 'npm', 'cargo', 'gem', 'go'] as const;
export type PackageManager = (typeof PACKAGE_MANAGERS)[number];
/** Package names by manager; a manager is present only with at least one name. */
export type PackageLists = Partial<Record<PackageManager, string[]>>;

export type Checkout = { type: 'branch'; name: string } | { type: 'commit'; sha: string };

/**
 * How a repository reaches the sandbox. `public`: it needs no credential. `credential_proxy`: the
 * session holds a credential for it, which the credential proxy adds on the way out of the
 * sandbox's git channel (the credential never enters the sandbox).
 */
export type RepositoryChannel = 'public' | 'credential_proxy';

export interface PlannedRepository {
  url: string;
  /** Absolute and normalized (`/workspace/<name>` unless the resource says otherwise). */
  mountPath: string;
  checkout: Checkout | null;
  channel: RepositoryChannel;
}

export interface PlannedFile {
  fileId: string;
  /** Where it is mounted: the resource's `mount_path` (checked by the API), else `/mnt/session/uploads/<file_id>`. */
  mountPath: string;
}

/** One thing of a recipe, as an issue names it. */
export type RecipeItem =
  | { kind: 'packages'; packages: PackageLists }
  | { kind: 'repository'; url: string; mountPath: string }
  | { kind: 'file'; fileId: string; mountPath: string }
  | { kind: 'resource'; type: string };

/** The error types of a recipe that cannot be set up (the Managed Agents API's where it has one). */
export type RecipeErrorType = 'repository_clone_error' | 'repository_checkout_error' | 'package_install_error' | 'invalid_recipe';

/**
 * Something of the recipe a sandbox cannot have. `skipped`: the sandbox starts without it, and
 * the model is told (`message`). `refused`: the sandbox does not start; the tool call that needed
 * it fails with `message`, and the session gets a `session.error` of `errorType`.
 */
export type RecipeIssue =
  | { outcome: 'skipped'; item: RecipeItem; message: string }
  | { outcome: 'refused'; item: RecipeItem; errorType: RecipeErrorType; message: string };

/** What a session's sandboxes are planned to start with. */
export interface RecipePlan {
  environmentId: string;
  /** The environment's version (its `updated_at`): the package cache is per version. Absent in hand-made plans. */
  environmentVersion?: string;
  /** The session's tenant (whose files the plan's `files` are), when loaded from the session. */
  tenant?: string;
  packages: PackageLists;
  repositories: PlannedRepository[];
  files: PlannedFile[];
  /**
   * Where the sandbox's outbound connections may go (`planEgress`). A provider's egress proxy
   * enforces it; absent only in hand-made plans, where it means the environment's default,
   * `unrestricted`.
   */
  networking?: EgressPolicy;
  /**
   * Whether the session lists vaults: a provider that applies `environment_variable` credentials
   * asks the credential proxy for them only then.
   */
  vaults?: boolean;
  /** The session's memory stores, mounted at `/mnt/memory/<slug>` (memory-mounts.ts). */
  memory?: PlannedMemoryStore[];
  /** What no provider can give (an unknown resource type, an unusable or taken mount path). */
  issues: RecipeIssue[];
}

/** The part of a plan a provider is handed: only what it said it can deliver. */
export interface SandboxRecipe {
  environmentId: string;
  /** `RecipePlan.environmentVersion`. */
  environmentVersion?: string;
  packages: PackageLists;
  /**
   * Set by the sandbox manager when the environment's package cache holds this recipe's pip and
   * npm packages: the sandbox does not install them, the manager restores them (package-cache.ts).
   */
  packagesCached?: boolean;
  repositories: PlannedRepository[];
  /** The egress policy, as planned (every provider is handed it; see `RecipePlan.networking`). */
  networking?: EgressPolicy;
  /** The session lists vaults (`RecipePlan.vaults`); absent: it lists none. */
  vaults?: boolean;
}

export type Support = { supported: true } | { supported: false; reason: string };

/** What a provider can deliver of a plan; everything else is an issue (`fitRecipe`). */
export interface RecipeSupport {
  /** The provider's sandboxes in messages: `a local sandbox`, `a Fargate sandbox`. */
  readonly label: string;
  /** The package managers whose packages it installs, and why the others' are not. */
  readonly packages: { readonly managers: readonly PackageManager[]; readonly otherwise: string };
  /** Repositories that need no credential. */
  readonly publicRepositories: Support;
  /** Repositories the session holds a credential for: the credential proxy's git channel. */
  readonly credentialedRepositories: Support;
}

/** What `planRecipe` reads. */
export interface RecipeInputs {
  /** The session; its agent's MCP servers are reachable when the environment allows them. */
  session: { environment_id: string; resources: readonly unknown[]; vault_ids?: readonly unknown[]; agent?: { mcp_servers?: ReadonlyArray<{ url?: unknown }> } };
  /** The environment as stored; null when it is gone (its sandboxes then start bare). */
  environment: { config: unknown; updated_at?: string } | null;
  /** The repositories the session holds a credential for (refs in the session record, never a secret). */
  credentials: ReadonlyArray<{ url: string }>;
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** `https://user:secret@host/...` -> `https://***@host/...` in anything shown to anyone. */
export function redactUrls(text: string): string {
  return text.replace(/([a-z][a-z0-9+.-]*:\/\/)[^/\s@]+@/gi, '$1***@');
}

/** `https://github.com/org/repo.git` -> `repo` (a repository's default mount path ends in it). */
export function repositoryName(url: string): string {
  const trimmed = url.replace(/[?#].*$/, '').replace(/\/+$/, '');
  const last = trimmed.split(/[/:]/).pop() ?? '';
  const name = last.replace(/\.git$/, '');
  return /^[A-Za-z0-9._-]+$/.test(name) && name !== '.' && name !== '..' ? name : 'repository';
}

/**
 * A mount path as an absolute, normalized path inside the sandbox (relative ones are under
 * `/workspace`), or null when it is not a usable directory (`..`, NUL, the root).
 */
export function mountPathOf(mountPath: string): string | null {
  if (!mountPath || mountPath.includes('\0') || mountPath.split('/').includes('..')) return null;
  const normalized = path.posix.normalize(mountPath.startsWith('/') ? mountPath : `${WORKSPACE_MOUNT}/${mountPath}`).replace(/\/+$/, '');
  return normalized === '' ? null : normalized;
}

function checkoutOf(c: unknown): { checkout: Checkout | null } | { invalid: string } {
  if (!isObject(c)) return { checkout: null };
  if (c.type === 'branch') {
    const name = c.name;
    if (typeof name !== 'string' || !name || name.startsWith('-') || /[\s\0]/.test(name)) return { invalid: `branch name ${JSON.stringify(name)} is not valid` };
    return { checkout: { type: 'branch', name } };
  }
  if (c.type === 'commit') {
    const sha = c.sha;
    if (typeof sha !== 'string' || !/^[0-9a-fA-F]{4,64}$/.test(sha)) return { invalid: `commit ${JSON.stringify(sha)} is not a hexadecimal SHA` };
    return { checkout: { type: 'commit', sha } };
  }
  return { invalid: `checkout type ${JSON.stringify(c.type)} is not branch or commit` };
}

function packagesOf(config: unknown): PackageLists {
  const packages: PackageLists = {};
  const raw = isObject(config) ? config.packages : undefined;
  if (!isObject(raw)) return packages;
  for (const pm of PACKAGE_MANAGERS) {
    const list = raw[pm];
    if (Array.isArray(list) && list.length) packages[pm] = list.map(String);
  }
  return packages;
}

const describePackages = (packages: PackageLists) =>
  PACKAGE_MANAGERS.filter((pm) => packages[pm]?.length)
    .map((pm) => `${pm}: ${packages[pm]!.join(', ')}`)
    .join('; ');

/** The plan of a session's sandboxes. Pure: the same inputs give the same plan. */
export function planRecipe(inputs: RecipeInputs): RecipePlan {
  const credentialed = new Set(inputs.credentials.map((c) => normalizeRepositoryUrl(c.url)));
  const plan: RecipePlan = {
    environmentId: inputs.session.environment_id,
    ...(typeof inputs.environment?.updated_at === 'string' ? { environmentVersion: inputs.environment.updated_at } : {}),
    packages: packagesOf(inputs.environment?.config),
    repositories: [],
    files: [],
    networking: planEgress(inputs.environment?.config, inputs.session.agent?.mcp_servers ?? []),
    ...(inputs.session.vault_ids?.length ? { vaults: true } : {}),
    issues: [],
  };
  const mounts = new Set<string>();
  for (const r of inputs.session.resources ?? []) {
    if (!isObject(r) || typeof r.type !== 'string') {
      plan.issues.push({ outcome: 'skipped', item: { kind: 'resource', type: 'unknown' }, message: 'a resource without a type was skipped' });
      continue;
    }
    if (r.type === 'github_repository') {
      const url = typeof r.url === 'string' ? r.url : '';
      const shown = redactUrls(url);
      const given = typeof r.mount_path === 'string' && r.mount_path ? r.mount_path : `${WORKSPACE_MOUNT}/${repositoryName(url)}`;
      const mountPath = mountPathOf(given);
      if (!url || url.startsWith('-') || /\s/.test(url)) {
        plan.issues.push({
          outcome: 'refused',
          item: { kind: 'repository', url: shown, mountPath: mountPath ?? given },
          errorType: 'repository_clone_error',
          message: `repository url ${JSON.stringify(shown)} is not valid`,
        });
        continue;
      }
      if (mountPath === null) {
        plan.issues.push({
          outcome: 'refused',
          item: { kind: 'repository', url: shown, mountPath: given },
          errorType: 'invalid_recipe',
          message: `mount_path ${JSON.stringify(given)} of repository ${shown} is not a usable directory`,
        });
        continue;
      }
      const checkout = checkoutOf(r.checkout);
      if ('invalid' in checkout) {
        plan.issues.push({ outcome: 'refused', item: { kind: 'repository', url: shown, mountPath }, errorType: 'repository_checkout_error', message: `${checkout.invalid} (repository ${shown})` });
        continue;
      }
      // Two repositories in one place: only one can be there (the API refuses such sessions).
      if (mounts.has(mountPath)) {
        plan.issues.push({
          outcome: 'skipped',
          item: { kind: 'repository', url: shown, mountPath },
          message: `repository ${shown} was not cloned: ${mountPath} is taken by another repository of this session`,
        });
        continue;
      }
      mounts.add(mountPath);
      const channel: RepositoryChannel = credentialed.has(normalizeRepositoryUrl(url)) ? 'credential_proxy' : 'public';
      plan.repositories.push({ url, mountPath, checkout: checkout.checkout, channel });
    } else if (r.type === 'file') {
      const fileId = typeof r.file_id === 'string' ? r.file_id : '';
      const mountPath = typeof r.mount_path === 'string' && r.mount_path ? r.mount_path : defaultFileMountPath(fileId);
      const problem = fileMountPathProblem(mountPath);
      if (problem || !fileId) {
        plan.issues.push({ outcome: 'skipped', item: { kind: 'file', fileId, mountPath }, message: `file resource ${fileId} was not mounted: mount_path ${problem ?? 'or file_id missing'}` });
        continue;
      }
      plan.files.push({ fileId, mountPath });
    } else if (r.type === 'memory_store') {
      // Kept in line by the sandbox manager through the agent (memory-mounts.ts), not the provider's.
      const planned = plannedMemoryStore(r);
      if (planned) (plan.memory ??= []).push(planned);
      else plan.issues.push({ outcome: 'skipped', item: { kind: 'resource', type: r.type }, message: 'a memory_store resource without a memory store or mount path was skipped' });
    } else {
      plan.issues.push({ outcome: 'skipped', item: { kind: 'resource', type: r.type }, message: `${r.type} resources are not supported by Corral sandboxes yet; it was skipped` });
    }
  }
  return plan;
}

/**
 * A plan split by what a provider can deliver: the recipe it is handed, and every issue. The one
 * place where "this provider cannot do that" is decided.
 */
export function fitRecipe(plan: RecipePlan, support: RecipeSupport): { recipe: SandboxRecipe; issues: RecipeIssue[] } {
  // Packages first (a sandbox applies them first), then the resources'.
  const packageIssues: RecipeIssue[] = [];
  const issues: RecipeIssue[] = [];
  const packages: PackageLists = {};
  const left: PackageLists = {};
  for (const pm of PACKAGE_MANAGERS) {
    const list = plan.packages[pm];
    if (!list?.length) continue;
    if (support.packages.managers.includes(pm)) packages[pm] = list;
    else left[pm] = list;
  }
  if (Object.keys(left).length) {
    packageIssues.push({
      outcome: 'skipped',
      item: { kind: 'packages', packages: left },
      message: `the environment's packages (${describePackages(left)}) are not installed in ${support.label}; ${support.packages.otherwise}`,
    });
  }
  const repositories: PlannedRepository[] = [];
  for (const r of plan.repositories) {
    const channel = r.channel === 'public' ? support.publicRepositories : support.credentialedRepositories;
    if (channel.supported) {
      repositories.push(r);
      continue;
    }
    const url = redactUrls(r.url);
    issues.push({
      outcome: 'refused',
      item: { kind: 'repository', url, mountPath: r.mountPath },
      errorType: 'repository_clone_error',
      message:
        r.channel === 'public'
          ? `${channel.reason}, so repository ${url} cannot be cloned into ${support.label}`
          : `repository ${url} needs the credential this session holds for it, which reaches a sandbox only through the credential proxy's git channel, and ${channel.reason}`,
    });
  }
  // Files are not the provider's: the sandbox manager hands them to the running agent (`mountFiles`).
  const recipe: SandboxRecipe = {
    environmentId: plan.environmentId,
    ...(plan.environmentVersion ? { environmentVersion: plan.environmentVersion } : {}),
    packages,
    repositories,
    ...(plan.networking ? { networking: plan.networking } : {}),
    ...(plan.vaults ? { vaults: true } : {}),
  };
  return { recipe, issues: [...packageIssues, ...plan.issues, ...issues] };
}

/**
 * A provider's guard: a recipe holding something it cannot deliver is a bug in its caller (the
 * sandbox manager fits every plan first), never something to drop quietly.
 */
export function assertDeliverable(recipe: SandboxRecipe, support: RecipeSupport): void {
  const { issues } = fitRecipe({ ...recipe, files: [], issues: [] }, support);
  if (issues.length) throw new Error(`${support.label} was handed a recipe it cannot deliver (${issues.map((i) => i.message).join('; ')})`);
}

/** What `loadRecipePlan` reads the plan's inputs from (the session service, the environment service). */
export interface RecipeSources {
  sessions: { recipeSources(who: SystemPrincipal, sessionId: string): Promise<{ tenant: string; repositoryCredentials: ReadonlyArray<{ url: string }> }> };
  environments: { get(tenant: string, id: string): Promise<{ config: unknown; updated_at?: string }> };
}

/** The plan of a session's sandboxes, from its record, its environment and its credential refs. */
export async function loadRecipePlan(
  sources: RecipeSources,
  who: SystemPrincipal,
  session: RecipeInputs['session'] & { id: string },
): Promise<RecipePlan> {
  const { tenant, repositoryCredentials } = await sources.sessions.recipeSources(who, session.id);
  // An environment deleted since the session was created: its sandboxes start bare.
  const environment = await sources.environments.get(tenant, session.environment_id).catch(() => null);
  return { ...planRecipe({ session, environment, credentials: repositoryCredentials }), tenant };
}
