import { beforeAll, describe, expect, it } from 'vitest';
import { synthesizedTemplate } from '../rehearsal/synth.js';
import { renderText, runCapacity } from '../../scripts/capacity.js';
import { DEFAULT_WORKLOAD } from '../../scripts/capacity/model.js';

/**
 * `npm run capacity` on the real synthesized template (offline, the rehearsal tests' cached
 * synthesis): what it reports of each function and of the stage is what the template says.
 */
describe('npm run capacity on the synthesized template', () => {
  let template: Awaited<ReturnType<typeof synthesizedTemplate>>;
  beforeAll(async () => {
    template = await synthesizedTemplate(); // a synthesis: tens of seconds when not cached
  });

  it('reports each function\'s memory, timeout and reserved concurrency, and the stage throttle, as the template has them', () => {
    const run = runCapacity(template, { ...DEFAULT_WORKLOAD, sessions: 1000 });
    const fns = Object.entries(template.Resources).filter(([, r]) => r.Type === 'AWS::Lambda::Function');
    for (const role of ['harness', 'api', 'stream'] as const) {
      const f = run.shape.functions[role];
      expect(f, role).toBeDefined();
      const p = fns.find(([id]) => id === f!.logicalId)![1].Properties as Record<string, unknown>;
      expect(f!.memoryMiB).toBe(p.MemorySize);
      expect(f!.timeoutSeconds).toBe(p.Timeout);
      expect(f!.reservedConcurrency).toBe(p.ReservedConcurrentExecutions);
    }
    const stage = Object.values(template.Resources).find((r) => r.Type === 'AWS::ApiGateway::Stage')!;
    const all = (stage.Properties!.MethodSettings as Array<Record<string, unknown>>).find((m) => m.ResourcePath === '/*')!;
    expect(run.shape.stage.rateLimit).toBe(all.ThrottlingRateLimit);
    const task = Object.values(template.Resources).find((r) => r.Type === 'AWS::ECS::TaskDefinition')!.Properties!;
    expect(run.shape.sandboxTask.vcpu * 1024).toBe(Number(task.Cpu));
    expect(run.shape.sandboxTask.memoryGb * 1024).toBe(Number(task.Memory));

    const text = renderText(run);
    const h = run.shape.functions.harness!;
    expect(text).toContain(`harness ${h.memoryMiB} MB / ${h.timeoutSeconds} s`);
    expect(text).toContain('First to break');
    expect(run.report.proposed).toEqual([]);
  });
});
