/**
 * The manage views: agents (`#agents`, one agent with its versions at `#agents/{id}`) and
 * environments (`#environments`). Each lists what the API lists (archived ones left out), archives,
 * and creates or edits through a form whose fields are the API's own; everything goes through the
 * public API with the console's key, and the API's errors are shown as they come.
 */
import { api, base, listAll, post } from './api.js';
import { fmtDate, h } from './dom.js';
import { actionButton, actionForm, checkbox, field, parseJson, parseObject, pretty, select, textArea, textInput, words } from './forms.js';
import { app, crumb, handleError } from './shell.js';

// --- the API's shapes, as far as the console reads them ------------------------------------------

export interface Agent {
  id: string;
  name: string;
  version: number;
  model: string | { id: string; [k: string]: unknown };
  system?: string | null;
  description?: string | null;
  tools?: unknown[];
  mcp_servers?: unknown[];
  created_at: string;
  updated_at: string;
  archived_at?: string | null;
}

interface Networking {
  type: 'unrestricted' | 'limited';
  allowed_hosts?: string[] | null;
  allow_package_managers?: boolean | null;
  allow_mcp_servers?: boolean | null;
}
interface Packages {
  apt?: string[] | null;
  npm?: string[] | null;
  pip?: string[] | null;
}
export interface Environment {
  id: string;
  name: string;
  description?: string | null;
  config?: { type: string; networking?: Networking | null; packages?: Packages | null } | null;
  created_at: string;
  archived_at?: string | null;
}

export const modelId = (m: Agent['model']) => (typeof m === 'string' ? m : m.id);
export const consoleHref = (hash: string) => base + '/console#' + hash;

/** A page of the manage views: its crumb and title. */
export function managePage(title: string, ...trail: Array<[string, string] | string>): void {
  document.title = 'Corral · ' + title;
  crumb.replaceChildren(...trail.flatMap((t, i) => [
    i ? h('span', { text: ' / ' }) : null,
    typeof t === 'string' ? h('span', { text: t }) : h('a', { href: consoleHref(t[1]), text: t[0] }),
  ].filter((x): x is HTMLElement => x !== null)));
}

/** A table of items with an archive button per row, and the line where errors show. */
export function listCard(id: string, title: string, headers: string[], rows: HTMLTableRowElement[], empty: string, error: HTMLElement): HTMLElement {
  return h('section', { class: 'card' },
    h('div', { class: 'row' }, h('h2', { text: title })),
    h('table', { class: 'list', id: id },
      h('thead', null, h('tr', null, [...headers, ''].map((t) => h('th', { text: t })))),
      h('tbody', null, rows)),
    rows.length ? null : h('p', { class: 'muted', text: empty }),
    error);
}

// --- agents ------------------------------------------------------------------------------------

export async function showAgents(): Promise<void> {
  managePage('agents', 'Agents');
  const error = h('p', { class: 'error', id: 'agents-error' });
  let agents: Agent[];
  try {
    agents = await listAll<Agent>('/v1/agents');
  } catch (e) {
    app.replaceChildren(error);
    return handleError(e, error);
  }
  const rows = agents.map((a) => h('tr', { 'data-id': a.id },
    h('td', null, h('a', { href: consoleHref('agents/' + a.id), text: a.name })),
    h('td', { class: 'mono', text: a.id }),
    h('td', { text: modelId(a.model) }),
    h('td', { class: 'version', text: 'v' + a.version }),
    h('td', { text: fmtDate(a.updated_at) }),
    h('td', null, actionButton('Archive', 'danger small archive', error, async () => {
      await post('/v1/agents/' + encodeURIComponent(a.id) + '/archive', {});
      void showAgents();
    }))));
  app.replaceChildren(
    listCard('agents', 'Agents', ['Name', 'Id', 'Model', 'Version', 'Updated'], rows, 'No agents yet.', error),
    agentForm(null));
}

