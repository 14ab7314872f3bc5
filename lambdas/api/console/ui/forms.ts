/**
 * Form pieces the manage views share: labelled fields, JSON editors (parsed in the page only to
 * send them; what the API accepts is the API's to say, and its 400 is shown as it is), and one
 * submit path that disables the button while the request runs and shows the API's error.
 */
import { h, type Child } from './dom.js';
import { handleError } from './shell.js';

/** A labelled field. */
export function field(label: string, input: HTMLElement, hint?: string): HTMLLabelElement {
  return h('label', { class: 'field' }, h('span', { class: 'field-label', text: label }), input, hint ? h('span', { class: 'hint muted', text: hint }) : null);
}

export function textInput(id: string, value?: string | null, attrs: Record<string, string | boolean> = {}): HTMLInputElement {
  const input = h('input', Object.assign({ id: id, type: 'text', autocomplete: 'off', spellcheck: 'false' }, attrs));
  input.value = value ?? '';
  return input;
}

export function textArea(id: string, value?: string | null, rows = 3): HTMLTextAreaElement {
  const t = h('textarea', { id: id, rows: rows, spellcheck: 'false' });
  t.value = value ?? '';
  return t;
}

/** A secret's input: a password field the browser neither autofills nor remembers. */
export function secretInput(id: string): HTMLInputElement {
  return h('input', { id: id, type: 'password', autocomplete: 'new-password', spellcheck: 'false', 'data-secret': true });
}

export function select(id: string, options: Array<[string, string]>, value?: string): HTMLSelectElement {
  const s = h('select', { id: id }, options.map(([v, label]) => h('option', { value: v, text: label })));
  if (value !== undefined) s.value = value;
  return s;
}

export function checkbox(id: string, checked: boolean): HTMLInputElement {
  const c = h('input', { id: id, type: 'checkbox' });
  c.checked = checked;
  return c;
}

/** A JSON editor's value, or an error naming the field. An empty editor is `empty`. */
export function parseJson<T>(label: string, text: string, empty: T): T {
  if (!text.trim()) return empty;
  try {
    return JSON.parse(text) as T;
  } catch (e) {
    throw new Error(label + ' is not valid JSON: ' + (e as Error).message);
  }
}

/** A JSON object's editor value (an object, else an error naming the field). */
export function parseObject(label: string, text: string): Record<string, unknown> {
  const v = parseJson<unknown>(label, text, {});
  if (!v || typeof v !== 'object' || Array.isArray(v)) throw new Error(label + ' must be a JSON object');
  return v as Record<string, unknown>;
}

/** Words separated by spaces, commas or new lines. */
export function words(text: string): string[] {
  return text.split(/[\s,]+/).filter((w) => w.length > 0);
}

export const pretty = (v: unknown) => (v === undefined || v === null ? '' : JSON.stringify(v, null, 2));

/**
 * A form whose submit runs `action` once at a time: the button is disabled meanwhile, an error
 * (the API's message, or the page's own check) goes to the form's error line.
 */
export function actionForm(id: string, title: string, children: Child[], submitLabel: string, action: () => Promise<void>): HTMLFormElement {
  const button = h('button', { type: 'submit', id: id + '-submit', text: submitLabel });
  const error = h('p', { class: 'error', id: id + '-error' });
  const form = h('form', { class: 'card form', id: id }, h('h3', { text: title }), ...children, h('div', { class: 'row' }, button), error);
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    if (!button.disabled) void runDisabled(button, error, action);
  });
  return form;
}

/** Run `action` with `button` disabled and `error` cleared; its error is shown in `error`. */
async function runDisabled(button: HTMLButtonElement, error: HTMLElement, action: () => Promise<void>): Promise<void> {
  button.disabled = true;
  error.textContent = '';
  try {
    await action();
  } catch (e) {
    handleError(e, error);
  } finally {
    button.disabled = false;
  }
}

/** An action button (archive, …): disabled while it runs, errors to `error`. */
export function actionButton(label: string, cls: string, error: HTMLElement, action: () => Promise<void>): HTMLButtonElement {
  const b = h('button', { type: 'button', class: cls, text: label });
  b.addEventListener('click', () => void runDisabled(b, error, action));
  return b;
}
