/**
 * The sessions: their list (`/console`) and one session as a live timeline
 * (`/console/sessions/{id}`), read from the SSE stream with fetch (EventSource cannot send
 * headers) starting at `Last-Event-ID: 0`, so the whole log replays and then follows live; on a
 * drop it reconnects with the last position it saw (no gaps, no repeats). A message form and an
 * interrupt button send events.
 */
import type { BetaManagedAgentsSession } from '@anthropic-ai/sdk/resources/beta/sessions/sessions';
import type { BetaManagedAgentsEventParams, BetaManagedAgentsSessionEvent } from '@anthropic-ai/sdk/resources/beta/sessions/events';
import { api, AuthError, authHeaders, base, checkAuth, post } from './api.js';
import { collapsible, fmtClock, fmtDate, fmtMs, h, since, statusBadge, textOf, type Child } from './dom.js';
import { app, crumb, handleError, hooks, running } from './shell.js';

// --- the API's shapes ----------------------------------------------------------------------------

/** A session as Corral returns it: the SDK's, plus the session and position it was forked from. */
type Session = BetaManagedAgentsSession & { forked_from?: { session_id: string; position: number } };

interface SessionPage {
  data: Session[];
  next_page: string | null;
}

type SdkEvent = BetaManagedAgentsSessionEvent;
type EventOf<T extends SdkEvent['type']> = Extract<SdkEvent, { type: T }>;

/** A model request's end, with Corral's time to the first token when the harness recorded it. */
type ModelRequestEnd = EventOf<'span.model_request_end'> & { time_to_first_token_ms?: number };
/** A sandbox tool's result, with the sandbox that ran it (Corral's extension). */
type ToolResult = EventOf<'agent.tool_result'> & { sandbox?: string };

/** The events of a session's log as the stream delivers them (every stored event has its time). */
type StreamEvent = (Exclude<SdkEvent, { type: 'span.model_request_end' | 'agent.tool_result' }> | ModelRequestEnd | ToolResult) & { processed_at: string };

// --- the list of sessions ------------------------------------------------------------------------

function sessionRow(s: Session, onArchive: (s: Session, b: HTMLButtonElement) => void): HTMLTableRowElement {
  const archive = h('button', { type: 'button', class: 'danger small archive', text: 'Archive' });
  archive.addEventListener('click', () => onArchive(s, archive));
  return h('tr', { 'data-id': s.id },
    h('td', null, h('a', { href: base + '/console/sessions/' + encodeURIComponent(s.id), class: 'mono', text: s.id })),
    h('td', { text: s.title || '—' }),
    h('td', null, statusBadge(s.status)),
    h('td', { text: s.agent ? s.agent.name + ' v' + s.agent.version : '' }),
    h('td', { text: fmtDate(s.created_at) }),
    h('td', { text: fmtDate(s.updated_at) }),
    h('td', null, archive));
}

export async function showList(): Promise<void> {
  document.title = 'Corral · sessions';
  crumb.replaceChildren(h('span', { text: 'Sessions' }));
  const tbody = h('tbody');
  const note = h('p', { class: 'muted', id: 'list-note' });
  const more = h('button', { id: 'more', hidden: true, text: 'Load more' });
  const refresh = h('button', { id: 'refresh', text: 'Refresh' });
  const error = h('p', { class: 'error', id: 'list-error' });
  app.replaceChildren(h('section', { class: 'card' },
    h('div', { class: 'row' }, h('h2', { text: 'Sessions' }), h('span', { class: 'spacer' }),
      h('a', { class: 'button', id: 'new-session', href: base + '/console#new-session', text: 'New session' }), refresh),
    error,
    h('table', { class: 'sessions', id: 'sessions' },
      h('thead', null, h('tr', null, ['Session', 'Title', 'Status', 'Agent', 'Created', 'Updated', ''].map((t) => h('th', { text: t })))),
      tbody),
    more, note));
  let next: string | null = null;
  let extra = false;
  async function archive(s: Session, button: HTMLButtonElement): Promise<void> {
    button.disabled = true;
    error.textContent = '';
    try {
      await post<Session>('/v1/sessions/' + encodeURIComponent(s.id) + '/archive', {});
      tbody.querySelector('tr[data-id="' + CSS.escape(s.id) + '"]')?.remove();
    } catch (e) {
      button.disabled = false;
      handleError(e, error);
    }
  }
  async function load(page: string | null): Promise<void> {
    try {
      const body = await api<SessionPage>('/v1/sessions?limit=50&order=desc' + (page ? '&page=' + encodeURIComponent(page) : ''));
      if (!page) tbody.replaceChildren();
      for (const s of body.data) tbody.append(sessionRow(s, archive));
      next = body.next_page;
      more.hidden = !next;
      note.textContent = tbody.children.length ? '' : 'No sessions yet: start one with "New session", the SDK or "corral sessions create".';
    } catch (e) {
      handleError(e, note);
    }
  }
  refresh.addEventListener('click', () => { extra = false; load(null); });
  more.addEventListener('click', () => { extra = true; load(next); });
  await load(null);
  running.timers.push(setInterval(() => { if (!document.hidden && !extra) load(null); }, 5000));
}

