import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { createVitest } from 'vitest/node';
import { CI_SECONDS, LongestFirst } from '../sequencer.js';

/**
 * The order vitest.config.ts's sequencer gives the suite on a fresh checkout (CI: no durations
 * cached from an earlier run): each project's files together, its longest known files first.
 */
const root = fileURLToPath(new URL('../../', import.meta.url));

let order: Array<{ file: string; project: string }>;

beforeAll(async () => {
  // cache: false, as on CI's fresh machine: vitest knows no durations, only file sizes.
  const vitest = await createVitest('test', { root, watch: false, cache: false, config: join(root, 'vitest.config.ts') }, {}, {});
  try {
    const specs = await vitest.globTestSpecifications();
    const sorted = await new LongestFirst(vitest).sort(specs);
    expect(sorted.length).toBe(specs.length);
    order = sorted.map((s) => ({ file: relative(root, s.moduleId), project: s.project.name }));
  } finally {
    await vitest.close();
  }
});

describe('the test sequencer', () => {
  it('keeps each project\'s files together (the infra project reuses its workers only then)', () => {
    const blocks = order.map((o) => o.project).filter((p, i, all) => i === 0 || all[i - 1] !== p);
    expect(blocks.length).toBe(new Set(blocks).size);
    expect(new Set(blocks)).toEqual(new Set(['unit', 'integration', 'faults', 'infra']));
  });

  it('starts each project with its longest files, longest first, the rest after them', () => {
    for (const project of new Set(order.map((o) => o.project))) {
      const files = order.filter((o) => o.project === project).map((o) => o.file);
      const known = files.filter((f) => CI_SECONDS[f] !== undefined);
      expect(files.slice(0, known.length), project).toEqual(known);
      const seconds = known.map((f) => CI_SECONDS[f]);
      expect(seconds, project).toEqual([...seconds].sort((a, b) => b - a));
    }
    // The deploy rehearsals (minutes each, and small files) lead their projects.
    const first = (project: string) => order.find((o) => o.project === project)?.file;
    expect(first('faults')).toBe('test/rehearsal/rehearsal.test.ts');
    expect(first('integration')).toBe('test/rehearsal/stream-tier.test.ts');
  });
});
