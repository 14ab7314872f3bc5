import { AuthError } from './api.js';
import { messageOf } from './dom.js';

/** The page's fixed parts, and what the view showing now has running (stopped on every route). */
export const app = document.getElementById('app')!;
export const crumb = document.getElementById('crumb')!;
export const running: { aborts: AbortController[]; timers: Array<ReturnType<typeof setInterval>> } = { aborts: [], timers: [] };

export function stopAll(): void {
  for (const a of running.aborts) a.abort();
  for (const t of running.timers) clearInterval(t);
  running.aborts = [];
  running.timers = [];
}

/** Set by the entry module: how to ask for the key again (kept here so views need not import it). */
export const hooks: { keyPrompt: (message: string) => void } = { keyPrompt: () => {} };

/** A missing or rejected key asks for the key again; any other error is shown in `where`. */
export function handleError(err: unknown, where?: HTMLElement): void {
  if (err instanceof AuthError) return hooks.keyPrompt(err.message);
  if (where) where.textContent = messageOf(err);
}
