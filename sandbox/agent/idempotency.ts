/**
 * Idempotency: a tool call carries its tool_use id as `idempotency_key`, and a call repeated with
 * the same key (a retried request, a harness step run twice) gets the first call's result instead
 * of running again. Results are kept in memory (the last 256) and, when the agent has a state
 * directory, on disk, so a restarted agent still remembers them. Concurrent calls with one key
 * share one run.
 */
import crypto from 'node:crypto';
import fsp from 'node:fs/promises';
import path from 'node:path';
import type { ToolResult } from './tools/index.js';
import type { Log } from './log.js';

const MEMORY_RESULTS = 256;

export class ResultCache {
  private readonly inflight = new Map<string, Promise<ToolResult>>();
  private readonly recent = new Map<string, ToolResult>();

  /** `stateDir` null keeps the results in memory only. */
  constructor(
    private readonly stateDir: string | null,
    private readonly log: Log,
  ) {}

  /** The result remembered for `key`, else `run`'s (then remembered). */
  async once(key: string, tool: string, run: () => Promise<ToolResult>): Promise<ToolResult> {
    const remembered = this.recent.get(key);
    if (remembered) return remembered;
    const pending = this.inflight.get(key);
    if (pending) return pending;
    const promise = (async () => {
      const stored = await this.load(key);
      if (stored) return stored;
      const result = await run();
      await this.save(key, tool, result);
      return result;
    })();
    this.inflight.set(key, promise);
    try {
      const result = await promise;
      this.recent.set(key, result);
      if (this.recent.size > MEMORY_RESULTS) this.recent.delete(this.recent.keys().next().value!);
      return result;
    } finally {
      this.inflight.delete(key);
    }
  }

  private recordPath(key: string): string | null {
    if (!this.stateDir) return null;
    const name = crypto.createHash('sha256').update(key).digest('hex');
    return path.join(this.stateDir, 'idempotency', `${name}.json`);
  }

  private async load(key: string): Promise<ToolResult | undefined> {
    const file = this.recordPath(key);
    if (!file) return undefined;
    try {
      const record = JSON.parse(await fsp.readFile(file, 'utf8')) as { key?: unknown; result?: ToolResult };
      const r = record.result;
      if (record.key === key && r && typeof r.output === 'string' && typeof r.is_error === 'boolean') {
        return { output: r.output, is_error: r.is_error };
      }
    } catch {
      // missing or unreadable: not remembered
    }
    return undefined;
  }

  private async save(key: string, tool: string, result: ToolResult): Promise<void> {
    const file = this.recordPath(key);
    if (!file) return;
    try {
      await fsp.mkdir(path.dirname(file), { recursive: true });
      const tmp = `${file}.${process.pid}.${crypto.randomBytes(4).toString('hex')}.tmp`;
      await fsp.writeFile(tmp, JSON.stringify({ key, tool, at: new Date().toISOString(), result }));
      await fsp.rename(tmp, file);
    } catch (err) {
      this.log('warn', 'could not persist idempotency record', { error: (err as Error).message });
    }
  }
}
