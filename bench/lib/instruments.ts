/**
 * What the benchmark measures with: the harness's own metrics (the same `HarnessMetrics` class
 * that emits Corral's CloudWatch metrics, over a recording stand-in for Powertools' `Metrics`), a
 * model client that timestamps each call, and a provider that times each provisioning.
 */
import type { Metrics } from '@aws-lambda-powertools/metrics';
import { HARNESS_METRICS, HarnessMetrics } from '../../lambdas/adapters/aws/metrics.js';
import type { HarnessObserver } from '../../lambdas/core/harness/harness.js';
import type { ModelClient, ModelRequest, ModelResponse } from '../../lambdas/core/harness/model.js';
import type { ProvisionRequest, ProvisionedSandbox, SandboxOwner, SandboxProvider } from '../../lambdas/core/sandbox/types.js';
import { nowMs } from './stats.js';

export type MetricName = (typeof HARNESS_METRICS)[keyof typeof HARNESS_METRICS];

export interface StepRecord {
  sessionId: string;
  action: string;
  durationMs: number;
  overheadMs: number;
  /** When the step ended (epoch ms). */
  at: number;
}

/** Records the harness's metrics by their CloudWatch names, and every step. */
export class Recorder {
  readonly metrics = new Map<string, number[]>();
  readonly steps: StepRecord[] = [];
  /** While false, nothing is recorded (warm-up). */
  recording = true;
  readonly observer: HarnessObserver;

  constructor() {
    let lastOverhead = NaN;
    const stand_in = {
      addMetric: (name: string, _unit: unknown, value: number) => {
        if (name === HARNESS_METRICS.harnessOverhead) lastOverhead = value;
        if (!this.recording) return;
        let list = this.metrics.get(name);
        if (!list) this.metrics.set(name, (list = []));
        list.push(value);
      },
      hasStoredMetrics: () => false,
      addDimensions: () => undefined,
      publishStoredMetrics: () => undefined,
    };
    const hm = new HarnessMetrics(stand_in as unknown as Metrics);
    this.observer = {
      modelCall: (m) => hm.observer.modelCall?.(m),
      toolCall: (m) => hm.observer.toolCall?.(m),
      step: (m) => {
        lastOverhead = NaN;
        hm.observer.step?.(m);
        if (this.recording) this.steps.push({ sessionId: m.sessionId, action: m.action, durationMs: m.durationMs, overheadMs: lastOverhead, at: nowMs() });
      },
    };
  }

  /**
   * Waits (at most `timeoutMs`) until `count` steps are recorded: a turn is over for the client
   * when its idle is readable, which the step appends before it ends (and is observed), so the
   * last turns' steps may still be finishing when the client has seen every turn.
   */
  async settled(count: number, timeoutMs = 5_000): Promise<void> {
    const until = Date.now() + timeoutMs;
    while (this.steps.length < count && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
  }

  values(name: MetricName): number[] {
    return this.metrics.get(name) ?? [];
  }

  reset() {
    this.metrics.clear();
    this.steps.length = 0;
  }
}

export interface ModelCallRecord {
  /** The `[bench:<tag>]` found last in the request (the turn it belongs to), if any. */
  tag: string | null;
  calledAt: number;
  returnedAt: number;
  ok: boolean;
}

/** Wraps a model client: timestamps every call, and counts calls in flight. */
export class TimingModel implements ModelClient {
  readonly calls: ModelCallRecord[] = [];
  inFlight = 0;
  peakInFlight = 0;

  constructor(private readonly inner: ModelClient) {}

  async complete(request: ModelRequest, opts?: Parameters<ModelClient['complete']>[1]): Promise<ModelResponse> {
    const tags = [...JSON.stringify(request.messages).matchAll(/\[bench:([\w.-]+)\]/g)];
    const tag = tags.length ? tags[tags.length - 1][1] : null;
    const calledAt = nowMs();
    this.inFlight++;
    this.peakInFlight = Math.max(this.peakInFlight, this.inFlight);
    try {
      const out = await this.inner.complete(request, opts);
      this.calls.push({ tag, calledAt, returnedAt: nowMs(), ok: true });
      return out;
    } catch (err) {
      this.calls.push({ tag, calledAt, returnedAt: nowMs(), ok: false });
      throw err;
    } finally {
      this.inFlight--;
    }
  }

  resetPeak() {
    this.peakInFlight = this.inFlight;
  }
}

/** Times every provisioning (including any simulated wait of the provider it wraps). */
export class TimedProvider implements SandboxProvider {
  readonly provisions: Array<{ sessionId: string; ms: number; ok: boolean }> = [];

  constructor(private readonly inner: SandboxProvider & { close?: () => Promise<void> }) {}

  get recipeSupport() {
    return this.inner.recipeSupport;
  }

  async provision(req: ProvisionRequest): Promise<ProvisionedSandbox> {
    const t0 = nowMs();
    try {
      const out = await this.inner.provision(req);
      this.provisions.push({ sessionId: req.sessionId, ms: nowMs() - t0, ok: true });
      return out;
    } catch (err) {
      this.provisions.push({ sessionId: req.sessionId, ms: nowMs() - t0, ok: false });
      throw err;
    }
  }

  release(sessionId: string, name: string, ref: string) {
    return this.inner.release(sessionId, name, ref);
  }

  async releaseAll(sessionId: string) {
    await this.inner.releaseAll?.(sessionId);
  }

  async transfer(from: SandboxOwner, to: SandboxOwner, ref: string) {
    await this.inner.transfer?.(from, to, ref);
  }

  async close() {
    await this.inner.close?.();
  }
}
