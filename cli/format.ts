import type { StreamPreview } from './sse.js';
import { toolUseIdOf, type SessionEvent } from '../lambdas/core/session/events.js';

/** Human-readable output: colours only on a terminal (and never with NO_COLOR). */
export interface Style {
  dim(s: string): string;
  bold(s: string): string;
  red(s: string): string;
  green(s: string): string;
  yellow(s: string): string;
  blue(s: string): string;
  magenta(s: string): string;
  cyan(s: string): string;
}

export function makeStyle(enabled: boolean): Style {
  const c = (open: number, close: number) => (s: string) => (enabled ? `\x1b[${open}m${s}\x1b[${close}m` : s);
  return {
    dim: c(2, 22),
    bold: c(1, 22),
    red: c(31, 39),
    green: c(32, 39),
    yellow: c(33, 39),
    blue: c(34, 39),
    magenta: c(35, 39),
    cyan: c(36, 39),
  };
}

export function fmtMs(ms: number): string {
  if (!Number.isFinite(ms)) return '?';
  if (ms < 1000) return `${Math.max(0, Math.round(ms))}ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(2)}s`;
  return `${Math.floor(ms / 60_000)}m${String(Math.round((ms % 60_000) / 1000)).padStart(2, '0')}s`;
}

export function fmtTime(iso: string): string {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  const p = (n: number, w = 2) => String(n).padStart(w, '0');
  return `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}.${p(d.getMilliseconds(), 3)}`;
}

