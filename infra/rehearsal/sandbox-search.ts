/**
 * Where a rehearsal scenario looks for a secret a sandbox must never hold: the files under a
 * directory and a task's processes (from /proc). The memory of those processes is searched with
 * test/helpers/process-memory.ts.
 */
import fs from 'node:fs';
import path from 'node:path';

/** Every file under `dir` (not following links) that contains one of `needles`. */
export function filesContaining(dir: string, needles: Buffer[]): string[] {
  const found: string[] = [];
  const walk = (d: string) => {
    let entries: fs.Dirent[];
    try {
      entries = fs.readdirSync(d, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile()) {
        try {
          const content = fs.readFileSync(p);
          if (needles.some((n) => content.includes(n))) found.push(p);
        } catch {
          // unreadable (a socket, a file that went away): nothing to find in it
        }
      }
    }
  };
  walk(dir);
  return found;
}

/** The process and its descendants (from /proc). */
export function processTree(pid: number): number[] {
  const out = [pid];
  for (let i = 0; i < out.length; i++) {
    try {
      for (const tid of fs.readdirSync(`/proc/${out[i]}/task`)) {
        const children = fs.readFileSync(`/proc/${out[i]}/task/${tid}/children`, 'utf8').trim();
        if (children) out.push(...children.split(/\s+/).map(Number));
      }
    } catch {
      // gone
    }
  }
  return out;
}
