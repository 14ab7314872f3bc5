/**
 * End-to-end scenarios against any Corral base URL, through the official SDK only: the deploy
 * rehearsal runs them against a stack it just deployed, `npm run smoke` against a real deployment,
 * and the test suite against the local runtime with the scripted model.
 *
 * Each scenario creates what it needs (one agent, one environment, sessions of its own), checks
 * one behaviour a deployment must keep, and cleans up after itself (its sessions are deleted, so
 * their sandboxes stop). The runner never throws: every scenario ends as a result, `ok` or not,
 * within its timeout. The prompts work with Corral's scripted model (`npm run fake-model`: it runs
 * the first command between backticks with bash and reports the output, and answers anything else
 * with "You said: ...") and with a real Claude model.
 */
import Anthropic, { toFile, type ClientOptions } from '@anthropic-ai/sdk';
import { randomBytes } from 'node:crypto';
import { OUTCOMES_SCENARIO } from './outcome-scenarios.js';

/** What a scenario reports. */
export interface ScenarioResult {
  name: string;
  ok: boolean;
  /** One line: what was shown, or what went wrong. */
  detail: string;
  /** Every `span.model_request_end.time_to_first_token_ms` (a Corral extension) seen, in ms. */
  timeToFirstTokenMs?: number[];
  durationMs: number;
  /** The sessions it created (deleted by the time the result is reported). */
  sessionIds: string[];
}

/** What a scenario gets to work with. */
export interface ScenarioContext {
  /** An SDK client whose requests are all aborted when the scenario times out. */
  client: Anthropic;
  /** The model the scenario's agents use. */
  model: string;
  /** Aborted when the scenario's time is up. */
  signal: AbortSignal;
  /** A marker unique to this run and call (`corral-smoke-<random>`). */
  marker(kind?: string): string;
  /** The run's agent: `default` has the agent toolset; `ask` has bash under `always_ask`. */
  agent(kind?: 'default' | 'ask'): Promise<string>;
  /** A new session of that agent in the run's environment (with `resources`, if given); deleted after the scenario. */
  newSession(kind?: 'default' | 'ask', opts?: { resources?: Anthropic.Beta.Sessions.SessionCreateParams['resources'] }): Promise<string>;
  /** Follow a session's stream (see {@link Follower}). */
  follow(sessionId: string, opts?: { after?: number }): Promise<Follower>;
  /** Record a time to first token (the follower does this for every stream event it sees). */
  timeToFirstToken(ms: number): void;
}

export interface Scenario {
  name: string;
  /** What passing proves, in a sentence (docs, `--help`). */
  proves: string;
  timeoutMs: number;
  /** Resolves to the result's detail; throws (or rejects) to fail with the error's message. */
  run(ctx: ScenarioContext): Promise<string>;
}

/**
 * How the deploy rehearsal adds what a real deployment cannot show (tasks stopped, timeouts
 * forced): scenarios of its own, run after the built-in ones, and a check after each scenario,
 * once its sessions are deleted, that may fail it.
 */
export interface ScenarioHooks {
  scenarios?: Scenario[];
  /**
   * Called after each scenario, its sessions deleted, with a context whose client is not bound
   * to the scenario's timeout. A returned string (or a thrown error) fails the scenario with it.
   */
  afterEach?(result: ScenarioResult, ctx: ScenarioContext): Promise<string | void>;
}

export interface RunOptions {
  baseURL: string;
  apiKey: string;
  /** Default `claude-sonnet-4-6`. */
  model?: string;
  /** Names of the scenarios to run (built-in or from hooks); default all. */
  only?: string[];
  hooks?: ScenarioHooks;
  /** Multiplies every scenario's timeout (a slow region, a cold account). Default 1. */
  timeoutScale?: number;
  /** Passed to the SDK client (e.g. `maxRetries`, `fetch`). */
  clientOptions?: Partial<ClientOptions>;
  /** Called as each scenario ends. */
  onResult?(result: ScenarioResult): void;
}

export type Event = { type: string; id: string; [k: string]: unknown };

const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve, reject) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => {
      clearTimeout(timer);
      reject(signal.reason);
    }, { once: true });
  });

export const text = (t: string) => [{ type: 'text' as const, text: t }];
const textOf = (content: unknown) => JSON.stringify(content ?? '');
const stopReason = (e: Event) => (e.stop_reason as { type?: string; event_ids?: string[] } | undefined) ?? {};
const isIdle = (e: Event) => e.type === 'session.status_idle';