export async function showAgent(id: string): Promise<void> {
  managePage('agent', ['Agents', 'agents'], id);
  const error = h('p', { class: 'error', id: 'agent-load-error' });
  let agent: Agent;
  let versions: Agent[];
  try {
    agent = await api<Agent>('/v1/agents/' + encodeURIComponent(id));
    versions = await listAll<Agent>('/v1/agents/' + encodeURIComponent(id) + '/versions');
  } catch (e) {
    app.replaceChildren(error);
    return handleError(e, error);
  }
  versions.sort((a, b) => b.version - a.version);
  app.replaceChildren(
    h('section', { class: 'card' },
      h('div', { class: 'row' }, h('h2', { id: 'agent-title', text: agent.name }), h('span', { class: 'badge', id: 'agent-version', text: 'v' + agent.version }),
        agent.archived_at ? h('span', { class: 'badge', text: 'archived' }) : null),
      h('p', { class: 'muted mono', text: agent.id }),
      h('table', { class: 'list', id: 'versions' },
        h('thead', null, h('tr', null, ['Version', 'Name', 'Model', 'Saved'].map((t) => h('th', { text: t })))),
        h('tbody', null, versions.map((v) => h('tr', { 'data-version': v.version },
          h('td', { text: 'v' + v.version }), h('td', { text: v.name }), h('td', { text: modelId(v.model) }), h('td', { text: fmtDate(v.updated_at) })))))),
    agentForm(agent));
}

/**
 * An agent's form: a new agent, or an edit of `agent` (which the API saves as its next version;
 * the version edited is sent, so an edit made meanwhile elsewhere is refused, not overwritten).
 */
function agentForm(agent: Agent | null): HTMLFormElement {
  const name = textInput('agent-name', agent?.name, { required: true });
  const model = textInput('agent-model', agent ? modelId(agent.model) : 'claude-sonnet-4-6', { required: true });
  const system = textArea('agent-system', agent?.system, 4);
  const tools = textArea('agent-tools', agent ? pretty(agent.tools ?? []) : pretty([{ type: 'agent_toolset_20260401' }]), 4);
  const extra: Record<string, unknown> = {};
  if (agent?.description) extra.description = agent.description;
  if (agent?.mcp_servers && agent.mcp_servers.length) extra.mcp_servers = agent.mcp_servers;
  if (agent && typeof agent.model === 'object' && Object.keys(agent.model).some((k) => k !== 'id' && agent.model && (agent.model as Record<string, unknown>)[k] != null)) {
    extra.model = agent.model;
  }
  const more = textArea('agent-extra', Object.keys(extra).length ? pretty(extra) : '', 3);
  return actionForm(agent ? 'agent-edit' : 'agent-create', agent ? 'Edit (saves version ' + (agent.version + 1) + ')' : 'New agent', [
    field('Name', name),
    field('Model', model),
    field('System prompt', system),
    field('Tools (JSON, as the API takes them)', tools),
    field('Other fields (JSON object: description, mcp_servers, metadata, a model object…)', more),
  ], agent ? 'Save' : 'Create agent', async () => {
    const body: Record<string, unknown> = {
      name: name.value,
      model: model.value,
      system: system.value || null,
      tools: parseJson<unknown>('Tools', tools.value, []),
    };
    Object.assign(body, parseObject('Other fields', more.value));
    if (agent) {
      body.version = agent.version;
      const saved = await post<Agent>('/v1/agents/' + encodeURIComponent(agent.id), body);
      await showAgent(saved.id);
    } else {
      const created = await post<Agent>('/v1/agents', body);
      location.hash = 'agents/' + created.id;
    }
  });
}

// --- environments --------------------------------------------------------------------------------

