import { ScanCommand } from '@aws-sdk/client-dynamodb';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { DynamoStateTable } from '../../lambdas/adapters/aws/dynamodb-state-table.js';
import { ensureTables } from '../../lambdas/adapters/aws/tables.js';
import { startDynalite, type EmbeddedDynamo } from '../../lambdas/adapters/local/dynalite.js';
import { hashApiKey, TenantService } from '../../lambdas/core/resources/tenants.js';
import { main } from '../../scripts/create-api-key.js';

describe('scripts/create-api-key.ts', () => {
  let dynamo: EmbeddedDynamo;
  beforeAll(async () => {
    dynamo = await startDynalite();
    await ensureTables(dynamo.client, { events: 'events', state: 'state' });
    // the script uses the default credential chain; dynalite accepts any
    vi.stubEnv('AWS_ACCESS_KEY_ID', 'local');
    vi.stubEnv('AWS_SECRET_ACCESS_KEY', 'local');
  });
  afterAll(async () => {
    vi.unstubAllEnvs();
    await dynamo?.close();
  });

  async function run(...argv: string[]) {
    let stdout = '';
    let stderr = '';
    const code = await main(argv, { stdout: (s) => void (stdout += s), stderr: (s) => void (stderr += s) });
    return { code, stdout, stderr };
  }

  it('prints a new key once and stores only its hash, for the tenant the API then authenticates', async () => {
    const { code, stdout, stderr } = await run('--table', 'state', '--tenant', 'acme', '--endpoint', dynamo.endpoint, '--region', 'local');
    expect(code).toBe(0);
    const key = stdout.trim();
    expect(key).toMatch(/^sk-corral-[A-Za-z0-9_-]{32}$/);
    expect(stderr).toContain('shown only this once');
    expect(stderr).not.toContain(key);
    const items = (await dynamo.client.send(new ScanCommand({ TableName: 'state' }))).Items ?? [];
    const raw = JSON.stringify(items);
    expect(raw).not.toContain(key);
    expect(raw).toContain(hashApiKey(key));
    expect(await new TenantService(new DynamoStateTable(dynamo.client, 'state')).authenticate(key)).toBe('acme');
  });

  it('explains what is missing or wrong', async () => {
    expect(await run()).toMatchObject({ code: 2, stdout: '', stderr: expect.stringContaining('--table is required') });
    expect(await run('--table', 'state', '--bogus')).toMatchObject({ code: 2, stderr: expect.stringContaining('usage:') });
    expect(await run('--table', 'state', '--tenant', 'a b', '--endpoint', dynamo.endpoint, '--region', 'local')).toMatchObject({
      code: 1,
      stdout: '',
      stderr: expect.stringContaining('tenant must be'),
    });
    expect(await run('--table', 'missing-table', '--endpoint', dynamo.endpoint, '--region', 'local')).toMatchObject({ code: 1, stdout: '' });
  });
});
