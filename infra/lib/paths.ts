import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root: Lambda entries, the lock file and the sandbox image's build context. */
export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

export const repoPath = (...parts: string[]) => join(REPO_ROOT, ...parts);