// --- one session ---------------------------------------------------------------------------------

type Connection = 'live' | 'reconnecting';

/** A preview of an event the model is still producing (`event_deltas`): never stored, no position. */
type Preview =
  | { type: 'event_start'; event: { type: string; id: string } }
  | { type: 'event_delta'; event_id: string; delta: { type: string; index?: number; content?: { type: string; text?: string } } };

/**
 * Read the session's SSE stream with fetch; reconnect after the last position seen. The stream is
 * asked for previews of `agent.message` (`event_deltas`), which go to `onPreview`.
 */
async function follow(
  id: string,
  onEvent: (e: StreamEvent, pos: number | null) => void,
  onPreview: (p: Preview) => void,
  onConn: (c: Connection) => void,
  signal: AbortSignal,
): Promise<void> {
  let last = 0;
  let delay = 250;
  while (!signal.aborted) {
    try {
      const res = await fetch(base + '/v1/sessions/' + encodeURIComponent(id) + '/events/stream?event_deltas[]=agent.message', {
        headers: Object.assign(authHeaders(), { 'last-event-id': String(last), accept: 'text/event-stream' }),
        cache: 'no-store',
        signal: signal,
      });
      checkAuth(res);
      if (!res.ok || !res.body) throw new Error('stream answered HTTP ' + res.status);
      onConn('live');
      delay = 250;
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = '';
      type Frame = { id: string | null; event: string | null; data: string[] };
      let frame: Frame = { id: null, event: null, data: [] };
      for (;;) {
        const chunk = await reader.read();
        if (chunk.done) break;
        buf += chunk.value;
        let nl;
        while ((nl = buf.search(/\r\n|\r|\n/)) >= 0) {
          if (buf[nl] === '\r' && nl === buf.length - 1) break; // maybe half of a CRLF: wait for more
          const line = buf.slice(0, nl);
          buf = buf.slice(nl + (buf[nl] === '\r' && buf[nl + 1] === '\n' ? 2 : 1));
          if (line === '') {
            const f = frame;
            frame = { id: null, event: null, data: [] };
            if (!f.data.length || f.event === 'ping') continue;
            if (f.event === 'event_start' || f.event === 'event_delta') {
              onPreview(JSON.parse(f.data.join('\n')) as Preview);
              continue;
            }
            const pos = f.id === null ? null : Number(f.id);
            if (pos !== null && pos <= last) continue; // seen already
            if (pos !== null) last = pos;
            onEvent(JSON.parse(f.data.join('\n')) as StreamEvent, pos);
            continue;
          }
          if (line[0] === ':') continue;
          const colon = line.indexOf(':');
          const field = colon < 0 ? line : line.slice(0, colon);
          let value = colon < 0 ? '' : line.slice(colon + 1);
          if (value[0] === ' ') value = value.slice(1);
          if (field === 'id') frame.id = value;
          else if (field === 'event') frame.event = value;
          else if (field === 'data') frame.data.push(value);
        }
      }
    } catch (e) {
      if (signal.aborted) return;
      if (e instanceof AuthError) throw e;
    }
    if (signal.aborted) return;
    onConn('reconnecting');
    await new Promise((r) => setTimeout(r, delay));
    delay = Math.min(5000, delay * 2);
  }
}

