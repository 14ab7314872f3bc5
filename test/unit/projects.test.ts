import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { createVitest } from 'vitest/node';

/**
 * The four vitest projects of vitest.config.ts (unit, integration, faults, infra) are chosen by globs
 * over a tree that others keep adding to. vitest itself resolves the globs here (not a copy of
 * its matching), and every `*.test.ts` under test/ must land in exactly one project: a file in
 * none would never run, a file in two would run twice.
 */
const root = fileURLToPath(new URL('../../', import.meta.url));

function testFilesOnDisk(): string[] {
  return (readdirSync(join(root, 'test'), { recursive: true }) as string[])
    .filter((f) => f.endsWith('.test.ts'))
    .map((f) => join('test', f))
    .sort();
}

let projectsOf: Map<string, string[]>;

beforeAll(async () => {
  const vitest = await createVitest('test', { root, watch: false, config: join(root, 'vitest.config.ts') }, {}, {});
  try {
    projectsOf = new Map();
    for (const spec of await vitest.globTestSpecifications()) {
      const file = relative(root, spec.moduleId);
      projectsOf.set(file, [...(projectsOf.get(file) ?? []), spec.project.name].sort());
    }
  } finally {
    await vitest.close();
  }
});

describe('the vitest projects', () => {
  it('are unit, integration, faults and infra', () => {
    expect(new Set([...projectsOf.values()].flat())).toEqual(new Set(['unit', 'integration', 'faults', 'infra']));
  });

  it('hold every test file under test/ exactly once', () => {
    const files = testFilesOnDisk();
    expect(files.length).toBeGreaterThan(50);
    const wrong = files.map((f) => [f, projectsOf.get(f) ?? []] as const).filter(([, p]) => p.length !== 1);
    expect(wrong, 'files in no project or in more than one').toEqual([]);
    // and vitest finds nothing that is not a test file on disk
    expect([...projectsOf.keys()].sort()).toEqual(files);
  });

  it('put the fault suite in faults, and this file in unit', () => {
    for (const f of testFilesOnDisk().filter((f) => f.startsWith('test/faults/'))) expect(projectsOf.get(f), f).toEqual(['faults']);
    expect(projectsOf.get('test/unit/projects.test.ts')).toEqual(['unit']);
  });

  // A static guard on the rule that makes `unit` fast and runnable anywhere: a unit file starts
  // no server, database, sandbox or process. It reads the source for the helpers that do.
  it('keep unit files free of servers, dynalite, sandboxes and child processes', () => {
    const starts = /startTestRuntime|startDynalite|startDynamoDbLocal|dynalite|node:child_process|createServer|\.listen\(|ProcessSandboxProvider|startFake|startRig|startAgent|playwright/;
    const unit = [...projectsOf].filter(([, p]) => p.includes('unit')).map(([f]) => f);
    const offenders = unit.filter((f) => f !== 'test/unit/projects.test.ts' && starts.test(readFileSync(join(root, f), 'utf8')));
    expect(offenders).toEqual([]);
  });

  // The infra project shares its workers' module cache between files (isolate: false), so a file
  // there may leave nothing behind: no server or process, no environment change, no spy that
  // outlives it. Its files synthesize the stack and read templates, nothing more.
  it('keep infra files to synthesis: nothing started, no environment changed, every spy restored', () => {
    const leaves = /startTestRuntime|startDynalite|startDynamoDbLocal|dynalite|node:child_process|createServer|\.listen\(|startFake|playwright|process\.env\b|process\.chdir|vi\.mock\(|vi\.stubEnv|vi\.stubGlobal|useFakeTimers|globalThis/;
    const infra = [...projectsOf].filter(([, p]) => p.includes('infra')).map(([f]) => f);
    expect(infra.length).toBeGreaterThan(5);
    expect(infra.filter((f) => leaves.test(readFileSync(join(root, f), 'utf8')))).toEqual([]);
    // A spy is restored where it is made (mockRestore in a finally) or after each case.
    const unrestored = infra.filter((f) => {
      const text = readFileSync(join(root, f), 'utf8');
      return /vi\.spyOn\(/.test(text) && !/mockRestore\(\)|vi\.restoreAllMocks\(\)/.test(text);
    });
    expect(unrestored).toEqual([]);
  });
});
