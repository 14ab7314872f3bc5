/** The local runtime as the benchmark runs it, and a client that drives sessions through the API. */
import Anthropic from '@anthropic-ai/sdk';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ProcessSandboxProvider } from '../../lambdas/adapters/local/process-sandbox.js';
import { SANDBOX_PRIORITY_ENV, parseSandboxPriority } from '../../lambdas/adapters/local/sandbox-priority.js';
import type { HarnessOptions } from '../../lambdas/core/harness/harness.js';
import { AnthropicModel } from '../../lambdas/core/harness/model.js';
import type { SandboxProvider } from '../../lambdas/core/sandbox/types.js';
import { startLocalRuntime, type LocalRuntime } from '../../local-runtime/runtime.js';
import { withEagerSandbox } from './eager-sandbox.js';
import { Recorder, TimedProvider, TimingModel } from './instruments.js';
import { nowMs } from './stats.js';

export interface BenchRuntime {
  runtime: LocalRuntime;
  client: Anthropic;
  recorder: Recorder;
  model: TimingModel;
  provider: TimedProvider;
  /** `bwrap` or `none`: how local sandboxes were isolated. */
  isolation: 'bwrap' | 'none';
  close(): Promise<void>;
}

export async function startBenchRuntime(opts: {
  modelUrl: string;
  harness?: HarnessOptions;
  /** The coupled design: provision the default sandbox when a turn starts (eager-sandbox.ts). */
  eagerSandbox?: boolean;
  /** Wrap the local provider (the simulated Fargate delay). */
  wrapProvider?: (p: ProcessSandboxProvider) => SandboxProvider & { close?: () => Promise<void> };
  /** Sessions the worker runs at once (the in-process queue's concurrency). */
  concurrency?: number;
  /** Keep the log in memory (default) or on disk in the data directory, as `npm start` does. */
  inMemory?: boolean;
}): Promise<BenchRuntime> {
  const dataDir = mkdtempSync(join(tmpdir(), 'corral-bench-'));
  // The runtime builds its local provider (with the credential proxy's git channels, through
  // which repositories are cloned inside the sandbox); the benchmark times it, or delays it.
  let local: ProcessSandboxProvider | undefined;
  let provider: TimedProvider | undefined;
  const model = new TimingModel(new AnthropicModel({ apiKey: 'bench-model-key', baseURL: opts.modelUrl }));
  const recorder = new Recorder();
  const runtime = await startLocalRuntime({
    port: 0,
    dataDir,
    inMemory: opts.inMemory ?? true,
    model,
    wrapSandboxProvider: (p) => {
      local = p;
      provider = new TimedProvider(opts.wrapProvider ? opts.wrapProvider(p) : p);
      return provider;
    },
    // The sandboxes' priority as `npm start` reads it, so that a run can compare settings.
    sandboxPriority: parseSandboxPriority(process.env[SANDBOX_PRIORITY_ENV]),
    // The benchmark's git server is on loopback, which sessions may not name by default.
    repositoryUrlAllow: ['http://127.0.0.1'],
    concurrency: opts.concurrency ?? 64,
    rateLimits: { create: 0, write: 0, read: 0 },
    // Idle sandboxes are the benchmark's to release (sessions are deleted when done).
    sandboxIdleMs: 3_600_000,
    harness: { retryDelayMs: () => 50, ...opts.harness, observer: recorder.observer },
    ...(opts.eagerSandbox ? { wrapHarnessDeps: withEagerSandbox } : {}),
  });
  const client = new Anthropic({ baseURL: runtime.url, apiKey: runtime.apiKey, maxRetries: 2, timeout: 600_000 });
  if (!local || !provider) throw new Error('the local runtime did not build its sandbox provider');
  const isolation = await local.isolationMode();
  return {
    runtime,
    client,
    recorder,
    model,
    provider: provider as TimedProvider,
    isolation,
    async close() {
      await runtime.close();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

export interface SeenEvent {
  type: string;
  /** When the client parsed it off the stream (epoch ms). */
  at: number;
  event: Record<string, unknown>;
}

/** Events the model produced (the first of a turn is its first visible token). */
export const MODEL_EVENT_TYPES = new Set(['agent.thinking', 'agent.message', 'agent.tool_use', 'agent.custom_tool_use', 'agent.mcp_tool_use']);

/**
 * A session's event stream, read from the moment it is opened (the stream starts at the end of
 * the log), every event stamped with the time it was parsed.
 */
export class SessionStream {
  readonly seen: SeenEvent[] = [];
  private waiters: Array<() => void> = [];
  private ended = false;
  private error: unknown = null;

  private constructor(private readonly stream: { controller: AbortController } & AsyncIterable<unknown>) {
    void this.pump();
  }

  static async open(client: Anthropic, sessionId: string): Promise<SessionStream> {
    const stream = await client.beta.sessions.events.stream(sessionId);
    return new SessionStream(stream as unknown as { controller: AbortController } & AsyncIterable<unknown>);
  }

  private async pump() {
    try {
      for await (const e of this.stream) {
        const event = e as Record<string, unknown>;
        this.seen.push({ type: String(event.type), at: nowMs(), event });
        this.notify();
      }
    } catch (err) {
      if (!this.stream.controller.signal.aborted) this.error = err;
    } finally {
      this.ended = true;
      this.notify();
    }
  }

  private notify() {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  /** Waits for the first event at index >= `from` that matches; returns its index. */
  async waitFor(from: number, match: (e: SeenEvent) => boolean, timeoutMs = 600_000): Promise<number> {
    const deadline = Date.now() + timeoutMs;
    for (let i = from; ; ) {
      for (; i < this.seen.length; i++) if (match(this.seen[i])) return i;
      if (this.error) throw this.error;
      if (this.ended) throw new Error('the event stream ended');
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for an event (last: ${this.seen.at(-1)?.type ?? 'none'})`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  close() {
    this.stream.controller.abort();
  }
}

export interface TurnTiming {
  /** Just before `events.send` (epoch ms). */
  sentAt: number;
  /** When the API had answered the send. */
  acceptedAt: number;
  /** The user.message's `processed_at` (the API's clock; millisecond resolution). */
  processedAt: number;
  /** The first model-produced event of the turn, as the client saw it. */
  firstModelEventAt: number;
  firstModelEventType: string;
  /** The `session.status_idle` that ended the turn. */
  idleAt: number;
  stopReason: string;
  /** Every event of the turn, from the user.message on. */
  events: SeenEvent[];
}

/** One turn: send a user message, wait until the session is idle again. */
export async function runTurn(client: Anthropic, sessionId: string, stream: SessionStream, text: string): Promise<TurnTiming> {
  const from = stream.seen.length;
  const sentAt = nowMs();
  const sent = await client.beta.sessions.events.send(sessionId, { events: [{ type: 'user.message', content: [{ type: 'text', text }] }] });
  const acceptedAt = nowMs();
  const userEventId = (sent as { data?: Array<{ id?: string }> }).data?.[0]?.id;
  const userIdx = await stream.waitFor(from, (e) => e.type === 'user.message' && (!userEventId || e.event.id === userEventId));
  const firstIdx = await stream.waitFor(userIdx, (e) => MODEL_EVENT_TYPES.has(e.type));
  const idleIdx = await stream.waitFor(firstIdx, (e) => e.type === 'session.status_idle');
  const idle = stream.seen[idleIdx];
  return {
    sentAt,
    acceptedAt,
    processedAt: Date.parse(String(stream.seen[userIdx].event.processed_at)),
    firstModelEventAt: stream.seen[firstIdx].at,
    firstModelEventType: stream.seen[firstIdx].type,
    idleAt: idle.at,
    stopReason: String((idle.event.stop_reason as { type?: string } | undefined)?.type ?? 'unknown'),
    events: stream.seen.slice(userIdx, idleIdx + 1),
  };
}

/** Runs `jobs` with at most `limit` at a time; results in order. */
export async function pool<T>(limit: number, jobs: Array<() => Promise<T>>): Promise<T[]> {
  const out = new Array<T>(jobs.length);
  let next = 0;
  const workers = Array.from({ length: Math.max(1, Math.min(limit, jobs.length)) }, async () => {
    for (;;) {
      const i = next++;
      if (i >= jobs.length) return;
      out[i] = await jobs[i]();
    }
  });
  await Promise.all(workers);
  return out;
}