export async function showEnvironments(): Promise<void> {
  managePage('environments', 'Environments');
  const error = h('p', { class: 'error', id: 'environments-error' });
  let envs: Environment[];
  try {
    envs = await listAll<Environment>('/v1/environments');
  } catch (e) {
    app.replaceChildren(error);
    return handleError(e, error);
  }
  const edit = h('div', { id: 'environment-edit' });
  const rows = envs.map((env) => {
    const net = env.config?.networking;
    const pkgs = env.config?.packages;
    const packages = pkgs ? (['apt', 'npm', 'pip'] as const).flatMap((m) => (pkgs[m] || []).map((p) => m + ':' + p)).join(' ') : '';
    return h('tr', { 'data-id': env.id },
      h('td', { text: env.name }),
      h('td', { class: 'mono', text: env.id }),
      h('td', { text: net ? net.type + (net.allowed_hosts && net.allowed_hosts.length ? ' (' + net.allowed_hosts.join(', ') + ')' : '') : 'unrestricted' }),
      h('td', { class: 'mono', text: packages || '—' }),
      h('td', { text: fmtDate(env.created_at) }),
      h('td', { class: 'actions' },
        actionButton('Edit', 'small edit', error, async () => {
          edit.replaceChildren(environmentForm(env));
          edit.scrollIntoView();
        }),
        actionButton('Archive', 'danger small archive', error, async () => {
          await post('/v1/environments/' + encodeURIComponent(env.id) + '/archive', {});
          void showEnvironments();
        })));
  });
  app.replaceChildren(
    listCard('environments', 'Environments', ['Name', 'Id', 'Networking', 'Packages', 'Created'], rows, 'No environments yet.', error),
    edit,
    environmentForm(null));
}

/** An environment's form: its name and its cloud config (networking and packages). */
function environmentForm(env: Environment | null): HTMLFormElement {
  const p = env ? 'env-edit' : 'env';
  const net = env?.config?.networking;
  const pkgs = env?.config?.packages;
  const name = textInput(p + '-name', env?.name, { required: true });
  const description = textInput(p + '-description', env?.description);
  const networking = select(p + '-networking', [['unrestricted', 'unrestricted'], ['limited', 'limited (allowed hosts only)']], net?.type || 'unrestricted');
  const hosts = textArea(p + '-hosts', (net?.allowed_hosts || []).join('\n'), 2);
  const pm = checkbox(p + '-allow-package-managers', !!net?.allow_package_managers);
  const mcp = checkbox(p + '-allow-mcp', !!net?.allow_mcp_servers);
  const apt = textInput(p + '-apt', (pkgs?.apt || []).join(' '));
  const npm = textInput(p + '-npm', (pkgs?.npm || []).join(' '));
  const pip = textInput(p + '-pip', (pkgs?.pip || []).join(' '));
  const limited = h('div', { class: 'sub' },
    field('Allowed hosts (one per line: host, *.domain or IP, optional :port)', hosts),
    h('label', { class: 'check' }, pm, ' package managers'),
    h('label', { class: 'check' }, mcp, " the agent's MCP servers"));
  const toggle = () => { limited.hidden = networking.value !== 'limited'; };
  networking.addEventListener('change', toggle);
  toggle();
  return actionForm(env ? 'env-edit' : 'env-create', env ? 'Edit ' + env.name : 'New environment', [
    field('Name', name),
    field('Description', description),
    field('Networking', networking),
    limited,
    field('apt packages', apt, 'space-separated, with optional version pins'),
    field('npm packages', npm),
    field('pip packages', pip),
  ], env ? 'Save' : 'Create environment', async () => {
    const packages: Record<string, string[]> = {};
    for (const [m, input] of [['apt', apt], ['npm', npm], ['pip', pip]] as const) if (words(input.value).length) packages[m] = words(input.value);
    const body = {
      name: name.value,
      description: description.value || null,
      config: {
        type: 'cloud',
        networking: networking.value === 'limited'
          ? { type: 'limited', allowed_hosts: words(hosts.value), allow_package_managers: pm.checked, allow_mcp_servers: mcp.checked }
          : { type: 'unrestricted' },
        packages: Object.keys(packages).length ? packages : null,
      },
    };
    await post<Environment>(env ? '/v1/environments/' + encodeURIComponent(env.id) : '/v1/environments', body);
    await showEnvironments();
  });
}