export function fail(message: string): never {
  throw new Error(message);
}

/**
 * One session's event stream, read through the SDK. It counts the events it has seen, which are
 * the log positions (Corral's `id:` lines), so when the server ends the stream (a Lambda's time
 * limit) it reconnects with `Last-Event-ID` and misses nothing.
 */
export class Follower {
  readonly events: Event[] = [];
  /** Times the server ended the stream and the follower resumed it with `Last-Event-ID`. */
  reconnects = 0;
  private stream?: Awaited<ReturnType<Anthropic['beta']['sessions']['events']['stream']>>;
  private iterator?: AsyncIterator<unknown>;
  private closed = false;

  constructor(
    private readonly ctx: Pick<ScenarioContext, 'client' | 'signal' | 'timeToFirstToken'>,
    readonly sessionId: string,
    /** The log position the stream starts after. */
    private readonly start: number,
  ) {}

  /** The position of the last event seen. */
  get position(): number {
    return this.start + this.events.length;
  }

  async open(resume: boolean): Promise<this> {
    this.stream = await this.ctx.client.beta.sessions.events.stream(this.sessionId, undefined, {
      headers: resume ? { 'Last-Event-ID': String(this.position) } : undefined,
      signal: this.ctx.signal,
    });
    this.iterator = this.stream[Symbol.asyncIterator]();
    return this;
  }

  /** Read until `match`; resolves to the matching event. */
  async until(match: (e: Event) => boolean, what: string): Promise<Event> {
    for (;;) {
      if (this.closed) fail(`stream closed while waiting for ${what}`);
      if (!this.iterator) await this.open(true);
      const { value, done } = await this.iterator!.next();
      if (done) {
        this.iterator = undefined; // ended by the server: resume after what we saw
        this.reconnects++;
        await sleep(500, this.ctx.signal);
        continue;
      }
      const e = value as Event;
      this.events.push(e);
      if (e.type === 'span.model_request_end' && typeof e.time_to_first_token_ms === 'number') {
        this.ctx.timeToFirstToken(e.time_to_first_token_ms);
      }
      if (match(e)) return e;
    }
  }

  /** Until the session idles; fails unless it idles for `reason`. */
  async idle(reason: string): Promise<Event> {
    const e = await this.until(isIdle, `session.status_idle (${reason})`);
    const got = stopReason(e).type;
    if (got !== reason) fail(`the session idled with ${got}, not ${reason}${this.lastError()}`);
    return e;
  }

  private lastError(): string {
    const err = [...this.events].reverse().find((e) => e.type === 'session.error');
    return err ? ` (last session.error: ${JSON.stringify(err.error)})` : '';
  }

  close() {
    this.closed = true;
    this.stream?.controller.abort();
  }
}

/** Every event of a session through the SDK's auto-pagination, and how the pages came. */
export async function listPages(client: Anthropic, sessionId: string, params: Record<string, unknown> = {}) {
  const events: Event[] = [];
  const pageBytes: number[] = [];
  try {
    const first = await client.beta.sessions.events.list(sessionId, params as Anthropic.Beta.Sessions.EventListParams);
    for await (const page of first.iterPages()) {
      pageBytes.push(Buffer.byteLength(JSON.stringify(page.data)));
      events.push(...(page.data as unknown as Event[]));
    }
  } catch (err) {
    throw new Error(`listing events, page ${pageBytes.length + 1}: ${message(err)}`);
  }
  return { events, pageBytes };
}

const toolResults = (events: Event[]) => events.filter((e) => e.type === 'agent.tool_result');

/** The tool result that carries `marker`, or a failure that says what came instead. */
function resultWith(events: Event[], marker: string): Event {
  const results = toolResults(events);
  const found = results.find((e) => textOf(e.content).includes(marker) && e.is_error !== true);
  if (found) return found;
  const last = results.at(-1);
  fail(last ? `no tool result with ${marker}; the last was ${textOf(last.content).slice(0, 200)}` : `no agent.tool_result (events: ${events.map((e) => e.type).join(', ')})`);
}

/** Send `prompt` to a session and follow its stream until it idles for `reason`; the events seen. */
export async function runTurn(ctx: ScenarioContext, session: string, prompt: string, reason = 'end_turn'): Promise<Event[]> {
  const stream = await ctx.follow(session);
  await ctx.client.beta.sessions.events.send(session, { events: [{ type: 'user.message', content: text(prompt) }] });
  await stream.idle(reason);
  stream.close();
  return stream.events;
}

