/**
 * The console's DOM helpers: building elements (every value from the API goes in with
 * `textContent` or as an attribute, never parsed as HTML) and formatting times and text.
 */

export type AttrValue = string | number | boolean | null | undefined;
/** Attributes of `h`: `class`, `text` (the text content), `on<event>` listeners, or attributes. */
export type Attrs = Record<string, AttrValue | EventListener>;
export type Child = Node | string | number | null | undefined | false;

export function h<K extends keyof HTMLElementTagNameMap>(tag: K, attrs?: Attrs | null, ...children: Array<Child | Child[]>): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'class') el.className = String(v);
    else if (k === 'text') el.textContent = String(v);
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v as EventListener);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

/** What an error says, for the page. */
export function messageOf(err: unknown): string {
  return String((err && (err as { message?: unknown }).message) || err);
}

export const pad = (n: number, w?: number) => String(n).padStart(w || 2, '0');
export function fmtClock(iso: string): string {
  const d = new Date(iso);
  return pad(d.getHours()) + ':' + pad(d.getMinutes()) + ':' + pad(d.getSeconds()) + '.' + pad(d.getMilliseconds(), 3);
}
export function fmtDate(iso: string): string {
  const d = new Date(iso);
  return d.toLocaleDateString() + ' ' + pad(d.getHours()) + ':' + pad(d.getMinutes());
}
export function fmtMs(ms: number | null | undefined): string {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return '…';
  if (ms < 1000) return Math.max(0, Math.round(ms)) + ' ms';
  if (ms < 60000) return (ms / 1000).toFixed(ms < 10000 ? 2 : 1) + ' s';
  return Math.floor(ms / 60000) + 'm ' + pad(Math.round((ms % 60000) / 1000)) + 's';
}
export const since = (a: string, b: string) => Date.parse(b) - Date.parse(a);

export function statusBadge(status: string, id?: string): HTMLSpanElement {
  return h('span', { class: 'badge status-' + status, id: id, text: status });
}

/**
 * The text of a message's content blocks: a web search hit as its title and address, a fetched
 * document as its address, other blocks as `[type]`.
 */
export function textOf(content: unknown): string {
  if (!Array.isArray(content)) return '';
  return (content as Array<{ type?: string; text?: string; title?: string; source?: unknown } | null>)
    .map((b) => {
      if (!b) return '';
      if (b.type === 'text') return b.text;
      if (b.type === 'search_result') return (b.title ?? '') + ' — ' + String(b.source ?? '');
      const url = (b.source as { url?: unknown } | undefined)?.url;
      if (b.type === 'document' && typeof url === 'string') return '[document] ' + (b.title ? b.title + ' — ' : '') + url;
      return b.type ? '[' + b.type + ']' : '';
    })
    .join('\n');
}

/** Long text shows its first lines, with the rest behind a toggle. */
export function collapsible(text: string, cls: string): HTMLElement {
  const lines = text.split('\n');
  const LINES = 12;
  const CHARS = 1500;
  if (lines.length <= LINES && text.length <= CHARS) return h('pre', { class: cls }, text);
  const head = lines.slice(0, LINES).join('\n').slice(0, CHARS);
  const full = h('pre', { class: cls }, text);
  const short = h('pre', { class: cls }, head + '\n…');
  const det = h('details', { class: 'more' }, h('summary', { text: 'show all (' + lines.length + ' lines, ' + text.length + ' characters)' }), full);
  det.addEventListener('toggle', () => { short.hidden = det.open; });
  return h('div', { class: 'collapsible' }, short, det);
}