/** One line for a tool call: its command, path or pattern, else its input as JSON. */
function toolSummary(input: unknown): string {
  if (!input || typeof input !== 'object') return '';
  const i = input as Record<string, unknown>;
  if (typeof i.command === 'string') return i.command;
  if (typeof i.file_path === 'string') return i.file_path;
  if (typeof i.path === 'string') return i.path;
  if (typeof i.pattern === 'string') return i.pattern;
  if (typeof i.url === 'string') return i.url;
  const j = JSON.stringify(input);
  return j.length > 120 ? j.slice(0, 117) + '…' : j;
}

/** One model request and what happened in it (its timeline entry and latency strip). */
interface Step {
  start: EventOf<'span.model_request_start'>;
  end: ModelRequestEnd | null;
  /** When the first output of the request was stored. */
  firstOutput: string | null;
  toolIds: string[];
  strip: HTMLElement;
  body: HTMLElement;
  /** Turn start to this request, for the first request of a turn. */
  wait: number | null;
  model: number;
  tools: number;
  bar: HTMLElement;
}

/** A tool call's card, until (and after) its result arrives. */
interface ToolCard {
  card: HTMLElement;
  state: HTMLElement;
  dur: HTMLElement;
  chip: HTMLElement;
  result: HTMLElement;
  usedAt: string;
  ms: number | null;
  step: Step | null;
}

