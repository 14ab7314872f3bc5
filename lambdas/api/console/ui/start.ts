/**
 * A new session (`#new-session`): an agent (its latest version, or one chosen), an environment,
 * vaults, resources (files of the Files API mounted read-only, a GitHub repository cloned with an
 * optional write-only token), a title and a first message. Created through `POST /v1/sessions`,
 * then the page goes to the session's timeline.
 */
import { base, listAll, post } from './api.js';
import { h } from './dom.js';
import { actionForm, checkbox, field, parseJson, secretInput, select, textArea, textInput } from './forms.js';
import { managePage, modelId, type Agent, type Environment } from './manage.js';
import { app, handleError } from './shell.js';
import type { Vault } from './vaults.js';

interface FileMeta {
  id: string;
  filename: string;
  size_bytes?: number;
}

export async function showNewSession(): Promise<void> {
  managePage('new session', ['Sessions', ''], 'New session');
  const error = h('p', { class: 'error', id: 'new-session-load-error' });
  let agents: Agent[], envs: Environment[], vaults: Vault[], files: FileMeta[];
  try {
    [agents, envs, vaults, files] = await Promise.all([
      listAll<Agent>('/v1/agents'),
      listAll<Environment>('/v1/environments'),
      listAll<Vault>('/v1/vaults'),
      listAll<FileMeta>('/v1/files').catch(() => [] as FileMeta[]), // a key scoped to a workspace may not list files
    ]);
  } catch (e) {
    app.replaceChildren(error);
    return handleError(e, error);
  }
  const agent = select('session-agent', agents.map((a) => [a.id, a.name + ' (v' + a.version + ', ' + modelId(a.model) + ')']));
  const version = textInput('session-agent-version', '', { placeholder: 'latest', inputmode: 'numeric' });
  const env = select('session-environment', envs.map((e) => [e.id, e.name + ' (' + e.id + ')']));
  const title = textInput('session-title');
  const vaultBoxes = vaults.map((v) => ({ id: v.id, box: checkbox('session-vault-' + v.id, false), name: v.display_name }));
  const fileBoxes = files.map((f) => ({ id: f.id, box: checkbox('session-file-' + f.id, false), name: f.filename }));
  const repo = textInput('session-repo-url', '', { placeholder: 'https://github.com/owner/repo' });
  const branch = textInput('session-repo-branch', '', { placeholder: 'default branch' });
  const repoToken = secretInput('session-repo-token');
  const extra = textArea('session-resources', '', 2);
  const message = textArea('session-message', '', 3);
  const none = (what: string, hash: string) => h('p', { class: 'muted' }, 'None yet: ', h('a', { href: base + '/console#' + hash, text: 'create ' + what }), '.');
  app.replaceChildren(actionForm('session-create', 'New session', [
    agents.length ? h('div', { class: 'pair' }, field('Agent', agent), field('Version', version)) : none('an agent', 'agents'),
    envs.length ? field('Environment', env) : none('an environment', 'environments'),
    field('Title', title),
    h('fieldset', { id: 'session-vaults' }, h('legend', { text: 'Vaults (their credentials serve this session)' }),
      vaultBoxes.length ? vaultBoxes.map((v) => h('label', { class: 'check' }, v.box, ' ' + v.name + ' ', h('span', { class: 'mono muted', text: v.id }))) : none('a vault', 'vaults')),
    h('fieldset', { id: 'session-files' }, h('legend', { text: 'Files (mounted read-only under /mnt/session/uploads/)' }),
      fileBoxes.length ? fileBoxes.map((f) => h('label', { class: 'check' }, f.box, ' ' + f.name + ' ', h('span', { class: 'mono muted', text: f.id }))) : h('p', { class: 'muted', text: 'No files uploaded (the Files API, or "corral" with the SDK).' })),
    h('fieldset', null, h('legend', { text: 'Repository' }),
      field('URL', repo), h('div', { class: 'pair' }, field('Branch', branch), field('Token', repoToken, 'write-only'))),
    field('More resources (JSON array, as the API takes them)', extra),
    field('First message', message, 'sent with the session, so it starts at once'),
  ], 'Start session', async () => {
    const resources: unknown[] = [];
    for (const f of fileBoxes) if (f.box.checked) resources.push({ type: 'file', file_id: f.id });
    if (repo.value.trim()) {
      resources.push(Object.assign(
        { type: 'github_repository', url: repo.value.trim() },
        branch.value.trim() ? { checkout: { type: 'branch', name: branch.value.trim() } } : {},
        repoToken.value ? { authorization_token: repoToken.value } : {}));
    }
    const more = parseJson<unknown>('More resources', extra.value, []);
    if (!Array.isArray(more)) throw new Error('More resources must be a JSON array');
    resources.push(...more);
    const body: Record<string, unknown> = {
      agent: version.value.trim() ? { type: 'agent', id: agent.value, version: Number(version.value.trim()) } : agent.value,
      environment_id: env.value,
      title: title.value || null,
    };
    const vaultIds = vaultBoxes.filter((v) => v.box.checked).map((v) => v.id);
    if (vaultIds.length) body.vault_ids = vaultIds;
    if (resources.length) body.resources = resources;
    if (message.value.trim()) body.initial_events = [{ type: 'user.message', content: [{ type: 'text', text: message.value.trim() }] }];
    const session = await post<{ id: string }>('/v1/sessions', body);
    repoToken.value = '';
    location.assign(base + '/console/sessions/' + encodeURIComponent(session.id));
  }));
}
