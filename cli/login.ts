import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';

/**
 * `corral login`: sign in to a Corral server with its OIDC issuer, through the OAuth 2.0 device
 * authorization grant (RFC 8628): the server's `GET /corral/auth` names the issuer and its public
 * client id, the issuer's discovery document names the endpoints, the person approves the code in
 * a browser anywhere, and the CLI polls for the tokens. The tokens are kept in the CLI's config
 * file (mode 0600), per server URL, and sent as `Authorization: Bearer`; an expiring token is
 * refreshed with its refresh token when the issuer gave one.
 */

/** What the config file keeps for one server. */
export interface StoredLogin {
  issuer: string;
  client_id: string;
  token_endpoint: string;
  /** The token sent to Corral (the access token when it is a JWT, else the ID token). */
  token: string;
  refresh_token?: string;
  /** Epoch seconds the token stops working. */
  expires_at: number;
}

interface ConfigFile {
  logins?: Record<string, StoredLogin>;
}

/** `$CORRAL_CONFIG`, else `$XDG_CONFIG_HOME/corral/config.json`, else `~/.config/corral/config.json`. */
export function configFilePath(env: NodeJS.ProcessEnv, cwd: string): string {
  if (env.CORRAL_CONFIG) return resolve(cwd, env.CORRAL_CONFIG);
  const base = env.XDG_CONFIG_HOME ? resolve(cwd, env.XDG_CONFIG_HOME) : join(env.HOME || homedir(), '.config');
  return join(base, 'corral', 'config.json');
}

function readConfigFile(path: string): ConfigFile {
  if (!existsSync(path)) return {};
  try {
    const v = JSON.parse(readFileSync(path, 'utf8')) as unknown;
    return v && typeof v === 'object' ? (v as ConfigFile) : {};
  } catch {
    return {};
  }
}

/** The login stored for `url`, if any. */
export function storedLogin(path: string, url: string): StoredLogin | undefined {
  return readConfigFile(path).logins?.[url];
}

/** Store (or, with `undefined`, forget) the login of `url`: the file is written whole, mode 0600, through a rename. */
export function saveLogin(path: string, url: string, login: StoredLogin | undefined): void {
  const file = readConfigFile(path);
  const logins = { ...file.logins };
  if (login) logins[url] = login;
  else delete logins[url];
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, JSON.stringify({ ...file, logins }, null, 2) + '\n', { mode: 0o600 });
  chmodSync(tmp, 0o600);
  renameSync(tmp, path);
}

/** A failure of the sign-in itself (exit code 1); its message names no token. */
export class LoginError extends Error {}

type Fetch = typeof fetch;
type Sleep = (ms: number, signal: AbortSignal) => Promise<void>;

export const realSleep: Sleep = (ms, signal) =>
  new Promise((resolve, reject) => {
    const t = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => (clearTimeout(t), reject(Object.assign(new Error('cancelled'), { name: 'AbortError' }))), { once: true });
  });

async function getJson(f: Fetch, url: string, signal: AbortSignal): Promise<Record<string, unknown>> {
  const res = await f(url, { headers: { accept: 'application/json' }, signal });
  const text = await res.text();
  if (!res.ok) throw new LoginError(`GET ${url}: HTTP ${res.status}`);
  try {
    return JSON.parse(text) as Record<string, unknown>;
  } catch {
    throw new LoginError(`GET ${url}: not JSON`);
  }
}

async function postForm(f: Fetch, url: string, form: Record<string, string>, signal: AbortSignal): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await f(url, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
    body: new URLSearchParams(form).toString(),
    signal,
  });
  const text = await res.text();
  let body: Record<string, unknown> = {};
  try {
    body = JSON.parse(text) as Record<string, unknown>;
  } catch {
    // an error page: reported by status below
  }
  return { status: res.status, body };
}

const isJwt = (t: unknown): t is string => typeof t === 'string' && /^eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/.test(t);

/** The token Corral verifies: the access token when it is a JWT (an API audience), else the ID token. */
function loginOf(body: Record<string, unknown>, base: Pick<StoredLogin, 'issuer' | 'client_id' | 'token_endpoint'>, now: number, previousRefresh?: string): StoredLogin {
  const token = isJwt(body.access_token) ? body.access_token : isJwt(body.id_token) ? body.id_token : undefined;
  if (!token) throw new LoginError('the issuer returned no JWT (neither access_token nor id_token)');
  let exp = typeof body.expires_in === 'number' ? now + body.expires_in : undefined;
  try {
    const claims = JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString('utf8')) as { exp?: unknown };
    if (typeof claims.exp === 'number') exp = claims.exp;
  } catch {
    // exp stays the issuer's expires_in
  }
  const refresh = typeof body.refresh_token === 'string' ? body.refresh_token : previousRefresh;
  return { ...base, token, ...(refresh ? { refresh_token: refresh } : {}), expires_at: exp ?? now + 300 };
}

