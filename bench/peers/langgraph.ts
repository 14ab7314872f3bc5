/**
 * The durable peer of the benchmark: a LangGraph.js ReAct agent (`createReactAgent`) whose state
 * is checkpointed to SQLite on disk (`SqliteSaver`, a file, so that a thread survives the process
 * as a Corral session does), with a chat model that talks to the same fake Messages API as Corral
 * over HTTP (`ChatAnthropic` pointed at it, streamed, as Corral's model client streams), and a
 * `bash` tool that runs the command with `child_process` on this machine.
 *
 * What it does NOT have, and Corral does: isolation (the command runs as this process's user, in
 * a scratch directory, no sandbox), an event log a client can stream or resume from, leases, a
 * public API. The peer is driven in process (`agent.invoke`), not over HTTP: that is how such an
 * agent is used, and the HTTP hop to its own API is one Corral pays and it does not.
 *
 * Its packages are this directory's own npm package (`package.json`, `package-lock.json` here),
 * which `npm run bench` installs on demand when the peer suite runs (`bench/lib/peer-package.ts`);
 * the root package does not declare them and nothing in Corral imports them. This file is type-checked
 * by `tsconfig.json` here (`npm run typecheck --prefix bench/peers`), not by the root project.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { ChatAnthropic } from '@langchain/anthropic';
import { AIMessage, type BaseMessage } from '@langchain/core/messages';
import { tool } from '@langchain/core/tools';
import { createReactAgent } from '@langchain/langgraph/prebuilt';
import { SqliteSaver } from '@langchain/langgraph-checkpoint-sqlite';
import { z } from 'zod';
import type { LangGraphPeer, LangGraphPeerModule, PeerTurn } from '../lib/peer-package.js';
import { nowMs } from '../lib/stats.js';

/** The bash tool's time limit and output cap (the sandbox agent has its own; these only bound a runaway). */
const TOOL_TIMEOUT_MS = 60_000;
const TOOL_MAX_OUTPUT = 1024 * 1024;

/** Runs `command` with `bash -c` in `cwd`; stdout and stderr together, as a tool result. */
function runBash(command: string, cwd: string): Promise<string> {
  return new Promise((resolve) => {
    execFile('bash', ['-c', command], { cwd, timeout: TOOL_TIMEOUT_MS, maxBuffer: TOOL_MAX_OUTPUT }, (err, stdout, stderr) => {
      const out = `${stdout}${stderr}`;
      resolve(err && !out ? `error: ${err.message}` : out);
    });
  });
}

function textOf(m: BaseMessage): string {
  if (typeof m.content === 'string') return m.content;
  return m.content.map((b) => (b.type === 'text' && typeof (b as { text?: unknown }).text === 'string' ? (b as { text: string }).text : '')).join('');
}

export const startLangGraphPeer: LangGraphPeerModule['startLangGraphPeer'] = async (opts) => {
  fs.mkdirSync(opts.dir, { recursive: true });
  const workspace = path.join(opts.dir, 'workspace');
  fs.mkdirSync(workspace, { recursive: true });
  const dbPath = path.join(opts.dir, 'checkpoints.sqlite');
  const checkpointer = SqliteSaver.fromConnString(dbPath);

  // Per-turn tool accounting; turns on one peer run one at a time.
  let toolMs = 0;
  let toolOutputs: string[] = [];
  const bash = tool(
    async ({ command }: { command: string }) => {
      const t0 = nowMs();
      const out = await runBash(command, workspace);
      toolMs += nowMs() - t0;
      toolOutputs.push(out);
      return out;
    },
    { name: 'bash', description: 'Run a shell command with bash and return what it printed.', schema: z.object({ command: z.string().describe('The command to run') }) },
  );

  const llm = new ChatAnthropic({
    model: opts.model ?? 'claude-sonnet-4-6',
    apiKey: 'bench-peer-key',
    anthropicApiUrl: opts.modelUrl,
    streaming: true,
    maxTokens: 1024,
    maxRetries: 0,
  });
  const agent = createReactAgent({ llm, tools: [bash], checkpointSaver: checkpointer });

  const peer: LangGraphPeer = {
    dbPath,
    async runTurn(threadId, text): Promise<PeerTurn> {
      toolMs = 0;
      toolOutputs = [];
      const t0 = nowMs();
      const state = await agent.invoke({ messages: [{ role: 'user', content: text }] }, { configurable: { thread_id: threadId } });
      const ms = nowMs() - t0;
      const last = state.messages.at(-1);
      if (!last || !AIMessage.isInstance(last)) throw new Error(`peer thread ${threadId}: the turn did not end with an AI message`);
      return { ms, finalText: textOf(last), toolOutputs, toolMs };
    },
    async checkpointCount(threadId) {
      let n = 0;
      for await (const _ of checkpointer.list({ configurable: { thread_id: threadId } })) n++;
      return n;
    },
    sqliteSettings() {
      const synchronous = ['OFF', 'NORMAL', 'FULL', 'EXTRA'];
      const level = Number(checkpointer.db.pragma('synchronous', { simple: true }));
      return { journal_mode: String(checkpointer.db.pragma('journal_mode', { simple: true })), synchronous: synchronous[level] ?? String(level) };
    },
    async close() {
      checkpointer.db.close();
    },
  };
  return peer;
};
