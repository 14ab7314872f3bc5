import type { StateTable } from '../store.js';
import { gitChannelRecords } from '../storage/items.js';

/**
 * Where the credential proxy keeps the git channels that are open: `git_open` adds one,
 * `git_close` removes it, and a git request is served only while its capability's channel is
 * open (a well-signed capability of a closed channel opens nothing).
 *
 * Locally one process issues and serves capabilities, so the channels live in its memory
 * (`memoryGitChannels`): a restarted proxy forgets them along with its signing key. On AWS the
 * credential proxy Lambda issues them and the proxy service serves them, two processes (and many
 * of each): the channels are items of the state table (`tableGitChannels`), which both read.
 */
export interface GitChannelRegistry {
  open(channel: { id: string; sessionId: string; sandbox: string; expiresAtMs: number }): Promise<void>;
  /** Whether channel `id` of the session is open (and unexpired), for the sandbox it names. */
  isOpen(sessionId: string, id: string, sandbox: string): Promise<boolean>;
  /** The sandbox channel `id` was issued to, if it is open; undefined when it is not. */
  sandboxOf(sessionId: string, id: string): Promise<string | undefined>;
  close(sessionId: string, id: string): Promise<void>;
  /** Close every channel of one sandbox of the session (its task stopped); returns how many. */
  closeSandbox(sessionId: string, sandbox: string): Promise<number>;
}

export function memoryGitChannels(now: () => number = Date.now): GitChannelRegistry {
  const open = new Map<string, { s: string; n: string; e: number }>();
  const live = (sessionId: string, id: string) => {
    const c = open.get(id);
    return c && c.s === sessionId && c.e > now() ? c : undefined;
  };
  return {
    async open(ch) {
      open.set(ch.id, { s: ch.sessionId, n: ch.sandbox, e: ch.expiresAtMs });
    },
    async isOpen(sessionId, id, sandbox) {
      return live(sessionId, id)?.n === sandbox;
    },
    async sandboxOf(sessionId, id) {
      return live(sessionId, id)?.n;
    },
    async close(sessionId, id) {
      if (open.get(id)?.s === sessionId) open.delete(id);
    },
    async closeSandbox(sessionId, sandbox) {
      let n = 0;
      for (const [id, c] of open) {
        if (c.s === sessionId && c.n === sandbox) {
          open.delete(id);
          n++;
        }
      }
      return n;
    },
  };
}

export function tableGitChannels(table: StateTable, now: () => number = Date.now): GitChannelRegistry {
  return {
    open: (ch) => gitChannelRecords.put(table, ch),
    async isOpen(sessionId, id, sandbox) {
      return (await gitChannelRecords.get(table, sessionId, id, now()))?.sandbox === sandbox;
    },
    async sandboxOf(sessionId, id) {
      return (await gitChannelRecords.get(table, sessionId, id, now()))?.sandbox;
    },
    close: (sessionId, id) => gitChannelRecords.delete(table, sessionId, id),
    async closeSandbox(sessionId, sandbox) {
      const mine = (await gitChannelRecords.list(table, sessionId)).filter((c) => c.sandbox === sandbox);
      for (const c of mine) await gitChannelRecords.delete(table, sessionId, c.id);
      return mine.length;
    },
  };
}
