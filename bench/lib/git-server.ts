/**
 * A real git server on loopback (`git daemon`, the git:// protocol) serving one repository, so
 * that provisioning in the benchmark includes a real clone over a socket, as a sandbox that clones
 * a session's repository does.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';

export interface GitServer {
  /** `git://127.0.0.1:<port>/<name>.git` */
  url: string;
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

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
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

  const port = await freePort();
  const child: ChildProcess = spawn(
    'git',
    ['daemon', '--reuseaddr', '--export-all', `--base-path=${served}`, '--listen=127.0.0.1', `--port=${port}`, served],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr += String(d)));
  const url = `git://127.0.0.1:${port}/bench-repo.git`;
  const deadline = Date.now() + 10_000;
  for (;;) {
    const probe = spawnSync('git', ['ls-remote', url], { encoding: 'utf8', timeout: 5_000 });
    if (probe.status === 0) break;
    if (Date.now() > deadline || child.exitCode !== null) {
      child.kill('SIGKILL');
      throw new Error(`git daemon did not come up on ${url}: ${stderr || probe.stderr}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    url,
    files: files + 1,
    bytes,
    close: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
      }),
  };
}
