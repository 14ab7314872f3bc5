import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { unmarshall } from '@aws-sdk/util-dynamodb';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DynamoEventLog } from '../../lambdas/adapters/aws/dynamodb-event-log.js';
import { DynamoStateTable } from '../../lambdas/adapters/aws/dynamodb-state-table.js';
import { ensureTables } from '../../lambdas/adapters/aws/tables.js';
import { startDynalite, type EmbeddedDynamo } from '../../lambdas/adapters/local/dynalite.js';
import { ProcessSandboxProvider } from '../../lambdas/adapters/local/process-sandbox.js';
import { AnthropicModel } from '../../lambdas/core/harness/model.js';
import { createServices, type CorralServices } from '../../lambdas/core/services.js';
import { keys } from '../../lambdas/core/storage/keys.js';
import { tenantPrincipal } from '../../lambdas/core/storage/principal.js';
import { startFakeMessagesApi, type FakeMessagesApi } from '../fixtures/fake-messages-api.js';
import { RecordingQueue } from '../faults/harness-rig.js';

const TABLES = { events: 'corral-events', state: 'corral-state' };
const TENANT = 'index-writes';

/** One write to the state table: the command, the item's key, and the attributes it wrote. */
interface Write {
  command: string;
  pk: string;
  sk: string;
  attributes: Record<string, unknown>;
}

/** A DynamoDB client that records every write to the state table (the real one, dynalite, answers). */
function recording(client: DynamoDBClient, writes: Write[]): DynamoDBClient {
  return new Proxy(client, {
    get(target, prop, receiver) {
      if (prop !== 'send') return Reflect.get(target, prop, receiver);
      return async (command: { constructor: { name: string }; input: Record<string, any> }) => {
        const out = await target.send(command as never);
        const name = command.constructor.name.replace('Command', '');
        const input = command.input;
        if (input.TableName === TABLES.state && ['PutItem', 'UpdateItem', 'DeleteItem'].includes(name)) {
          const key = unmarshall(input.Item ?? input.Key);
          const attributes = input.Item
            ? unmarshall(input.Item)
            : Object.fromEntries(Object.entries((input.ExpressionAttributeNames ?? {}) as Record<string, string>).map(([, v]) => [v, true]));
          writes.push({ command: name, pk: String(key.pk), sk: String(key.sk), attributes });
        }
        return out;
      };
    },
  });
}

/**
 * The tenant's session index (`gsi1`, all attributes projected) is written whenever an item in it
 * is: DynamoDB rewrites an index entry when a projected attribute of its item changes, and with
 * every attribute projected, that is every write of an item carrying the index key. Each such
 * write lands in the one index partition of the tenant (`<tenant>#sessions`), so its count per
 * turn times the tenant's sessions is that partition's write rate. A session's head carries no
 * index key: its listing item alone is in the index, written once when the session is created.
 */
