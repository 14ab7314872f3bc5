import { describe, expect, it } from 'vitest';
import { MemoryQueue } from '../../lambdas/adapters/local/memory-queue.js';

describe('MemoryQueue', () => {
  it('delivers again after a handler fails (at least once)', async () => {
    const q = new MemoryQueue({ retryDelayMs: () => 5 });
    let calls = 0;
    q.start(async () => {
      if (++calls < 3) throw new Error('boom');
    });
    await q.wake('s');
    await q.idle();
    expect(calls).toBe(3);
    await q.stop();
  });

  it('never runs two handlers of one session at once, but runs sessions in parallel', async () => {
    const q = new MemoryQueue();
    const active = new Map<string, number>();
    let maxPerSession = 0;
    let maxOverall = 0;
    let total = 0;
    q.start(async (id) => {
      active.set(id, (active.get(id) ?? 0) + 1);
      total++;
      maxPerSession = Math.max(maxPerSession, active.get(id)!);
      maxOverall = Math.max(maxOverall, [...active.values()].reduce((a, b) => a + b, 0));
      await new Promise((r) => setTimeout(r, 10));
      active.set(id, active.get(id)! - 1);
    });
    for (let i = 0; i < 5; i++) {
      await q.wake('a');
      await q.wake('b');
      await new Promise((r) => setTimeout(r, 3));
    }
    await q.idle();
    expect(maxPerSession).toBe(1);
    expect(maxOverall).toBe(2);
    expect(total).toBeGreaterThanOrEqual(2);
    await q.stop();
  });

  it('redelivers a busy session after the delay the handler asked for', async () => {
    const q = new MemoryQueue();
    const seen: number[] = [];
    q.start(async () => {
      seen.push(Date.now());
      if (seen.length === 1) return { retryAfterMs: 30 };
    });
    await q.wake('s');
    await q.idle();
    expect(seen).toHaveLength(2);
    await q.stop();
  });
});
