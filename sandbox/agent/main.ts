/**
 * The agent process: its arguments and environment, the capability and git channel from stdin
 * (local) or the environment (container), the state directory, the server and forwarder, and
 * shutdown. Also `--tool-server`, the long-lived process that runs the file tools as the tools'
 * user (see tool-server.ts).
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { RECIPE_ENV, decodeRecipe } from '../recipe.js';
import { SANDBOX_LIMITS_ENV, parseSandboxLimits, resolveSandboxLimits } from '../limits.js';
import { Confinement, parseRunAs, type RunAs } from './confinement.js';
import { EGRESS_CHANNEL_ENV, parseEgressChannel, startEgressForwarder, startTcpEgressForwarder, type EgressForwarder } from './egress-forwarder.js';
import { GIT_CHANNEL_ENV, parseGitChannel, startGitForwarder, type GitForwarder } from './git-forwarder.js';
import { logLine } from './log.js';
import { SandboxAgent } from './sandbox-agent.js';
import { Processes } from './process.js';
import { createAgentServer } from './server.js';
import { toolServerMain } from './tool-server.js';
import { ArchiveRefused, packWorkspace, parseArchiveLimits, unpackWorkspace, type ArchiveLimits } from './workspace-archive.js';

export const CAPABILITY_ENV = 'CORRAL_SANDBOX_CAPABILITY';

/**
 * Reads the first `count` lines of stdin (the capability, then the git channel when there is
 * one); `onEnd` fires when stdin later closes (the parent went away).
 */
function readFirstLines(stream: NodeJS.ReadableStream, count: number, onEnd: () => void): Promise<string[]> {
  return new Promise((resolve) => {
    let buffered = '';
    let resolved = false;
    const lines: string[] = [];
    stream.setEncoding('utf8');
    stream.on('data', (chunk: string) => {
      if (resolved) return;
      buffered += chunk;
      let nl: number;
      while (!resolved && (nl = buffered.indexOf('\n')) !== -1) {
        lines.push(buffered.slice(0, nl).trim());
        buffered = buffered.slice(nl + 1);
        if (lines.length === count) {
          resolved = true;
          resolve(lines);
          buffered = '';
        }
      }
      if (!resolved && buffered.length > 65536) {
        resolved = true;
        resolve(lines);
      }
    });
    const end = () => {
      if (!resolved) {
        resolved = true;
        if (buffered.trim()) lines.push(buffered.trim());
        resolve(lines);
      }
      onEnd();
    };
    stream.on('end', end);
    stream.on('error', end);
  });
}

function chooseStateDir(workspace: string, requested: string | undefined): string | null {
  const candidates = requested
    ? [path.resolve(requested)]
    : [
        path.resolve(workspace, '..', '.sandbox-state'),
        path.join(os.tmpdir(), `corral-sandbox-state-${crypto.createHash('sha256').update(workspace).digest('hex').slice(0, 16)}`),
      ];
  for (const dir of candidates) {
    try {
      fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
      fs.accessSync(dir, fs.constants.W_OK);
      return dir;
    } catch {
      // try the next one
    }
  }
  return null;
}

/**
 * Runs the agent with `argv` (see sandbox/agent.ts for the usage). `program` is the agent's own
 * entry file, run again with `--tool-server` to serve the file tools as the tools' user.
 */
