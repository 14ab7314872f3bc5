import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeStyle } from '../../cli/format.js';
import { outcomeRows } from '../../cli/outcomes.js';
import { startTestRuntime, type TestRuntime } from '../helpers/runtime.js';
import { cli } from './helpers.js';

/**
 * Outcomes in the CLI, against the local runtime and the scripted model (its echo grader asks for
 * one revision, then is satisfied): `sessions outcome --wait` prints the work and each evaluation
 * as the stream brings them, `sessions show` the session's `outcome_evaluations`.
 */
describe('corral CLI: outcomes', () => {
  let t: TestRuntime;
  let env: Record<string, string>;
  let cwd: string;
  let agentId: string;
  let envId: string;

  beforeAll(async () => {
    t = await startTestRuntime();
    env = { CORRAL_URL: t.runtime.url, CORRAL_API_KEY: t.runtime.apiKey };
    cwd = mkdtempSync(join(tmpdir(), 'corral-cli-outcomes-'));
    agentId = (await t.client.beta.agents.create({ name: 'cli-outcomes', model: 'claude-sonnet-4-6', tools: [] })).id;
    envId = (await t.client.beta.environments.create({ name: 'cli-outcomes', config: { type: 'cloud' } })).id;
  });
  afterAll(async () => {
    await t?.close();
    if (cwd) rmSync(cwd, { recursive: true, force: true });
  });

  it('defines an outcome and follows it: the work, each evaluation with its verdict and explanation, until idle; show lists it', async () => {
    const session = await t.client.beta.sessions.create({ agent: agentId, environment_id: envId });
    writeFileSync(join(cwd, 'rubric.md'), 'Three lines;\nthe word "salt" appears.\n');
    const r = await cli(['sessions', 'outcome', session.id, 'Write', 'a', 'haiku', 'about', 'the', 'sea.', '--rubric', '@rubric.md', '--max-iterations', '2', '--wait'], { env, cwd });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const outcomeId = /user\.define_outcome\s+outcome (outc_\w+)/.exec(r.stdout)?.[1];
    expect(outcomeId, r.stdout).toBeDefined();
    // One line per event, in the order they happened, each naming what it is.
    const lines = r.stdout.split('\n').filter((l) => /^\s*\d+ /.test(l));
    const shown = lines.map((l) => l.replace(/^\s*\d+\s+\S+\s+/, '').replace(/\s+/g, ' '));
    const outcomeLines = shown.filter((l) => /outcome|agent\.message|status_idle/.test(l));
    expect(outcomeLines).toEqual([
      `user.define_outcome outcome ${outcomeId}, at most 2 evaluations`,
      expect.stringMatching(/^agent\.message You said: Write a haiku about the sea\./),
      `span.outcome_evaluation_start grading ${outcomeId}, evaluation 1`,
      expect.stringMatching(/^span\.outcome_evaluation_end needs_revision evaluation 1 in \S+, \d+ in \/ \d+ out tokens$/),
      expect.stringMatching(/^agent\.message You said: \[Corral: the grader evaluated your work/),
      `span.outcome_evaluation_start grading ${outcomeId}, evaluation 2`,
      expect.stringMatching(/^span\.outcome_evaluation_end satisfied evaluation 2 in /),
      'session.status_idle end_turn',
    ]);
    // The description, the rubric (read from the file) and each explanation under their events.
    expect(r.stdout).toContain('Write a haiku about the sea.');
    expect(r.stdout).toContain('rubric: Three lines; the word "salt" appears.');
    expect(r.stdout).toContain('The echo grader asks for one revision of every outcome');
    expect(r.stdout).toContain('The echo grader accepts the revised work.');

    const show = await cli(['sessions', 'show', session.id], { env });
    expect(show.code).toBe(0);
    expect(show.stdout).toMatch(new RegExp(`outcome\\s+${outcomeId} satisfied after 2 evaluation\\(s\\), \\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d`));
    expect(show.stdout).toContain('Write a haiku about the sea.');
    expect(show.stdout).toContain('grader: The echo grader accepts the revised work.');
    const json = JSON.parse((await cli(['sessions', 'show', session.id, '--json'], { env })).stdout);
    expect(json.outcome_evaluations).toEqual([expect.objectContaining({ outcome_id: outcomeId, result: 'satisfied', iteration: 1 })]);
  }, 60_000);

  it('prints the outcome id with -q; refuses a missing rubric or description (exit 2) and an outcome the API refuses (exit 1)', async () => {
    const session = await t.client.beta.sessions.create({ agent: agentId, environment_id: envId });
    const q = await cli(['sessions', 'outcome', session.id, 'Say hi.', '--rubric', 'It says hi.', '-q'], { env });
    expect(q.code).toBe(0);
    expect(q.stdout).toMatch(/^outc_\w+\n$/);
    expect(await cli(['sessions', 'outcome', session.id, 'Say hi.'], { env })).toMatchObject({ code: 2, stderr: expect.stringContaining('--rubric is required') });
    expect(await cli(['sessions', 'outcome', session.id, '--rubric', 'x'], { env })).toMatchObject({ code: 2, stderr: expect.stringContaining('description') });
    expect(await cli(['sessions', 'outcome', session.id, 'Say hi.', '--rubric', '@missing.md'], { env, cwd })).toMatchObject({ code: 2, stderr: expect.stringContaining('--rubric @missing.md: cannot read the file (ENOENT)') });
    // Only one open outcome at a time: the server's 400 names why.
    const again = await cli(['sessions', 'outcome', session.id, 'Say bye.', '--rubric', 'It says bye.'], { env });
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/outcome/);
  }, 60_000);

  it('shows where each outcome stands: pending, running, being evaluated, or its last verdict', () => {
    const base = { type: 'outcome_evaluation' as const, description: 'Do it.', explanation: null, completed_at: null };
    const rows = outcomeRows(makeStyle(false), [
      { ...base, outcome_id: 'outc_a', iteration: 0, result: 'pending' },
      { ...base, outcome_id: 'outc_b', iteration: 1, result: 'running', explanation: 'Add salt.' },
      { ...base, outcome_id: 'outc_c', iteration: 2, result: 'evaluating' },
      { ...base, outcome_id: 'outc_d', iteration: 0, result: 'interrupted', explanation: 'The user interrupted.', completed_at: '2026-01-02T03:04:05Z' },
    ]);
    expect(rows.filter(([k]) => k === 'outcome').map(([, v]) => v.replace(/, \d{4}-.*$/, ''))).toEqual([
      'outc_a pending after 0 evaluation(s)',
      'outc_b running after 1 evaluation(s)',
      'outc_c evaluating evaluation 3 under way',
      'outc_d interrupted after 1 evaluation(s)',
    ]);
    expect(rows).toContainEqual(['', 'grader: Add salt.']);
    expect(outcomeRows(makeStyle(false), [])).toEqual([]);
  });
});
