import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import type { SessionEvent } from '../../lambdas/core/session/events.js';
import { decodeEvent, encodeEvent, INLINE_LIMIT_BYTES } from '../../lambdas/core/storage/event-items.js';
import { keys, RATE_LIMIT_PARTITIONS } from '../../lambdas/core/storage/keys.js';
import { sandboxItem } from '../../lambdas/core/storage/items.js';
import { sourceFiles } from './source-files.js';

/**
 * The storage module (lambdas/core/storage) is the only place a table key is spelled out, and the
 * keys it spells are the on-disk format of deployed tables.
 */
const STORAGE = 'lambdas/core/storage/';

/**
 * What a key template looks like in source: a string or template literal that starts with one of
 * the partitions' prefixes followed by `#` (`session#${id}`, 'cred#'), one of the per-tenant
 * index partitions (`${tenant}#sessions`), or an event-chunk partition (`${id}~${event}`).
 */
const KEY_TEMPLATE = [
  /['"`](?:agent|env|vault|session|sessions|sandbox|sandboxes|cred|v|apikey|rate|authfail|file)#/,
  /\}#(?:agents|environments|vaults|sessions|files)\b/,
  /\$\{[^}]*\}~\$\{/,
];

describe('table keys', () => {
  it('are built only in the storage module', () => {
    const files = sourceFiles();
    // the walk reaches the modules that used to build keys, and the proxy
    expect(files).toEqual(expect.arrayContaining(['lambdas/core/vault/proxy.ts', 'lambdas/credential-proxy/handler.ts', 'infra/lib/constructs/api.ts']));
    const found: string[] = [];
    for (const file of files) {
      if (file.startsWith(STORAGE)) continue;
      readFileSync(file, 'utf8')
        .split('\n')
        .forEach((line, i) => {
          if (KEY_TEMPLATE.some((re) => re.test(line))) found.push(`${file}:${i + 1}: ${line.trim()}`);
        });
    }
    expect(found).toEqual([]);
  });

  it('the check finds a key template where one is written', () => {
    for (const line of ['table.get(`session#${id}`, sk)', "query(pk, { prefix: 'cred#' })", 'queryIndex(`${tenant}#agents`, q)', 'const p = `${sessionId}~${eventId}`;']) {
      expect(KEY_TEMPLATE.some((re) => re.test(line)), line).toBe(true);
    }
  });

  it('keep the format deployed tables hold', () => {
    expect(keys.head('agent', 'agent_1')).toEqual({ pk: 'agent#agent_1', sk: 'head' });
    expect(keys.agentVersion('agent_1', 12)).toEqual({ pk: 'agent#agent_1', sk: 'v#0000000012' });
    expect(keys.head('environment', 'env_1')).toEqual({ pk: 'env#env_1', sk: 'head' });
    expect(keys.head('vault', 'vlt_1')).toEqual({ pk: 'vault#vlt_1', sk: 'head' });
    expect(keys.credential('vlt_1', 'vcrd_1')).toEqual({ pk: 'vault#vlt_1', sk: 'cred#vcrd_1' });
    expect(keys.head('session', 'sesn_1')).toEqual({ pk: 'session#sesn_1', sk: 'head' });
    expect(keys.sessionUsage('sesn_1')).toEqual({ pk: 'session#sesn_1', sk: 'head#usage' });
    expect(keys.cursor('sesn_1')).toEqual({ pk: 'session#sesn_1', sk: 'cursor' });
    expect(keys.lease('sesn_1')).toEqual({ pk: 'session#sesn_1', sk: 'lease' });
    expect(keys.sandbox('sesn_1', 'default')).toEqual({ pk: 'session#sesn_1', sk: 'sandbox#default' });
    expect(keys.head('file', 'file_1')).toEqual({ pk: 'file#file_1', sk: 'head' });
    expect(keys.sessionFile('sesn_1', 'file_1')).toEqual({ pk: 'session#sesn_1', sk: 'file#file_1' });
    expect(keys.apiKey('ab12')).toEqual({ pk: 'apikey#ab12', sk: 'key' });
    expect(keys.rateCounter('tnt', 'read', 60000)).toEqual({ pk: 'rate#tnt#read', sk: '60000' });
    expect(keys.rateCounter('tnt', 'read', 60000, 3)).toEqual({ pk: 'rate#tnt#read#3', sk: '60000' });
    expect(keys.authFailures('10.0.0.1', 60000)).toEqual({ pk: 'authfail#addr#10.0.0.1', sk: '60000' });
    expect(keys.authFailures('all', 60000)).toEqual({ pk: 'authfail#all', sk: '60000' });
    expect(RATE_LIMIT_PARTITIONS).toBe('rate#*');
    for (const [kind, list] of [['agent', 'agents'], ['environment', 'environments'], ['vault', 'vaults'], ['session', 'sessions'], ['file', 'files']] as const) {
      expect(keys.tenantIndex(kind, 'tnt')).toBe(`tnt#${list}`);
    }
    expect(keys.eventChunks('sesn_1', 'sevt_1')).toBe('sesn_1~sevt_1');
    const record = { sessionId: 'sesn_1', name: 'default', ref: 'r', state: 'ready', lastUsedAt: '2026-01-01T00:00:00.000Z' };
    expect(sandboxItem(record)).toEqual({
      pk: 'session#sesn_1',
      sk: 'sandbox#default',
      sv: 1,
      record,
      ref: 'r',
      state: 'ready',
      lastUsedAt: record.lastUsedAt,
      gsi1pk: expect.stringMatching(/^sandboxes#active#([0-9]|[1-5][0-9]|6[0-3])$/),
      gsi1sk: '2026-01-01T00:00:00.000Z#sesn_1#default',
    });
    expect(sandboxItem({ ...record, state: 'dead' })).not.toHaveProperty('gsi1pk');
  });
});

describe('events-table items', () => {
  const event = (text: string): SessionEvent => ({ id: 'sevt_1', type: 'agent.message', processed_at: '2026-01-01T00:00:00.000Z', content: [{ type: 'text', text }] });
  const chunksOf = (chunks: Array<{ data: string }>) => async () => chunks.map((c) => c.data);

  it('hold an event inline, with the events a batch head carries', async () => {
    const rest = [event('second')];
    const { item, chunks } = encodeEvent('sesn_1', 3, event('first'), rest);
    expect(chunks).toEqual([]);
    expect(item).toEqual({ sessionId: 'sesn_1', position: 3, event: JSON.stringify(event('first')), rest: JSON.stringify(rest) });
    expect(await decodeEvent(item, chunksOf([]))).toEqual({ position: 3, event: event('first'), rest });
  });

  it('hold a large event in chunks of its own partition, named by the item at the position', async () => {
    const big = event('x'.repeat(INLINE_LIMIT_BYTES + 250_000));
    const { item, chunks } = encodeEvent('sesn_1', 7, big);
    expect(item).toEqual({ sessionId: 'sesn_1', position: 7, chunks: chunks.length, chunkKey: 'sesn_1~sevt_1', eventType: 'agent.message' });
    expect(chunks.length).toBe(Math.ceil(JSON.stringify({ event: big }).length / 100_000));
    expect(chunks.map((c) => [c.sessionId, c.position])).toEqual(chunks.map((_, i) => ['sesn_1~sevt_1', i]));
    expect(await decodeEvent(item, chunksOf(chunks))).toEqual({ position: 7, event: big });
  });
});
