/**
 * The sandbox interface. A sandbox is cattle: provisioned lazily on the first tool call that
 * needs it, reached only through `execute`, and replaced when it dies.
 *
 * Nothing in here knows whether the sandbox is a bubblewrapped process on a laptop or a Fargate
 * task: providers (adapters) turn a recipe into an endpoint, and the HTTP client in `client.ts`
 * talks to the sandbox agent behind any endpoint. The recipe is planned once, in `recipe.ts`; a
 * provider only delivers it.
 */
import type { RecipeSupport, SandboxRecipe } from './recipe.js';

/** Tool names the sandbox agent serves (the `agent_toolset_20260401` toolset). */
export const SANDBOX_TOOLS = ['bash', 'read', 'write', 'edit', 'glob', 'grep'] as const;
export type SandboxToolName = (typeof SANDBOX_TOOLS)[number];

/** What a tool call returned. `isError` is a tool-level error the model should see. */
export interface ToolOutput {
  output: string;
  isError: boolean;
}

/** Where a sandbox agent listens, plus the capability that lets its holder call it (and only it). */
export type SandboxEndpoint =
  | { kind: 'unix'; socketPath: string; capability: string }
  | { kind: 'tcp'; host: string; port: number; capability: string };

export type { RecipeSupport, SandboxRecipe } from './recipe.js';

export interface ProvisionRequest {
  sessionId: string;
  /** Sandbox name within the session (`default` unless the model asks for another). */
  name: string;
  /** What to deliver: the session's plan fitted to what this provider supports (`fitRecipe`). */
  recipe: SandboxRecipe;
  /**
   * Aborts provisioning (the harness step's deadline, or the user's interrupt): the provider
   * stops waiting, stops whatever it started for this request, and rejects with the signal's
   * reason. Nothing half-started is left running.
   */
  signal?: AbortSignal;
  /**
   * Called with the sandbox's `ref` as soon as it exists, before it is healthy (a warm pool
   * records it, so a refill that dies half-way leaves nothing running that no one can stop).
   * @default - nobody is told
   */
  onStarted?(ref: string): void | Promise<void>;
}

/** A provisioned sandbox as a provider describes it; persisted so a stateless harness can find it. */
export interface ProvisionedSandbox {
  endpoint: SandboxEndpoint;
  /** Provider-specific reference (process id, task ARN) used by `release`. */
  ref: string;
  /**
   * What the model should know about how the recipe was applied (a repository kept from an
   * earlier sandbox, where it is). The manager puts them, after what the recipe could not have
   * (`fitRecipe`'s skipped issues), in front of the first tool result of this sandbox.
   */
  notes?: string[];
}

/** A session and a sandbox name in it. */
export interface SandboxOwner {
  sessionId: string;
  name: string;
}

export interface SandboxProvider {
  /** What it can deliver of a recipe; the sandbox manager reports the rest before provisioning. */
  readonly recipeSupport: RecipeSupport;
  /** Start a sandbox and wait until its agent answers health checks. */
  provision(req: ProvisionRequest): Promise<ProvisionedSandbox>;
  /** Stop a sandbox. Idempotent: releasing a dead or unknown sandbox is not an error. */
  release(sessionId: string, name: string, ref: string): Promise<void>;
  /** Stop every sandbox of a session (used when a session is deleted). */
  releaseAll?(sessionId: string): Promise<void>;
  /**
   * A running sandbox now belongs to another session and name (handoff). Providers that key
   * their own bookkeeping by session and name must follow it, so that the old owner's `release`,
   * `releaseAll` or next `provision` no longer touch it. Optional: a provider whose `release`
   * needs only `ref` has nothing to do.
   */
  transfer?(from: SandboxOwner, to: SandboxOwner, ref: string): Promise<void>;
  /**
   * Why this provider's sandboxes have no `/mnt/session` (so `file` resources cannot be mounted
   * where the model looks for them, and nothing is written to its outputs), or undefined when they
   * have one. @default - they have one
   */
  sessionFilesRefusal?(): Promise<string | undefined>;
}

export interface ExecuteOptions {
  /**
   * Key under which the sandbox agent remembers the result: a second call with the same key
   * returns the first result instead of running the tool again. The harness uses the tool_use id.
   */
  idempotencyKey?: string;
  /** Upper bound for the whole call, including the tool's own timeout. */
  timeoutMs?: number;
  signal?: AbortSignal;
  /**
   * Epoch ms after which the caller stops waiting for the answer (the harness step's deadline).
   * The tool's own timeout is not shortened: the call goes on in the sandbox, which keeps its
   * result under the idempotency key, so calling again with the same key after the deadline
   * joins the running call or returns its result; the tool never runs twice. Reaching the
   * deadline rejects with `StepDeadlineError`, and a provisioning it cuts is stopped.
   */
  deadline?: number;
}

/**
 * The harness step's deadline came before an action finished. Not a failure of the sandbox or
 * the model: the harness saves its place and hands the rest of the session to a new wake.
 */
export class StepDeadlineError extends Error {
  constructor(what = 'the action') {
    super(`the harness step's deadline came before ${what} finished`);
    this.name = 'StepDeadlineError';
  }
}

/**
 * Raised when the sandbox itself is unreachable or died (as opposed to a tool that failed, which
 * is a normal `ToolOutput` with `isError: true`). The harness turns it into a tool error for the
 * model and forgets the sandbox, so the next call provisions a fresh one.
 */
export class SandboxUnavailableError extends Error {
  constructor(
    message: string,
    override readonly cause?: unknown,
  ) {
    super(message);
    this.name = 'SandboxUnavailableError';
  }
}

/**
 * Raised by provisioning when the sandbox started but could not apply its recipe (a repository
 * that does not clone, a branch that does not exist, packages that do not install). `type` is
 * the error type the Managed Agents API uses where it has one (`repository_clone_error`,
 * `repository_checkout_error`), else a Corral one (`package_install_error`, `invalid_recipe`).
 */
export class SandboxSetupError extends Error {
  constructor(
    readonly type: string,
    message: string,
  ) {
    super(message);
    this.name = 'SandboxSetupError';
  }
}
