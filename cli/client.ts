import Anthropic from '@anthropic-ai/sdk';
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { configFilePath, storedLogin, type StoredLogin } from './login.js';

/** Where the CLI talks to and with which key. */
export interface CliConfig {
  url: string;
  /** Where the URL came from, for error messages. */
  urlSource: 'CORRAL_URL' | 'default';
  apiKey: string | undefined;
  apiKeySource: string;
  /** The CLI's config file (`corral login` keeps its tokens there). */
  configPath: string;
  /** The `corral login` of this URL, when there is one and no CORRAL_API_KEY: its token is sent as a bearer token. */
  login?: StoredLogin;
}

export const DEFAULT_URL = 'http://127.0.0.1:4000';

/**
 * `CORRAL_URL` (default http://127.0.0.1:4000) and `CORRAL_API_KEY`; without the latter, the
 * token `corral login` stored for that URL, then the key `npm start` generated:
 * `$CORRAL_DATA_DIR/api-key`, then `./.corral/api-key`.
 */
export function loadConfig(env: NodeJS.ProcessEnv, cwd: string): CliConfig {
  const url = (env.CORRAL_URL || DEFAULT_URL).replace(/\/+$/, '');
  const urlSource = env.CORRAL_URL ? 'CORRAL_URL' : 'default';
  const configPath = configFilePath(env, cwd);
  if (env.CORRAL_API_KEY) return { url, urlSource, apiKey: env.CORRAL_API_KEY.trim(), apiKeySource: 'CORRAL_API_KEY', configPath };
  const login = storedLogin(configPath, url);
  if (login) return { url, urlSource, apiKey: undefined, apiKeySource: `corral login (${configPath})`, configPath, login };
  const files = [env.CORRAL_DATA_DIR ? join(resolve(cwd, env.CORRAL_DATA_DIR), 'api-key') : null, join(cwd, '.corral', 'api-key')];
  for (const file of files) {
    if (file && existsSync(file)) return { url, urlSource, apiKey: readFileSync(file, 'utf8').trim(), apiKeySource: file, configPath };
  }
  return { url, urlSource, apiKey: undefined, apiKeySource: 'none', configPath };
}

/** A command line that cannot be run as given (exit code 2). */
export class UsageError extends Error {}

/** The server answered with an error (exit code 1). */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly type: string,
    message: string,
  ) {
    super(message);
  }
}

/** No answer from the server at all (exit code 1). */
export class ConnectionError extends Error {}

/** Ctrl-C (exit code 130). */
export class CancelledError extends Error {}

const NO_KEY = 'no API key: set CORRAL_API_KEY, run corral login, or run where .corral/api-key is (as `npm start` leaves it)';

export function sdkClient(config: CliConfig): Anthropic {
  // A signed-in person's token travels as `Authorization: Bearer` (the SDK's authToken).
  if (config.login) return new Anthropic({ baseURL: config.url, apiKey: null, authToken: config.login.token, maxRetries: 2, timeout: 60_000 });
  if (!config.apiKey) {
    throw new ApiError(0, 'authentication_error', NO_KEY);
  }
  return new Anthropic({ baseURL: config.url, apiKey: config.apiKey, maxRetries: 2, timeout: 60_000 });
}

function connectionMessage(config: CliConfig, cause: unknown): string {
  const code = findCode(cause);
  const what = code === 'ECONNREFUSED' ? 'connection refused' : code ? code : innermostMessage(cause);
  const where = config.urlSource === 'CORRAL_URL' ? `CORRAL_URL=${config.url}` : `${config.url} (the default; set CORRAL_URL to change it)`;
  return `cannot reach Corral at ${where}: ${what}. Is it running? Locally, start it with \`npm start\`.`;
}

function innermostMessage(err: unknown): string {
  let e = err as { message?: unknown; cause?: unknown } | undefined;
  for (let i = 0; e?.cause && i < 5; i++) e = e.cause as typeof e;
  return String(e?.message ?? err);
}

function findCode(err: unknown): string | undefined {
  for (let e = err as { code?: unknown; cause?: unknown } | undefined, i = 0; e && i < 5; e = e.cause as typeof e, i++) {
    if (typeof e.code === 'string') return e.code;
    const errors = (e as { errors?: unknown[] }).errors;
    if (Array.isArray(errors)) for (const inner of errors) if (typeof (inner as { code?: unknown })?.code === 'string') return (inner as { code: string }).code;
  }
  return undefined;
}

/** Turn whatever a call threw into one of the CLI's errors. */
export function normalizeError(err: unknown, config: CliConfig): Error {
  if (err instanceof UsageError || err instanceof ApiError || err instanceof ConnectionError || err instanceof CancelledError) return err;
  if (err instanceof Anthropic.APIUserAbortError || (err as Error)?.name === 'AbortError') return new CancelledError('cancelled');
  if (err instanceof Anthropic.APIConnectionError) return new ConnectionError(connectionMessage(config, err.cause ?? err));
  if (err instanceof Anthropic.APIError) {
    const body = err.error as { error?: { type?: string; message?: string } } | undefined;
    return new ApiError(err.status ?? 0, body?.error?.type ?? 'api_error', body?.error?.message ?? err.message);
  }
  if (err instanceof TypeError && /fetch failed/i.test(err.message)) return new ConnectionError(connectionMessage(config, err.cause ?? err));
  return err instanceof Error ? err : new Error(String(err));
}

/** Raw requests, for Corral's extensions (fork, positional reads) that the SDK does not know. */
export class RawClient {
  constructor(
    readonly config: CliConfig,
    private readonly fetchImpl: typeof fetch = fetch,
  ) {}

  headers(extra: Record<string, string> = {}): Record<string, string> {
    const beta = { 'anthropic-beta': 'managed-agents-2026-04-01' };
    if (this.config.login) return { authorization: `Bearer ${this.config.login.token}`, ...beta, ...extra };
    if (!this.config.apiKey) throw new ApiError(0, 'authentication_error', NO_KEY);
    return { 'x-api-key': this.config.apiKey, ...beta, ...extra };
  }

  async fetch(path: string, init: RequestInit & { signal?: AbortSignal } = {}): Promise<Response> {
    try {
      return await this.fetchImpl(this.config.url + path, { ...init, headers: { ...this.headers(), ...(init.headers as Record<string, string>) } });
    } catch (err) {
      throw normalizeError(err, this.config);
    }
  }

  async json<T>(method: 'GET' | 'POST', path: string, body?: unknown, signal?: AbortSignal): Promise<T> {
    const res = await this.fetch(path, {
      method,
      signal,
      headers: body === undefined ? {} : { 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text().catch(() => '');
    let parsed: unknown;
    try {
      parsed = text ? JSON.parse(text) : undefined;
    } catch {
      parsed = undefined;
    }
    if (!res.ok) throw apiErrorOf(res.status, parsed, text);
    return parsed as T;
  }
}

export function apiErrorOf(status: number, parsed: unknown, text = ''): ApiError {
  const e = (parsed as { error?: { type?: string; message?: string } } | undefined)?.error;
  return new ApiError(status, e?.type ?? 'api_error', e?.message ?? (text.slice(0, 200) || `HTTP ${status}`));
}
