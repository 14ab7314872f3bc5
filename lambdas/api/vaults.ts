import { Hono } from 'hono';
import { CredentialCreate, CredentialUpdate, CredentialValidate, VaultCreate, VaultUpdate } from '../core/api/schemas.js';
import { InvalidRequestError } from '../core/errors.js';
import type { CorralServices } from '../core/services.js';
import { parseBody, pathId, queryPage, queryBool, queryInt, type Env } from './http.js';

/**
 * `/v1/vaults` and `/v1/vaults/{id}/credentials` (`client.beta.vaults`, `.credentials`). Secret
 * fields go from the request body to the credential proxy and nowhere else: no answer, log line
 * or error message of these routes carries one.
 */
export function vaultRoutes(s: CorralServices) {
  const app = new Hono<Env>();
  app.post('/', async (c) => c.json(await s.vaults.create(c.get('tenant'), await parseBody(c, VaultCreate))));
  app.get('/', async (c) =>
    c.json(
      await s.vaults.list(c.get('tenant'), {
        limit: queryInt(c, 'limit'),
        page: queryPage(c),
        include_archived: queryBool(c, 'include_archived'),
      }),
    ),
  );
  app.get('/:id', async (c) => c.json(await s.vaults.get(c.get('tenant'), pathId(c, 'id'))));
  app.post('/:id', async (c) => c.json(await s.vaults.update(c.get('tenant'), pathId(c, 'id'), await parseBody(c, VaultUpdate))));
  app.delete('/:id', async (c) => c.json(await s.vaults.delete(c.get('tenant'), pathId(c, 'id'))));
  app.post('/:id/archive', async (c) => c.json(await s.vaults.archive(c.get('tenant'), pathId(c, 'id'))));

  app.post('/:id/credentials', async (c) =>
    c.json(await s.vaults.createCredential(c.get('tenant'), pathId(c, 'id'), await parseBody(c, CredentialCreate))),
  );
  app.get('/:id/credentials', async (c) =>
    c.json(
      await s.vaults.listCredentials(c.get('tenant'), pathId(c, 'id'), {
        limit: queryInt(c, 'limit'),
        page: queryPage(c),
        include_archived: queryBool(c, 'include_archived'),
      }),
    ),
  );
  app.get('/:id/credentials/:credential_id', async (c) =>
    c.json(await s.vaults.getCredential(c.get('tenant'), pathId(c, 'id'), pathId(c, 'credential_id'))),
  );
  app.post('/:id/credentials/:credential_id', async (c) =>
    c.json(
      await s.vaults.updateCredential(c.get('tenant'), pathId(c, 'id'), pathId(c, 'credential_id'), await parseBody(c, CredentialUpdate)),
    ),
  );
  app.delete('/:id/credentials/:credential_id', async (c) =>
    c.json(await s.vaults.deleteCredential(c.get('tenant'), pathId(c, 'id'), pathId(c, 'credential_id'))),
  );
  app.post('/:id/credentials/:credential_id/archive', async (c) =>
    c.json(await s.vaults.archiveCredential(c.get('tenant'), pathId(c, 'id'), pathId(c, 'credential_id'))),
  );
  // The SDK's `mcpOAuthValidate`: no body; a workspace header names what Corral does not have.
  app.post('/:id/credentials/:credential_id/mcp_oauth_validate', async (c) => {
    if (c.req.header('anthropic-workspace-id') !== undefined) {
      throw new InvalidRequestError('anthropic-workspace-id: Corral has no workspaces; leave workspace_id out');
    }
    await parseBody(c, CredentialValidate);
    return c.json(await s.vaults.validateMcpOAuth(c.get('tenant'), c.req.param('id'), c.req.param('credential_id')));
  });
  return app;
}
