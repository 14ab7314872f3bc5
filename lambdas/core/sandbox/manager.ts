import type { StateTable } from '../store.js';
import { SandboxClient } from './client.js';
import {
  SandboxUnavailableError,
  type ExecuteOptions,
  type SandboxEndpoint,
  type SandboxProvider,
  type SandboxRecipe,
  type ToolOutput,
} from './types.js';

export const DEFAULT_SANDBOX = 'default';
const NAME = /^[A-Za-z0-9_-]{1,64}$/;

export interface SandboxRecord {
  sessionId: string;
  name: string;
  state: 'ready' | 'dead';
  endpoint: SandboxEndpoint;
  ref: string;
  createdAt: string;
  lastUsedAt: string;
}

export interface ExecutionReport extends ToolOutput {
  sandbox: string;
  /** Milliseconds spent provisioning a sandbox for this call (0 when one was ready). */
  provisionMs: number;
}

const key = (sessionId: string, name: string) => ({ pk: `session#${sessionId}`, sk: `sandbox#${name}` });

/**
 * The harness's hands: finds a session's named sandbox (recorded in the state table, so any
 * harness can reach it), provisions one lazily on the first call that needs it, and turns a
 * sandbox that died into a tool error, forgetting it so the next call gets a fresh one.
 */
export class SandboxManager {
  constructor(
    private readonly provider: SandboxProvider,
    private readonly table: StateTable,
  ) {}

  async get(sessionId: string, name: string): Promise<SandboxRecord | undefined> {
    const item = await this.table.get(key(sessionId, name).pk, key(sessionId, name).sk);
    return item ? (item.record as SandboxRecord) : undefined;
  }

  async list(sessionId: string): Promise<SandboxRecord[]> {
    const page = await this.table.query(`session#${sessionId}`, { prefix: 'sandbox#' });
    return page.items.map((i) => i.record as SandboxRecord);
  }

  private async save(record: SandboxRecord) {
    await this.table.put({ ...key(record.sessionId, record.name), record });
  }

  async execute(
    sessionId: string,
    name: string,
    recipe: SandboxRecipe,
    tool: string,
    input: unknown,
    opts: ExecuteOptions = {},
  ): Promise<ExecutionReport> {
    if (!NAME.test(name)) {
      return { sandbox: name, provisionMs: 0, isError: true, output: `invalid sandbox name ${JSON.stringify(name)}: use 1-64 letters, digits, - or _` };
    }
    let record: SandboxRecord;
    let provisionMs = 0;
    try {
      ({ record, provisionMs } = await this.ensure(sessionId, name, recipe));
    } catch (err) {
      return { sandbox: name, provisionMs: 0, isError: true, output: `could not start sandbox "${name}": ${(err as Error).message}` };
    }
    try {
      const out = await new SandboxClient(record.endpoint).execute(tool, input, opts);
      await this.save({ ...record, lastUsedAt: new Date().toISOString() });
      return { ...out, sandbox: name, provisionMs };
    } catch (err) {
      if (!(err instanceof SandboxUnavailableError)) throw err;
      await this.save({ ...record, state: 'dead' });
      await this.provider.release(sessionId, name, record.ref).catch(() => undefined);
      return {
        sandbox: name,
        provisionMs,
        isError: true,
        output:
          `sandbox "${name}" became unavailable during this call (${err.message}). ` +
          'Its state is lost; the next tool call starts a fresh sandbox from the same recipe.',
      };
    }
  }

  /** The session's sandbox of this name, provisioned now if it has none that is ready. */
  async ensure(sessionId: string, name: string, recipe: SandboxRecipe): Promise<{ record: SandboxRecord; provisionMs: number }> {
    const existing = await this.get(sessionId, name);
    if (existing && existing.state === 'ready') return { record: existing, provisionMs: 0 };
    const started = Date.now();
    const provisioned = await this.provider.provision({ sessionId, name, recipe });
    const now = new Date().toISOString();
    const record: SandboxRecord = {
      sessionId,
      name,
      state: 'ready',
      endpoint: provisioned.endpoint,
      ref: provisioned.ref,
      createdAt: now,
      lastUsedAt: now,
    };
    await this.save(record);
    return { record, provisionMs: Date.now() - started };
  }

  /** Stop and forget every sandbox of a session. */
  async releaseAll(sessionId: string): Promise<void> {
    for (const record of await this.list(sessionId)) {
      await this.provider.release(sessionId, record.name, record.ref).catch(() => undefined);
      await this.table.delete(key(sessionId, record.name).pk, key(sessionId, record.name).sk);
    }
    await this.provider.releaseAll?.(sessionId);
  }
}
