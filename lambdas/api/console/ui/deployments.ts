/**
 * Deployments (`#deployments`) and one deployment with its runs (`#deployments/{id}`): the
 * schedule, its next runs, and each run's trigger, scheduled time and the session it started (a
 * link to that session's live view) or its error. Pause, unpause and run now are one API request
 * each.
 */
import { api, base, listAll, post } from './api.js';
import { fmtDate, h } from './dom.js';
import { actionButton } from './forms.js';
import { consoleHref, listCard, managePage } from './manage.js';
import { app, handleError } from './shell.js';

interface Deployment {
  id: string;
  name: string;
  status: 'active' | 'paused';
  paused_reason: { type: string; error?: { type: string } } | null;
  agent: { id: string; version: number };
  environment_id: string;
  schedule: { expression: string; timezone: string; last_run_at?: string | null; upcoming_runs_at?: string[] } | null;
  archived_at: string | null;
  created_at: string;
}

interface DeploymentRun {
  id: string;
  session_id: string | null;
  error: { type: string; message: string } | null;
  trigger_context: { type: 'schedule'; scheduled_at: string } | { type: 'manual' };
  created_at: string;
}

const statusOf = (d: Deployment) =>
  d.archived_at ? 'archived' : d.status === 'paused' ? 'paused' + (d.paused_reason?.error ? ' (' + d.paused_reason.error.type + ')' : '') : 'active';
const scheduleOf = (d: Deployment) => (d.schedule ? d.schedule.expression + ' (' + d.schedule.timezone + ')' : 'run now only');

export async function showDeployments(): Promise<void> {
  managePage('deployments', 'Deployments');
  const error = h('p', { class: 'error', id: 'deployments-error' });
  let deployments: Deployment[];
  try {
    deployments = await listAll<Deployment>('/v1/deployments');
  } catch (e) {
    app.replaceChildren(error);
    return handleError(e, error);
  }
  const rows = deployments.map((d) => h('tr', { 'data-id': d.id },
    h('td', null, h('a', { href: consoleHref('deployments/' + d.id), text: d.name })),
    h('td', { class: 'mono', text: d.id }),
    h('td', { class: 'status', text: statusOf(d) }),
    h('td', { class: 'mono', text: scheduleOf(d) }),
    h('td', { text: d.status === 'active' && d.schedule?.upcoming_runs_at?.[0] ? fmtDate(d.schedule.upcoming_runs_at[0]) : '—' })));
  app.replaceChildren(listCard('deployments', 'Deployments', ['Name', 'Id', 'Status', 'Schedule', 'Next run'], rows, 'No deployments yet.', error));
}

export async function showDeployment(id: string): Promise<void> {
  managePage('deployment', ['Deployments', 'deployments'], id);
  const error = h('p', { class: 'error', id: 'runs-error' });
  let d: Deployment;
  let runs: DeploymentRun[];
  try {
    d = await api<Deployment>('/v1/deployments/' + encodeURIComponent(id));
    runs = (await listAll<DeploymentRun>('/v1/deployment_runs?deployment_id=' + encodeURIComponent(id))).reverse();
  } catch (e) {
    app.replaceChildren(error);
    return handleError(e, error);
  }
  const act = (label: string, path: string) =>
    actionButton(label, 'small ' + path, error, async () => {
      await post('/v1/deployments/' + encodeURIComponent(id) + '/' + path, {});
      void showDeployment(id);
    });
  const rows = runs.map((r) => h('tr', { 'data-id': r.id },
    h('td', { class: 'mono', text: r.id }),
    h('td', { text: r.trigger_context.type }),
    h('td', { text: r.trigger_context.type === 'schedule' ? fmtDate(r.trigger_context.scheduled_at) : '—' }),
    h('td', { text: fmtDate(r.created_at) }),
    h('td', null, r.session_id
      ? h('a', { class: 'mono', href: base + '/console/sessions/' + encodeURIComponent(r.session_id), text: r.session_id })
      : h('span', { class: 'error', text: (r.error?.type ?? '') + ': ' + (r.error?.message ?? '') }))));
  app.replaceChildren(
    h('section', { class: 'card' },
      h('h2', { id: 'deployment-title', text: d.name }),
      h('p', { class: 'muted mono', text: d.id }),
      h('p', { id: 'deployment-status', text: 'Status: ' + statusOf(d) + ' · agent ' + d.agent.id + ' v' + d.agent.version + ' · environment ' + d.environment_id }),
      h('p', { id: 'deployment-schedule', text: 'Schedule: ' + scheduleOf(d) + (d.schedule?.upcoming_runs_at?.length ? ' · next: ' + d.schedule.upcoming_runs_at.map(fmtDate).join(', ') : '') }),
      d.archived_at ? null : h('div', { class: 'row' }, d.status === 'paused' ? act('Unpause', 'unpause') : act('Pause', 'pause'), act('Run now', 'run'))),
    listCard('runs', 'Runs', ['Run', 'Trigger', 'Scheduled', 'Created', 'Session'], rows, 'No runs yet.', error));
}
