/**
 * Sign-in with OIDC, where the server offers it: `GET /corral/auth` lists the issuers, and one with
 * a public `client_id` gets a sign-in button. The flow is the authorization code with PKCE, all in
 * the browser (a public client, no secret): discovery at the issuer's
 * `/.well-known/openid-configuration`, a redirect to its authorization endpoint, back to
 * `/console` with a code, exchanged at its token endpoint with the verifier only this tab holds.
 * The token stays in this tab's sessionStorage and travels as `Authorization: Bearer` (api.ts).
 * A server without the endpoint (404) or without an issuer offers the API key only.
 *
 * The page's Content-Security-Policy allows connections to the issuers' origins only when the
 * server lists them for the console (page.ts), so discovery and the token request work and
 * nothing else does.
 */
import { base, setToken } from './api.js';

/** An issuer as `GET /corral/auth` lists it. */
export interface Issuer {
  issuer: string;
  client_id: string | null;
  scopes?: string[];
}

/** What the tab remembers between the redirect to the issuer and the way back. */
interface Pending {
  issuer: string;
  client_id: string;
  state: string;
  verifier: string;
  token_endpoint: string;
  redirect_uri: string;
}

const PENDING = 'corral.oidcPending';

/** The issuers this console can sign in with: those with a client id. None on a 404. */
export async function signInIssuers(): Promise<Issuer[]> {
  try {
    const res = await fetch(base + '/corral/auth', { cache: 'no-store' });
    if (!res.ok) return [];
    const body = (await res.json()) as { oidc?: unknown };
    if (!Array.isArray(body.oidc)) return [];
    return (body.oidc as Issuer[]).filter((i) => i && typeof i.issuer === 'string' && typeof i.client_id === 'string' && i.client_id.length > 0);
  } catch {
    return [];
  }
}

const b64url = (bytes: Uint8Array) => btoa(String.fromCharCode(...bytes)).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
const random = (n: number) => b64url(crypto.getRandomValues(new Uint8Array(n)));

/** The issuer's endpoints, from its discovery document. */
async function discover(issuer: string): Promise<{ authorization_endpoint: string; token_endpoint: string }> {
  const res = await fetch(issuer.replace(/\/+$/, '') + '/.well-known/openid-configuration', { cache: 'no-store', credentials: 'omit' });
  if (!res.ok) throw new Error('the issuer ' + issuer + ' answered its discovery document with HTTP ' + res.status);
  const doc = (await res.json()) as { issuer?: unknown; authorization_endpoint?: unknown; token_endpoint?: unknown };
  if (typeof doc.authorization_endpoint !== 'string' || typeof doc.token_endpoint !== 'string') {
    throw new Error('the issuer ' + issuer + ' names no authorization and token endpoints');
  }
  return { authorization_endpoint: doc.authorization_endpoint, token_endpoint: doc.token_endpoint };
}

/** Go to the issuer to sign in; it sends the browser back to `/console` with a code. */
export async function signIn(issuer: Issuer): Promise<void> {
  const endpoints = await discover(issuer.issuer);
  const verifier = random(32);
  const challenge = b64url(new Uint8Array(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(verifier))));
  const pending: Pending = {
    issuer: issuer.issuer,
    client_id: issuer.client_id!,
    state: random(16),
    verifier: verifier,
    token_endpoint: endpoints.token_endpoint,
    redirect_uri: location.origin + base + '/console',
  };
  sessionStorage.setItem(PENDING, JSON.stringify(pending));
  const url = new URL(endpoints.authorization_endpoint);
  url.searchParams.set('response_type', 'code');
  url.searchParams.set('client_id', pending.client_id);
  url.searchParams.set('redirect_uri', pending.redirect_uri);
  url.searchParams.set('scope', (issuer.scopes && issuer.scopes.length ? issuer.scopes : ['openid']).join(' '));
  url.searchParams.set('state', pending.state);
  url.searchParams.set('code_challenge', challenge);
  url.searchParams.set('code_challenge_method', 'S256');
  location.assign(url.toString());
}

/**
 * Back from the issuer (`/console?code=…&state=…`): the code exchanged for a token, kept for this
 * tab. The address loses its query either way. False when the address is not a way back.
 */
export async function finishSignIn(): Promise<boolean> {
  const params = new URLSearchParams(location.search);
  const code = params.get('code');
  const error = params.get('error');
  if (!code && !error) return false;
  const raw = sessionStorage.getItem(PENDING);
  sessionStorage.removeItem(PENDING);
  history.replaceState(null, '', location.pathname + location.hash);
  if (error) throw new Error('sign-in failed: ' + error + (params.get('error_description') ? ': ' + params.get('error_description') : ''));
  const pending = raw ? (JSON.parse(raw) as Pending) : null;
  if (!pending || params.get('state') !== pending.state) throw new Error('sign-in failed: this tab did not start it (state mismatch); sign in again');
  const res = await fetch(pending.token_endpoint, {
    method: 'POST',
    cache: 'no-store',
    credentials: 'omit',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({
      grant_type: 'authorization_code',
      code: code!,
      redirect_uri: pending.redirect_uri,
      client_id: pending.client_id,
      code_verifier: pending.verifier,
    }).toString(),
  });
  const body = (await res.json().catch(() => null)) as { access_token?: unknown; id_token?: unknown; error?: unknown; error_description?: unknown } | null;
  if (!res.ok || !body) throw new Error('sign-in failed: the token endpoint answered HTTP ' + res.status + (body && body.error ? ' (' + String(body.error) + ')' : ''));
  // The API takes a JWT: the access token when the issuer issues JWTs, else the ID token.
  const jwt = (t: unknown): t is string => typeof t === 'string' && t.split('.').length === 3;
  const token = jwt(body.access_token) ? body.access_token : jwt(body.id_token) ? body.id_token : null;
  if (!token) throw new Error('sign-in failed: the issuer returned no JWT');
  setToken(token);
  return true;
}
