/**
 * Lambda, as the deploy rehearsal runs it: each function from its bundled asset in cdk.out, in
 * execution environments that are separate Node.js processes (`lambda-host.mjs`), with the
 * template's environment, memory (`--max-old-space-size`) and timeout. An invocation that
 * outlives its timeout is killed as Lambda kills it (the environment is thrown away; the next
 * invocation starts a cold one). An environment runs one invocation at a time; concurrent
 * invocations get more environments, up to the function's reserved concurrency, past which
 * invocations are throttled.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { createWriteStream, type WriteStream } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ModelFunction } from './model.js';

const HERE = dirname(fileURLToPath(import.meta.url));
const HOST = join(HERE, 'lambda-host.mjs');

/** A function of the template (see `model.ts`) and what the rehearsal runs it with. */
export interface RehearsedFunction
  extends Pick<ModelFunction, 'logicalId' | 'name' | 'arn' | 'assetDir' | 'handler' | 'timeoutSeconds' | 'memoryMb' | 'reservedConcurrency' | 'environment'> {
  /** What the rehearsal adds as Lambda would: credentials, region, endpoints, network identity. */
  runtimeEnvironment: Record<string, string>;
  /** Node `--import` modules (the VPC preload for functions in the VPC). */
  preload?: string[];
  /** Where the environments' stdout and stderr go (the function's "log group"). */
  logFile: string;
}

export type InvokeResult =
  | { ok: true; value: unknown; durationMs: number; coldStart: boolean }
  | {
      ok: false;
      /** `function`: the handler threw; `timeout`: killed at its timeout; `init`: the module failed to load;
       * `crash`: the process died; `throttled`: no concurrency left. */
      kind: 'function' | 'timeout' | 'init' | 'crash' | 'throttled';
      error: { errorType: string; errorMessage: string };
      durationMs: number;
      coldStart: boolean;
    };

export interface StreamSink {
  meta(meta: { statusCode?: number; headers?: Record<string, string>; cookies?: string[] }): void;
  chunk(data: Buffer): void;
  end(): void;
}

interface Environment {
  child: ChildProcess;
  ready: Promise<void>;
  busy: boolean;
  dead: boolean;
  invocations: number;
}

/** Counters a rehearsal reports per function. */
export interface FunctionStats {
  invocations: number;
  coldStarts: number;
  errors: number;
  timeouts: number;
  throttles: number;
  maxConcurrent: number;
}

export class LambdaFunctionRuntime {
  readonly stats: FunctionStats = { invocations: 0, coldStarts: 0, errors: 0, timeouts: 0, throttles: 0, maxConcurrent: 0 };
  private readonly idle: Environment[] = [];
  private readonly all = new Set<Environment>();
  private running = 0;
  private readonly log: WriteStream;
  private closed = false;

  constructor(
    readonly fn: RehearsedFunction,
    /** The account's concurrency left to unreserved functions (shared by them). */
    private readonly unreserved: { available: () => boolean; take: () => void; give: () => void },
  ) {
    this.log = createWriteStream(fn.logFile, { flags: 'a' });
  }