const MB = 1024 * 1024;

/** An error as one line; the SDK's API errors already start with their status. */
function message(err: unknown): string {
  if (err instanceof Anthropic.APIError && err.status !== undefined && !err.message.startsWith(String(err.status))) {
    return `${err.status} ${err.message}`;
  }
  return err instanceof Error ? err.message : String(err);
}

export const SCENARIOS: Scenario[] = [
  {
    name: 'tool-round-trip',
    proves: 'the API, the harness, the model and a sandbox work together: bash runs in a sandbox and its output reaches the model',
    timeoutMs: 180_000,
    async run(ctx) {
      const session = await ctx.newSession();
      const marker = ctx.marker();
      const events = await runTurn(ctx, session, `Use bash to run \`echo ${marker}\` and tell me what it printed.`);
      const result = resultWith(events, marker);
      return `bash printed ${marker} in sandbox ${String(result.sandbox ?? '?')}; ${events.length} events`;
    },
  },
  {
    name: 'stream-resume',
    proves: 'a stream reconnected with Last-Event-ID mid-session resumes exactly: no event missed or repeated, compared with the history',
    timeoutMs: 180_000,
    async run(ctx) {
      const session = await ctx.newSession();
      const first = await ctx.follow(session);
      const marker = ctx.marker('resume');
      await ctx.client.beta.sessions.events.send(session, {
        events: [{ type: 'user.message', content: text(`Use bash to run \`sleep 3; echo ${marker}\` and tell me what it printed.`) }],
      });
      await first.until((e) => e.type === 'agent.tool_use', 'agent.tool_use');
      first.close(); // the session runs on while no one listens
      const cut = first.position;
      if (first.events.some(isIdle)) fail('the session idled before the stream was cut');
      await sleep(1_000, ctx.signal);
      const second = await ctx.follow(session, { after: cut });
      await second.idle('end_turn');
      second.close();
      resultWith(second.events, marker);
      const streamed = [...first.events, ...second.events].map((e) => e.id);
      const { events } = await listPages(ctx.client, session);
      const listed = events.map((e) => e.id);
      const missed = listed.filter((id) => !streamed.includes(id));
      const repeated = streamed.filter((id, i) => streamed.indexOf(id) !== i);
      if (missed.length || repeated.length) fail(`after resuming at ${cut}: ${missed.length} events missed, ${repeated.length} repeated`);
      if (streamed.join() !== listed.join()) fail('the streamed events are not the history, in order');
      return `resumed after position ${cut}: ${first.events.length} + ${second.events.length} events, the history's ${listed.length} exactly`;
    },
  },
  {
    name: 'interrupt',
    proves: 'user.interrupt stops a running command and ends the turn at once; the tool result says so',
    timeoutMs: 180_000,
    async run(ctx) {
      const session = await ctx.newSession();
      const stream = await ctx.follow(session);
      await ctx.client.beta.sessions.events.send(session, {
        events: [{ type: 'user.message', content: text('Use bash to run `sleep 30` and then tell me it finished.') }],
      });
      const use = await stream.until((e) => e.type === 'agent.tool_use', 'agent.tool_use');
      await sleep(1_000, ctx.signal); // let the command start (or the sandbox come up)
      const sent = Date.now();
      await ctx.client.beta.sessions.events.send(session, { events: [{ type: 'user.interrupt' }] });
      await stream.idle('end_turn');
      stream.close();
      const seconds = (Date.now() - sent) / 1000;
      const result = toolResults(stream.events).find((e) => e.tool_use_id === use.id);
      if (!result) fail('the interrupted tool call has no result');
      if (result.is_error !== true || !/interrupt/i.test(textOf(result.content))) {
        fail(`the tool result does not say it was interrupted: ${textOf(result.content).slice(0, 200)}`);
      }
      if (seconds >= 30) fail(`idle came ${seconds.toFixed(1)} s after the interrupt: the command ran to its end`);
      return `idle (end_turn) ${seconds.toFixed(1)} s after the interrupt; the result says interrupted`;
    },
  },
  {
    name: 'tool-confirmation',
    proves: 'a tool under always_ask waits (idle, requires_action) until user.tool_confirmation allows it, then runs',
    timeoutMs: 180_000,
    async run(ctx) {
      const session = await ctx.newSession('ask');
      const stream = await ctx.follow(session);
      const marker = ctx.marker('confirm');
      await ctx.client.beta.sessions.events.send(session, {
        events: [{ type: 'user.message', content: text(`Use bash to run \`echo ${marker}\` and tell me what it printed.`) }],
      });
      const waiting = await stream.idle('requires_action');
      const ids = stopReason(waiting).event_ids ?? [];
      const use = stream.events.find((e) => e.type === 'agent.tool_use' && ids.includes(e.id));
      if (!use) fail(`requires_action names no agent.tool_use (event_ids ${JSON.stringify(ids)})`);
      if (use.evaluated_permission !== 'ask') fail(`the tool use was evaluated ${String(use.evaluated_permission)}, not ask`);
      if (toolResults(stream.events).length) fail('a tool ran before it was confirmed');
      await ctx.client.beta.sessions.events.send(session, {
        events: [{ type: 'user.tool_confirmation', tool_use_id: use.id, result: 'allow' }],
      });
      await stream.idle('end_turn');
      stream.close();
      resultWith(stream.events, marker);
      return `waited with requires_action for ${use.name}; allowed, it printed ${marker}`;
    },
  },
  {
    name: 'large-event-list',
    proves: 'a 10 MB history lists completely: every page fits a buffered response (no 502) and every event comes back whole, once',
    timeoutMs: 240_000,
    async run(ctx) {
      const session = await ctx.newSession();
      const sent = new Map<string, string>(); // id -> marker of each large message
      const filler = 'This is filler for a Corral smoke test of large histories; nothing to do here. ';
      const size = 2_000_000;
      for (let i = 0; i < 5; i++) {
        const marker = ctx.marker(`large-${i}`);
        const body = `${marker} ${filler.repeat(Math.ceil(size / filler.length))}`.slice(0, size);
        // The interrupt in the same request cancels the message before the harness sees it, so
        // no model turn runs on 2 MB of filler (were one to start, it ends at once).
        const res = await ctx.client.beta.sessions.events.send(session, {
          events: [{ type: 'user.message', content: text(body) }, { type: 'user.interrupt' }],
        });
        sent.set(res.data?.[0]?.id ?? fail('the send answered no events'), marker);
      }
      const { events, pageBytes } = await listPages(ctx.client, session);
      const ids = events.map((e) => e.id);
      if (new Set(ids).size !== ids.length) fail('an event came back twice');
      for (const [id, marker] of sent) {
        const e = events.find((x) => x.id === id);
        if (!e) fail(`the large message ${marker} is missing from the list`);
        const t = (e.content as Array<{ text?: string }>)[0]?.text ?? '';
        if (t.length !== size || !t.startsWith(marker)) fail(`the large message ${marker} came back changed (${t.length} characters)`);
      }
      const total = pageBytes.reduce((a, b) => a + b, 0);
      return `${events.length} events, ${(total / MB).toFixed(1)} MB in ${pageBytes.length} pages (largest ${(Math.max(...pageBytes) / MB).toFixed(1)} MB)`;
    },
  },
  {
    name: 'session-delete',
    proves: 'deleting a session that ran a tool removes it (404) and its sandboxes',
    timeoutMs: 180_000,
    async run(ctx) {
      const session = await ctx.newSession();
      const marker = ctx.marker('delete');
      resultWith(await runTurn(ctx, session, `Use bash to run \`echo ${marker}\` and tell me what it printed.`), marker);
      const path = `/v1/sessions/${session}/sandboxes`;
      const beta = { headers: { 'anthropic-beta': 'managed-agents-2026-04-01' } };
      const before = await ctx.client.get<{ data: unknown[] }>(path, beta);
      if (!before.data.length) fail('the session that ran a tool lists no sandbox');
      await ctx.client.beta.sessions.delete(session);
      const gone = await ctx.client.beta.sessions.retrieve(session).then(
        () => fail('the deleted session is still there'),
        (err: unknown) => err,
      );
      if (!(gone instanceof Anthropic.NotFoundError)) throw gone;
      const after = await ctx.client.get<{ data: unknown[] }>(path, beta).then(
        (r) => r.data.length,
        (err: unknown) => (err instanceof Anthropic.NotFoundError ? 0 : Promise.reject(err)),
      );
      if (after) fail(`${after} sandboxes still listed after the delete`);
      return `deleted after running a tool in ${before.data.length} sandbox(es): GET is 404, no sandbox left`;
    },
  },
  {
    name: 'files-in-and-out',
    proves: 'a file uploaded with the SDK reaches the sandbox as a file resource, and what the agent writes under /mnt/session/outputs lists with the session as scope_id and downloads byte for byte',
    timeoutMs: 180_000,
    async run(ctx) {
      const marker = ctx.marker('files');
      // A first line to find, then every byte value: neither way may pass through UTF-8 (an API
      // without binary media types breaks both), and the output is text/plain, a type a Lambda
      // proxy sends as text unless told otherwise.
      const upload = Buffer.concat([Buffer.from(`${marker}\n`), Buffer.from(Array.from({ length: 256 }, (_, i) => i))]);
      const made: string[] = [];
      try {
        const input = await ctx.client.beta.files.upload({ file: await toFile(upload, `${marker}-in.bin`, { type: 'application/octet-stream' }) });
        made.push(input.id);
        if (input.size_bytes !== upload.length) fail(`the upload is ${input.size_bytes} bytes, not ${upload.length}`);
        const session = await ctx.newSession('default', { resources: [{ type: 'file', file_id: input.id }] });
        const inPath = `/mnt/session/uploads/${input.id}`;
        const outName = `${marker}.txt`;
        const events = await runTurn(
          ctx,
          session,
          `Use bash to run \`cat ${inPath} ${inPath} > /mnt/session/outputs/${outName} && head -n 1 /mnt/session/outputs/${outName}\` and tell me what it printed.`,
        );
        resultWith(events, marker);
        const listed = [];
        for await (const f of ctx.client.beta.files.list({ scope_id: session })) listed.push(f);
        const output = listed.find((f) => f.filename === outName);
        if (!output) fail(`files.list({ scope_id }) has no ${outName} (it lists ${listed.map((f) => f.filename).join(', ') || 'nothing'})`);
        made.push(output.id);
        if (output.scope?.type !== 'session' || output.scope.id !== session) fail(`${outName} is scoped ${JSON.stringify(output.scope)}, not to the session`);
        const expected = Buffer.concat([upload, upload]);
        const res = await ctx.client.beta.files.download(output.id);
        const got = Buffer.from(await res.arrayBuffer());
        if (!got.equals(expected)) {
          const at = [...got].findIndex((b, i) => b !== expected[i]);
          fail(`the download of ${outName} is ${got.length} bytes, not the ${expected.length} written (first difference at byte ${at === -1 ? got.length : at})`);
        }
        return `uploaded ${upload.length} bytes; the agent read ${marker} and wrote ${outName}, downloaded intact (${got.length} bytes, ${output.mime_type})`;
      } finally {
        // Files outlive sessions: what the scenario made goes with it.
        for (const id of made) await ctx.client.beta.files.delete(id).catch(() => undefined);
      }
    },
  },
  OUTCOMES_SCENARIO,
];