export async function main(argv: string[], program: string): Promise<void> {
  process.stderr.on('error', () => {});
  const { values } = parseArgs({
    args: argv,
    options: {
      socket: { type: 'string' },
      port: { type: 'string' },
      host: { type: 'string' },
      workspace: { type: 'string' },
      'state-dir': { type: 'string' },
      'run-as-uid': { type: 'string' },
      'run-as-gid': { type: 'string' },
      setpriv: { type: 'string' },
      'install-packages': { type: 'boolean' },
      'tool-server': { type: 'boolean' },
      'git-channel-stdin': { type: 'boolean' },
      'local-mounts': { type: 'boolean' },
      'egress-socket': { type: 'string' },
      'session-dir': { type: 'string' },
      limits: { type: 'string' },
      'pack-workspace': { type: 'boolean' },
      'unpack-workspace': { type: 'boolean' },
      'max-bytes': { type: 'string' },
      'max-entries': { type: 'string' },
    },
    strict: true,
  });
  if (values['pack-workspace'] || values['unpack-workspace']) {
    // A snapshot's child (workspace-archive.ts), run by the agent as the tools' user.
    const workspace = path.resolve(values.workspace ?? process.cwd());
    process.exit(await archiveMain(values['pack-workspace'] ? 'pack' : 'unpack', workspace, parseArchiveLimits(values['max-bytes'], values['max-entries'])));
  }
  if (values['tool-server']) {
    const workspace = path.resolve(values.workspace ?? process.cwd());
    await toolServerMain({ workspace, requestTimeoutMs: undefined, processes: new Processes(new Confinement(undefined, undefined)) });
    process.exit(0);
  }
  if (!values.socket && values.port === undefined) throw new Error('one of --socket PATH or --port N is required');
  const runAs = parseRunAs(values['run-as-uid'], values['run-as-gid'], values.setpriv);
  // `--limits` (the local provider), else `CORRAL_SANDBOX_LIMITS` (the Fargate task definition's
  // environment, a stack setting); the tools do not inherit the variable.
  const limitsText = values.limits ?? process.env[SANDBOX_LIMITS_ENV];
  delete process.env[SANDBOX_LIMITS_ENV];
  const limits = limitsText === undefined ? undefined : resolveSandboxLimits(parseSandboxLimits(limitsText));
  const port = values.port === undefined ? undefined : Number(values.port);
  if (port !== undefined && (!Number.isInteger(port) || port < 0 || port > 65535)) throw new Error('--port must be 0..65535');

  let shuttingDown = false;
  let shutdown: (code: number) => void = (code) => process.exit(code);
  let capability = process.env[CAPABILITY_ENV] ?? '';
  delete process.env[CAPABILITY_ENV];
  let gitChannelText = process.env[GIT_CHANNEL_ENV] ?? '';
  delete process.env[GIT_CHANNEL_ENV];
  // A Fargate sandbox's way out (the proxy service and its capability); the tools never see it.
  let egressChannelText = process.env[EGRESS_CHANNEL_ENV] ?? '';
  delete process.env[EGRESS_CHANNEL_ENV];
  if (!capability) {
    // Local provider: the capability is the first line of stdin (the git channel the second,
    // with --git-channel-stdin), and stdin closing means the parent went away, so the agent goes too.
    const lines = await readFirstLines(process.stdin, values['git-channel-stdin'] ? 2 : 1, () => {
      if (!shuttingDown) shutdown(0);
    });
    capability = lines[0] ?? '';
    if (values['git-channel-stdin']) gitChannelText = lines[1] ?? '';
  }
  if (!capability) throw new Error(`no capability: pass it on the first line of stdin or in ${CAPABILITY_ENV}`);
  // Variables for every tool process from the provider: placeholders of environment_variable
  // credentials (never a secret: the egress proxy substitutes it) and the CA bundle's path.
  const toolEnvText = process.env.CORRAL_TOOL_ENV;
  delete process.env.CORRAL_TOOL_ENV;
  const providedToolEnv = toolEnvText ? parseToolEnv(toolEnvText) : {};
  const recipeText = process.env[RECIPE_ENV];
  delete process.env[RECIPE_ENV];
  const recipe = recipeText ? decodeRecipe(recipeText) : undefined;
  let forwarder: GitForwarder | undefined;
  if (gitChannelText) {
    forwarder = await startGitForwarder(parseGitChannel(gitChannelText), logLine);
    gitChannelText = '';
  }
  // The host's egress proxy (local sandboxes): the tools reach the network only through it.
  let egress: EgressForwarder | undefined;
  if (values['egress-socket']) egress = await startEgressForwarder(values['egress-socket'], logLine);
  else if (egressChannelText) {
    // The proxy service (Fargate sandboxes): over TCP, with the sandbox's capability.
    egress = await startTcpEgressForwarder(parseEgressChannel(egressChannelText), logLine);
    egressChannelText = '';
  }

  const workspace = path.resolve(values.workspace ?? process.cwd());
  fs.mkdirSync(workspace, { recursive: true });
  const stateDir = chooseStateDir(workspace, values['state-dir']);
  const agent = new SandboxAgent({
    workspace,
    capability,
    stateDir,
    runAs,
    program,
    log: logLine,
    recipeMode: values['local-mounts'] ? 'local' : 'image',
    gitRemote: forwarder?.remoteFor,
    limits,
    toolEnv: { ...providedToolEnv, ...egress?.env },
    ...(values['session-dir'] ? { sessionDir: path.resolve(values['session-dir']) } : {}),
  });
  capability = '';
  if (runAs) await checkRunAs(agent, runAs);
  const server = createAgentServer(agent);

  process.on('uncaughtException', (err) => logLine('error', 'uncaught exception', { error: err?.message }));
  process.on('unhandledRejection', (err) => logLine('error', 'unhandled rejection', { error: (err as Error)?.message }));

  const socketPath = values.socket ? path.resolve(values.socket) : undefined;
  shutdown = (code: number) => {
    if (shuttingDown) return;
    shuttingDown = true;
    agent.shutdown();
    server.close();
    forwarder?.server.close();
    egress?.server.close();
    if (socketPath) {
      try {
        fs.unlinkSync(socketPath);
      } catch {
        // already gone
      }
    }
    setTimeout(() => process.exit(code), 50).unref();
  };
  process.on('SIGTERM', () => shutdown(0));
  process.on('SIGINT', () => shutdown(0));

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    if (socketPath) {
      fs.mkdirSync(path.dirname(socketPath), { recursive: true });
      try {
        if (fs.lstatSync(socketPath).isSocket()) fs.unlinkSync(socketPath);
      } catch {
        // nothing there
      }
      server.listen(socketPath, () => {
        try {
          fs.chmodSync(socketPath, 0o600);
        } catch {
          // best effort
        }
        resolve();
      });
    } else {
      server.listen(port, values.host ?? '0.0.0.0', () => resolve());
    }
  });
  if (recipe) void agent.beginSetup(recipe, { installPackages: values['install-packages'] === true });
  const address = server.address();
  logLine('info', 'listening', {
    ...(socketPath ? { socket: socketPath } : { host: values.host ?? '0.0.0.0', port: typeof address === 'object' && address ? address.port : port }),
    workspace,
    stateDir,
  });
}