  private spawn(): Environment {
    const heapMb = Math.max(64, Math.floor(this.fn.memoryMb * 0.85));
    const execArgv = [`--max-old-space-size=${heapMb}`, ...(this.fn.preload ?? []).flatMap((p) => ['--import', p])];
    const child = fork(HOST, [this.fn.assetDir, this.fn.handler], {
      cwd: this.fn.assetDir,
      execArgv,
      // Lambda gives a function its own environment and nothing of the host's.
      env: {
        PATH: process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin',
        LANG: 'en_US.UTF-8',
        TZ: ':UTC',
        ...this.fn.environment,
        ...this.fn.runtimeEnvironment,
        AWS_LAMBDA_FUNCTION_NAME: this.fn.name,
        AWS_LAMBDA_FUNCTION_VERSION: '$LATEST',
        AWS_LAMBDA_FUNCTION_MEMORY_SIZE: String(this.fn.memoryMb),
        AWS_LAMBDA_LOG_GROUP_NAME: `/aws/lambda/${this.fn.name}`,
        AWS_LAMBDA_LOG_STREAM_NAME: randomUUID(),
        AWS_EXECUTION_ENV: 'AWS_Lambda_nodejs22.x',
        LAMBDA_TASK_ROOT: this.fn.assetDir,
        _HANDLER: this.fn.handler,
        CORRAL_REHEARSAL_FUNCTION_ARN: this.fn.arn,
      },
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
      serialization: 'advanced',
    });
    child.stdout?.pipe(this.log, { end: false });
    child.stderr?.pipe(this.log, { end: false });
    const env: Environment = { child, ready: Promise.resolve(), busy: false, dead: false, invocations: 0 };
    env.ready = new Promise<void>((resolve, reject) => {
      const onMessage = (m: { type?: string; error?: { errorType: string; errorMessage: string } }) => {
        if (m?.type === 'ready') {
          child.off('message', onMessage);
          resolve();
        } else if (m?.type === 'init_error') {
          child.off('message', onMessage);
          reject(Object.assign(new Error(m.error?.errorMessage ?? 'init failed'), { errorType: m.error?.errorType ?? 'Runtime.ImportModuleError' }));
        }
      };
      child.on('message', onMessage);
      child.once('exit', (code, signal) => {
        env.dead = true;
        reject(Object.assign(new Error(`the execution environment exited during init (${signal ?? code})`), { errorType: 'Runtime.ExitError' }));
      });
    });
    env.ready.catch(() => undefined);
    child.once('exit', () => {
      env.dead = true;
      this.all.delete(env);
      const i = this.idle.indexOf(env);
      if (i >= 0) this.idle.splice(i, 1);
    });
    this.all.add(env);
    return env;
  }

  /** How many more invocations may run at once. */
  private mayStart(): boolean {
    if (this.fn.reservedConcurrency !== undefined) return this.running < this.fn.reservedConcurrency;
    return this.unreserved.available();
  }

  invoke(event: unknown): Promise<InvokeResult> {
    return this.run(event);
  }

  /** A response-streaming invocation (`awslambda.streamifyResponse` handlers). */
  invokeStream(event: unknown, sink: StreamSink, signal?: AbortSignal): Promise<InvokeResult> {
    return this.run(event, sink, signal);
  }

