/**
 * The console's entry module. Typed against the DOM and the API's shapes (the SDK's
 * managed-agents types plus Corral's extensions), checked by `lambdas/api/console/tsconfig.json`
 * (part of `npm run typecheck`), and bundled with the modules it imports to one string by esbuild
 * (see bundle.ts): at synthesis for the Lambda, on the first console request under `npm start`. No
 * framework; at run time it imports nothing.
 *
 * What it does:
 * - asks once for the API key and keeps it in sessionStorage (this tab only); the key travels only
 *   in the `x-api-key` request header, never in a URL (ui/api.ts); where the server lists an OIDC
 *   issuer with a client id (`GET /corral/auth`), signs in with it instead (ui/oidc.ts);
 * - `/console`: the sessions, newest first; `/console/sessions/{id}`: one session, live (ui/sessions.ts);
 * - `/console#agents`, `#agents/{id}`, `#environments` (ui/manage.ts), `#vaults`, `#vaults/{id}`
 *   (ui/vaults.ts), `#new-session` (ui/start.ts): create, edit, list and archive through the API;
 * - `/console#deployments`, `#deployments/{id}` (ui/deployments.ts): deployments and their runs.
 *
 * Every value from the API is put in the page with `textContent`, never parsed as HTML.
 */
import { api, AuthError, base, forgetApiKey, setApiKey, signedIn } from './ui/api.js';
import { h } from './ui/dom.js';
import { showAgent, showAgents, showEnvironments } from './ui/manage.js';
import { finishSignIn, signIn, signInIssuers } from './ui/oidc.js';
import { app, crumb, hooks, stopAll } from './ui/shell.js';
import { showList, showSession } from './ui/sessions.js';
import { showNewSession } from './ui/start.js';
import { showVault, showVaults } from './ui/vaults.js';
import { showDeployment, showDeployments } from './ui/deployments.js';

document.getElementById('brand')!.setAttribute('href', base + '/console');
document.getElementById('menu')!.replaceChildren(...([
  ['Sessions', ''],
  ['Agents', '#agents'],
  ['Environments', '#environments'],
  ['Vaults', '#vaults'],
  ['Deployments', '#deployments'],
] as const).map(([label, hash]) => h('a', { href: base + '/console' + hash, id: 'menu-' + label.toLowerCase(), text: label })));

// --- the API key ---------------------------------------------------------------------------------

function showKeyPrompt(message: string): void {
  stopAll();
  crumb.replaceChildren();
  const input = h('input', { id: 'api-key', type: 'password', autocomplete: 'off', spellcheck: 'false', placeholder: 'API key', required: true });
  const err = h('p', { class: 'error', id: 'key-error', text: message || '' });
  const oidc = h('div', { id: 'sign-in', class: 'sign-in' });
  const form = h('form', { class: 'card key-form' },
    h('h2', { text: 'API key' }),
    oidc,
    h('p', { class: 'muted', text: 'The console reads everything through the API with your key. It stays in this browser tab (session storage) and is sent only in request headers.' }),
    input,
    h('button', { type: 'submit', id: 'use-key', text: 'Open the console' }),
    err);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    setApiKey(input.value.trim());
    try {
      await api<unknown>('/v1/sessions?limit=1');
      route();
    } catch (e) {
      err.textContent = e instanceof AuthError ? 'That key was rejected.' : String((e as Error).message || e);
    }
  });
  app.replaceChildren(form);
  input.focus();
  // Sign-in buttons, where the server offers OIDC (none on a server without /corral/auth).
  void signInIssuers().then((issuers) => {
    if (!issuers.length || !form.isConnected) return;
    oidc.replaceChildren(
      ...issuers.map((i) => h('button', { type: 'button', class: 'sign-in-button', 'data-issuer': i.issuer, text: 'Sign in with ' + new URL(i.issuer).host, onclick: () => {
        signIn(i).catch((e) => { err.textContent = String((e as Error).message || e); });
      } })),
      h('p', { class: 'muted', text: 'or use an API key:' }));
  });
}
hooks.keyPrompt = showKeyPrompt;

document.getElementById('forget')!.addEventListener('click', () => {
  forgetApiKey();
  showKeyPrompt('');
});

// --- the views -----------------------------------------------------------------------------------

function route(): void {
  stopAll();
  if (!signedIn()) return showKeyPrompt('');
  const m = location.pathname.match(/\/console\/sessions\/([^/]+)\/?$/);
  if (m) {
    void showSession(decodeURIComponent(m[1]!));
    return;
  }
  const [view, id] = location.hash.replace(/^#/, '').split('/').map(decodeURIComponent);
  if (view === 'agents') void (id ? showAgent(id) : showAgents());
  else if (view === 'environments') void showEnvironments();
  else if (view === 'vaults') void (id ? showVault(id) : showVaults());
  else if (view === 'new-session') void showNewSession();
  else if (view === 'deployments') void (id ? showDeployment(id) : showDeployments());
  else void showList();
}

window.addEventListener('hashchange', route);
// Back from an issuer's sign-in (`?code=…`): exchange the code first.
finishSignIn().then(route, (e: unknown) => showKeyPrompt(String((e as Error).message || e)));
