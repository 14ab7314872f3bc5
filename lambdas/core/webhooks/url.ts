import { InvalidRequestError } from '../errors.js';
import { isInternalHost } from '../resources/repository-url.js';

/**
 * Where a webhook may be delivered. By default only `https://` URLs to a host that is not
 * loopback, link-local (the instance metadata address 169.254.169.254 among them), private or
 * `localhost`: the deliverer runs inside the deployment, and an internal URL would make it a way
 * into the deployment's own network. The operator allows more origins with
 * `CORRAL_WEBHOOK_URL_ALLOW` (the local runtime's `webhookUrlAllow`), comma-separated
 * `scheme://host[:port]` origins, e.g. `http://127.0.0.1` for a receiver on loopback.
 */
export interface WebhookUrlRule {
  readonly allow: readonly string[];
}

export const WEBHOOK_URL_ALLOW_ENV = 'CORRAL_WEBHOOK_URL_ALLOW';

/** Whether `url`'s origin (with or without its port) is one the operator allowed. */
export function allowedOrigin(u: URL, rule: WebhookUrlRule): boolean {
  const origin = `${u.protocol}//${u.host}`;
  const anyPort = `${u.protocol}//${u.hostname}`;
  return rule.allow.includes(origin) || rule.allow.includes(anyPort);
}

/** Throws a 400 when `url` is not a webhook URL this deployment delivers to. */
export function checkWebhookUrl(url: string, rule: WebhookUrlRule): URL {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new InvalidRequestError('url: must be an https:// URL');
  }
  if (u.username || u.password) throw new InvalidRequestError('url: must not carry credentials');
  if (u.hash) throw new InvalidRequestError('url: must not have a #fragment');
  if (allowedOrigin(u, rule)) return u;
  if (u.protocol !== 'https:') throw new InvalidRequestError(`url: must be an https:// URL (${u.protocol}// is not allowed on this deployment)`);
  if (isInternalHost(u.hostname)) {
    throw new InvalidRequestError(`url: must name a public host; ${u.hostname} is a loopback, link-local or private address`);
  }
  return u;
}
