/**
 * The API as the console calls it: the same origin and path prefix as the page, the API key from
 * this tab's sessionStorage in the `x-api-key` header, or an OIDC token from a sign-in (oidc.ts)
 * as `Authorization: Bearer` (never in a URL), and the API's own error messages (its 400s say what
 * is wrong with a request) thrown for the page to show.
 */

export const KEY_STORE = 'corral.apiKey';
export const TOKEN_STORE = 'corral.oidcToken';
// The API is wherever this page is, minus '/console...' (on API Gateway that keeps the stage prefix).
export const base = location.pathname.replace(/\/console(\/.*)?$/, '');

/** The key is missing or was rejected: the page asks for it again. */
export class AuthError extends Error {}

/** An error answer of the API: its HTTP status and its message. */
export class ApiError extends Error {
  constructor(readonly status: number, message: string) {
    super(message);
  }
}

export function apiKey(): string | null {
  return sessionStorage.getItem(KEY_STORE);
}

export function setApiKey(key: string): void {
  sessionStorage.setItem(KEY_STORE, key);
}

/** An OIDC token from a sign-in: it takes the key's place. */
export function setToken(token: string): void {
  sessionStorage.removeItem(KEY_STORE);
  sessionStorage.setItem(TOKEN_STORE, token);
}

/** Forget the key and the token of this tab. */
export function forgetApiKey(): void {
  sessionStorage.removeItem(KEY_STORE);
  sessionStorage.removeItem(TOKEN_STORE);
}

/** Whether this tab has a key or a token to call the API with. */
export function signedIn(): boolean {
  return !!(sessionStorage.getItem(TOKEN_STORE) || apiKey());
}

/** The headers that authenticate a request: the sign-in's token, else the API key. */
export function authHeaders(): Record<string, string> {
  const token = sessionStorage.getItem(TOKEN_STORE);
  if (token) return { authorization: 'Bearer ' + token };
  const key = apiKey();
  if (!key) throw new AuthError('Enter an API key.');
  return { 'x-api-key': key };
}

/** A 401 forgets the key (or the token), so the page asks again. */
export function checkAuth(res: Response): void {
  if (res.status === 401) {
    const token = !!sessionStorage.getItem(TOKEN_STORE);
    forgetApiKey();
    throw new AuthError(token ? 'The sign-in was rejected or has expired: sign in again.' : 'The API key was rejected.');
  }
}

/** A JSON request to the API; its answer, or an ApiError carrying the API's message. */
export async function api<T>(path: string, init?: RequestInit): Promise<T> {
  const res = await fetch(base + path, Object.assign({}, init, {
    cache: 'no-store' as const,
    headers: Object.assign(authHeaders(), { 'content-type': 'application/json' }),
  }));
  checkAuth(res);
  const body = (await res.json().catch(() => null)) as (T & { error?: { message?: string } }) | null;
  if (!res.ok) throw new ApiError(res.status, (body && body.error && body.error.message) || 'HTTP ' + res.status);
  return body as T;
}

/** POST a JSON body. */
export function post<T>(path: string, body: unknown): Promise<T> {
  return api<T>(path, { method: 'POST', body: JSON.stringify(body) });
}

/** Every item of a paged list (`{data, next_page}`), up to `max`. */
export async function listAll<T>(path: string, max = 500): Promise<T[]> {
  const out: T[] = [];
  let page: string | null = null;
  do {
    const sep = path.includes('?') ? '&' : '?';
    const body: { data: T[]; next_page?: string | null } = await api(path + sep + 'limit=100' + (page ? '&page=' + encodeURIComponent(page) : ''));
    out.push(...body.data);
    page = body.next_page || null;
  } while (page && out.length < max);
  return out;
}
