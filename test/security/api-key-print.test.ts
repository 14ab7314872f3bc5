import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';

/**
 * Attack: `npm start` printed the API key on every start, so every terminal log and scrollback
 * of every start held it. Now it is printed once, by the start that generates it; later starts
 * say where it is kept.
 */
const MAIN = join(import.meta.dirname, '../../local-runtime/main.ts');
const TSX = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;

/** Run `npm start`'s entry until it has said where it listens, then stop it; its stdout. */
function start(dataDir: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', TSX, MAIN], {
      env: { PATH: process.env.PATH, HOME: process.env.HOME, PORT: '0', CORRAL_DATA_DIR: dataDir, AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (c) => {
      out += c;
      if (/model:/.test(out)) child.kill('SIGTERM');
    });
    child.stderr.on('data', (c) => (err += c));
    child.on('exit', () => (/listening/.test(out) ? resolve(out) : reject(new Error(`did not start: ${out} ${err}`))));
  });
}

describe('the API key of npm start', () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'corral-key-'));
  afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

  it('is printed on the start that generates it, and never again', async () => {
    const first = await start(dataDir);
    const key = readFileSync(join(dataDir, 'api-key'), 'utf8').trim();
    expect(key).toMatch(/^sk-corral-/);
    expect(first).toContain(key);

    const second = await start(dataDir);
    expect(second).not.toContain(key);
    expect(second).toContain(`API key:  in ${dataDir}/api-key`);
  }, 120_000);
});