  private async run(event: unknown, sink?: StreamSink, signal?: AbortSignal): Promise<InvokeResult> {
    const started = Date.now();
    if (this.closed) throw new Error(`function ${this.fn.name}: the rehearsal is shutting down`);
    if (!this.mayStart()) {
      this.stats.throttles++;
      return {
        ok: false,
        kind: 'throttled',
        error: { errorType: 'TooManyRequestsException', errorMessage: 'Rate Exceeded.' },
        durationMs: 0,
        coldStart: false,
      };
    }
    this.running++;
    if (this.fn.reservedConcurrency === undefined) this.unreserved.take();
    this.stats.invocations++;
    this.stats.maxConcurrent = Math.max(this.stats.maxConcurrent, this.running);
    let env = this.idle.pop();
    const coldStart = !env;
    if (!env) {
      this.stats.coldStarts++;
      env = this.spawn();
    }
    env.busy = true;
    const done = (r: InvokeResult): InvokeResult => {
      this.running--;
      if (this.fn.reservedConcurrency === undefined) this.unreserved.give();
      if (!r.ok) {
        if (r.kind === 'timeout') this.stats.timeouts++;
        else this.stats.errors++;
      }
      return r;
    };
    // The timeout covers init and the invocation, as Lambda's does for a cold start.
    const deadline = started + this.fn.timeoutSeconds * 1000;
    try {
      await Promise.race([
        env.ready,
        new Promise((_, reject) => setTimeout(() => reject(Object.assign(new Error('init timed out'), { errorType: 'Sandbox.Timedout' })), deadline - Date.now()).unref()),
      ]);
    } catch (err) {
      this.kill(env);
      const e = err as Error & { errorType?: string };
      return done({ ok: false, kind: e.errorType === 'Sandbox.Timedout' ? 'timeout' : 'init', error: { errorType: e.errorType ?? 'Runtime.Unknown', errorMessage: e.message }, durationMs: Date.now() - started, coldStart });
    }
    const environment = env;
    const id = randomUUID();
    const result = await new Promise<InvokeResult>((resolve) => {
      let settled = false;
      const finish = (r: InvokeResult) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        environment.child.off('message', onMessage);
        environment.child.off('exit', onExit);
        resolve(r);
      };
      const timer = setTimeout(() => {
        this.log.write(`${new Date().toISOString()} ${id} Task timed out after ${this.fn.timeoutSeconds.toFixed(2)} seconds\n`);
        this.kill(environment);
        sink?.end();
        finish({
          ok: false,
          kind: 'timeout',
          error: { errorType: 'Sandbox.Timedout', errorMessage: `Task timed out after ${this.fn.timeoutSeconds.toFixed(2)} seconds` },
          durationMs: Date.now() - started,
          coldStart,
        });
      }, Math.max(0, deadline - Date.now()));
      const onMessage = (m: { type: string; id: string; ok?: boolean; value?: unknown; error?: { errorType: string; errorMessage: string }; meta?: never; data?: string }) => {
        if (m.id !== id) return;
        if (m.type === 'stream_meta') sink?.meta(m.meta ?? {});
        else if (m.type === 'stream_chunk') sink?.chunk(Buffer.from(m.data ?? '', 'base64'));
        else if (m.type === 'stream_end') sink?.end();
        else if (m.type === 'result') {
          if (m.ok) finish({ ok: true, value: m.value, durationMs: Date.now() - started, coldStart });
          else finish({ ok: false, kind: 'function', error: m.error ?? { errorType: 'Error', errorMessage: 'unknown' }, durationMs: Date.now() - started, coldStart });
        }
      };
      const onExit = (code: number | null, sig: string | null) => {
        sink?.end();
        finish({
          ok: false,
          kind: 'crash',
          error: { errorType: 'Runtime.ExitError', errorMessage: `RequestId: ${id} Error: Runtime exited with error: ${sig ? `signal: ${sig}` : `exit status ${code}`}` },
          durationMs: Date.now() - started,
          coldStart,
        });
      };
      // A client that goes away does not stop the invocation (Lambda runs it to its end); the
      // gateway only stops sending its bytes anywhere.
      void signal;
      environment.child.on('message', onMessage);
      environment.child.once('exit', onExit);
      environment.invocations++;
      environment.child.send({
        type: 'invoke',
        id,
        event,
        deadline,
        requestId: id,
        traceId: `Root=1-${Math.floor(Date.now() / 1000).toString(16)}-${randomUUID().replace(/-/g, '').slice(0, 24)};Parent=${randomUUID().replace(/-/g, '').slice(0, 16)};Sampled=0`,
      });
    });
    environment.busy = false;
    if (!environment.dead && !this.closed) this.idle.push(environment);
    return done(result);
  }

  private kill(env: Environment) {
    env.dead = true;
    env.child.kill('SIGKILL');
  }

  /** Throws every environment away (as a deployment of new code does). */
  async recycle(): Promise<void> {
    for (const env of [...this.idle]) this.kill(env);
    this.idle.length = 0;
  }

  async close(): Promise<void> {
    this.closed = true;
    const exits = [...this.all].map((env) => new Promise<void>((r) => (env.child.exitCode !== null || env.child.signalCode ? r() : env.child.once('exit', () => r()))));
    for (const env of this.all) this.kill(env);
    await Promise.all(exits);
    await new Promise<void>((r) => this.log.end(() => r()));
  }
}