export async function showSession(id: string): Promise<void> {
  document.title = 'Corral · ' + id;
  crumb.replaceChildren(h('a', { href: base + '/console', text: 'Sessions' }), h('span', { text: ' / ' }), h('span', { class: 'mono', text: id }));
  const title = h('h2', { id: 'title', text: id });
  const status = statusBadge('…', 'status');
  const conn = h('span', { class: 'conn', id: 'conn', text: 'connecting…' });
  const meta = h('p', { class: 'muted', id: 'meta' });
  const sandboxes = h('span', { id: 'sandboxes', class: 'chips' });
  const usage = h('span', { id: 'usage' });
  const outcomes = h('ul', { class: 'outcomes', id: 'outcomes', hidden: true });
  // A coordinator's threads and their status, as its log reports them (docs/THREADS.md).
  const threads = h('span', { id: 'threads', class: 'chips' });
  const threadsLine = h('p', { class: 'muted', id: 'threads-line', hidden: true }, h('span', { text: 'threads: ' }), threads);
  const timeline = h('ol', { class: 'timeline', id: 'timeline' });
  const message = h('textarea', { id: 'message', rows: 2, placeholder: 'Message the agent (Ctrl+Enter sends)' });
  const send = h('button', { type: 'submit', id: 'send', text: 'Send' });
  const interrupt = h('button', { type: 'button', id: 'interrupt', class: 'danger', text: 'Interrupt', disabled: true });
  const formErr = h('p', { class: 'error', id: 'send-error' });
  const form = h('form', { class: 'composer', id: 'send-form' }, message, h('div', { class: 'buttons' }, send, interrupt), formErr);
  app.replaceChildren(
    h('section', { class: 'card head' },
      h('div', { class: 'row' }, title, status, h('span', { class: 'spacer' }), conn),
      meta,
      h('p', { class: 'muted' }, h('span', { text: 'sandboxes: ' }), sandboxes, h('span', { text: ' · ' }), usage),
      outcomes,
      threadsLine),
    h('p', { class: 'legend muted', text: 'Each step is one model request. wait: turn start to request · first output: request start to its first stored output (a response is stored whole, so this is the model time unless the harness records time_to_first_token_ms) · model: request start to end · tools: tool_use to tool_result, summed.' }),
    timeline,
    form);

  const st = {
    status: null as string | null,
    steps: new Map<string, Step>(),
    tools: new Map<string, ToolCard>(),
    sandboxes: new Set<string>(),
    threads: new Map<string, { agent: string; status: string }>(),
    turnStart: null as string | null,
    stepCount: 0,
    openStep: null as Step | null,
    tokens: { in: 0, out: 0 },
    longest: 0,
  };

  function setStatus(s: string): void {
    st.status = s;
    status.textContent = s;
    status.className = 'badge status-' + s;
    interrupt.disabled = s !== 'running';
  }

  try {
    const s = await api<Session>('/v1/sessions/' + encodeURIComponent(id));
    title.textContent = s.title || s.id;
    document.title = 'Corral · ' + (s.title || s.id);
    meta.textContent = 'agent ' + s.agent.name + ' v' + s.agent.version + ' · model ' + (s.agent.model && s.agent.model.id) +
      ' · environment ' + s.environment_id + ' · created ' + fmtDate(s.created_at) +
      (s.forked_from ? ' · forked from ' + s.forked_from.session_id + ' at ' + s.forked_from.position : '');
    setStatus(s.status);
    renderOutcomes(s.outcome_evaluations || []);
  } catch (e) {
    if (e instanceof AuthError) return hooks.keyPrompt(e.message);
    app.replaceChildren(h('section', { class: 'card' }, h('p', { class: 'error', id: 'load-error', text: String((e as Error).message || e) }), h('a', { href: base + '/console', text: 'All sessions' })));
    return;
  }

  /**
   * The session's `outcome_evaluations` under its header: each outcome's state (its last verdict,
   * or pending / running / evaluating), the evaluations so far, its description and the grader's
   * last explanation. The session record holds them, not the stream, so the view reads the
   * session again when an outcome is defined, its evaluation starts or ends, or the session idles (once for a burst
   * of such events, as when the log replays).
   */
  function renderOutcomes(list: Session['outcome_evaluations']): void {
    outcomes.hidden = list.length === 0;
    outcomes.replaceChildren(...list.map((o) => {
      const open = o.result === 'pending' || o.result === 'running' || o.result === 'evaluating';
      const done = o.result === 'pending' || o.result === 'running' ? o.iteration : o.iteration + 1;
      const where = o.result === 'evaluating' ? 'evaluation ' + (o.iteration + 1) + ' under way' : done + ' evaluation' + (done === 1 ? '' : 's') + (o.completed_at ? ' · ' + fmtDate(o.completed_at) : '');
      return h('li', { class: 'outcome', 'data-outcome-id': o.outcome_id, 'data-result': o.result },
        h('span', { class: 'badge outcome-' + (o.result === 'satisfied' ? 'ok' : open ? 'open' : 'bad'), text: o.result }),
        h('span', { class: 'muted', text: ' ' + where + ' · ' }),
        h('span', { text: o.description }),
        o.explanation ? h('div', { class: 'muted explanation', text: 'grader: ' + o.explanation }) : null);
    }));
  }
  let outcomesTimer: ReturnType<typeof setTimeout> | null = null;
  function refreshOutcomes(tries = 10): void {
    if (outcomesTimer) clearTimeout(outcomesTimer);
    outcomesTimer = setTimeout(() => {
      outcomesTimer = null;
      api<Session>('/v1/sessions/' + encodeURIComponent(id)).then((s) => {
        renderOutcomes(s.outcome_evaluations || []);
        // The harness moves the record on (status and outcomes together) just after it appends
        // the idle: a record that is not idle yet is read again, a few times.
        if (st.status === 'idle' && s.status !== 'idle' && tries > 1 && !outcomesTimer) refreshOutcomes(tries - 1);
      }, () => undefined);
    }, tries === 10 ? 200 : 500);
  }

  function atBottom(): boolean {
    return window.innerHeight + window.scrollY >= document.documentElement.scrollHeight - 120;
  }

  function item(e: StreamEvent, pos: number | null, cls: string, label: string, body: Child): HTMLLIElement {
    return h('li', { class: 'ev ' + cls, 'data-type': e.type, 'data-position': pos, title: e.id + ' · ' + e.processed_at },
      h('span', { class: 'time', text: fmtClock(e.processed_at) }),
      h('span', { class: 'label', text: label }),
      h('div', { class: 'body' }, body));
  }

  function divider(e: StreamEvent, pos: number | null, text: string, cls?: string): HTMLLIElement {
    return h('li', { class: 'ev divider ' + (cls || ''), 'data-type': e.type, 'data-position': pos, title: e.id + ' · ' + e.processed_at },
      h('span', { class: 'time', text: fmtClock(e.processed_at) }), h('span', { class: 'text', text: text }));
  }

  function renderStrip(step: Step): void {
    const parts: HTMLElement[] = [];
    const chip = (name: string, value: string, hint: string) => h('span', { class: 'lat lat-' + name, title: hint }, h('b', { text: name }), ' ' + value);
    if (step.wait !== null) parts.push(chip('wait', fmtMs(step.wait), 'from session.status_running to this model request'));
    const model = step.end ? since(step.start.processed_at, step.end.processed_at) : null;
    let first: number | null = null;
    if (step.end && typeof step.end.time_to_first_token_ms === 'number') first = step.end.time_to_first_token_ms;
    else if (step.firstOutput) first = since(step.start.processed_at, step.firstOutput);
    parts.push(chip('first output', fmtMs(first), 'request start to the first stored output event'));
    parts.push(chip('model', step.end ? fmtMs(model) + (step.end.is_error ? ' (failed)' : '') : 'running…', 'span.model_request_start to span.model_request_end'));
    let toolMs = 0;
    let pending = 0;
    for (const t of step.toolIds) {
      const tool = st.tools.get(t);
      if (tool && tool.ms !== null) toolMs += tool.ms;
      else pending++;
    }
    if (step.toolIds.length) parts.push(chip('tools', (pending ? 'running… ' : '') + fmtMs(toolMs) + ' (' + step.toolIds.length + ')', 'agent.tool_use to agent.tool_result, summed'));
    const u = step.end && step.end.model_usage;
    if (u) parts.push(chip('tokens', 'in ' + u.input_tokens + ' · out ' + u.output_tokens, 'model usage of this request'));
    // The bar: this step's model and tool time, on one scale for the whole session (the longest
    // step fills it), so the slow steps stand out.
    step.model = model || 0;
    step.tools = toolMs;
    const total = step.model + step.tools;
    if (total > st.longest) {
      st.longest = total;
      for (const other of st.steps.values()) if (other !== step) drawBar(other);
    }
    step.strip.replaceChildren(...parts, step.bar);
    drawBar(step);
  }

  function drawBar(step: Step): void {
    const scale = st.longest > 0 ? 100 / st.longest : 0;
    // Through the CSSOM: the Content-Security-Policy allows no inline style attributes.
    const m = h('span', { class: 'seg seg-model', title: 'model ' + fmtMs(step.model) });
    const t = h('span', { class: 'seg seg-tools', title: 'tools ' + fmtMs(step.tools) });
    m.style.width = (step.model * scale).toFixed(2) + '%';
    t.style.width = (step.tools * scale).toFixed(2) + '%';
    step.bar.replaceChildren(m, t);
  }

  function renderSandboxes(): void {
    sandboxes.replaceChildren(...(st.sandboxes.size ? [...st.sandboxes].map((n) => h('span', { class: 'chip', text: n })) : [h('span', { text: 'none yet' })]));
  }
  renderSandboxes();

  function renderThreads(): void {
    threadsLine.hidden = st.threads.size === 0;
    threads.replaceChildren(
      ...[...st.threads].map(([tid, th]) => h('span', { class: 'chip thread thread-' + th.status, 'data-thread-id': tid, title: tid, text: th.agent + ' · ' + th.status })),
    );
  }

  function place(li: HTMLElement): void {
    (st.openStep ? st.openStep.body : timeline).append(li);
  }

  /**
   * The message the model is writing, shown as its previews arrive: one item per previewed
   * message, replaced by the stored message (same id) when it comes, or dropped at the end of the
   * model request that did not produce it.
   */
  const previews = new Map<string, { li: HTMLLIElement; pre: HTMLElement; parts: string[] }>();
  function onPreview(p: Preview): void {
    const follow = atBottom();
    if (p.type === 'event_start') {
      if (p.event.type !== 'agent.message' || previews.has(p.event.id)) return;
      const pre = h('pre', { class: 'text' });
      const li = h('li', { class: 'ev ev-agent preview', 'data-preview-id': p.event.id, title: p.event.id + ' · being written' },
        h('span', { class: 'time', text: '…' }),
        h('span', { class: 'label', text: 'agent' }),
        h('div', { class: 'body' }, pre));
      previews.set(p.event.id, { li: li, pre: pre, parts: [] });
      place(li);
    } else {
      const open = previews.get(p.event_id);
      const text = p.delta.content && p.delta.content.text;
      if (!open || typeof text !== 'string') return;
      const index = p.delta.index || 0;
      open.parts[index] = (open.parts[index] || '') + text;
      open.pre.textContent = open.parts.filter((x) => x !== undefined).join('\n');
    }
    if (follow) window.scrollTo(0, document.documentElement.scrollHeight);
  }
  function endPreview(id: string | null): void {
    for (const [key, open] of previews) {
      if (id !== null && key !== id) continue;
      open.li.remove();
      previews.delete(key);
    }
  }

  function onEvent(e: StreamEvent, pos: number | null): void {
    const follow = atBottom();
    // A stored message replaces its preview; a request's end drops what it did not produce.
    if (e.type === 'agent.message') endPreview(e.id);
    else if (e.type === 'span.model_request_end') endPreview(null);
    switch (e.type) {
      case 'user.message':
        timeline.append(item(e, pos, 'ev-user', 'you', collapsible(textOf(e.content), 'text')));
        break;
      case 'user.interrupt':
        timeline.append(divider(e, pos, 'interrupt', 'warn'));
        break;
      case 'session.status_running':
        setStatus('running');
        st.turnStart = e.processed_at;
        timeline.append(divider(e, pos, 'running'));
        break;
      case 'session.status_idle': {
        setStatus('idle');
        st.openStep = null;
        const why = e.stop_reason ? e.stop_reason.type : '';
        timeline.append(divider(e, pos, 'idle' + (why ? ' · ' + why : ''), why && why !== 'end_turn' ? 'warn' : ''));
        if (!outcomes.hidden || outcomesTimer) refreshOutcomes();
        break;
      }
      case 'session.status_terminated':
        setStatus('terminated');
        timeline.append(divider(e, pos, 'terminated', 'warn'));
        break;
      case 'session.status_rescheduled':
        timeline.append(divider(e, pos, 'rescheduled (a new harness took over)'));
        break;
      case 'span.model_request_start': {
        st.stepCount++;
        const strip = h('div', { class: 'strip' });
        const body = h('ol', { class: 'step-body' });
        const li = h('li', { class: 'ev step', 'data-type': e.type, 'data-position': pos, title: e.id + ' · ' + e.processed_at },
          h('div', { class: 'step-head' }, h('span', { class: 'time', text: fmtClock(e.processed_at) }), h('span', { class: 'label', text: 'step ' + st.stepCount }), strip),
          body);
        const step: Step = { start: e, end: null, firstOutput: null, toolIds: [], strip: strip, body: body, wait: null, model: 0, tools: 0, bar: h('span', { class: 'bar' }) };
        if (st.turnStart) {
          step.wait = since(st.turnStart, e.processed_at);
          st.turnStart = null;
        }
        st.steps.set(e.id, step);
        st.openStep = step;
        timeline.append(li);
        renderStrip(step);
        break;
      }
      case 'span.model_request_end': {
        const step = st.steps.get(e.model_request_start_id) || st.openStep;
        if (step) {
          step.end = e;
          renderStrip(step);
          if (step === st.openStep) st.openStep = null;
        }
        if (e.model_usage) {
          st.tokens.in += e.model_usage.input_tokens || 0;
          st.tokens.out += e.model_usage.output_tokens || 0;
          usage.textContent = 'tokens in ' + st.tokens.in + ' · out ' + st.tokens.out;
        }
        break;
      }
      case 'agent.message':
      case 'agent.thinking': {
        if (st.openStep && !st.openStep.firstOutput) {
          st.openStep.firstOutput = e.processed_at;
          renderStrip(st.openStep);
        }
        place(e.type === 'agent.message'
          ? item(e, pos, 'ev-agent', 'agent', collapsible(textOf(e.content), 'text'))
          : item(e, pos, 'ev-thinking', 'thinking', h('span', { class: 'muted', text: '(thinking)' })));
        break;
      }
      case 'agent.tool_use':
      case 'agent.custom_tool_use':
      case 'agent.mcp_tool_use': {
        const step = st.openStep;
        if (step && !step.firstOutput) step.firstOutput = e.processed_at;
        const state = h('span', { class: 'tool-state', text: e.type === 'agent.custom_tool_use' ? 'waiting for the client' : 'running…' });
        const dur = h('span', { class: 'tool-ms' });
        const chip = h('span', { class: 'chip sandbox' });
        const result = h('div', { class: 'tool-result' });
        const input: unknown = e.input === undefined ? {} : e.input;
        const card = h('li', { class: 'ev tool', 'data-type': e.type, 'data-position': pos, 'data-tool-use-id': e.id, title: e.id + ' · ' + e.processed_at },
          h('div', { class: 'tool-head' },
            h('span', { class: 'time', text: fmtClock(e.processed_at) }),
            h('span', { class: 'tool-name', text: String(e.name) }),
            h('code', { class: 'tool-summary', text: toolSummary(input) }),
            h('span', { class: 'spacer' }), chip, dur, state),
          h('div', { class: 'tool-io' }, h('span', { class: 'io-label', text: 'input' }), collapsible(JSON.stringify(input, null, 2), 'json')),
          result);
        st.tools.set(e.id, { card: card, state: state, dur: dur, chip: chip, result: result, usedAt: e.processed_at, ms: null, step: step });
        if (step) step.toolIds.push(e.id);
        place(card);
        if (step) renderStrip(step);
        break;
      }
      case 'agent.tool_result':
      case 'agent.mcp_tool_result':
      case 'user.custom_tool_result': {
        const useId = e.type === 'agent.tool_result' ? e.tool_use_id : e.type === 'agent.mcp_tool_result' ? e.mcp_tool_use_id : e.custom_tool_use_id;
        const tool = st.tools.get(useId);
        const text = textOf(e.content);
        if (!tool) {
          timeline.append(item(e, pos, 'ev-other', e.type, collapsible(text, 'text')));
          break;
        }
        tool.ms = since(tool.usedAt, e.processed_at);
        tool.state.textContent = e.is_error ? 'error' : 'ok';
        tool.card.classList.add('is-done');
        tool.card.classList.toggle('is-error', !!e.is_error);
        tool.card.setAttribute('data-result-position', String(pos));
        tool.dur.textContent = fmtMs(tool.ms);
        const sandbox = e.type === 'agent.tool_result' ? e.sandbox : undefined;
        if (sandbox) {
          tool.chip.textContent = 'sandbox ' + sandbox;
          st.sandboxes.add(String(sandbox));
          renderSandboxes();
        }
        tool.result.replaceChildren(h('span', { class: 'io-label', text: e.is_error ? 'error' : 'result' }), collapsible(text, 'out'));
        if (tool.step) renderStrip(tool.step);
        break;
      }
      case 'user.define_outcome': {
        const rubric = e.rubric.type === 'text' ? e.rubric.content : 'file ' + e.rubric.file_id;
        timeline.append(item(e, pos, 'ev-user ev-outcome', 'outcome', collapsible(e.description + '\n\nRubric (at most ' + String(e.max_iterations) + ' evaluations):\n' + rubric, 'text')));
        refreshOutcomes();
        break;
      }
      case 'span.outcome_evaluation_start':
        timeline.append(divider(e, pos, 'grading the outcome · evaluation ' + (e.iteration + 1)));
        refreshOutcomes();
        break;
      case 'span.outcome_evaluation_end': {
        const ok = e.result === 'satisfied';
        timeline.append(item(e, pos, 'ev-verdict' + (ok ? '' : ' ev-error'), 'grader', h('span', { text: e.result + ': ' + e.explanation })));
        refreshOutcomes();
        if (e.usage) {
          st.tokens.in += e.usage.input_tokens || 0;
          st.tokens.out += e.usage.output_tokens || 0;
          usage.textContent = 'tokens in ' + st.tokens.in + ' · out ' + st.tokens.out;
        }
        break;
      }
      case 'session.error': {
        const err: { type?: string; message?: string; retry_status?: { type?: string } } = e.error || {};
        const retry = err.retry_status && err.retry_status.type;
        timeline.append(item(e, pos, 'ev-error', 'error', h('span', { text: (err.type || 'error') + ': ' + (err.message || '') + (retry ? ' (' + retry + ')' : '') })));
        break;
      }
      case 'user.tool_confirmation':
        timeline.append(divider(e, pos, 'tool ' + e.result + (e.deny_message ? ': ' + e.deny_message : '')));
        break;
      case 'session.thread_created':
        st.threads.set(e.session_thread_id, { agent: e.agent_name, status: 'running' });
        renderThreads();
        timeline.append(divider(e, pos, 'thread ' + e.session_thread_id + ' started · agent ' + e.agent_name, 'ev-thread'));
        break;
      case 'session.thread_status_running':
      case 'session.thread_status_idle':
      case 'session.thread_status_terminated': {
        const th = st.threads.get(e.session_thread_id);
        if (th) th.status = e.type.slice('session.thread_status_'.length);
        renderThreads();
        if (e.type !== 'session.thread_status_running') timeline.append(divider(e, pos, 'thread ' + e.session_thread_id + ' ' + e.type.slice('session.thread_status_'.length), 'ev-thread'));
        break;
      }
      case 'agent.thread_message_sent':
        timeline.append(item(e, pos, 'ev-agent ev-thread', 'to ' + (e.to_agent_name || 'thread'), collapsible(textOf(e.content), 'text')));
        break;
      case 'agent.thread_message_received':
        timeline.append(item(e, pos, 'ev-user ev-thread', 'from ' + (e.from_agent_name || 'thread'), collapsible(textOf(e.content), 'text')));
        break;
      default:
        timeline.append(item(e, pos, 'ev-other', e.type, collapsible(JSON.stringify(e, null, 2), 'json')));
    }
    if (follow) window.scrollTo(0, document.documentElement.scrollHeight);
  }

  async function sendEvents(events: BetaManagedAgentsEventParams[], button: HTMLButtonElement): Promise<boolean> {
    button.disabled = true;
    formErr.textContent = '';
    try {
      await post<unknown>('/v1/sessions/' + encodeURIComponent(id) + '/events', { events: events });
      return true;
    } catch (e) {
      handleError(e, formErr);
      return false;
    } finally {
      button.disabled = button === interrupt ? st.status !== 'running' : false;
    }
  }
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const text = message.value.trim();
    if (!text) return;
    if (await sendEvents([{ type: 'user.message', content: [{ type: 'text', text: text }] }], send)) message.value = '';
  });
  message.addEventListener('keydown', (ev) => {
    if (ev.key === 'Enter' && (ev.ctrlKey || ev.metaKey)) form.requestSubmit();
  });
  interrupt.addEventListener('click', () => sendEvents([{ type: 'user.interrupt' }], interrupt));

  const abort = new AbortController();
  running.aborts.push(abort);
  follow(id, onEvent, onPreview, (c) => {
    conn.textContent = c;
    conn.className = 'conn conn-' + c;
  }, abort.signal).catch((e) => handleError(e, formErr));
}

