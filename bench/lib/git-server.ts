/**
 * A real git server on loopback (smart HTTP, `git http-backend`) serving one repository, so
 * that provisioning in the benchmark includes a real clone over a socket, as a sandbox that clones
 * a session's repository does.
 */
import { spawnSync } from 'node:child_process';
import { startTestGitServer } from '../../test/credential-proxy/fixtures/git-server.js';
import fs from 'node:fs';
import path from 'node:path';

export interface GitServer {
  /** `http://127.0.0.1:<port>/<name>.git` */
  url: string;
  /** The token the server wants (a session's repository resource carries it). */
  token: string;
  /** Files and bytes in the repository's working tree. */
  files: number;
  bytes: number;
  close(): Promise<void>;
}

function git(args: string[], cwd: string) {
  const r = spawnSync('git', args, {
    cwd,
    encoding: 'utf8',
    env: { ...process.env, GIT_AUTHOR_NAME: 'bench', GIT_AUTHOR_EMAIL: 'bench@example.invalid', GIT_COMMITTER_NAME: 'bench', GIT_COMMITTER_EMAIL: 'bench@example.invalid' },
  });
  if (r.status !== 0) throw new Error(`git ${args.join(' ')} failed: ${r.stderr}`);
  return r.stdout.trim();
}

/**
 * A small project (sources, docs, a few commits of history): `files` files of about `fileBytes`
 * bytes each. Deterministic content, so every run clones the same thing.
 */
export async function startGitServer(root: string, opts: { files?: number; fileBytes?: number; commits?: number } = {}): Promise<GitServer> {
  const files = opts.files ?? 120;
  const fileBytes = opts.fileBytes ?? 2_000;
  const commits = opts.commits ?? 5;
  const work = path.join(root, 'work');
  const served = path.join(root, 'served');
  fs.mkdirSync(work, { recursive: true });
  fs.mkdirSync(served, { recursive: true });
  git(['init', '--quiet', '--initial-branch=main'], work);
  let bytes = 0;
  for (let c = 0; c < commits; c++) {
    for (let i = 0; i < files; i++) {
      if (c > 0 && i % commits !== c) continue; // later commits touch a share of the files
      const dir = path.join(work, i % 3 === 0 ? 'docs' : 'src', `m${i % 7}`);
      fs.mkdirSync(dir, { recursive: true });
      const line = `// module ${i}, revision ${c}: ${'lorem ipsum dolor sit amet '.repeat(3)}\n`;
      const text = line.repeat(Math.max(1, Math.ceil(fileBytes / line.length)));
      fs.writeFileSync(path.join(dir, `f${i}.ts`), text);
    }
    fs.writeFileSync(path.join(work, 'README.md'), `# bench-repo\n\nrevision ${c}\n`);
    git(['add', '-A'], work);
    git(['commit', '--quiet', '-m', `revision ${c}`], work);
  }
  for (const f of git(['ls-files'], work).split('\n')) bytes += fs.statSync(path.join(work, f)).size;
  git(['clone', '--quiet', '--bare', work, path.join(served, 'bench-repo.git')], root);

  // Smart HTTP (`git http-backend`) on loopback, as a hosted repository is reached: sessions
  // name it with an authorization token, and the sandbox clones it through the credential proxy.
  const token = `bench-${process.pid}-${Date.now()}`;
  const server = await startTestGitServer({ root: served, token });
  const url = server.urlOf('bench-repo');
  return { url, token, files: files + 1, bytes, close: () => server.close() };
}
