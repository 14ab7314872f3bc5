/**
 * `corral`: the command line for a Corral server, local or deployed. It talks to `CORRAL_URL`
 * (default http://127.0.0.1:4000) with `CORRAL_API_KEY` (default: the key `npm start` left in
 * `.corral/api-key`), through the official SDK where it has the call and plain HTTP for Corral's
 * extensions (fork, positional reads, resuming streams).
 *
 * Exit codes: 0 done, 1 the server said no (or could not be reached), 2 a wrong command line,
 * 130 Ctrl-C.
 */
import type Anthropic from '@anthropic-ai/sdk';
import { setMaxListeners } from 'node:events';
import { closeSync, openSync, readFileSync, writeSync } from 'node:fs';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import type { SessionEvent } from '../lambdas/core/session/events.js';
import {
  ApiError,
  CancelledError,
  ConnectionError,
  loadConfig,
  normalizeError,
  RawClient,
  sdkClient,
  UsageError,
  type CliConfig,
} from './client.js';
import { EventFormatter, fmtDate, LivePreview, makeStyle, table, type Style } from './format.js';
import { outcomeRows } from './outcomes.js';
import { Progress } from './progress.js';
import { followEvents } from './sse.js';
import { deviceLogin, freshLogin, LoginError, realSleep, saveLogin } from './login.js';
import { exportTenant, importTenant, parseExport } from './transfer.js';

export interface CliIO {
  env: NodeJS.ProcessEnv;
  cwd: string;
  stdout: { write(s: string): unknown; isTTY?: boolean };
  stderr: { write(s: string): unknown; isTTY?: boolean };
  /** For `sessions send ID -`. */
  readStdin: () => Promise<string>;
  /** Aborted on Ctrl-C. */
  signal: AbortSignal;
  fetch: typeof fetch;
  /** Waits between polls of `corral login` (tests answer at once). */
  sleep?: (ms: number, signal: AbortSignal) => Promise<void>;
}

type Values = Record<string, string | boolean | string[] | boolean[] | undefined>;
type Options = NonNullable<ParseArgsConfig['options']>;

interface Ctx {
  io: CliIO;
  config: CliConfig;
  json: boolean;
  quiet: boolean;
  style: Style;
  progress: Progress;
  sdk(): Anthropic;
  raw: RawClient;
  out(s: string): void;
  err(s: string): void;
}

interface Command {
  usage: string;
  summary: string;
  options?: Options;
  /** Positional arguments: [fewest, most]. */
  args: [number, number];
  run(ctx: Ctx, v: Values, args: string[]): Promise<number | void>;
}

const GLOBAL: Options = {
  json: { type: 'boolean' },
  quiet: { type: 'boolean', short: 'q' },
  help: { type: 'boolean', short: 'h' },
};

const LIST: Options = {
  limit: { type: 'string' },
  all: { type: 'boolean' },
  archived: { type: 'boolean' },
};

function int(v: unknown, name: string, min = 0): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) throw new UsageError(`--${name} must be an integer${min > 0 ? ` of at least ${min}` : ' (0 or more)'}, not ${JSON.stringify(v)}`);
  return n;
}

function required(v: Values, name: string): string {
  const s = v[name];
  if (typeof s !== 'string' || s === '') throw new UsageError(`--${name} is required`);
  return s;
}

function pairs(list: unknown, name: string): Record<string, string> | undefined {
  if (!Array.isArray(list) || !list.length) return undefined;
  const out: Record<string, string> = {};
  for (const item of list as string[]) {
    const eq = item.indexOf('=');
    if (eq <= 0) throw new UsageError(`--${name} takes key=value, not ${JSON.stringify(item)}`);
    out[item.slice(0, eq)] = item.slice(eq + 1);
  }
  return out;
}

/** One page (or, with --all, every page) of a list the SDK pages through. */
async function collect<T>(list: AsyncIterable<T> & PromiseLike<{ data: T[]; hasNextPage(): boolean }>, all: boolean): Promise<{ items: T[]; more: boolean }> {
  if (all) {
    const items: T[] = [];
    for await (const item of list) items.push(item);
    return { items, more: false };
  }
  const page = await list;
  return { items: page.data, more: page.hasNextPage() };
}

function printList<T>(ctx: Ctx, items: T[], more: boolean, headers: string[], row: (t: T) => string[], id: (t: T) => string) {
  if (ctx.json) return ctx.out(JSON.stringify(items, null, 2) + '\n');
  if (ctx.quiet) return ctx.out(items.map((t) => id(t) + '\n').join(''));
  if (!items.length) return ctx.err('(none)\n');
  ctx.out(table(headers, items.map(row)));
  if (more) ctx.err(ctx.style.dim('more on the next page: use --all, or --limit\n'));
}

function printCreated(ctx: Ctx, obj: { id: string }, line: string) {
  if (ctx.json) ctx.out(JSON.stringify(obj, null, 2) + '\n');
  else if (ctx.quiet) ctx.out(obj.id + '\n');
  else ctx.out(line + '\n');
}

type Session = Anthropic.Beta.Sessions.BetaManagedAgentsSession & { forked_from?: { session_id: string; position: number } };

function statusColor(ctx: Ctx, status: string) {
  const s = ctx.style;
  return status === 'running' ? s.blue(status) : status === 'idle' ? s.green(status) : s.yellow(status);
}

// --- positions (Corral extension) ---------------------------------------------------------------

interface EventsPage {
  data: SessionEvent[];
  next_page: string | null;
}

async function eventsPage(ctx: Ctx, id: string, query: Record<string, string | string[]>): Promise<EventsPage> {
  const pairs = Object.entries(query).flatMap(([k, v]): Array<[string, string]> => (Array.isArray(v) ? v.map((x): [string, string] => [k, x]) : [[k, v]]));
  const qs = new URLSearchParams(pairs).toString();
  return ctx.raw.json<EventsPage>('GET', `/v1/sessions/${encodeURIComponent(id)}/events?${qs}`, undefined, ctx.io.signal);
}

/** Whether the server reads the log by position (`from_position`/`to_position`, Corral's extension). */
async function checkPositions(ctx: Ctx, id: string): Promise<void> {
  // An empty range must answer nothing; a server that ignores the parameters answers events.
  const probe = await eventsPage(ctx, id, { from_position: '2', to_position: '1', limit: '1' });
  if (probe.data.length) {
    throw new ApiError(400, 'invalid_request_error', 'this server does not read events by position (from_position): it is not Corral, or an older one');
  }
}

/** The position of the last event of a session (0 when empty), by bisection on `from_position`. */
async function lastPosition(ctx: Ctx, id: string): Promise<number> {
  await checkPositions(ctx, id);
  const exists = async (p: number) => (await eventsPage(ctx, id, { from_position: String(p), limit: '1' })).data.length > 0;
  if (!(await exists(1))) return 0;
  let lo = 1;
  let hi = 2;
  while (await exists(hi)) {
    lo = hi;
    hi *= 2;
  }
  while (hi - lo > 1) {
    const mid = Math.floor((lo + hi) / 2);
    if (await exists(mid)) lo = mid;
    else hi = mid;
  }
  return lo;
}

