import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import type * as Esbuild from 'esbuild';

/**
 * The console's script (script.ts, typed TypeScript for the browser) bundled to the one string
 * the page inlines. The Lambda bundle gets it at synthesis, through the esbuild define
 * `CONSOLE_SCRIPT_DEFINE` (base64, so no shell or quoting can alter it; see consoleScriptDefine
 * and infra/lib/constructs/api.ts); without the define (`npm start`, tests under tsx) it is
 * bundled here on first use.
 */

/** The identifier the Lambda bundle's esbuild replaces with the bundled script, base64. */
export const CONSOLE_SCRIPT_DEFINE = '__CORRAL_CONSOLE_JS_BASE64__';

const SCRIPT = fileURLToPath(new URL('./script.ts', import.meta.url));
const TSCONFIG = fileURLToPath(new URL('./tsconfig.json', import.meta.url));
/**
 * esbuild by a name esbuild cannot follow, so the Lambda bundle never tries to carry esbuild
 * itself (only this fallback, which the define makes unused there, loads it).
 */
const ESBUILD = 'esbuild';

let bundled: string | undefined;

/** script.ts bundled for the browser (an ES module with no imports), once per process. */
export function bundleConsoleScript(): string {
  if (bundled !== undefined) return bundled;
  const esbuild = createRequire(import.meta.url)(ESBUILD) as typeof Esbuild;
  const result = esbuild.buildSync({
    entryPoints: [SCRIPT],
    tsconfig: TSCONFIG,
    bundle: true,
    write: false,
    format: 'esm',
    platform: 'browser',
    target: 'es2022',
    charset: 'utf8',
    legalComments: 'none',
    logLevel: 'silent',
  });
  const text = result.outputFiles[0]!.text;
  // The page inlines it in a <script> element.
  if (/<\/script/i.test(text)) throw new Error('the console script must not contain "</script"');
  bundled = text;
  return text;
}

/** The esbuild `define` that carries the bundled script into the Lambda bundle. */
export function consoleScriptDefine(): Record<string, string> {
  return { [CONSOLE_SCRIPT_DEFINE]: JSON.stringify(Buffer.from(bundleConsoleScript(), 'utf8').toString('base64')) };
}