export interface LoginIO {
  fetch: Fetch;
  signal: AbortSignal;
  sleep: Sleep;
  /** Where to tell the person what to open and which code to enter. */
  tell(s: string): void;
  now?: () => number;
}

/** Run the device flow against the server's issuer (`issuer`, or its only one); resolves to the login to store. */
export async function deviceLogin(serverUrl: string, issuer: string | undefined, io: LoginIO): Promise<StoredLogin> {
  const now = () => Math.floor((io.now?.() ?? Date.now()) / 1000);
  const auth = await getJson(io.fetch, `${serverUrl}/corral/auth`, io.signal);
  const issuers = (Array.isArray(auth.oidc) ? auth.oidc : []) as Array<{ issuer: string; client_id: string | null; scopes?: string[] }>;
  if (!issuers.length) throw new LoginError(`${serverUrl} accepts no sign-in (no OIDC issuer configured); use an API key (CORRAL_API_KEY)`);
  const chosen = issuer ? issuers.find((i) => i.issuer === issuer.replace(/\/$/, '') || i.issuer === issuer) : issuers.length === 1 ? issuers[0] : undefined;
  if (!chosen) throw new LoginError(`choose an issuer with --issuer: ${issuers.map((i) => i.issuer).join(', ')}`);
  if (!chosen.client_id) throw new LoginError(`issuer ${chosen.issuer} has no public client id configured on this server (client_id), so it cannot be used to log in`);
  const discovery = await getJson(io.fetch, `${chosen.issuer.replace(/\/$/, '')}/.well-known/openid-configuration`, io.signal);
  const deviceEndpoint = discovery.device_authorization_endpoint;
  const tokenEndpoint = discovery.token_endpoint;
  if (typeof deviceEndpoint !== 'string' || typeof tokenEndpoint !== 'string') {
    throw new LoginError(`issuer ${chosen.issuer} offers no device authorization grant (no device_authorization_endpoint)`);
  }
  const base = { issuer: chosen.issuer, client_id: chosen.client_id, token_endpoint: tokenEndpoint };
  const start = await postForm(io.fetch, deviceEndpoint, { client_id: chosen.client_id, scope: (chosen.scopes ?? ['openid']).join(' ') }, io.signal);
  const b = start.body;
  if (start.status !== 200 || typeof b.device_code !== 'string' || typeof b.user_code !== 'string' || typeof b.verification_uri !== 'string') {
    throw new LoginError(`the issuer refused the device authorization request: ${typeof b.error === 'string' ? b.error : `HTTP ${start.status}`}`);
  }
  io.tell(
    typeof b.verification_uri_complete === 'string'
      ? `Open ${b.verification_uri_complete}\nand check that it shows the code ${b.user_code}\n`
      : `Open ${b.verification_uri}\nand enter the code ${b.user_code}\n`,
  );
  let interval = typeof b.interval === 'number' && b.interval > 0 ? b.interval : 5; // RFC 8628 3.2: default 5 s
  const deadline = now() + (typeof b.expires_in === 'number' ? b.expires_in : 600);
  for (;;) {
    await io.sleep(interval * 1000, io.signal);
    if (now() >= deadline) throw new LoginError('the code expired before it was approved; run corral login again');
    const poll = await postForm(
      io.fetch,
      tokenEndpoint,
      { grant_type: 'urn:ietf:params:oauth:grant-type:device_code', device_code: b.device_code, client_id: chosen.client_id },
      io.signal,
    );
    if (poll.status === 200) return loginOf(poll.body, base, now());
    const error = typeof poll.body.error === 'string' ? poll.body.error : `HTTP ${poll.status}`;
    if (error === 'authorization_pending') continue;
    if (error === 'slow_down') {
      interval += 5; // RFC 8628 3.5
      continue;
    }
    if (error === 'expired_token') throw new LoginError('the code expired before it was approved (expired_token); run corral login again');
    if (error === 'access_denied') throw new LoginError('the sign-in was denied');
    throw new LoginError(`the issuer refused the sign-in: ${error}`);
  }
}

/**
 * The stored login, refreshed first when it expires within a minute and has a refresh token
 * (the new tokens are stored). An expired login without one is returned as it is: the server's
 * 401 then says so, and the CLI says to log in again.
 */
export async function freshLogin(path: string, url: string, login: StoredLogin, io: Pick<LoginIO, 'fetch' | 'signal' | 'now'>): Promise<StoredLogin> {
  const now = Math.floor((io.now?.() ?? Date.now()) / 1000);
  if (login.expires_at - now > 60 || !login.refresh_token) return login;
  const res = await postForm(io.fetch, login.token_endpoint, { grant_type: 'refresh_token', refresh_token: login.refresh_token, client_id: login.client_id }, io.signal);
  if (res.status !== 200) {
    // The refresh token is spent or revoked: forget it, so the next command does not try again.
    const { refresh_token: _, ...rest } = login;
    saveLogin(path, url, rest);
    return rest;
  }
  const fresh = loginOf(res.body, login, now, login.refresh_token);
  saveLogin(path, url, fresh);
  return fresh;
}
