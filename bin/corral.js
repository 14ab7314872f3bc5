#!/usr/bin/env node
// The `corral` command: runs cli/main.ts through tsx's loader, found from this file (not
// from the working directory), so it works from anywhere, including through `npm link`.
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const require = createRequire(import.meta.url);
// tsx's loader (what `node --import tsx` loads), by absolute path: it registers the TypeScript hooks.
await import(pathToFileURL(require.resolve('tsx')).href);
const { main } = await import(pathToFileURL(join(here, '..', 'cli', 'main.ts')).href);
await main(process.argv.slice(2));
