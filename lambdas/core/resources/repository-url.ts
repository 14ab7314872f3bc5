import { InvalidRequestError } from '../errors.js';

/**
 * Which repository URLs a session may name (`github_repository` resources). A repository is
 * always remote and always reached from inside the sandbox, through the credential proxy: a local
 * path, `file://` or `ssh://` would be opened by whoever clones it, with that process's rights.
 *
 * By default only `https://` URLs to a host that is not loopback, link-local, private or
 * `localhost` are accepted (the proxy fetches them: an internal address would make it a way into
 * the deployment's own network). The operator may allow more origins with
 * `CORRAL_REPOSITORY_URL_ALLOW` (the local runtime's `repositoryUrlAllow`): a comma-separated list
 * of `scheme://host[:port]` origins that are accepted as well, e.g. `http://127.0.0.1` (any port
 * on that host) for test git servers. Only `http` and `https` can ever be allowed.
 */
export interface RepositoryUrlRule {
  /** Extra origins (`http://127.0.0.1`, `https://git.internal:8443`), from the operator. */
  readonly allow: readonly string[];
}

export const REPOSITORY_URL_ALLOW_ENV = 'CORRAL_REPOSITORY_URL_ALLOW';

/** Parse the operator setting: comma-separated `http(s)://host[:port]` origins. */
export function parseRepositoryUrlAllow(text: string | undefined): string[] {
  if (!text?.trim()) return [];
  return text.split(',').map((raw) => {
    const entry = raw.trim();
    let u: URL;
    try {
      u = new URL(entry);
    } catch {
      throw new Error(`${JSON.stringify(entry)} is not an origin like http://127.0.0.1 or https://git.example.com:8443`);
    }
    if ((u.protocol !== 'http:' && u.protocol !== 'https:') || u.username || u.password || (u.pathname !== '/' && u.pathname !== '') || u.search || u.hash) {
      throw new Error(`${JSON.stringify(entry)} is not an http(s) origin (scheme://host[:port], nothing else)`);
    }
    return `${u.protocol}//${u.host}`;
  });
}

/** A host literal the proxy must not be pointed at unless the operator allowed it. */
export function isInternalHost(hostname: string): boolean {
  const h = hostname.toLowerCase().replace(/^\[|\]$/g, '');
  if (h === 'localhost' || h.endsWith('.localhost') || h === '0.0.0.0' || h === '::' || h === '::1') return true;
  const v4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(h);
  if (v4) {
    const [a, b] = [Number(v4[1]), Number(v4[2])];
    return a === 0 || a === 10 || a === 127 || (a === 169 && b === 254) || (a === 172 && b >= 16 && b <= 31) || (a === 192 && b === 168) || (a === 100 && b >= 64 && b <= 127);
  }
  // IPv6 unique-local (fc00::/7), link-local (fe80::/10) and v4-mapped addresses.
  return /^(f[cd][0-9a-f]{2}|fe[89ab][0-9a-f]):/.test(h) || h.startsWith('::ffff:');
}

/** Throws a 400 naming the resource when `url` is not a repository URL this deployment accepts. */
export function checkRepositoryUrl(url: string, rule: RepositoryUrlRule, where = 'resources'): void {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new InvalidRequestError(`${where}: url must be an https:// URL of a remote repository`);
  }
  const origin = `${u.protocol}//${u.host}`;
  const originAnyPort = `${u.protocol}//${u.hostname.includes(':') ? `[${u.hostname.replace(/^\[|\]$/g, '')}]` : u.hostname}`;
  if (rule.allow.includes(origin) || rule.allow.includes(originAnyPort)) return;
  if (u.protocol !== 'https:') {
    throw new InvalidRequestError(`${where}: url must be an https:// URL of a remote repository (${u.protocol}// is not allowed on this deployment)`);
  }
  if (u.username || u.password) throw new InvalidRequestError(`${where}: url must not carry credentials; use authorization_token`);
  if (isInternalHost(u.hostname)) {
    throw new InvalidRequestError(`${where}: url must name a public host; ${u.hostname} is a loopback, link-local or private address`);
  }
}
