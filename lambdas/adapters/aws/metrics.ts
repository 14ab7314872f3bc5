import { MetricUnit, type Metrics } from '@aws-lambda-powertools/metrics';
import type { HarnessObserver } from '../../core/harness/harness.js';

/** Metric names, shared by the emitter and the dashboard (infra/lib/constructs/observability.ts). */
export const HARNESS_METRICS = {
  timeToFirstToken: 'TimeToFirstToken',
  modelLatency: 'ModelLatency',
  harnessOverhead: 'HarnessOverhead',
  sandboxProvisioningTime: 'SandboxProvisioningTime',
  toolLatency: 'ToolLatency',
  stepDuration: 'StepDuration',
  errors: 'Errors',
} as const;

// The variable naming them and its parser belong to the configuration contract.
export { parseSessionDimensions, type SessionDimension } from '../../core/config.js';

interface PendingStep {
  modelMs: number;
  toolMs: number;
}

/**
 * The harness's timings as CloudWatch metrics in Embedded Metric Format, through Powertools.
 *
 * Every metric is published under the `service` dimension alone (what the dashboard and alarms
 * read). When a wake names session dimensions (`Agent`, `Environment`), the same values are also
 * published under `service` + those, as a second dimension set, so turning them on never breaks
 * the service-level view.
 *
 * `HarnessOverhead` is a step's duration minus the time its model call and tool calls took: what
 * the harness itself costs (reading the log, building the view, appending).
 *
 * Metrics are flushed after every step, so a wake that runs for minutes still reports as it goes.
 * One `HarnessMetrics` serves one wake at a time (the harness-step handler runs the records of a
 * batch one after another).
 */
export class HarnessMetrics {
  private readonly pending = new Map<string, PendingStep>();
  private dimensions: Record<string, string> = {};

  constructor(readonly metrics: Metrics) {}

  /** Dimensions for what the current wake emits until `endWake`. */
  beginWake(dimensions: Record<string, string> = {}): void {
    this.dimensions = Object.fromEntries(Object.entries(dimensions).filter(([, v]) => v.length > 0));
  }

  endWake(): void {
    this.flush();
    this.dimensions = {};
    this.pending.clear();
  }

  /** Count an error the harness did not report through the observer (a wake that threw, a bad message). */
  error(): void {
    this.metrics.addMetric(HARNESS_METRICS.errors, MetricUnit.Count, 1);
  }

  flush(): void {
    if (!this.metrics.hasStoredMetrics()) return;
    if (Object.keys(this.dimensions).length) {
      // An empty set first: Powertools then keeps the service-only dimension set next to this one.
      this.metrics.addDimensions({});
      this.metrics.addDimensions(this.dimensions);
    }
    this.metrics.publishStoredMetrics();
  }

  private step(sessionId: string): PendingStep {
    let p = this.pending.get(sessionId);
    if (!p) {
      p = { modelMs: 0, toolMs: 0 };
      this.pending.set(sessionId, p);
    }
    return p;
  }

  readonly observer: HarnessObserver = {
    modelCall: (m) => {
      const { metrics } = this;
      if (m.timeToFirstTokenMs !== null) metrics.addMetric(HARNESS_METRICS.timeToFirstToken, MetricUnit.Milliseconds, m.timeToFirstTokenMs);
      metrics.addMetric(HARNESS_METRICS.modelLatency, MetricUnit.Milliseconds, m.durationMs);
      if (!m.ok) this.error();
      this.step(m.sessionId).modelMs += m.durationMs;
    },
    toolCall: (m) => {
      const { metrics } = this;
      if (m.provisionMs > 0) metrics.addMetric(HARNESS_METRICS.sandboxProvisioningTime, MetricUnit.Milliseconds, m.provisionMs);
      metrics.addMetric(HARNESS_METRICS.toolLatency, MetricUnit.Milliseconds, Math.max(0, m.durationMs - m.provisionMs));
      this.step(m.sessionId).toolMs += m.durationMs;
    },
    step: (m) => {
      const { metrics } = this;
      const p = this.step(m.sessionId);
      this.pending.delete(m.sessionId);
      metrics.addMetric(HARNESS_METRICS.stepDuration, MetricUnit.Milliseconds, m.durationMs);
      metrics.addMetric(HARNESS_METRICS.harnessOverhead, MetricUnit.Milliseconds, Math.max(0, m.durationMs - p.modelMs - p.toolMs));
      this.flush();
    },
  };
}