/**
 * `--pack-workspace`: the workspace as a gzipped tar on stdout, its summary as a JSON line on
 * stderr. `--unpack-workspace`: a gzipped tar from stdin into the workspace, the summary (or the
 * refusal) as a JSON line on stdout. Exit code 3: refused (too large, a hostile tarball).
 */
async function archiveMain(mode: 'pack' | 'unpack', workspace: string, limits: ArchiveLimits): Promise<number> {
  const refused = (err: unknown, out: NodeJS.WritableStream) => {
    const refusal = err instanceof ArchiveRefused;
    out.write(`${JSON.stringify({ error: refusal ? err.message : `internal error: ${(err as Error)?.message ?? String(err)}`, refused: refusal })}\n`);
    return refusal ? 3 : 1;
  };
  if (mode === 'pack') {
    try {
      const summary = await packWorkspace(workspace, process.stdout, limits);
      process.stderr.write(`${JSON.stringify({ summary })}\n`);
      return 0;
    } catch (err) {
      return refused(err, process.stderr);
    }
  }
  try {
    const summary = await unpackWorkspace(workspace, process.stdin, limits);
    await new Promise<void>((resolve) => process.stdout.write(`${JSON.stringify({ summary })}\n`, () => resolve()));
    return 0;
  } catch (err) {
    const code = refused(err, process.stdout);
    await new Promise<void>((resolve) => process.stdout.write('', () => resolve()));
    return code;
  }
}

/** Refuse to start unless tools really run as the configured user (a broken image fails fast). */
async function checkRunAs(agent: SandboxAgent, runAs: RunAs): Promise<void> {
  const probe = await agent.runCommand(['/bin/sh', '-c', 'id -u; id -g'], { as: 'sandbox', cwd: '/', timeoutMs: 15_000 });
  const ids = probe.output.trim().split(/\s+/);
  if (probe.code !== 0 || ids[0] !== String(runAs.uid) || ids[1] !== String(runAs.gid)) {
    throw new Error(
      `cannot run tools as uid ${runAs.uid} gid ${runAs.gid}` +
        `${runAs.setpriv ? ` through ${runAs.setpriv}` : ' (the agent needs to be root, or pass --setpriv)'}: ` +
        `${probe.output.trim().slice(0, 500) || `exit code ${probe.code}`}`,
    );
  }
}

/** `CORRAL_TOOL_ENV`: a JSON object of variable names to strings. */
function parseToolEnv(text: string): Record<string, string> {
  const parsed: unknown = JSON.parse(text);
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new Error('CORRAL_TOOL_ENV must be a JSON object');
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(parsed)) {
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(k) || typeof v !== 'string') throw new Error(`CORRAL_TOOL_ENV: ${JSON.stringify(k)} is not a variable name with a string value`);
    out[k] = v;
  }
  return out;
}
