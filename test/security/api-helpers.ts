import { ScanCommand, type DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { createAgentAndEnvironment, startTestRuntime, type TestRuntime } from '../helpers/runtime.js';

/**
 * A local runtime whose worker does not run (the attacks are on the API, not the harness), with
 * an agent and an environment to refer to.
 */
export async function startQuietRuntime(): Promise<{ t: TestRuntime; agentId: string; envId: string }> {
  const t = await startTestRuntime();
  await t.runtime.queue.stop();
  const { agent, environment } = await createAgentAndEnvironment(t.client);
  return { t, agentId: agent.id, envId: environment.id };
}

/** Every item of both tables but the request counters, as sorted JSON lines. */
export async function storedRows(t: TestRuntime): Promise<string[]> {
  const client = (t.runtime.services.table as unknown as { client: DynamoDBClient }).client;
  const rows: string[] = [];
  for (const table of ['corral-state', 'corral-events']) {
    let start: Record<string, never> | undefined;
    do {
      const out = await client.send(new ScanCommand({ TableName: table, ExclusiveStartKey: start }));
      for (const item of out.Items ?? []) {
        const row = JSON.stringify(item);
        if (!row.includes('"rate#') && !row.includes('"authfail#')) rows.push(row);
      }
      start = out.LastEvaluatedKey as Record<string, never> | undefined;
    } while (start);
  }
  return rows.sort();
}

/** A raw API request with the runtime's key; the answer's status and parsed body. */
export async function call(
  t: TestRuntime,
  method: string,
  path: string,
  body?: unknown,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: { type?: string; error?: { type: string; message: string }; [k: string]: unknown }; headers: Headers }> {
  const res = await fetch(`${t.runtime.url}${path}`, {
    method,
    headers: { 'x-api-key': t.runtime.apiKey, 'content-type': 'application/json', ...headers },
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await res.text();
  let parsed = {};
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = { raw: text };
  }
  return { status: res.status, body: parsed, headers: res.headers };
}

/** `depth` nested arrays around `inner`, as JSON text (built without recursion). */
export function nestedJson(depth: number, inner = '"x"'): string {
  return '['.repeat(depth) + inner + ']'.repeat(depth);
}
