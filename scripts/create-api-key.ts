/**
 * Create an API key for a tenant of a deployed Corral, after `cdk deploy`:
 *
 *   npx tsx scripts/create-api-key.ts --table <StateTableName> [--tenant default] [--region eu-west-1]
 *
 * The stack prints the exact command as its `CreateApiKeyCommand` output. The key is generated
 * here, printed once on stdout, and only its SHA-256 hash is written to the state table (the same
 * item the API's authentication reads); it cannot be shown again. Uses the usual AWS credentials
 * (profile, environment, SSO). `--endpoint` points at another DynamoDB (DynamoDB Local, tests).
 */
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { parseArgs } from 'node:util';
import { pathToFileURL } from 'node:url';
import { DynamoStateTable } from '../lambdas/adapters/aws/dynamodb-state-table.js';
import { generateApiKey, TenantService } from '../lambdas/core/resources/tenants.js';

const USAGE = 'usage: npx tsx scripts/create-api-key.ts --table <StateTableName> [--tenant <name>] [--region <region>] [--endpoint <url>]';
const TENANT = /^[A-Za-z0-9_.-]{1,64}$/;

export interface CreateApiKeyOptions {
  table: string;
  tenant: string;
  client: DynamoDBClient;
}

/** Generate a key, store its hash for the tenant, return the key (the only time it exists in clear). */
export async function createApiKey(opts: CreateApiKeyOptions): Promise<string> {
  if (!TENANT.test(opts.tenant)) throw new Error(`tenant must be 1-64 letters, digits, '.', '_' or '-': ${JSON.stringify(opts.tenant)}`);
  const key = generateApiKey();
  await new TenantService(new DynamoStateTable(opts.client, opts.table)).addKey(opts.tenant, key);
  return key;
}

export async function main(argv: string[], out: { stdout: (s: string) => void; stderr: (s: string) => void }): Promise<number> {
  let values: { table?: string; tenant?: string; region?: string; endpoint?: string; help?: boolean };
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        table: { type: 'string' },
        tenant: { type: 'string', default: 'default' },
        region: { type: 'string' },
        endpoint: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
    }));
  } catch (err) {
    out.stderr(`${(err as Error).message}\n${USAGE}\n`);
    return 2;
  }
  if (values.help) {
    out.stdout(`${USAGE}\n`);
    return 0;
  }
  if (!values.table) {
    out.stderr(`--table is required (the stack's StateTableName output)\n${USAGE}\n`);
    return 2;
  }
  const client = new DynamoDBClient({ region: values.region, endpoint: values.endpoint });
  try {
    const key = await createApiKey({ table: values.table, tenant: values.tenant ?? 'default', client });
    out.stderr(`Created an API key for tenant "${values.tenant}". It is shown only this once; keep it somewhere safe:\n`);
    out.stdout(`${key}\n`);
    return 0;
  } catch (err) {
    out.stderr(`could not create the key: ${(err as Error).message}\n`);
    return 1;
  } finally {
    client.destroy();
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
  const code = await main(process.argv.slice(2), {
    stdout: (s) => process.stdout.write(s),
    stderr: (s) => process.stderr.write(s),
  });
  process.exit(code);
}