/** Whether a turn runs, from the log itself (its last status event), which the session record may trail. */
async function runningByLog(ctx: Ctx, id: string): Promise<boolean> {
  const last = await eventsPage(ctx, id, {
    order: 'desc',
    limit: '1',
    'types[]': ['session.status_running', 'session.status_idle', 'session.status_terminated'],
  });
  return last.data[0]?.type === 'session.status_running';
}

/** The session record follows the log a moment later: wait (briefly) until it no longer says running. */
async function settle(ctx: Ctx, id: string): Promise<void> {
  const deadline = Date.now() + 5_000;
  while (Date.now() < deadline && !ctx.io.signal.aborted) {
    const s = await ctx.sdk().beta.sessions.retrieve(id, {}, { signal: ctx.io.signal });
    if (s.status !== 'running') return;
    await new Promise((r) => setTimeout(r, 50));
  }
}

// --- following a session -------------------------------------------------------------------------

interface FollowUntil {
  /** Stop at the first `session.status_idle` (after `afterEventId`, when given). */
  idle?: boolean;
  afterEventId?: string;
}

/**
 * Print the session's events from `after` on, reconnecting on drops, until Ctrl-C (130) or, with
 * `until.idle`, the turn ends (0; 1 when it ended with `retries_exhausted`).
 */
async function followAndPrint(ctx: Ctx, id: string, after: number, until: FollowUntil = {}): Promise<number> {
  const fmt = new EventFormatter(ctx.style);
  let armed = !until.afterEventId;
  const waiting = () => ctx.progress.set(until.idle ? `waiting for ${id} to go idle` : `following ${id} (Ctrl-C to stop)`);
  // On a terminal, the message the model is writing shows in the progress line as it arrives.
  const live = !ctx.json && ctx.progress.enabled ? new LivePreview() : undefined;
  for await (const { position, event } of followEvents(ctx.raw, {
    sessionId: id,
    after,
    signal: ctx.io.signal,
    onState: (state, detail) => {
      if (state === 'live') waiting();
      else ctx.progress.set(state === 'connecting' ? `connecting to ${ctx.config.url}` : `reconnecting ${detail ?? ''}`);
    },
    onPreview: live
      ? (p) => {
          if (live.apply(p)) ctx.progress.set(live.line() ?? '');
        }
      : undefined,
  })) {
    if (live?.conclude(event)) waiting();
    if (ctx.json) ctx.progress.print(JSON.stringify({ position, event }) + '\n');
    else ctx.progress.print(fmt.format(event, position) + '\n');
    if (event.id === until.afterEventId) armed = true;
    if (until.idle && armed && event.type === 'session.status_idle') {
      await settle(ctx, id);
      ctx.progress.stop();
      const why = event.stop_reason?.type;
      if (why === 'retries_exhausted') {
        ctx.err('the turn ended: the model kept failing (retries_exhausted)\n');
        return 1;
      }
      return 0;
    }
  }
  ctx.progress.stop();
  if (ctx.io.signal.aborted) return 130;
  return 0;
}

// --- commands ------------------------------------------------------------------------------------

