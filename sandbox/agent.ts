/**
 * The sandbox agent: a small HTTP server that runs the `agent_toolset_20260401` tools (bash, read,
 * write, edit, glob, grep) in a workspace directory. The same program runs as a bubblewrapped
 * process on a laptop (Unix socket, capability on stdin) and inside a Fargate task (TCP, capability
 * in `CORRAL_SANDBOX_CAPABILITY`, removed from the environment before any child starts).
 *
 *   GET  /health      -> 200 {"ok":true, "notes"?: [...]}     (no auth)
 *                        503 {"ok":false, "state":"starting"} while the recipe is applied,
 *                        503 {"ok":false, "state":"failed", "error":{"type","message"}} if it failed
 *   POST /execute     -> 200 {"output": string, "is_error": boolean}
 *        Authorization: Bearer <capability>
 *        {"tool", "input", "idempotency_key"?, "timeout_ms"?}
 *   POST /capability  -> 200 {"ok":true}: replaces the capability; the old one stops working
 *        Authorization: Bearer <current capability>
 *        {"capability": "<new, 32..1024 characters>"}
 *   PUT  /files?path=/mnt/session/uploads/...  (body: the bytes, at most 4 MiB) -> 200 {"ok":true}
 *   DELETE /files?path=/mnt/session/uploads/... -> 200 {"ok":true}
 *        a session's file resource, mounted read-only / removed (agent/session-files.ts)
 *   GET  /outputs     -> 200 {"files": [{"path", "size", "mtime_ms"}], "truncated"}: /mnt/session/outputs
 *   GET  /outputs/content?path=<relative> -> 200 the bytes
 *        (all four: Authorization: Bearer <capability>)
 *   GET  /workspace/snapshot?max_bytes=N&max_entries=M
 *                     -> 200 application/gzip: the workspace as a tar (413 when over the bounds)
 *   POST /workspace/restore?max_bytes=N&max_entries=M   (body: a gzipped tar)
 *                     -> 200 {"files","dirs","links","bytes","skipped","skipped_examples"}: the
 *                        workspace's contents replaced; 422 for a tarball it refuses
 *        both: Authorization: Bearer <capability>; packed and unpacked as the tools' user
 *        (agent/workspace-archive.ts, docs/WORKSPACES.md)
 *
 * Usage: agent.ts (--socket PATH | --port N [--host H]) [--workspace DIR] [--state-dir DIR]
 *                 [--run-as-uid N --run-as-gid N [--setpriv PATH]] [--install-packages]
 *                 [--git-channel-stdin] [--local-mounts] [--limits processes=N,memory=B,...]
 *                 [--egress-socket PATH] [--session-dir DIR]
 *
 * With `--limits` (see limits.ts; in a container `CORRAL_SANDBOX_LIMITS` in its environment does
 * the same), every tool process starts under `prlimit(1)` with those rlimits,
 * the workspace's size is checked after every call, and a call that ran into a limit is a tool
 * error that names it.
 *
 * A git channel (`CORRAL_GIT_CHANNEL`, or the second stdin line with `--git-channel-stdin`)
 * starts the git forwarder (agent/git-forwarder.ts): the session's repositories are cloned,
 * pulled and pushed through the credential proxy, and no credential enters the sandbox.
 *
 * `--egress-socket` (local sandboxes, which have no network) starts the egress forwarder
 * (agent/egress-forwarder.ts): a loopback listener passing connections to the host's egress
 * proxy, which enforces the environment's networking; every tool gets `HTTP_PROXY`,
 * `HTTPS_PROXY` (and the lower-case forms) pointing at it, and `NO_PROXY` for loopback.
 *
 * With `--run-as-uid/--run-as-gid`, every tool runs as that user: bash (its one shell) directly,
 * and the file tools (read, write, edit, glob, grep) in one long-lived child process of this
 * program. The agent
 * itself keeps its own uid, so nothing the model runs can read its memory or `/proc/<agent>/environ`
 * (where a container's initial environment, capability included, stays visible). Switching uid
 * needs CAP_SETUID/CAP_SETGID: an agent running as root has them; an agent running as an ordinary
 * user (the image) goes through `--setpriv`, a setpriv(1) that only the agent's group may execute
 * and that carries those two file capabilities. The same helper runs package installation as
 * root when `--install-packages` is given.
 *
 * In a container the recipe comes in `CORRAL_SANDBOX_RECIPE` (see recipe.ts) and is applied after
 * the agent starts listening; `/health` answers 200 only once it is in place.
 *
 * Node built-ins only: this program must run with nothing but Node (and tsx, or after bundling).
 * It does not confine paths itself; the isolation is bubblewrap or the container (and the uid).
 *
 * This file is the entry (the image bundles it, the local provider runs it, and the agent runs it
 * again with `--tool-server`); the agent is in agent/:
 *   main.ts           arguments, environment, stdin, startup and shutdown; the tool server's entry
 *   server.ts         the HTTP API above
 *   sandbox-agent.ts  capability, recipe state, how a tool call runs
 *   idempotency.ts    the tool_use-id result cache (memory and state directory)
 *   confinement.ts    limits and privileges: prlimit, the tools' user, killing a process group, disk
 *   process.ts        the one child-process helper (spawn confined, bounded output, timeout)
 *   shell.ts          the persistent bash session (one confined shell, a sentinel per call)
 *   tool-server.ts    the file tools' long-lived process as the tools' user (JSON lines)
 *   git-forwarder.ts  the git forwarder
 *   egress-forwarder.ts  the egress forwarder and the tools' proxy variables
 *   output.ts         output bounding
 *   session-files.ts  /mnt/session: file resources in (read-only), outputs out
 *   workspace-archive.ts  workspace snapshots: safe tar pack and unpack (`--pack-workspace`, `--unpack-workspace`)
 *   tools/            one module per tool (write and edit together) and the dispatch
 */
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import { logLine } from './agent/log.js';
import { main } from './agent/main.js';

export { main } from './agent/main.js';
export { CAPABILITY_ENV } from './agent/main.js';
export { SandboxAgent, MIN_CAPABILITY_CHARS, type AgentOptions, type SetupState } from './agent/sandbox-agent.js';
export { createAgentServer, parseExecuteRequest, BODY_LIMIT_BYTES } from './agent/server.js';
export { GIT_CHANNEL_ENV, parseGitChannel, startGitForwarder, type GitChannelConfig, type GitForwarder } from './agent/git-forwarder.js';
export { SANDBOX_PATH, type RunAs } from './agent/confinement.js';
export { BoundedText, MAX_OUTPUT_CHARS, truncateOutput } from './agent/output.js';
export { globToRegExp } from './agent/tools/glob-pattern.js';
export {
  DEFAULT_TOOL_TIMEOUT_MS,
  GLOB_RESULT_LIMIT,
  GREP_MATCH_LIMIT,
  MAX_TOOL_TIMEOUT_MS,
  type ExecuteRequest,
  type ToolResult,
} from './agent/tools/index.js';

/** This file: the program the agent runs again for a file tool (the .ts under tsx, the bundle in the image). */
const PROGRAM = fileURLToPath(import.meta.url);

function isEntryPoint(): boolean {
  const entry = process.argv[1];
  if (!entry) return false;
  try {
    return fs.realpathSync(entry) === fs.realpathSync(PROGRAM);
  } catch {
    return false;
  }
}

if (isEntryPoint()) {
  main(process.argv.slice(2), PROGRAM).catch((err: unknown) => {
    logLine('error', 'sandbox agent failed to start', { error: (err as Error)?.message ?? String(err) });
    process.exit(2);
  });
}
