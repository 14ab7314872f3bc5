import { spawn } from 'node:child_process';
import { createServer, Socket, type Server } from 'node:net';
import type { AddressInfo } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runCli, type CliIO } from '../../cli/main.js';

export const REPO = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const BIN = join(REPO, 'bin', 'corral.js');
/** A config file that does not exist. */
const NO_CONFIG = join(REPO, '.corral-test-no-config.json');

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Run the CLI in this process with captured output. */
export async function cli(
  args: string[],
  opts: {
    env?: Record<string, string | undefined>;
    cwd?: string;
    stdin?: string;
    signal?: AbortSignal;
    stderrTTY?: boolean;
    /** Watch the output as it is written (for commands that follow a stream). */
    onOutput?: (stdout: string, stderr: string) => void;
    /** How `corral login` waits between polls. */
    sleep?: CliIO['sleep'];
  } = {},
): Promise<CliResult> {
  let stdout = '';
  let stderr = '';
  const io: Partial<CliIO> = {
    // No config file of the machine's user: a `corral login` there must not change what tests send.
    env: { PATH: process.env.PATH, CORRAL_CONFIG: NO_CONFIG, ...opts.env },
    cwd: opts.cwd ?? process.cwd(),
    stdout: { write: (s: string) => ((stdout += s), opts.onOutput?.(stdout, stderr)), isTTY: false },
    stderr: { write: (s: string) => ((stderr += s), opts.onOutput?.(stdout, stderr)), isTTY: !!opts.stderrTTY },
    readStdin: async () => opts.stdin ?? '',
    signal: opts.signal ?? new AbortController().signal,
    ...(opts.sleep ? { sleep: opts.sleep } : {}),
  };
  const code = await runCli(args, io);
  return { code, stdout, stderr };
}

/** NDJSON lines of `--json` event output. */
export function ndjson(stdout: string): Array<{ position: number; event: { id: string; type: string; [k: string]: unknown } }> {
  return stdout
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => JSON.parse(l));
}

/** The real `corral` executable (the bin shim), as a child process. */
export function spawnBin(args: string[], opts: { env: Record<string, string | undefined>; cwd: string }) {
  const child = spawn(process.execPath, [BIN, ...args], {
    cwd: opts.cwd,
    env: { PATH: process.env.PATH, HOME: process.env.HOME, CORRAL_CONFIG: NO_CONFIG, ...opts.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => (stderr += d));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code, signal) => resolve(code ?? (signal ? -1 : null))));
  return {
    child,
    exited,
    get stdout() {
      return stdout;
    },
    get stderr() {
      return stderr;
    },
  };
}

/** Wait (bounded) for a condition, polling. */
export async function until(check: () => boolean | Promise<boolean>, what: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/**
 * A TCP proxy that cuts every event-stream connection after `cutAfterBytes` bytes of response
 * (wherever that falls, usually inside an SSE message), as a flaky network or a load balancer's
 * timeout would. Other requests pass untouched.
 */
export async function startCuttingProxy(target: string, cutAfterBytes: number) {
  const url = new URL(target);
  const sockets = new Set<Socket>();
  let streamConnections = 0;
  const server: Server = createServer((client) => {
    sockets.add(client);
    const upstream = new Socket();
    sockets.add(upstream);
    upstream.connect(Number(url.port), url.hostname);
    let streaming = false;
    let sent = 0;
    client.on('data', (d) => upstream.write(d));
    upstream.on('data', (chunk: Buffer) => {
      if (!streaming && chunk.toString('latin1').includes('text/event-stream')) {
        streaming = true;
        streamConnections++;
      }
      if (streaming) {
        const room = cutAfterBytes - sent;
        if (chunk.length >= room) {
          client.end(chunk.subarray(0, room));
          client.destroy();
          upstream.destroy();
          return;
        }
        sent += chunk.length;
      }
      client.write(chunk);
    });
    const close = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on('error', close).on('close', close);
    upstream.on('error', close).on('close', close);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    get streamConnections() {
      return streamConnections;
    },
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