const COMMANDS: Record<string, Command> = {
  'agents create': {
    usage: 'corral agents create --name NAME [--model MODEL] [--system TEXT] [--description TEXT] [--no-tools] [--metadata k=v]...',
    summary: 'Create an agent (with the agent toolset unless --no-tools)',
    args: [0, 0],
    options: {
      name: { type: 'string' },
      model: { type: 'string' },
      system: { type: 'string' },
      description: { type: 'string' },
      'no-tools': { type: 'boolean' },
      metadata: { type: 'string', multiple: true },
    },
    async run(ctx, v) {
      const agent = await ctx.sdk().beta.agents.create(
        {
          name: required(v, 'name'),
          model: (v.model as string) ?? 'claude-sonnet-4-6',
          ...(v.system ? { system: v.system as string } : {}),
          ...(v.description ? { description: v.description as string } : {}),
          tools: v['no-tools'] ? [] : [{ type: 'agent_toolset_20260401' }],
          ...(pairs(v.metadata, 'metadata') ? { metadata: pairs(v.metadata, 'metadata') } : {}),
        },
        { signal: ctx.io.signal },
      );
      printCreated(ctx, agent, `created agent ${ctx.style.bold(agent.id)} (${agent.name}, v${agent.version}, model ${agent.model.id})`);
    },
  },
  'agents list': {
    usage: 'corral agents list [--limit N] [--all] [--archived]',
    summary: 'List agents',
    args: [0, 0],
    options: LIST,
    async run(ctx, v) {
      const { items, more } = await collect(
        ctx.sdk().beta.agents.list({ limit: int(v.limit, 'limit', 1), include_archived: !!v.archived }, { signal: ctx.io.signal }),
        !!v.all,
      );
      printList(ctx, items, more, ['ID', 'NAME', 'VERSION', 'MODEL', 'CREATED'], (a) => [a.id, a.name, `v${a.version}`, a.model.id, fmtDate(a.created_at)], (a) => a.id);
    },
  },
  'envs create': {
    usage: 'corral envs create --name NAME [--description TEXT] [--networking unrestricted|limited] [--allow-host HOST]...',
    summary: 'Create an environment (a cloud sandbox recipe)',
    args: [0, 0],
    options: {
      name: { type: 'string' },
      description: { type: 'string' },
      networking: { type: 'string' },
      'allow-host': { type: 'string', multiple: true },
      metadata: { type: 'string', multiple: true },
    },
    async run(ctx, v) {
      const networking = (v.networking as string | undefined) ?? (v['allow-host'] ? 'limited' : undefined);
      if (networking !== undefined && networking !== 'limited' && networking !== 'unrestricted') {
        throw new UsageError('--networking is unrestricted or limited');
      }
      const env = await ctx.sdk().beta.environments.create(
        {
          name: required(v, 'name'),
          ...(v.description ? { description: v.description as string } : {}),
          config: {
            type: 'cloud',
            ...(networking === 'limited'
              ? { networking: { type: 'limited', allowed_hosts: (v['allow-host'] as string[] | undefined) ?? [] } }
              : networking === 'unrestricted'
                ? { networking: { type: 'unrestricted' } }
                : {}),
          },
          ...(pairs(v.metadata, 'metadata') ? { metadata: pairs(v.metadata, 'metadata') } : {}),
        },
        { signal: ctx.io.signal },
      );
      printCreated(ctx, env, `created environment ${ctx.style.bold(env.id)} (${env.name})`);
    },
  },
  'envs list': {
    usage: 'corral envs list [--limit N] [--all] [--archived]',
    summary: 'List environments',
    args: [0, 0],
    options: LIST,
    async run(ctx, v) {
      const { items, more } = await collect(
        ctx.sdk().beta.environments.list({ limit: int(v.limit, 'limit', 1), include_archived: !!v.archived }, { signal: ctx.io.signal }),
        !!v.all,
      );
      printList(ctx, items, more, ['ID', 'NAME', 'CONFIG', 'CREATED'], (e) => [e.id, e.name, e.config.type, fmtDate(e.created_at)], (e) => e.id);
    },
  },
  'sessions create': {
    usage: 'corral sessions create --agent ID --env ID [--title TEXT] [--message TEXT [--wait]] [--metadata k=v]...',
    summary: 'Create a session; with --message it starts working at once (--wait follows it until idle)',
    args: [0, 0],
    options: {
      agent: { type: 'string' },
      env: { type: 'string' },
      title: { type: 'string' },
      message: { type: 'string' },
      wait: { type: 'boolean' },
      metadata: { type: 'string', multiple: true },
    },
    async run(ctx, v) {
      if (v.wait && !v.message) throw new UsageError('--wait needs --message (there is nothing to wait for)');
      const session = await ctx.sdk().beta.sessions.create(
        {
          agent: required(v, 'agent'),
          environment_id: required(v, 'env'),
          ...(v.title ? { title: v.title as string } : {}),
          ...(pairs(v.metadata, 'metadata') ? { metadata: pairs(v.metadata, 'metadata') } : {}),
          ...(v.message ? { initial_events: [{ type: 'user.message', content: [{ type: 'text', text: v.message as string }] }] } : {}),
        },
        { signal: ctx.io.signal },
      );
      printCreated(ctx, session, `created session ${ctx.style.bold(session.id)} (agent ${session.agent.name} v${session.agent.version})`);
      if (v.wait) return followAndPrint(ctx, session.id, 0, { idle: true });
    },
  },
  'sessions list': {
    usage: 'corral sessions list [--limit N] [--all] [--archived] [--agent ID] [--status idle|running|…]...',
    summary: 'List sessions, newest first',
    args: [0, 0],
    options: { ...LIST, agent: { type: 'string' }, status: { type: 'string', multiple: true } },
    async run(ctx, v) {
      const statuses = v.status as Array<'rescheduling' | 'running' | 'idle' | 'terminated'> | undefined;
      const { items, more } = await collect(
        ctx.sdk().beta.sessions.list(
          {
            limit: int(v.limit, 'limit', 1),
            include_archived: !!v.archived,
            order: 'desc',
            ...(v.agent ? { agent_id: v.agent as string } : {}),
            ...(statuses?.length ? { statuses } : {}),
          },
          { signal: ctx.io.signal },
        ),
        !!v.all,
      );
      printList(
        ctx,
        items,
        more,
        ['ID', 'STATUS', 'TITLE', 'AGENT', 'UPDATED'],
        (s) => [s.id, s.status, s.title ?? '-', `${s.agent.name} v${s.agent.version}`, fmtDate(s.updated_at)],
        (s) => s.id,
      );
    },
  },
  'sessions show': {
    usage: 'corral sessions show ID',
    summary: 'Show a session',
    args: [1, 1],
    async run(ctx, _v, [id]) {
      const s = (await ctx.sdk().beta.sessions.retrieve(id, {}, { signal: ctx.io.signal })) as Session;
      if (ctx.json) return ctx.out(JSON.stringify(s, null, 2) + '\n');
      if (ctx.quiet) return ctx.out(s.status + '\n');
      const usage = s.usage as { input_tokens?: number; output_tokens?: number };
      const rows: Array<[string, string]> = [
        ['id', s.id],
        ['title', s.title ?? '-'],
        ['status', statusColor(ctx, s.status)],
        ['agent', `${s.agent.id} (${s.agent.name} v${s.agent.version}, model ${s.agent.model.id})`],
        ['environment', s.environment_id],
        ['created', fmtDate(s.created_at)],
        ['updated', fmtDate(s.updated_at)],
        ['tokens', `${usage?.input_tokens ?? 0} in / ${usage?.output_tokens ?? 0} out`],
      ];
      if (s.archived_at) rows.push(['archived', fmtDate(s.archived_at)]);
      if (s.forked_from) rows.push(['forked from', `${s.forked_from.session_id} at position ${s.forked_from.position}`]);
      if (Object.keys(s.metadata ?? {}).length) rows.push(['metadata', Object.entries(s.metadata).map(([k, val]) => `${k}=${val}`).join(' ')]);
      rows.push(...outcomeRows(ctx.style, s.outcome_evaluations ?? []));
      if (s.agent.multiagent) {
        // A coordinator: its threads at a glance (`corral sessions threads ID` lists them).
        const { items, more } = await collect(ctx.sdk().beta.sessions.threads.list(s.id, { limit: 100 }, { signal: ctx.io.signal }), false);
        const counts = new Map<string, number>();
        for (const th of items) counts.set(th.status, (counts.get(th.status) ?? 0) + 1);
        rows.push(['threads', `${items.length}${more ? '+' : ''}${counts.size ? ` (${[...counts].map(([st, n]) => `${n} ${st}`).join(', ')})` : ''}`]);
      }
      rows.push(['console', `${ctx.config.url}/console/sessions/${s.id}`]);
      ctx.out(rows.map(([k, val]) => `${ctx.style.dim(k.padEnd(12))} ${val}`).join('\n') + '\n');
    },
  },
  'sessions threads': {
    usage: 'corral sessions threads ID [--limit N] [--all] [--status idle|running|…]...',
    summary: "List a coordinator session's threads and their status",
    args: [1, 1],
    options: { ...LIST, status: { type: 'string', multiple: true } },
    async run(ctx, v, [id]) {
      const statuses = v.status as Array<'rescheduling' | 'running' | 'idle' | 'terminated'> | undefined;
      const { items, more } = await collect(
        ctx.sdk().beta.sessions.threads.list(id, { limit: int(v.limit, 'limit', 1), ...(statuses?.length ? { statuses } : {}) }, { signal: ctx.io.signal }),
        !!v.all,
      );
      printList(
        ctx,
        items,
        more,
        ['ID', 'STATUS', 'AGENT', 'TOKENS', 'UPDATED'],
        (th) => [th.id, th.status, 'name' in th.agent ? `${th.agent.name}${'version' in th.agent ? ` v${th.agent.version}` : ''}` : th.agent.model, `${th.usage?.input_tokens ?? 0} in / ${th.usage?.output_tokens ?? 0} out`, fmtDate(th.updated_at)],
        (th) => th.id,
      );
    },
  },
  'sessions send': {
    usage: 'corral sessions send ID TEXT... [--wait]   (TEXT "-" reads standard input)',
    summary: 'Send a message; --wait prints what follows until the session is idle again',
    args: [1, Infinity],
    options: { wait: { type: 'boolean' } },
    async run(ctx, v, [id, ...words]) {
      let text = words.join(' ');
      if (text === '-') text = (await ctx.io.readStdin()).replace(/\n$/, '');
      if (!text.trim()) throw new UsageError('nothing to send: give the message as arguments, or "-" to read it from standard input');
      const sdk = ctx.sdk();
      const after = v.wait ? await lastPosition(ctx, id) : 0;
      const res = await sdk.beta.sessions.events.send(
        id,
        { events: [{ type: 'user.message', content: [{ type: 'text', text }] }] },
        { signal: ctx.io.signal },
      );
      const sent = res.data?.[0];
      if (!sent) throw new ApiError(0, 'api_error', 'the server accepted the message but did not echo it');
      if (!v.wait) {
        if (ctx.json) ctx.out(JSON.stringify(sent, null, 2) + '\n');
        else if (ctx.quiet) ctx.out(sent.id + '\n');
        else ctx.out(`sent ${sent.id} to ${id}\n`);
        return;
      }
      return followAndPrint(ctx, id, after, { idle: true, afterEventId: sent.id });
    },
  },
  'sessions outcome': {
    usage: 'corral sessions outcome ID DESCRIPTION... --rubric TEXT|@FILE [--max-iterations N] [--wait]',
    summary: 'Give the session an outcome to achieve, graded against the rubric; --wait prints the work and each evaluation until idle',
    args: [1, Infinity],
    options: { rubric: { type: 'string' }, 'max-iterations': { type: 'string' }, wait: { type: 'boolean' } },
    async run(ctx, v, [id, ...words]) {
      const description = words.join(' ');
      if (!description.trim()) throw new UsageError('give the outcome\'s description: what the agent should produce');
      const rubric = required(v, 'rubric');
      let content = rubric;
      if (rubric.startsWith('@')) {
        try {
          content = readFileSync(resolve(ctx.io.cwd, rubric.slice(1)), 'utf8');
        } catch (err) {
          throw new UsageError(`--rubric ${rubric}: cannot read the file (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
        }
      }
      const maxIterations = int(v['max-iterations'], 'max-iterations', 1);
      const sdk = ctx.sdk();
      const after = v.wait ? await lastPosition(ctx, id) : 0;
      const res = await sdk.beta.sessions.events.send(
        id,
        { events: [{ type: 'user.define_outcome', description, rubric: { type: 'text', content }, ...(maxIterations !== undefined ? { max_iterations: maxIterations } : {}) }] },
        { signal: ctx.io.signal },
      );
      const sent = res.data?.[0];
      if (!sent) throw new ApiError(0, 'api_error', 'the server accepted the outcome but did not echo it');
      if (!v.wait) {
        if (ctx.json) ctx.out(JSON.stringify(sent, null, 2) + '\n');
        else if (ctx.quiet) ctx.out(((sent as { outcome_id?: string }).outcome_id ?? sent.id) + '\n');
        else ctx.out(`defined outcome ${(sent as { outcome_id?: string }).outcome_id ?? '?'} (${sent.id}) on ${id}\n`);
        return;
      }
      return followAndPrint(ctx, id, after, { idle: true, afterEventId: sent.id });
    },
  },
  'sessions interrupt': {
    usage: 'corral sessions interrupt ID [--wait]',
    summary: 'Interrupt the running turn; --wait until the session is idle',
    args: [1, 1],
    options: { wait: { type: 'boolean' } },
    async run(ctx, v, [id]) {
      const sdk = ctx.sdk();
      // With --wait: where the log ends and whether a turn runs, both before the interrupt goes in.
      const after = v.wait ? await lastPosition(ctx, id) : 0;
      const running = v.wait ? await runningByLog(ctx, id) : false;
      const res = await sdk.beta.sessions.events.send(id, { events: [{ type: 'user.interrupt' }] }, { signal: ctx.io.signal });
      const sent = res.data?.[0];
      if (!sent) throw new ApiError(0, 'api_error', 'the server accepted the interrupt but did not echo it');
      if (ctx.json) ctx.out(JSON.stringify(sent, null, 2) + '\n');
      else if (ctx.quiet) ctx.out(sent.id + '\n');
      else ctx.out(`sent ${sent.id} (interrupt) to ${id}\n`);
      if (!v.wait || !running) return;
      // The first idle after that point ends the turn, whether the interrupt or the agent ended it.
      return followAndPrint(ctx, id, after, { idle: true });
    },
  },
  'sessions fork': {
    usage: 'corral sessions fork ID [--at POSITION] [--title TEXT]',
    summary: 'Fork a session: a new session with a copy of the log up to a position (Corral extension)',
    args: [1, 1],
    options: { at: { type: 'string' }, title: { type: 'string' } },
    async run(ctx, v, [id]) {
      const body: Record<string, unknown> = {};
      const at = int(v.at, 'at');
      if (at !== undefined) body.up_to_position = at;
      if (v.title) body.title = v.title;
      const fork = await ctx.raw.json<Session>('POST', `/v1/sessions/${encodeURIComponent(id)}/fork`, body, ctx.io.signal);
      printCreated(
        ctx,
        fork,
        `forked ${id}${fork.forked_from ? ` at position ${fork.forked_from.position}` : ''} into ${ctx.style.bold(fork.id)}`,
      );
    },
  },
  export: {
    usage: 'corral export [--out FILE]',
    summary: "Write the tenant's agents (every version), environments and session logs as JSON lines (to stdout without --out)",
    args: [0, 0],
    options: { out: { type: 'string' } },
    async run(ctx, v) {
      // A file is created 0600 and must not exist: an export holds every prompt and transcript.
      const fd = typeof v.out === 'string' ? openSync(resolve(ctx.io.cwd, v.out), 'wx', 0o600) : undefined;
      try {
        const write = fd === undefined ? (l: string) => ctx.out(l) : (l: string) => void writeSync(fd, l);
        const counts = await exportTenant(ctx.sdk(), ctx.config.url, write, ctx.io.signal);
        ctx.err(`exported ${counts.agents} agents (${counts.agent_versions} versions), ${counts.environments} environments, ${counts.sessions} sessions (${counts.events} events)\n`);
      } finally {
        if (fd !== undefined) closeSync(fd);
      }
    },
  },
  import: {
    usage: 'corral import [--in FILE]',
    summary: 'Create the agents and environments of an export, and import its sessions as archived read-only copies (from stdin without --in)',
    args: [0, 0],
    options: { in: { type: 'string' } },
    async run(ctx, v) {
      const text = typeof v.in === 'string' ? readFileSync(resolve(ctx.io.cwd, v.in), 'utf8') : await ctx.io.readStdin();
      const lines = parseExport(text);
      const result = await importTenant(ctx.sdk(), ctx.raw, lines, (s) => (ctx.quiet || ctx.json ? undefined : ctx.err(s)), ctx.io.signal);
      if (ctx.json) ctx.out(JSON.stringify(result, null, 2) + '\n');
      else {
        for (const s of result.skipped) ctx.err(ctx.style.yellow(`skipped session ${s.session_id}: ${s.reason}\n`));
        ctx.out(`imported ${Object.keys(result.agents).length} agents, ${Object.keys(result.environments).length} environments, ${Object.keys(result.sessions).length} sessions\n`);
      }
      return result.skipped.length ? 1 : 0;
    },
  },
  'sessions tail': {
    usage: 'corral sessions tail ID [--from POSITION | --new] [--until-idle]',
    summary: 'Print the session log and follow it live (reconnects without gaps or repeats; Ctrl-C stops)',
    args: [1, 1],
    options: { from: { type: 'string' }, new: { type: 'boolean' }, 'until-idle': { type: 'boolean' } },
    async run(ctx, v, [id]) {
      if (v.from !== undefined && v.new) throw new UsageError('--from and --new do not go together');
      const sdk = ctx.sdk();
      await sdk.beta.sessions.retrieve(id, {}, { signal: ctx.io.signal }); // a clear 404 before following
      const from = int(v.from, 'from', 1);
      const after = v.new ? await lastPosition(ctx, id) : from !== undefined ? from - 1 : 0;
      return followAndPrint(ctx, id, after, { idle: !!v['until-idle'] });
    },
  },
  events: {
    usage: 'corral events ID [--from POSITION] [--to POSITION] [--type TYPE]...',
    summary: 'Print the events of a session between two log positions (both included)',
    args: [1, 1],
    options: { from: { type: 'string' }, to: { type: 'string' }, type: { type: 'string', multiple: true } },
    async run(ctx, v, [id]) {
      const from = int(v.from, 'from', 1) ?? 1;
      const to = int(v.to, 'to', 1);
      if (to !== undefined && to < from) throw new UsageError(`--to (${to}) is before --from (${from})`);
      const types = new Set((v.type as string[] | undefined) ?? []);
      await checkPositions(ctx, id);
      const fmt = new EventFormatter(ctx.style, Infinity);
      let position = from;
      let page: string | null = null;
      ctx.progress.set(`reading ${id}`);
      try {
        do {
          const query: Record<string, string> = { from_position: String(from), limit: '1000' };
          if (to !== undefined) query.to_position = String(to);
          if (page) query.page = page;
          const res = await eventsPage(ctx, id, query);
          // The log is dense (positions 1, 2, 3, …), so the nth event read is at from + n; the type
          // filter is applied here so every event keeps its position.
          for (const event of res.data) {
            const p = position++;
            if (types.size && !types.has(event.type)) continue;
            ctx.progress.print(ctx.json ? JSON.stringify({ position: p, event }) + '\n' : fmt.format(event, p) + '\n');
          }
          page = res.next_page;
        } while (page);
      } finally {
        ctx.progress.stop();
      }
    },
  },
  'vaults list': {
    usage: 'corral vaults list [--limit N] [--all] [--archived]',
    summary: 'List vaults (where the server has them)',
    args: [0, 0],
    options: LIST,
    async run(ctx, v) {
      const { items, more } = await vaultsCall(() =>
        collect(ctx.sdk().beta.vaults.list({ limit: int(v.limit, 'limit', 1), include_archived: !!v.archived }, { signal: ctx.io.signal }), !!v.all),
      );
      printList(ctx, items, more, ['ID', 'NAME', 'CREATED'], (x) => [x.id, x.display_name, fmtDate(x.created_at)], (x) => x.id);
    },
  },
  'vaults create': {
    usage: 'corral vaults create --name NAME [--metadata k=v]...',
    summary: 'Create a vault (where the server has them)',
    args: [0, 0],
    options: { name: { type: 'string' }, metadata: { type: 'string', multiple: true } },
    async run(ctx, v) {
      const name = required(v, 'name');
      const metadata = pairs(v.metadata, 'metadata');
      const vault = await vaultsCall(() =>
        ctx.sdk().beta.vaults.create({ display_name: name, ...(metadata ? { metadata } : {}) }, { signal: ctx.io.signal }),
      );
      printCreated(ctx, vault, `created vault ${ctx.style.bold(vault.id)} (${vault.display_name})`);
    },
  },
  'deployments list': {
    usage: 'corral deployments list [--limit N] [--all] [--archived]',
    summary: 'List deployments: their status, schedule and next run',
    args: [0, 0],
    options: LIST,
    async run(ctx, v) {
      const { items, more } = await collect(
        ctx.sdk().beta.deployments.list({ limit: int(v.limit, 'limit', 1), include_archived: !!v.archived }, { signal: ctx.io.signal }),
        !!v.all,
      );
      printList(ctx, items, more, ['ID', 'NAME', 'STATUS', 'SCHEDULE', 'NEXT RUN'], deploymentRow, (d) => d.id);
    },
  },
  'deployments show': {
    usage: 'corral deployments show ID [--limit N]',
    summary: 'Show a deployment, its upcoming runs and its latest runs (--limit of them, default 10)',
    args: [1, 1],
    options: { limit: { type: 'string' } },
    async run(ctx, v, [id]) {
      const d = await ctx.sdk().beta.deployments.retrieve(id, {}, { signal: ctx.io.signal });
      const runs = await ctx.sdk().beta.deploymentRuns.list({ deployment_id: id, limit: 100 }, { signal: ctx.io.signal });
      const latest = [...runs.data].reverse().slice(0, int(v.limit, 'limit', 1) ?? 10);
      if (ctx.json) return ctx.out(JSON.stringify({ ...d, runs: latest }, null, 2) + '\n');
      if (ctx.quiet) return ctx.out(d.id + '\n');
      const status = d.archived_at ? `archived ${fmtDate(d.archived_at)}` : d.status === 'paused' ? `paused (${d.paused_reason?.type === 'error' ? `error: ${d.paused_reason.error.type}` : 'manual'})` : 'active';
      ctx.out(
        [
          `${ctx.style.bold(d.id)}  ${d.name}`,
          `  status    ${status}`,
          `  agent     ${d.agent.id} v${d.agent.version}`,
          `  env       ${d.environment_id}`,
          `  schedule  ${d.schedule ? `${d.schedule.expression} (${d.schedule.timezone})` : 'none (run now only)'}`,
          ...(d.schedule ? [`  last run  ${d.schedule.last_run_at ? fmtDate(d.schedule.last_run_at) : '-'}`, `  upcoming  ${(d.schedule.upcoming_runs_at ?? []).map(fmtDate).join(', ') || '-'}`] : []),
          '',
        ].join('\n'),
      );
      if (!latest.length) return ctx.err('(no runs yet)\n');
      ctx.out(table(['RUN', 'TRIGGER', 'SCHEDULED', 'CREATED', 'SESSION / ERROR'], latest.map(runRow)));
    },
  },
  'deployments runs': {
    usage: 'corral deployments runs [ID] [--limit N] [--all] [--errors]',
    summary: "List deployment runs (of one deployment with ID): each run's session, or its error",
    args: [0, 1],
    options: { limit: { type: 'string' }, all: { type: 'boolean' }, errors: { type: 'boolean' } },
    async run(ctx, v, [id]) {
      const { items, more } = await collect(
        ctx.sdk().beta.deploymentRuns.list(
          { limit: int(v.limit, 'limit', 1), ...(id ? { deployment_id: id } : {}), ...(v.errors ? { has_error: true } : {}) },
          { signal: ctx.io.signal },
        ),
        !!v.all,
      );
      printList(ctx, items, more, ['RUN', 'TRIGGER', 'SCHEDULED', 'CREATED', 'SESSION / ERROR'], runRow, (r) => r.id);
    },
  },
  'deployments pause': {
    usage: 'corral deployments pause ID',
    summary: "Pause a deployment's schedule (run now still works)",
    args: [1, 1],
    async run(ctx, _v, [id]) {
      const d = await ctx.sdk().beta.deployments.pause(id, {}, { signal: ctx.io.signal });
      printCreated(ctx, d, `paused deployment ${ctx.style.bold(d.id)} (${d.name})`);
    },
  },
  'deployments unpause': {
    usage: 'corral deployments unpause ID',
    summary: "Resume a deployment's schedule",
    args: [1, 1],
    async run(ctx, _v, [id]) {
      const d = await ctx.sdk().beta.deployments.unpause(id, {}, { signal: ctx.io.signal });
      const next = d.schedule?.upcoming_runs_at?.[0];
      printCreated(ctx, d, `unpaused deployment ${ctx.style.bold(d.id)} (${d.name})${next ? `; next run ${fmtDate(next)}` : ''}`);
    },
  },
  'deployments run': {
    usage: 'corral deployments run ID',
    summary: 'Run a deployment now: start one session from its template',
    args: [1, 1],
    async run(ctx, _v, [id]) {
      const r = await ctx.sdk().beta.deployments.run(id, {}, { signal: ctx.io.signal });
      if (ctx.json) return ctx.out(JSON.stringify(r, null, 2) + '\n');
      if (ctx.quiet) return ctx.out((r.session_id ?? r.id) + '\n');
      if (r.error) {
        ctx.err(`run ${r.id} failed: ${r.error.type}: ${r.error.message}\n`);
        return 1;
      }
      ctx.out(`run ${ctx.style.bold(r.id)} started session ${ctx.style.bold(r.session_id!)}\n`);
    },
  },
  'memory-stores list': {
    usage: 'corral memory-stores list [--limit N] [--all] [--archived]',
    summary: 'List memory stores',
    args: [0, 0],
    options: LIST,
    async run(ctx, v) {
      const { items, more } = await collect(ctx.sdk().beta.memoryStores.list({ limit: int(v.limit, 'limit', 1), include_archived: !!v.archived }, { signal: ctx.io.signal }), !!v.all);
      printList(ctx, items, more, ['ID', 'NAME', 'CREATED', 'ARCHIVED'], (x) => [x.id, x.name, fmtDate(x.created_at), x.archived_at ? fmtDate(x.archived_at) : '-'], (x) => x.id);
    },
  },
  'memory-stores show': {
    usage: 'corral memory-stores show STORE_ID',
    summary: 'Show a memory store',
    args: [1, 1],
    async run(ctx, _v, [id]) {
      const s = await ctx.sdk().beta.memoryStores.retrieve(id, {}, { signal: ctx.io.signal });
      if (ctx.json) return ctx.out(JSON.stringify(s, null, 2) + '\n');
      if (ctx.quiet) return ctx.out(s.id + '\n');
      const rows: Array<[string, string]> = [
        ['id', s.id],
        ['name', s.name],
        ['description', s.description || '-'],
        ['created', fmtDate(s.created_at)],
        ['updated', fmtDate(s.updated_at)],
      ];
      if (s.archived_at) rows.push(['archived', fmtDate(s.archived_at)]);
      if (Object.keys(s.metadata ?? {}).length) rows.push(['metadata', Object.entries(s.metadata).map(([k, val]) => `${k}=${val}`).join(' ')]);
      ctx.out(rows.map(([k, val]) => `${ctx.style.dim(k.padEnd(12))} ${val}`).join('\n') + '\n');
    },
  },
  'memory-stores memories': {
    usage: 'corral memory-stores memories STORE_ID [--prefix /DIR/] [--limit N] [--all]',
    summary: "List a memory store's memories by path",
    args: [1, 1],
    options: { ...LIST, prefix: { type: 'string' } },
    async run(ctx, v, [id]) {
      const prefix = v.prefix as string | undefined;
      const { items, more } = await collect(
        ctx.sdk().beta.memoryStores.memories.list(id, { limit: int(v.limit, 'limit', 1), ...(prefix ? { path_prefix: prefix } : {}) }, { signal: ctx.io.signal }),
        !!v.all,
      );
      const rows = items.filter((m): m is Anthropic.Beta.MemoryStores.BetaManagedAgentsMemory => m.type === 'memory');
      printList(ctx, rows, more, ['ID', 'PATH', 'BYTES', 'UPDATED'], (m) => [m.id, m.path, String(m.content_size_bytes), fmtDate(m.updated_at)], (m) => m.id);
    },
  },
  'memory-stores memory': {
    usage: 'corral memory-stores memory STORE_ID MEMORY_ID',
    summary: "Print a memory's content",
    args: [2, 2],
    async run(ctx, _v, [id, memoryId]) {
      const m = await ctx.sdk().beta.memoryStores.memories.retrieve(memoryId, { memory_store_id: id }, { signal: ctx.io.signal });
      if (ctx.json) return ctx.out(JSON.stringify(m, null, 2) + '\n');
      ctx.out(m.content ?? '');
      if (m.content && !m.content.endsWith('\n')) ctx.out('\n');
    },
  },
  'memory-stores versions': {
    usage: 'corral memory-stores versions STORE_ID [--memory MEMORY_ID] [--limit N] [--all]',
    summary: "List a memory store's versions, newest first (who wrote each, which are redacted)",
    args: [1, 1],
    options: { ...LIST, memory: { type: 'string' } },
    async run(ctx, v, [id]) {
      const memoryId = v.memory as string | undefined;
      const { items, more } = await collect(
        ctx.sdk().beta.memoryStores.memoryVersions.list(id, { limit: int(v.limit, 'limit', 1), ...(memoryId ? { memory_id: memoryId } : {}) }, { signal: ctx.io.signal }),
        !!v.all,
      );
      const by = (x: Anthropic.Beta.MemoryStores.BetaManagedAgentsMemoryVersion) => (x.created_by?.type === 'session_actor' ? x.created_by.session_id : 'api');
      printList(
        ctx, items, more, ['ID', 'MEMORY', 'OPERATION', 'PATH', 'BY', 'CREATED'],
        (x) => [x.id, x.memory_id, x.redacted_at ? `${x.operation} (redacted)` : x.operation, x.path ?? '-', by(x), fmtDate(x.created_at)],
        (x) => x.id,
      );
    },
  },
  'memory-stores redact': {
    usage: 'corral memory-stores redact STORE_ID VERSION_ID',
    summary: "Redact a memory version: its content is removed for good",
    args: [2, 2],
    async run(ctx, _v, [id, versionId]) {
      const r = await ctx.sdk().beta.memoryStores.memoryVersions.redact(versionId, { memory_store_id: id }, { signal: ctx.io.signal });
      printCreated(ctx, r, `redacted ${ctx.style.bold(r.id)} (memory ${r.memory_id})`);
    },
  },
  'webhooks list': {
    usage: 'corral webhooks list [--limit N] [--all]',
    summary: 'List webhook endpoints (never their signing secrets)',
    args: [0, 0],
    options: { limit: { type: 'string' }, all: { type: 'boolean' } },
    async run(ctx, v) {
      const { items, more } = await collect(ctx.sdk().beta.organization.webhooks.list({ limit: int(v.limit, 'limit', 1) }, { signal: ctx.io.signal }), !!v.all);
      printList(ctx, items, more, ['ID', 'STATE', 'URL', 'EVENTS'], (x) => [x.id, x.state, x.url, String(x.enabled_events.length)], (x) => x.id);
    },
  },
  'webhooks create': {
    usage: 'corral webhooks create --url URL --event TYPE... [--name NAME] [--description TEXT]',
    summary: 'Create a webhook endpoint; prints its signing secret, which no later read shows',
    args: [0, 0],
    options: { url: { type: 'string' }, event: { type: 'string', multiple: true }, name: { type: 'string' }, description: { type: 'string' } },
    async run(ctx, v) {
      const events = (v.event as string[] | undefined) ?? [];
      if (!events.length) throw new UsageError('--event is required (one or more webhook event types, e.g. session.idled)');
      const ep = await ctx.sdk().beta.organization.webhooks.create(
        {
          url: required(v, 'url'),
          enabled_events: events as Anthropic.Beta.Organization.WebhookCreateParams['enabled_events'],
          ...(typeof v.name === 'string' ? { name: v.name } : {}),
          ...(typeof v.description === 'string' ? { description: v.description } : {}),
        },
        { signal: ctx.io.signal },
      );
      printCreated(ctx, ep, `created webhook endpoint ${ctx.style.bold(ep.id)}\nsigning secret (shown once; keep it now): ${ep.signing_secret}`);
    },
  },
  'webhooks show': {
    usage: 'corral webhooks show ID',
    summary: 'Show a webhook endpoint',
    args: [1, 1],
    async run(ctx, _v, [id]) {
      ctx.out(JSON.stringify(await ctx.sdk().beta.organization.webhooks.retrieve(id, {}, { signal: ctx.io.signal }), null, 2) + '\n');
    },
  },
  'webhooks update': {
    usage: 'corral webhooks update ID [--url URL] [--event TYPE]... [--enable | --disable] [--name NAME] [--description TEXT]',
    summary: 'Change a webhook endpoint (--event replaces the set)',
    args: [1, 1],
    options: {
      url: { type: 'string' }, event: { type: 'string', multiple: true }, enable: { type: 'boolean' }, disable: { type: 'boolean' },
      name: { type: 'string' }, description: { type: 'string' },
    },
    async run(ctx, v, [id]) {
      if (v.enable && v.disable) throw new UsageError('--enable and --disable exclude each other');
      const events = v.event as string[] | undefined;
      const ep = await ctx.sdk().beta.organization.webhooks.update(
        id,
        {
          ...(typeof v.url === 'string' ? { url: v.url } : {}),
          ...(events?.length ? { enabled_events: events as Anthropic.Beta.Organization.WebhookUpdateParams['enabled_events'] } : {}),
          ...(v.enable ? { state: 'enabled' as const } : v.disable ? { state: 'disabled' as const } : {}),
          ...(typeof v.name === 'string' ? { name: v.name } : {}),
          ...(typeof v.description === 'string' ? { description: v.description } : {}),
        },
        { signal: ctx.io.signal },
      );
      printCreated(ctx, ep, `updated webhook endpoint ${ctx.style.bold(ep.id)} (${ep.state})`);
    },
  },
  'webhooks delete': {
    usage: 'corral webhooks delete ID',
    summary: 'Delete a webhook endpoint and its signing secret',
    args: [1, 1],
    async run(ctx, _v, [id]) {
      const gone = await ctx.sdk().beta.organization.webhooks.delete(id, {}, { signal: ctx.io.signal });
      printCreated(ctx, gone, `deleted webhook endpoint ${gone.id}`);
    },
  },
  'webhooks rotate': {
    usage: 'corral webhooks rotate ID',
    summary: 'Replace an endpoint\'s signing secret (the old one stops at once); prints the new one',
    args: [1, 1],
    async run(ctx, _v, [id]) {
      const { signing_secret } = await ctx.sdk().beta.organization.webhooks.regenerateSigningSecret(id, {}, { signal: ctx.io.signal });
      ctx.out(ctx.json ? JSON.stringify({ signing_secret }) + '\n' : `new signing secret (shown once): ${signing_secret}\n`);
    },
  },
  'webhooks deliveries': {
    usage: 'corral webhooks deliveries ID [--limit N]',
    summary: "An endpoint's delivery log, newest first: attempts, status, next attempt",
    args: [1, 1],
    options: { limit: { type: 'string' } },
    async run(ctx, v, [id]) {
      const limit = int(v.limit, 'limit', 1);
      const page = await ctx.raw.json<{ data: Array<{ event_id: string; event_type: string; status: string; attempts: number; last_status_code: number | null; last_error: string | null; next_attempt_at: string | null; created_at: string }>; next_page: string | null }>(
        'GET',
        `/v1/corral/webhooks/${encodeURIComponent(id)}/deliveries${limit ? `?limit=${limit}` : ''}`,
        undefined,
        ctx.io.signal,
      );
      printList(
        ctx,
        page.data,
        !!page.next_page,
        ['EVENT', 'TYPE', 'STATUS', 'ATTEMPTS', 'LAST', 'NEXT ATTEMPT'],
        (d) => [d.event_id, d.event_type, d.status, String(d.attempts), d.last_status_code ? String(d.last_status_code) : (d.last_error ?? ''), d.next_attempt_at ? fmtDate(d.next_attempt_at) : ''],
        (d) => d.event_id,
      );
    },
  },
  login: {
    usage: 'corral login [--issuer URL]',
    summary: "Sign in with the server's identity provider (device code); later commands send the token",
    args: [0, 0],
    options: { issuer: { type: 'string' } },
    async run(ctx, v) {
      const login = await deviceLogin(ctx.config.url, v.issuer as string | undefined, {
        fetch: ctx.io.fetch,
        signal: ctx.io.signal,
        sleep: ctx.io.sleep ?? realSleep,
        tell: (s) => ctx.err(s),
      });
      saveLogin(ctx.config.configPath, ctx.config.url, login);
      const sub = (() => {
        try {
          return (JSON.parse(Buffer.from(login.token.split('.')[1], 'base64url').toString('utf8')) as { sub?: string }).sub;
        } catch {
          return undefined;
        }
      })();
      ctx.out(`signed in to ${ctx.config.url}${sub ? ` as ${sub}` : ''} (token kept in ${ctx.config.configPath})\n`);
      if (ctx.io.env.CORRAL_API_KEY) ctx.err('note: CORRAL_API_KEY is set, and is used before this sign-in; unset it to use the token\n');
    },
  },
  logout: {
    usage: 'corral logout',
    summary: 'Forget the token corral login stored for this server',
    args: [0, 0],
    async run(ctx) {
      saveLogin(ctx.config.configPath, ctx.config.url, undefined);
      ctx.out(`signed out of ${ctx.config.url}\n`);
    },
  },
  console: {
    usage: 'corral console [SESSION_ID]',
    summary: "Print the address of the session console (the server's /console)",
    args: [0, 1],
    async run(ctx, _v, [id]) {
      ctx.out(`${ctx.config.url}/console${id ? `/sessions/${encodeURIComponent(id)}` : ''}\n`);
    },
  },
};

/** Vaults arrive with another part of Corral: a 404 for the collection means this server has none. */
async function vaultsCall<T>(call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (err) {
    const status = (err as { status?: number }).status;
    if (status === 404) throw new ApiError(404, 'not_found_error', 'vaults are not available on this server (/v1/vaults answered 404)');
    throw err;
  }
}

const RESOURCES = new Set(['agents', 'envs', 'sessions', 'vaults']);
RESOURCES.add('deployments');

function deploymentRow(d: Anthropic.Beta.Deployments.BetaManagedAgentsDeployment): string[] {
  const status = d.archived_at ? 'archived' : d.status;
  const schedule = d.schedule ? `${d.schedule.expression} ${d.schedule.timezone}` : '-';
  const next = !d.archived_at && d.status === 'active' && d.schedule?.upcoming_runs_at?.[0];
  return [d.id, d.name, status, schedule, next ? fmtDate(next) : '-'];
}

function runRow(r: Anthropic.Beta.DeploymentRuns.BetaManagedAgentsDeploymentRun): string[] {
  const scheduled = r.trigger_context.type === 'schedule' ? fmtDate(r.trigger_context.scheduled_at) : '-';
  return [r.id, r.trigger_context.type, scheduled, fmtDate(r.created_at), r.session_id ?? `${r.error?.type}: ${r.error?.message}`];
}

RESOURCES.add('memory-stores');
RESOURCES.add('webhooks'); // corral webhooks <verb>

function help(style: Style): string {
  const width = Math.max(...Object.keys(COMMANDS).map((k) => k.length));
  return [
    `${style.bold('corral')}: command line for a Corral server`,
    '',
    'Commands:',
    ...Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(width)}  ${c.summary}`),
    '',
    'Options for every command: --json (machine-readable output), -q/--quiet (ids only), -h/--help',
    '',
    'Environment:',
    `  CORRAL_URL      the server (default http://127.0.0.1:4000); a deployed stack's API URL works too`,
    '  CORRAL_API_KEY  the API key (default: the token of corral login, then $CORRAL_DATA_DIR/api-key, then ./.corral/api-key)',
    '  CORRAL_CONFIG   the config file corral login keeps tokens in (default ~/.config/corral/config.json)',
    '',
    'Exit codes: 0 ok, 1 the server refused or could not be reached, 2 wrong command line, 130 Ctrl-C.',
    '',
  ].join('\n');
}

/** Run one command line; resolves to the exit code. Never calls `process.exit`. */
export async function runCli(argv: string[], partial: Partial<CliIO> = {}): Promise<number> {
  const io: CliIO = {
    env: process.env,
    cwd: process.cwd(),
    stdout: process.stdout,
    stderr: process.stderr,
    readStdin: async () => {
      const chunks: Buffer[] = [];
      for await (const c of process.stdin) chunks.push(c as Buffer);
      return Buffer.concat(chunks).toString('utf8');
    },
    signal: new AbortController().signal,
    fetch: globalThis.fetch,
    ...partial,
  };
  // Every request of a command listens to the same signal.
  setMaxListeners(0, io.signal);
  const colors = !!io.stdout.isTTY && !io.env.NO_COLOR;
  const style = makeStyle(colors);
  const errStyle = makeStyle(!!io.stderr.isTTY && !io.env.NO_COLOR);
  const config = loadConfig(io.env, io.cwd);

  // The command words come first: `corral sessions tail ID --from 3`.
  const words: string[] = [];
  const rest: string[] = [];
  for (const a of argv) {
    const wantVerb = words.length === 1 && RESOURCES.has(words[0]);
    if ((words.length === 0 || wantVerb) && !a.startsWith('-')) words.push(a);
    else rest.push(a);
  }
  const name = words.join(' ');
  const command = COMMANDS[name];
  const wantsHelp = rest.includes('--help') || rest.includes('-h');
  if (!command) {
    if (!words.length) {
      io[wantsHelp ? 'stdout' : 'stderr'].write(help(wantsHelp ? style : errStyle));
      return wantsHelp ? 0 : 2;
    }
    const known = Object.keys(COMMANDS).filter((k) => k.startsWith(words[0] + ' '));
    io.stderr.write(
      `corral: unknown command "${name}"` +
        (known.length ? `; ${words[0]} has: ${known.map((k) => k.split(' ')[1]).join(', ')}` : '; try corral --help') +
        '\n',
    );
    return 2;
  }
  if (wantsHelp) {
    io.stdout.write(`${command.summary}\n\nusage: ${command.usage}\n`);
    return 0;
  }

  let parsed: { values: Values; positionals: string[] };
  try {
    parsed = parseArgs({ args: rest, options: { ...GLOBAL, ...command.options }, allowPositionals: true, strict: true }) as typeof parsed;
    const [min, max] = command.args;
    if (parsed.positionals.length < min) throw new UsageError(`missing argument${min > 1 ? 's' : ''}`);
    if (parsed.positionals.length > max) throw new UsageError(`unexpected argument ${JSON.stringify(parsed.positionals[max])}`);
  } catch (err) {
    io.stderr.write(`corral: ${(err as Error).message}\nusage: ${command.usage}\n`);
    return 2;
  }

  const progress = new Progress(io.stderr, io.stdout);
  let sdk: Anthropic | undefined;
  const ctx: Ctx = {
    io,
    config,
    json: !!parsed.values.json,
    quiet: !!parsed.values.quiet,
    style,
    progress,
    sdk: () => (sdk ??= sdkClient(config)),
    raw: new RawClient(config, io.fetch),
    out: (s) => progress.print(s),
    err: (s) => io.stderr.write(s),
  };
  try {
    // A stored sign-in about to expire is refreshed first (login and logout need none).
    if (config.login && name !== 'login' && name !== 'logout') {
      config.login = await freshLogin(config.configPath, config.url, config.login, { fetch: io.fetch, signal: io.signal });
    }
    return (await command.run(ctx, parsed.values, parsed.positionals)) ?? 0;
  } catch (raw) {
    progress.stop();
    const err = normalizeError(raw, config);
    if (err instanceof CancelledError || io.signal.aborted) return 130;
    if (err instanceof UsageError) {
      io.stderr.write(`corral: ${err.message}\nusage: ${command.usage}\n`);
      return 2;
    }
    if (err instanceof ConnectionError) {
      io.stderr.write(`corral: ${err.message}\n`);
      return 1;
    }
    if (err instanceof LoginError) {
      io.stderr.write(`corral: login: ${err.message}\n`);
      return 1;
    }
    if (err instanceof ApiError) {
      const hint =
        err.status === 401
          ? config.login
            ? ' (your sign-in was refused: run corral login again)'
            : ` (the key came from ${config.apiKeySource}; set CORRAL_API_KEY to use another)`
          : '';
      io.stderr.write(`corral: ${err.status ? `${err.status} ` : ''}${err.type}: ${err.message}${hint}\n`);
      return 1;
    }
    io.stderr.write(`corral: ${(err as Error).stack ?? err}\n`);
    return 1;
  } finally {
    progress.stop();
  }
}

/** Run as a program (`corral …`, or `npx tsx cli/main.ts …`): Ctrl-C aborts, a second one kills. */
export async function main(argv = process.argv.slice(2)): Promise<never> {
  const controller = new AbortController();
  let interrupted = false;
  process.on('SIGINT', () => {
    if (interrupted) process.exit(130);
    interrupted = true;
    controller.abort();
  });
  // `corral … | head` closes the pipe early: that is not an error.
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(0);
  });
  const code = await runCli(argv, { signal: controller.signal });
  process.exitCode = code;
  // Wait for stdout to drain, then leave (open keep-alive sockets must not hold the process).
  await new Promise<void>((resolve) => process.stdout.write('', () => resolve()));
  process.exit(code);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  void main();
}
