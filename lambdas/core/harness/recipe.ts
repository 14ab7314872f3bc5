import type { EnvironmentService } from '../resources/environments.js';
import type { Session, SessionService } from '../resources/sessions.js';
import type { SandboxRecipe } from '../sandbox/types.js';

/** What a new sandbox of this session is built from: its environment's config and its resources. */
export async function sandboxRecipe(src: { sessions: SessionService; environments: EnvironmentService }, session: Session): Promise<SandboxRecipe> {
  const tenant = await src.sessions.tenantOf(session.id);
  const env = await src.environments.get(tenant, session.environment_id).catch(() => null);
  return { environmentId: session.environment_id, config: env?.config ?? { type: 'cloud' }, resources: session.resources };
}