/** The scenarios `only` names (all when empty), built-in first; throws naming any unknown one. */
export function selectScenarios(only: string[] | undefined, extra: Scenario[] = []): Scenario[] {
  const all = [...SCENARIOS, ...extra];
  if (!only?.length) return all;
  const unknown = only.filter((n) => !all.some((s) => s.name === n));
  if (unknown.length) throw new Error(`unknown scenario ${unknown.join(', ')} (known: ${all.map((s) => s.name).join(', ')})`);
  return all.filter((s) => only.includes(s.name));
}

/** Nearest-rank percentile (`p` from 0 to 100) of `values`, or null when there are none. */
export function percentile(values: number[], p: number): number | null {
  if (!values.length) return null;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
}


/** Resolves when `promise` does, or rejects with `what` when `signal` aborts first. */
function within<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    signal.addEventListener('abort', () => reject(signal.reason), { once: true });
    promise.then(resolve, reject);
  });
}

/** Run the scenarios one after another; resolves to one result each, never rejects. */
export async function runScenarios(opts: RunOptions): Promise<ScenarioResult[]> {
  const model = opts.model ?? 'claude-sonnet-4-6';
  const runId = randomBytes(4).toString('hex');
  let scenarios: Scenario[];
  try {
    scenarios = selectScenarios(opts.only, opts.hooks?.scenarios);
  } catch (err) {
    return [{ name: (opts.only ?? []).join(','), ok: false, detail: message(err), durationMs: 0, sessionIds: [] }];
  }
  const baseFetch = opts.clientOptions?.fetch ?? fetch;
  // Shared across scenarios: created on first use, archived or deleted at the end.
  const shared = new Anthropic({ baseURL: opts.baseURL, apiKey: opts.apiKey, ...opts.clientOptions });
  const agents = new Map<string, Promise<string>>();
  let environment: Promise<string> | undefined;
  let counter = 0;

  const results: ScenarioResult[] = [];
  for (const scenario of scenarios) {
    const started = Date.now();
    const timeoutMs = scenario.timeoutMs * (opts.timeoutScale ?? 1);
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(new Error(`timed out after ${Math.round(timeoutMs / 1000)} s`)), timeoutMs);
    const sessionIds: string[] = [];
    const ttft: number[] = [];
    const client = new Anthropic({
      baseURL: opts.baseURL,
      apiKey: opts.apiKey,
      ...opts.clientOptions,
      // Every request of the scenario ends when its time is up.
      fetch: (url, init) => baseFetch(url, { ...init, signal: init?.signal ? AbortSignal.any([init.signal, controller.signal]) : controller.signal }),
    });
    const ctx: ScenarioContext = {
      client,
      model,
      signal: controller.signal,
      marker: (kind) => `corral-smoke-${kind ? `${kind}-` : ''}${runId}${++counter}`,
      agent(kind = 'default') {
        let id = agents.get(kind);
        if (!id) {
          const tools =
            kind === 'ask'
              ? [{ type: 'agent_toolset_20260401' as const, configs: [{ name: 'bash' as const, permission_policy: { type: 'always_ask' as const } }] }]
              : [{ type: 'agent_toolset_20260401' as const }];
          id = shared.beta.agents.create({ name: `corral-smoke-${kind}-${runId}`, model, tools }).then((a) => a.id);
          id.catch(() => agents.delete(kind));
          agents.set(kind, id);
        }
        return within(id, controller.signal);
      },
      async newSession(kind = 'default', o = {}) {
        environment ??= shared.beta.environments.create({ name: `corral-smoke-${runId}`, config: { type: 'cloud' } }).then((e) => e.id);
        environment.catch(() => (environment = undefined));
        const [agent, env] = await Promise.all([ctx.agent(kind), within(environment, controller.signal)]);
        const session = await client.beta.sessions.create({ agent, environment_id: env, title: `corral smoke: ${scenario.name}`, ...(o.resources ? { resources: o.resources } : {}) });
        sessionIds.push(session.id);
        return session.id;
      },
      async follow(sessionId, o = {}) {
        let after = o.after;
        if (after === undefined) {
          // A stream without Last-Event-ID starts at the end of the log: count what is there.
          const { events } = await listPages(client, sessionId);
          after = events.length;
        }
        return new Follower(ctx, sessionId, after).open(o.after !== undefined);
      },
      timeToFirstToken: (ms) => ttft.push(ms),
    };

    let result: ScenarioResult;
    try {
      const detail = await within(scenario.run(ctx), controller.signal);
      result = { name: scenario.name, ok: true, detail, durationMs: Date.now() - started, sessionIds };
    } catch (err) {
      result = { name: scenario.name, ok: false, detail: message(err), durationMs: Date.now() - started, sessionIds };
    } finally {
      clearTimeout(timer);
    }
    if (ttft.length) result.timeToFirstTokenMs = ttft;
    // Its sessions go (their sandboxes with them); one already deleted is fine.
    for (const id of sessionIds) {
      await shared.beta.sessions.delete(id, {}, { timeout: 30_000 }).catch(() => undefined);
    }
    if (opts.hooks?.afterEach) {
      try {
        // The scenario's own signal may have fired (a timeout): the hook gets a client of its own.
        const problem = await opts.hooks.afterEach(result, { ...ctx, client: shared, signal: new AbortController().signal });
        if (problem) result = { ...result, ok: false, detail: `${result.detail}; ${problem}` };
      } catch (err) {
        result = { ...result, ok: false, detail: `${result.detail}; ${message(err)}` };
      }
    }
    results.push(result);
    opts.onResult?.(result);
  }

  // What the run created and a session does not own: agents have no delete, only archive.
  for (const id of agents.values()) {
    await id.then((a) => shared.beta.agents.archive(a, {}, { timeout: 30_000 })).catch(() => undefined);
  }
  await environment?.then((e) => shared.beta.environments.delete(e, {}, { timeout: 30_000 })).catch(() => undefined);
  return results;
}

/** p50 and p95 of every time to first token the results carry. */
export function timeToFirstTokenSummary(results: ScenarioResult[]) {
  const all = results.flatMap((r) => r.timeToFirstTokenMs ?? []);
  return { count: all.length, p50: percentile(all, 50), p95: percentile(all, 95) };
}
