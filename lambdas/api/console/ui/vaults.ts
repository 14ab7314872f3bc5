/**
 * Vaults (`#vaults`) and a vault's credentials (`#vaults/{id}`). Secrets are write-only: the form
 * sends them in the create request and empties its secret inputs when the API has taken them;
 * nothing reads one back (the API never returns one) and the page never shows one.
 */
import { api, listAll, post } from './api.js';
import { fmtDate, h } from './dom.js';
import { actionButton, actionForm, field, secretInput, select, textArea, textInput, words } from './forms.js';
import { consoleHref, listCard, managePage } from './manage.js';
import { app, handleError } from './shell.js';

export interface Vault {
  id: string;
  display_name: string;
  created_at: string;
  archived_at?: string | null;
}

/** A credential as the API answers: its kind and target, never its secret. */
interface Credential {
  id: string;
  display_name?: string | null;
  auth: { type: string; mcp_server_url?: string; secret_name?: string; networking?: { type: string; allowed_hosts?: string[] } };
  created_at: string;
}

export async function showVaults(): Promise<void> {
  managePage('vaults', 'Vaults');
  const error = h('p', { class: 'error', id: 'vaults-error' });
  let vaults: Vault[];
  try {
    vaults = await listAll<Vault>('/v1/vaults');
  } catch (e) {
    app.replaceChildren(error);
    return handleError(e, error);
  }
  const rows = vaults.map((v) => h('tr', { 'data-id': v.id },
    h('td', null, h('a', { href: consoleHref('vaults/' + v.id), text: v.display_name })),
    h('td', { class: 'mono', text: v.id }),
    h('td', { text: fmtDate(v.created_at) }),
    h('td', null, actionButton('Archive', 'danger small archive', error, async () => {
      await post('/v1/vaults/' + encodeURIComponent(v.id) + '/archive', {});
      void showVaults();
    }))));
  const name = textInput('vault-name', '', { required: true });
  app.replaceChildren(
    listCard('vaults', 'Vaults', ['Name', 'Id', 'Created'], rows, 'No vaults yet.', error),
    actionForm('vault-create', 'New vault', [field('Name', name)], 'Create vault', async () => {
      const vault = await post<Vault>('/v1/vaults', { display_name: name.value });
      location.hash = 'vaults/' + vault.id;
    }));
}

export async function showVault(id: string): Promise<void> {
  managePage('vault', ['Vaults', 'vaults'], id);
  const error = h('p', { class: 'error', id: 'credentials-error' });
  let vault: Vault;
  let creds: Credential[];
  try {
    vault = await api<Vault>('/v1/vaults/' + encodeURIComponent(id));
    creds = await listAll<Credential>('/v1/vaults/' + encodeURIComponent(id) + '/credentials');
  } catch (e) {
    app.replaceChildren(error);
    return handleError(e, error);
  }
  const rows = creds.map((c) => h('tr', { 'data-id': c.id },
    h('td', { text: c.display_name || '—' }),
    h('td', { class: 'mono', text: c.id }),
    h('td', { text: c.auth.type }),
    h('td', { class: 'mono', text: c.auth.mcp_server_url || (c.auth.secret_name ? '$' + c.auth.secret_name + (c.auth.networking?.allowed_hosts ? ' → ' + c.auth.networking.allowed_hosts.join(', ') : '') : '') }),
    h('td', { text: fmtDate(c.created_at) }),
    h('td', null, actionButton('Archive', 'danger small archive', error, async () => {
      await post('/v1/vaults/' + encodeURIComponent(id) + '/credentials/' + encodeURIComponent(c.id) + '/archive', {});
      void showVault(id);
    }))));
  app.replaceChildren(
    h('section', { class: 'card' }, h('h2', { id: 'vault-title', text: vault.display_name }), h('p', { class: 'muted mono', text: vault.id })),
    listCard('credentials', 'Credentials', ['Name', 'Id', 'Kind', 'For', 'Created'], rows, 'No credentials yet.', error),
    credentialForm(id));
}

/**
 * A new credential: a bearer token for an MCP server (`static_bearer`), an OAuth access token for
 * one (`mcp_oauth`, without refresh), or a secret the sandbox sees as an environment variable's
 * placeholder, swapped for the value by the credential proxy on the allowed hosts
 * (`environment_variable`).
 */
function credentialForm(vaultId: string): HTMLFormElement {
  const kind = select('cred-type', [
    ['static_bearer', 'static_bearer: a bearer token for an MCP server'],
    ['environment_variable', 'environment_variable: a secret for the sandbox, sent only to allowed hosts'],
    ['mcp_oauth', 'mcp_oauth: an OAuth access token for an MCP server'],
  ]);
  const name = textInput('cred-name');
  const url = textInput('cred-url', '', { placeholder: 'https://mcp.example.com/mcp' });
  const token = secretInput('cred-token');
  const expires = textInput('cred-expires', '', { placeholder: '2026-12-31T00:00:00Z (optional)' });
  const secretName = textInput('cred-secret-name', '', { placeholder: 'GITHUB_TOKEN' });
  const secretValue = secretInput('cred-secret-value');
  const hosts = textArea('cred-hosts', '', 2);
  const mcpPart = h('div', { class: 'sub' }, field('MCP server URL', url), field('Token', token, 'write-only: sent once, never shown again'));
  const oauthPart = h('div', { class: 'sub' }, field('Expires at', expires));
  const envPart = h('div', { class: 'sub' },
    field('Variable name', secretName),
    field('Secret value', secretValue, 'write-only: sent once, never shown again'),
    field('Allowed hosts (one per line; empty: any host)', hosts));
  const toggle = () => {
    mcpPart.hidden = kind.value === 'environment_variable';
    oauthPart.hidden = kind.value !== 'mcp_oauth';
    envPart.hidden = kind.value !== 'environment_variable';
  };
  kind.addEventListener('change', toggle);
  toggle();
  return actionForm('cred-create', 'New credential', [field('Kind', kind), field('Name', name), mcpPart, oauthPart, envPart], 'Add credential', async () => {
    let auth: Record<string, unknown>;
    if (kind.value === 'static_bearer') auth = { type: 'static_bearer', mcp_server_url: url.value, token: token.value };
    else if (kind.value === 'mcp_oauth') auth = { type: 'mcp_oauth', mcp_server_url: url.value, access_token: token.value, expires_at: expires.value || null };
    else {
      const allowed = words(hosts.value);
      auth = {
        type: 'environment_variable',
        secret_name: secretName.value,
        secret_value: secretValue.value,
        networking: allowed.length ? { type: 'limited', allowed_hosts: allowed } : { type: 'unrestricted' },
      };
    }
    await post('/v1/vaults/' + encodeURIComponent(vaultId) + '/credentials', { display_name: name.value || null, auth: auth });
    // The API has the secret now: the page keeps no copy (the view is drawn again, with new inputs).
    token.value = '';
    secretValue.value = '';
    await showVault(vaultId);
  });
}
