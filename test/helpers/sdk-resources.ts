import type { SdkResource } from './sdk-types.js';

/**
 * The SDK resources Corral serves, by their path on the client (`client.beta.<path>`), with the
 * `.d.ts` (under `resources/beta/`) and class that declare them. The strictness and conformance
 * tests walk exactly these; a resource Corral adds (`files`) is one entry here plus its calls in
 * those tests' tables.
 */
export const SDK_RESOURCES: Record<string, SdkResource> = {
  agents: { file: 'agents/agents.d.ts', className: 'Agents' },
  'agents.versions': { file: 'agents/versions.d.ts', className: 'Versions' },
  environments: { file: 'environments/environments.d.ts', className: 'Environments' },
  sessions: { file: 'sessions/sessions.d.ts', className: 'Sessions' },
  'sessions.events': { file: 'sessions/events.d.ts', className: 'Events' },
  'sessions.resources': { file: 'sessions/resources.d.ts', className: 'Resources' },
  vaults: { file: 'vaults/vaults.d.ts', className: 'Vaults' },
  'vaults.credentials': { file: 'vaults/credentials.d.ts', className: 'Credentials' },
  files: { file: 'files.d.ts', className: 'Files' },
};
