import { Metrics } from '@aws-lambda-powertools/metrics';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { HarnessMetrics, parseSessionDimensions } from '../../lambdas/adapters/aws/metrics.js';

interface Emf {
  _aws: { CloudWatchMetrics: Array<{ Namespace: string; Dimensions: string[][]; Metrics: Array<{ Name: string; Unit: string }> }> };
  [k: string]: unknown;
}

describe('HarnessMetrics: the harness observer as CloudWatch EMF', () => {
  let emitted: Emf[];
  let metrics: HarnessMetrics;
  beforeEach(() => {
    emitted = [];
    vi.spyOn(process.stdout, 'write').mockImplementation(((chunk: unknown) => {
      for (const line of String(chunk).split('\n')) if (line.includes('"_aws"')) emitted.push(JSON.parse(line));
      return true;
    }) as typeof process.stdout.write);
    metrics = new HarnessMetrics(new Metrics({ namespace: 'Corral', serviceName: 'corral-harness' }));
  });
  afterEach(() => vi.restoreAllMocks());

  it('reports each timing and derives the harness overhead of a step', () => {
    metrics.beginWake();
    const o = metrics.observer;
    o.modelCall!({ sessionId: 's', timeToFirstTokenMs: 180, durationMs: 900, ok: true });
    o.step!({ sessionId: 's', action: 'call_model', durationMs: 1000 });
    o.toolCall!({ sessionId: 's', tool: 'bash', sandbox: 'default', durationMs: 5000, provisionMs: 3000, isError: false });
    o.step!({ sessionId: 's', action: 'run_tool', durationMs: 5040 });
    metrics.endWake();

    expect(emitted).toHaveLength(2); // flushed after each step
    const [first, second] = emitted;
    expect(first._aws.CloudWatchMetrics[0].Namespace).toBe('Corral');
    expect(first._aws.CloudWatchMetrics[0].Dimensions).toEqual([['service']]);
    expect(first).toMatchObject({ service: 'corral-harness', TimeToFirstToken: 180, ModelLatency: 900, StepDuration: 1000, HarnessOverhead: 100 });
    expect(second).toMatchObject({ SandboxProvisioningTime: 3000, ToolLatency: 2000, StepDuration: 5040, HarnessOverhead: 40 });
    expect(first._aws.CloudWatchMetrics[0].Metrics.find((m) => m.Name === 'TimeToFirstToken')?.Unit).toBe('Milliseconds');
  });

  it('counts a failed model call as an error and has no time to first token for it', () => {
    metrics.beginWake();
    metrics.observer.modelCall!({ sessionId: 's', timeToFirstTokenMs: null, durationMs: 40, ok: false });
    metrics.endWake();
    expect(emitted).toHaveLength(1);
    expect(emitted[0]).toMatchObject({ Errors: 1, ModelLatency: 40 });
    expect(emitted[0]).not.toHaveProperty('TimeToFirstToken');
  });

  it('adds session dimensions as a second dimension set, keeping the service-only one', () => {
    metrics.beginWake({ Agent: 'reviewer' });
    metrics.observer.modelCall!({ sessionId: 's', timeToFirstTokenMs: 10, durationMs: 20, ok: true });
    metrics.endWake();
    expect(emitted[0]._aws.CloudWatchMetrics[0].Dimensions).toEqual([['service'], ['service', 'Agent']]);
    expect(emitted[0]).toMatchObject({ Agent: 'reviewer' });
  });

  it('emits nothing for a wake that did nothing', () => {
    metrics.beginWake();
    metrics.endWake();
    expect(emitted).toEqual([]);
  });

  it('parses the opt-in session dimensions', () => {
    expect(parseSessionDimensions(undefined)).toEqual([]);
    expect(parseSessionDimensions('agent, Environment')).toEqual(['agent', 'environment']);
    expect(() => parseSessionDimensions('agent,session')).toThrow(/unknown dimension "session"/);
  });
});