export function fmtDate(iso: string | null | undefined): string {
  if (!iso) return '-';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  const p = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}`;
}

/** A plain table: header row, columns padded to their widest cell. */
export function table(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i])))
      .join('  ')
      .trimEnd();
  return [line(headers), ...rows.map(line)].join('\n') + '\n';
}

/** The text of content blocks: a web search hit as its title and address, a fetched document as its address, others as `[type]`. */
function textOf(content: unknown): string {
  if (!Array.isArray(content)) return '';
  return content
    .map((b: { type?: string; text?: string; title?: string; source?: unknown }) => {
      if (b?.type === 'text') return String(b.text ?? '');
      if (b?.type === 'search_result') return `${b.title ?? ''} — ${String(b.source ?? '')}`;
      const url = (b?.source as { url?: unknown } | undefined)?.url;
      if (b?.type === 'document' && typeof url === 'string') return `[document] ${b.title ? `${b.title} — ` : ''}${url}`;
      return b?.type ? `[${b.type}]` : '';
    })
    .join('\n');
}

function oneLine(s: string, max = 100): string {
  const flat = s.replace(/\s+/g, ' ').trim();
  return flat.length > max ? flat.slice(0, max - 1) + '…' : flat;
}

function toolSummary(input: unknown): string {
  if (!input || typeof input !== 'object') return '';
  const i = input as Record<string, unknown>;
  for (const k of ['command', 'file_path', 'path', 'pattern', 'url']) if (typeof i[k] === 'string') return oneLine(i[k] as string);
  return oneLine(JSON.stringify(input));
}

/** An outcome's result (a verdict, or its state while it runs), coloured by what it means for the user. */
export function outcomeResult(s: Style, result: string): string {
  if (result === 'satisfied') return s.green(result);
  if (result === 'needs_revision' || result === 'pending' || result === 'running' || result === 'evaluating') return s.yellow(result);
  return s.red(result);
}

/**
 * Formats session events one after another, remembering what it needs to show durations: the
 * model time on `span.model_request_end`, the tool time on `agent.tool_result`.
 */
export class EventFormatter {
  private readonly starts = new Map<string, string>();
  private readonly toolUses = new Map<string, { at: string; name: string }>();
  constructor(
    private readonly style: Style,
    private readonly maxLines = 20,
  ) {}

  format(e: SessionEvent, position: number | null): string {
    const s = this.style;
    const pos = (position === null ? '-' : String(position)).padStart(5);
    const head = `${s.dim(pos)}  ${s.dim(fmtTime(e.processed_at))}  `;
    const TYPE_WIDTH = 25;
    const indent = ' '.repeat(5 + 2 + 12 + 2 + TYPE_WIDTH + 1);
    /** Text on the event's line, further lines under it; tool output is cut at `maxLines`. */
    const body = (text: string, max = Infinity) => {
      const lines = text.replace(/\n$/, '').split('\n');
      const shown = lines.slice(0, max);
      const more = lines.length - shown.length;
      return (
        shown.map((l, i) => (i === 0 ? l : `\n${indent}${l}`)).join('') +
        (more > 0 ? `\n${indent}${s.dim(`… ${more} more line(s); --json shows everything`)}` : '')
      );
    };
    const type = (t: string, color: (x: string) => string) => color(t.padEnd(TYPE_WIDTH)) + ' ';
    switch (e.type) {
      case 'user.message':
        return head + type('user.message', s.yellow) + body(textOf(e.content));
      case 'agent.message':
        return head + type('agent.message', s.magenta) + body(textOf(e.content));
      case 'agent.tool_use':
      case 'agent.mcp_tool_use':
      case 'agent.custom_tool_use':
        this.toolUses.set(e.id, { at: e.processed_at, name: e.name });
        return head + type(e.type, s.cyan) + `${s.bold(e.name)} ${toolSummary(e.input)}`;
      case 'agent.tool_result':
      case 'agent.mcp_tool_result':
      case 'user.custom_tool_result': {
        const use = this.toolUses.get(toolUseIdOf(e));
        const took = use ? ` ${fmtMs(Date.parse(e.processed_at) - Date.parse(use.at))}` : '';
        const where = e.type === 'agent.tool_result' && e.sandbox ? ` sandbox ${e.sandbox}` : '';
        const status = e.is_error ? s.red('error') : s.green('ok');
        const output = textOf(e.content);
        return head + type(e.type, s.cyan) + `${status}${s.dim(took + where)}` + (output ? `\n${indent}${body(output, this.maxLines)}` : '');
      }
      case 'span.model_request_start':
        this.starts.set(e.id, e.processed_at);
        return head + type(e.type, s.dim) + s.dim('model request');
      case 'span.model_request_end': {
        const start = this.starts.get(e.model_request_start_id);
        const took = start ? `model ${fmtMs(Date.parse(e.processed_at) - Date.parse(start))}` : 'model request';
        const u = e.model_usage;
        const tokens = u ? `, ${u.input_tokens ?? 0} in / ${u.output_tokens ?? 0} out tokens` : '';
        return head + type(e.type, s.dim) + (e.is_error ? s.red(`${took}, failed`) : s.dim(took + tokens));
      }
      case 'session.status_running':
        return head + type(e.type, s.blue) + s.blue('running');
      case 'session.status_idle': {
        const why = e.stop_reason?.type ?? '';
        return head + type(e.type, s.green) + (why === 'end_turn' ? s.green(why) : s.yellow(why));
      }
      case 'session.error': {
        const err = e.error;
        return head + type(e.type, s.red) + s.red(`${err?.type ?? 'error'}: ${err?.message ?? ''}${err?.retry_status?.type ? ` (${err.retry_status.type})` : ''}`);
      }
      case 'user.interrupt':
        return head + type(e.type, s.yellow) + 'interrupt';
      case 'user.tool_confirmation':
        return head + type(e.type, s.yellow) + `${e.result} ${e.tool_use_id}${e.deny_message ? `: ${e.deny_message}` : ''}`;
      case 'user.define_outcome': {
        const rubric = e.rubric.type === 'text' ? e.rubric.content : `file ${e.rubric.file_id}`;
        const limit = e.max_iterations ? `, at most ${e.max_iterations} evaluations` : '';
        return head + type(e.type, s.yellow) + `outcome ${e.outcome_id}${s.dim(limit)}\n${indent}${body(e.description)}\n${indent}${s.dim(`rubric: ${oneLine(rubric, 200)}`)}`;
      }
      case 'span.outcome_evaluation_start':
        this.starts.set(e.id, e.processed_at);
        return head + type(e.type, s.blue) + `grading ${e.outcome_id}, evaluation ${e.iteration + 1}`;
      case 'span.outcome_evaluation_ongoing':
        return head + type(e.type, s.dim) + s.dim(`still grading ${e.outcome_id}, evaluation ${e.iteration + 1}`);
      case 'span.outcome_evaluation_end': {
        const start = this.starts.get(e.outcome_evaluation_start_id);
        const took = start ? ` in ${fmtMs(Date.parse(e.processed_at) - Date.parse(start))}` : '';
        const u = e.usage;
        const tokens = u ? `, ${u.input_tokens ?? 0} in / ${u.output_tokens ?? 0} out tokens` : '';
        return head + type(e.type, s.blue) + `${outcomeResult(s, e.result)} ${s.dim(`evaluation ${e.iteration + 1}${took}${tokens}`)}` + (e.explanation ? `\n${indent}${body(e.explanation)}` : '');
      }
      default: {
        const { id: _id, type: _t, processed_at: _p, ...rest } = e;
        const extra = Object.keys(rest).length ? oneLine(JSON.stringify(rest), 120) : '';
        return head + type(e.type, s.dim) + s.dim(extra);
      }
    }
  }
}

/**
 * The message the model is writing, as the stream's previews bring it (`event_deltas`): `sessions
 * tail` shows its last characters in the progress line, on a terminal, until the stored message
 * (or the end of the model request) arrives and is printed as usual. Nothing of it is printed to
 * stdout, so the printed log is the same with or without previews.
 */
export class LivePreview {
  private id: string | null = null;
  private text = '';

  /** Take a preview; true when the line changed. */
  apply(p: StreamPreview): boolean {
    if (p.type === 'event_start') {
      if (p.event.type !== 'agent.message') return false;
      this.id = p.event.id;
      this.text = '';
      return true;
    }
    if (p.event_id !== this.id || typeof p.delta.content?.text !== 'string') return false;
    this.text += p.delta.content.text;
    return true;
  }

  /** A stored event arrived: true when it ends the preview (its message, or its request's end). */
  conclude(event: { id: string; type: string }): boolean {
    if (this.id === null || (event.id !== this.id && event.type !== 'span.model_request_end')) return false;
    this.id = null;
    this.text = '';
    return true;
  }

  /** The progress line: the last `width` characters of the text so far, on one line; null when no preview is open. */
  line(width = 60): string | null {
    if (this.id === null) return null;
    const flat = this.text.replace(/\s+/g, ' ').trimStart();
    return `agent: ${flat.length > width ? '…' + flat.slice(-width) : flat}`;
  }
}