describe('the tenant\'s session index', () => {
  let db: EmbeddedDynamo;
  let fake: FakeMessagesApi;
  let provider: ProcessSandboxProvider;
  let dataDir: string;
  let services: CorralServices;
  const writes: Write[] = [];
  let sessionId = '';

  beforeAll(async () => {
    db = await startDynalite();
    await ensureTables(db.client, TABLES);
    fake = await startFakeMessagesApi();
    dataDir = mkdtempSync(join(tmpdir(), 'corral-index-'));
    provider = new ProcessSandboxProvider({ dataDir, isolation: 'auto' });
    const client = recording(db.client, writes);
    services = createServices({
      table: new DynamoStateTable(client, TABLES.state),
      events: new DynamoEventLog(client, TABLES.events),
      queue: new RecordingQueue(),
      sandboxProvider: provider,
      model: new AnthropicModel({ apiKey: 'test', baseURL: fake.url }),
      harness: { retryDelayMs: () => 5, interruptPollMs: 600_000 },
    });
  });
  afterAll(async () => {
    await provider?.close();
    await fake?.close();
    await db?.close();
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  });

  it('is written once when a session is created, never by a turn: status changes write a head that is in no index', async () => {
    const agent = await services.agents.create(TENANT, { name: 'a', model: 'claude-sonnet-4-6', tools: [{ type: 'agent_toolset_20260401' }] });
    const env = await services.environments.create(TENANT, { name: 'e' });
    writes.length = 0;
    const session = await services.sessions.create(TENANT, { agent: agent.id, environment_id: env.id });
    const headKey = keys.head('session', session.id);
    const tenantIndex = keys.tenantIndex('session', TENANT);
    // A write of an item in the tenant's index: anything written with the tenant's index partition key.
    const inIndex = (w: Write) => w.attributes.gsi1pk === tenantIndex;
    expect(writes.filter(inIndex).map((w) => [w.pk, w.sk])).toEqual([[keys.sessionListing(session.id).pk, keys.sessionListing(session.id).sk]]);
    expect(writes.find((w) => w.pk === headKey.pk && w.sk === headKey.sk)?.attributes).not.toHaveProperty('gsi1pk');

    // One turn as the issue counts it: two model calls with a tool call between them.
    for (let turn = 1; turn <= 2; turn++) {
      writes.length = 0;
      fake.push({ kind: 'tool_use', calls: [{ name: 'bash', input: { command: `echo turn ${turn}` } }] }, { kind: 'text', text: `done ${turn}` });
      await services.sessions.send(TENANT, session.id, [{ type: 'user.message', content: [{ type: 'text', text: `turn ${turn}` }] }]);
      for (let i = 0; i < 20; i++) if ((await services.harness.wake(session.id)).status === 'done') break;
      const events = await services.events.getEvents(session.id);
      expect(events.filter((e) => e.event.type === 'span.model_request_end')).toHaveLength(2 * turn);

      const indexed = writes.filter(inIndex);
      const headWrites = writes.filter((w) => w.pk === headKey.pk && w.sk === headKey.sk);
      const size = (w: Write) => JSON.stringify(w.attributes).length;
      console.info(
        `turn ${turn}: ${writes.length} state-table writes; in the tenant's index: ${indexed.length}; of the session head (in no index): ` +
          `${headWrites.map((w) => `${(w.attributes.data as { status?: string } | undefined)?.status} ~${size(w)} B`).join(', ')}; ` +
          `of the usage item: ${writes.filter((w) => w.sk === keys.sessionUsage(session.id).sk).length}`,
      );
      // The head is written on its status changes, running then idle, and nothing in the index is.
      expect(headWrites.map((w) => (w.attributes.data as { status?: string } | undefined)?.status)).toEqual(['running', 'idle']);
      expect(indexed).toEqual([]);
    }

    // The usage the turns' model calls reported is still what the API shows, on get and in the list.
    const got = await services.sessions.get(tenantPrincipal(TENANT), session.id);
    expect(got.status).toBe('idle');
    expect(got.usage.output_tokens).toBeGreaterThan(0);
    const listed = await services.sessions.list(TENANT, {});
    expect(listed.data.find((s) => s.id === session.id)?.usage).toEqual(got.usage);
    sessionId = session.id;
  }, 120_000);

  it('keeps the usage through a user\'s update of the head, and deletes the usage item with the session', async () => {
    const before = await services.sessions.get(tenantPrincipal(TENANT), sessionId);
    writes.length = 0;
    const updated = await services.sessions.update(TENANT, sessionId, { title: 'renamed' }, new Date(Date.parse(before.updated_at) + 1000));
    expect(writes.map((w) => w.sk)).toEqual(['head']); // the usage did not change: its item is not written
    const after = await services.sessions.get(tenantPrincipal(TENANT), sessionId);
    expect(after).toEqual(updated);
    expect(after.title).toBe('renamed');
    expect(after.usage).toEqual(before.usage);
    // Archiving writes the head alone: the list still hides it by default, from the head's data.
    writes.length = 0;
    await services.sessions.archive(TENANT, sessionId);
    expect(writes.map((w) => w.sk)).toEqual(['head']);
    expect(writes[0].attributes).not.toHaveProperty('gsi1pk');
    expect((await services.sessions.list(TENANT, {})).data.map((s) => s.id)).not.toContain(sessionId);
    expect((await services.sessions.list(TENANT, { include_archived: true })).data.map((s) => s.id)).toContain(sessionId);
    await services.sessions.delete(TENANT, sessionId);
    const table = new DynamoStateTable(db.client, TABLES.state);
    for (const k of [keys.sessionUsage(sessionId), keys.sessionListing(sessionId)]) expect(await table.get(k.pk, k.sk)).toBeUndefined();
    expect((await services.sessions.list(TENANT, { include_archived: true })).data.map((s) => s.id)).not.toContain(sessionId);
  });
});
