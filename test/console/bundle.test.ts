import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import type * as Esbuild from 'esbuild';
import { afterAll, describe, expect, it } from 'vitest';
import { bundleConsoleScript, consoleScriptDefine } from '../../lambdas/api/console/bundle.js';
import type { ConsolePage } from '../../lambdas/api/console/page.js';

/**
 * The console's script is TypeScript bundled by esbuild: on first use under tsx, and at synthesis
 * for the Lambda, whose bundle carries it as a define (infra/lib/constructs/api.ts). The browser
 * behaviour itself is console.test.ts's.
 */
const esbuild = createRequire(import.meta.url)('esbuild') as typeof Esbuild;
const PAGE = new URL('../../lambdas/api/console/page.ts', import.meta.url).pathname;
const dir = mkdtempSync(join(tmpdir(), 'corral-console-bundle-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const inlineScript = (html: string) => /<script type="module">([\s\S]*)<\/script>/.exec(html)![1]!;
const sha256 = (s: string) => createHash('sha256').update(s, 'utf8').digest('base64');

describe('the console script bundle', () => {
  it('is plain JavaScript for the browser: no imports, no types, nothing that closes the script element', () => {
    const js = bundleConsoleScript();
    expect(js).not.toMatch(/^\s*import\s/m);
    expect(js).not.toMatch(/<\/script/i);
    expect(js).toContain('corral.apiKey');
    // It parses as JavaScript (a type annotation left in would not).
    expect(() => esbuild.transformSync(js, { loader: 'js', format: 'esm' })).not.toThrow();
  });

  it('travels in the Lambda bundle as a define: the bundle serves it without esbuild, the CSP hash matching', async () => {
    const out = join(dir, 'page.mjs');
    // As the API function is bundled (CorralFunction): ESM for Node, the console's define.
    const result = esbuild.buildSync({
      entryPoints: [PAGE],
      bundle: true,
      platform: 'node',
      format: 'esm',
      target: 'node22',
      outfile: out,
      define: consoleScriptDefine(),
      metafile: true,
      logLevel: 'silent',
    });
    expect(Object.keys(result.metafile.inputs).filter((f) => f.includes('node_modules/esbuild'))).toEqual([]);
    // Imported from the temporary directory, where no esbuild can be found: only the define
    // can give it the script.
    const { consolePage } = (await import(pathToFileURL(out).href)) as { consolePage: () => ConsolePage };
    const page = consolePage();
    const script = inlineScript(page.html);
    expect(script).toBe(bundleConsoleScript());
    expect(page.headers['Content-Security-Policy']).toContain(`script-src 'sha256-${sha256(script)}'`);
  });

  it('connects to its own origin only, plus the https (or loopback) origins of the OIDC issuers it is given', async () => {
    const { consolePage } = await import('../../lambdas/api/console/page.js');
    const connect = (p: ConsolePage) => /connect-src ([^;]*)/.exec(p.headers['Content-Security-Policy']!)![1];
    expect(connect(consolePage())).toBe("'self'");
    expect(connect(consolePage(['https://id.example.com/realms/corral', 'https://id.example.com/other', 'http://idp.example.com', 'not a url', 'http://127.0.0.1:8080/realm'])))
      .toBe("'self' http://127.0.0.1:8080 https://id.example.com");
  });
});
