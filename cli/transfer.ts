/**
 * `corral export` and `corral import`: a tenant's agents (every version), environments and
 * session logs as JSON lines, and back into a deployment (the same or another).
 *
 * The file is one JSON object a line, each with a `kind`:
 * - `header`: `{ kind, format: 1, exported_at, source }` (the first line);
 * - `agent`: `{ kind, versions: [...] }`, every version of one agent as the API returns it, oldest first;
 * - `environment`: `{ kind, environment }`;
 * - `session`: `{ kind, session, events: [...] }`, the session and its whole log.
 *
 * Import creates agents and environments through the public API (new ids; an agent's versions
 * replayed in order as updates), then each session through Corral's import extension
 * (`POST /v1/corral/imports/sessions`), which writes an archived, read-only copy under a new id.
 * Vault credentials are never exported. Resources archived at export are archived after import.
 */
import type Anthropic from '@anthropic-ai/sdk';
import { ApiError, type RawClient } from './client.js';

export const EXPORT_FORMAT = 1;
/** The server's bounds on one session import (lambdas/core/api/schemas.ts, the API's body limit). */
export const IMPORT_MAX_EVENTS = 10_000;
export const IMPORT_MAX_BYTES = 4 * 1024 * 1024 - 64 * 1024;

type Agent = Anthropic.Beta.Agents.BetaManagedAgentsAgent;
type Environment = Anthropic.Beta.Environments.BetaEnvironment;
type Session = Anthropic.Beta.Sessions.BetaManagedAgentsSession;

export type ExportLine =
  | { kind: 'header'; format: number; exported_at: string; source: string }
  | { kind: 'agent'; versions: Agent[] }
  | { kind: 'environment'; environment: Environment }
  | { kind: 'session'; session: Session; events: unknown[] };

/** Write every line of the tenant's export through `write`; returns how many of each kind. */
export async function exportTenant(sdk: Anthropic, source: string, write: (line: string) => void, signal?: AbortSignal) {
  const counts = { agents: 0, agent_versions: 0, environments: 0, sessions: 0, events: 0 };
  const emit = (line: ExportLine) => write(JSON.stringify(line) + '\n');
  emit({ kind: 'header', format: EXPORT_FORMAT, exported_at: new Date().toISOString(), source });
  for await (const agent of sdk.beta.agents.list({ include_archived: true, limit: 100 }, { signal })) {
    const versions: Agent[] = [];
    for await (const v of sdk.beta.agents.versions.list(agent.id, { limit: 100 }, { signal })) versions.push(v);
    versions.sort((a, b) => a.version - b.version);
    // The head may be archived while its versions are not: the latest carries the head's state.
    if (versions.length) versions[versions.length - 1] = { ...versions[versions.length - 1]!, archived_at: agent.archived_at };
    emit({ kind: 'agent', versions });
    counts.agents++;
    counts.agent_versions += versions.length;
  }
  for await (const environment of sdk.beta.environments.list({ include_archived: true, limit: 100 }, { signal })) {
    emit({ kind: 'environment', environment });
    counts.environments++;
  }
  for await (const session of sdk.beta.sessions.list({ include_archived: true, limit: 100 }, { signal })) {
    const events: unknown[] = [];
    for await (const e of sdk.beta.sessions.events.list(session.id, { limit: 100 }, { signal })) events.push(e);
    emit({ kind: 'session', session, events });
    counts.sessions++;
    counts.events += events.length;
  }
  return counts;
}

/** What `importTenant` did: new ids by old, and sessions it could not import (with why). */
export interface ImportResult {
  agents: Record<string, string>;
  environments: Record<string, string>;
  sessions: Record<string, string>;
  skipped: Array<{ session_id: string; reason: string }>;
}

/** The fields of an agent version that create and update take. */
function agentParams(a: Agent) {
  return {
    name: a.name,
    model: a.model,
    description: a.description ?? null,
    system: a.system ?? null,
    tools: a.tools,
    mcp_servers: a.mcp_servers,
    skills: a.skills,
  };
}

/** Parse export lines (validated as far as the import relies on them). */
export function parseExport(text: string): ExportLine[] {
  const lines: ExportLine[] = [];
  text.split('\n').forEach((raw, i) => {
    if (!raw.trim()) return;
    let line: ExportLine;
    try {
      line = JSON.parse(raw);
    } catch {
      throw new ApiError(0, 'invalid_request_error', `line ${i + 1}: not JSON`);
    }
    const kind = (line as { kind?: unknown })?.kind;
    if (i === 0 && (kind !== 'header' || (line as { format?: unknown }).format !== EXPORT_FORMAT)) {
      throw new ApiError(0, 'invalid_request_error', `line 1: not a corral export of format ${EXPORT_FORMAT}`);
    }
    if (kind === 'agent' && !(Array.isArray((line as { versions?: unknown }).versions) && (line as { versions: unknown[] }).versions.length)) {
      throw new ApiError(0, 'invalid_request_error', `line ${i + 1}: an agent line needs its versions`);
    }
    if (kind === 'session' && !Array.isArray((line as { events?: unknown }).events)) {
      throw new ApiError(0, 'invalid_request_error', `line ${i + 1}: a session line needs its events`);
    }
    if (kind !== 'header' && kind !== 'agent' && kind !== 'environment' && kind !== 'session') {
      throw new ApiError(0, 'invalid_request_error', `line ${i + 1}: unknown kind ${JSON.stringify(kind)}`);
    }
    lines.push(line);
  });
  return lines;
}

/** Import the lines into the deployment `sdk` and `raw` talk to. */
export async function importTenant(sdk: Anthropic, raw: RawClient, lines: ExportLine[], progress: (s: string) => void, signal?: AbortSignal): Promise<ImportResult> {
  const result: ImportResult = { agents: {}, environments: {}, sessions: {}, skipped: [] };
  /** old agent id -> old version -> new version */
  const versionMap = new Map<string, Map<number, number>>();
  const archive: Array<() => Promise<unknown>> = [];
  for (const line of lines) {
    if (line.kind !== 'agent') continue;
    const [first, ...rest] = line.versions;
    let created = await sdk.beta.agents.create({ ...agentParams(first!), metadata: first!.metadata }, { signal });
    const versions = new Map([[first!.version, created.version]]);
    for (const v of rest) {
      created = await sdk.beta.agents.update(created.id, { version: created.version, ...agentParams(v), metadata: v.metadata }, { signal });
      versions.set(v.version, created.version);
    }
    result.agents[first!.id] = created.id;
    versionMap.set(first!.id, versions);
    const last = line.versions[line.versions.length - 1]!;
    if (last.archived_at) archive.push(() => sdk.beta.agents.archive(created.id, {}, { signal }));
    progress(`agent ${first!.id} -> ${created.id} (${line.versions.length} versions)\n`);
  }
  for (const line of lines) {
    if (line.kind !== 'environment') continue;
    const e = line.environment;
    const created = await sdk.beta.environments.create(
      { name: e.name, description: e.description ?? null, config: e.config as Anthropic.Beta.Environments.EnvironmentCreateParams['config'], metadata: e.metadata },
      { signal },
    );
    result.environments[e.id] = created.id;
    if (e.archived_at) archive.push(() => sdk.beta.environments.archive(created.id, {}, { signal }));
    progress(`environment ${e.id} -> ${created.id}\n`);
  }
  for (const line of lines) {
    if (line.kind !== 'session') continue;
    const s = line.session;
    const agentId = result.agents[s.agent.id];
    const environmentId = result.environments[s.environment_id];
    if (!agentId || !environmentId) {
      result.skipped.push({ session_id: s.id, reason: 'its agent or environment is not in the export' });
      continue;
    }
    const body = {
      agent_id: agentId,
      agent_version: versionMap.get(s.agent.id)?.get(s.agent.version),
      environment_id: environmentId,
      title: s.title ?? null,
      metadata: s.metadata,
      source: { session_id: s.id, created_at: s.created_at },
      events: line.events,
    };
    const size = Buffer.byteLength(JSON.stringify(body));
    if (line.events.length > IMPORT_MAX_EVENTS || size > IMPORT_MAX_BYTES) {
      result.skipped.push({ session_id: s.id, reason: `too large to import (${line.events.length} events, ${size} bytes; at most ${IMPORT_MAX_EVENTS} events in ${IMPORT_MAX_BYTES} bytes)` });
      continue;
    }
    const imported = await raw.json<{ id: string }>('POST', '/v1/corral/imports/sessions', body, signal);
    result.sessions[s.id] = imported.id;
    progress(`session ${s.id} -> ${imported.id} (${line.events.length} events, archived)\n`);
  }
  for (const a of archive) await a();
  return result;
}
