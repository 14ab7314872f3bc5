import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApp } from '../../lambdas/api/app.js';
import { createAgentAndEnvironment, startTestRuntime, type TestRuntime } from '../helpers/runtime.js';

/**
 * The OpenAPI document is generated from the zod schemas that validate requests. These tests hold
 * it to the app: every route is in it, and its request schemas (checked with an independent JSON
 * Schema validator below) accept and reject the same bodies the running API does.
 */

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
type Doc = {
  openapi: string;
  paths: Record<string, Record<string, { requestBody?: { content: Record<string, { schema: Json }> }; responses: Record<string, { content?: Record<string, { schema: Json }> }>; security?: unknown[] }>>;
  components: { schemas: Record<string, Json> };
};

// --- a small, strict JSON Schema (2020-12) validator --------------------------------------------
// Strict: a keyword it does not know fails the test, so nothing the document says is ignored.
// `format` is asserted (as OpenAPI tooling usually does) for the two formats the document uses.

const ANNOTATIONS = new Set(['description', 'title', 'default', 'examples', 'deprecated', 'readOnly', 'writeOnly']);
const KEYWORDS = new Set([
  'type', 'properties', 'required', 'additionalProperties', 'items', 'minItems', 'maxItems', 'minLength', 'maxLength',
  'pattern', 'format', 'enum', 'const', 'anyOf', 'oneOf', 'allOf', '$ref', 'minimum', 'maximum', 'exclusiveMinimum',
  'exclusiveMaximum', 'propertyNames', 'maxProperties', 'minProperties',
]);

function typeOk(t: string, v: unknown): boolean {
  switch (t) {
    case 'null': return v === null;
    case 'boolean': return typeof v === 'boolean';
    case 'string': return typeof v === 'string';
    case 'number': return typeof v === 'number' && Number.isFinite(v);
    case 'integer': return Number.isInteger(v);
    case 'array': return Array.isArray(v);
    case 'object': return typeof v === 'object' && v !== null && !Array.isArray(v);
    default: throw new Error(`validator: unknown type ${t}`);
  }
}

function validate(doc: Doc, schema: Json, value: unknown, path = '$'): string[] {
  if (schema === true) return [];
  if (schema === false) return [`${path}: no value allowed`];
  if (typeof schema !== 'object' || schema === null || Array.isArray(schema)) throw new Error(`validator: bad schema at ${path}`);
  const s = schema as Record<string, Json>;
  for (const k of Object.keys(s)) if (!KEYWORDS.has(k) && !ANNOTATIONS.has(k)) throw new Error(`validator: unknown keyword ${k} at ${path}`);
  const errors: string[] = [];
  const sub = (sch: Json, v: unknown, p: string) => errors.push(...validate(doc, sch, v, p));
  if (typeof s.$ref === 'string') {
    const m = /^#\/components\/schemas\/(.+)$/.exec(s.$ref);
    if (!m || !(m[1] in doc.components.schemas)) throw new Error(`validator: unresolvable $ref ${s.$ref}`);
    sub(doc.components.schemas[m[1]], value, path);
  }
  if (s.type !== undefined) {
    const types = Array.isArray(s.type) ? (s.type as string[]) : [s.type as string];
    if (!types.some((t) => typeOk(t, value))) return [...errors, `${path}: not ${types.join('|')}`];
  }
  if ('const' in s && JSON.stringify(s.const) !== JSON.stringify(value)) errors.push(`${path}: not ${JSON.stringify(s.const)}`);
  if (Array.isArray(s.enum) && !s.enum.some((e) => JSON.stringify(e) === JSON.stringify(value))) errors.push(`${path}: not one of ${JSON.stringify(s.enum)}`);
  if (typeof value === 'string') {
    const len = [...value].length;
    if (typeof s.minLength === 'number' && len < s.minLength) errors.push(`${path}: shorter than ${s.minLength}`);
    if (typeof s.maxLength === 'number' && len > s.maxLength) errors.push(`${path}: longer than ${s.maxLength}`);
    if (typeof s.pattern === 'string' && !new RegExp(s.pattern, 'u').test(value)) errors.push(`${path}: does not match ${s.pattern}`);
    if (s.format === 'uri') {
      try {
        new URL(value);
      } catch {
        errors.push(`${path}: not a URI`);
      }
    } else if (s.format === 'date-time') {
      if (!/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$/.test(value) || Number.isNaN(Date.parse(value))) errors.push(`${path}: not a date-time`);
    } else if (s.format !== undefined) {
      throw new Error(`validator: unknown format ${s.format}`);
    }
  }
  if (typeof value === 'number') {
    if (typeof s.minimum === 'number' && value < s.minimum) errors.push(`${path}: below ${s.minimum}`);
    if (typeof s.maximum === 'number' && value > s.maximum) errors.push(`${path}: above ${s.maximum}`);
    if (typeof s.exclusiveMinimum === 'number' && value <= s.exclusiveMinimum) errors.push(`${path}: not above ${s.exclusiveMinimum}`);
    if (typeof s.exclusiveMaximum === 'number' && value >= s.exclusiveMaximum) errors.push(`${path}: not below ${s.exclusiveMaximum}`);
  }
  if (Array.isArray(value)) {
    if (typeof s.minItems === 'number' && value.length < s.minItems) errors.push(`${path}: fewer than ${s.minItems} items`);
    if (typeof s.maxItems === 'number' && value.length > s.maxItems) errors.push(`${path}: more than ${s.maxItems} items`);
    if (s.items !== undefined) value.forEach((v, i) => sub(s.items, v, `${path}[${i}]`));
  }
  if (typeOk('object', value)) {
    const obj = value as Record<string, unknown>;
    const keys = Object.keys(obj);
    const props = (s.properties ?? {}) as Record<string, Json>;
    for (const r of (s.required ?? []) as string[]) if (!(r in obj)) errors.push(`${path}: missing ${r}`);
    for (const k of keys) {
      if (k in props) sub(props[k], obj[k], `${path}.${k}`);
      else if (s.additionalProperties !== undefined) sub(s.additionalProperties, obj[k], `${path}.${k}`);
      if (s.propertyNames !== undefined) sub(s.propertyNames, k, `${path}{${k}}`);
    }
    if (typeof s.maxProperties === 'number' && keys.length > s.maxProperties) errors.push(`${path}: more than ${s.maxProperties} properties`);
    if (typeof s.minProperties === 'number' && keys.length < s.minProperties) errors.push(`${path}: fewer than ${s.minProperties} properties`);
  }
  if (Array.isArray(s.allOf)) for (const a of s.allOf) sub(a, value, path);
  if (Array.isArray(s.anyOf) && !s.anyOf.some((a) => validate(doc, a, value, path).length === 0)) errors.push(`${path}: matches none of anyOf`);
  if (Array.isArray(s.oneOf)) {
    const n = s.oneOf.filter((a) => validate(doc, a, value, path).length === 0).length;
    if (n !== 1) errors.push(`${path}: matches ${n} of oneOf`);
  }
  return errors;
}

// ----------------------------------------------------------------------------------------------

describe('OpenAPI document (GET /openapi.json)', () => {
  let t: TestRuntime;
  let doc: Doc;
  let agentId: string;
  let envId: string;
  let sessionId: string;

  beforeAll(async () => {
    t = await startTestRuntime();
    const { agent, environment } = await createAgentAndEnvironment(t.client);
    agentId = agent.id;
    envId = environment.id;
    sessionId = (await t.client.beta.sessions.create({ agent: agentId, environment_id: envId })).id;
    const res = await fetch(`${t.runtime.url}/openapi.json`); // no API key
    expect(res.status).toBe(200);
    doc = (await res.json()) as Doc;
  });
  afterAll(() => t?.close());

  it('is OpenAPI 3.1 and needs no API key, as the console pages do not', async () => {
    expect(doc.openapi).toBe('3.1.0');
    expect(doc.paths['/openapi.json'].get.security).toEqual([]);
    expect(doc.paths['/v1/agents'].post.security).toBeUndefined(); // the document-wide API key applies
    const page = await fetch(`${t.runtime.url}/console`);
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toMatch(/text\/html/);
    expect(page.headers.get('content-security-policy')).toContain("default-src 'none'");
    const unauthenticated = await fetch(`${t.runtime.url}/v1/sessions`);
    expect(unauthenticated.status).toBe(401);
  });

  it('has every route the app serves, and no other', () => {
    const app = createApp(t.runtime.services);
    const served = new Set(
      app.routes
        .filter((r) => r.method !== 'ALL') // middleware
        .map((r) => `${r.method} ${r.path.replace(/:(\w+)/g, '{$1}')}`),
    );
    const documented = new Set(
      Object.entries(doc.paths).flatMap(([path, ops]) => Object.keys(ops).map((m) => `${m.toUpperCase()} ${path}`)),
    );
    expect(served.size).toBeGreaterThan(20);
    expect([...served].filter((r) => !documented.has(r))).toEqual([]);
    expect([...documented].filter((r) => !served.has(r))).toEqual([]);
  });

  it('request bodies: the document accepts and rejects the same examples as the API', async () => {
    const seventeen = Object.fromEntries(Array.from({ length: 17 }, (_, i) => [`k${i}`, 'v']));
    const text = (s: string) => [{ type: 'text', text: s }];
    type Example = { ok: boolean; body: unknown };
    const cases: Array<{ method: 'post'; path: string; url: string; examples: Example[] }> = [
      {
        method: 'post', path: '/v1/agents', url: '/v1/agents',
        examples: [
          { ok: true, body: { name: 'a', model: 'claude-sonnet-4-6' } },
          {
            ok: true,
            body: {
              name: 'b', model: { id: 'claude-sonnet-4-6', speed: 'fast' }, metadata: { team: 'x' },
              tools: [
                { type: 'agent_toolset_20260401', configs: [{ name: 'bash', enabled: true }] },
                { type: 'custom', name: 'lookup', description: 'd', input_schema: { type: 'object' } },
              ],
            },
          },
          { ok: false, body: { model: 'claude-sonnet-4-6' } },
          { ok: false, body: { name: '', model: 'm' } },
          { ok: false, body: { name: 'a', model: 'm', extra: 1 } },
          { ok: false, body: { name: 'a', model: 'm', metadata: seventeen } },
          { ok: false, body: { name: 'a', model: 'm', tools: [{ type: 'custom', name: 'bad name!', description: '', input_schema: { type: 'object' } }] } },
          { ok: false, body: { name: 'a', model: 'm', mcp_servers: [{ name: 's', type: 'url', url: 'not a url' }] } },
          { ok: false, body: { name: 'a', model: { id: 'm', effort: 'extreme' } } },
        ],
      },
      {
        method: 'post', path: '/v1/agents/{id}', url: `/v1/agents/{agent}`,
        examples: [
          { ok: true, body: { description: 'updated' } },
          { ok: false, body: { version: 0 } },
          { ok: false, body: { colour: 'blue' } },
        ],
      },
      {
        method: 'post', path: '/v1/environments', url: '/v1/environments',
        examples: [
          { ok: true, body: { name: 'e' } },
          { ok: true, body: { name: 'e2', config: { type: 'cloud', networking: { type: 'limited', allowed_hosts: ['example.com'] }, packages: { pip: ['x'] } } } },
          { ok: false, body: { name: 'e', config: { type: 'cloud', networking: { type: 'open' } } } },
          { ok: false, body: { name: 'x'.repeat(257) } },
          { ok: false, body: { config: { type: 'cloud' } } },
        ],
      },
      {
        method: 'post', path: '/v1/environments/{id}', url: `/v1/environments/{env}`,
        examples: [
          { ok: true, body: { description: 'd' } },
          { ok: false, body: { scope: 'planet' } },
        ],
      },
      {
        method: 'post', path: '/v1/sessions', url: '/v1/sessions',
        examples: [
          { ok: true, body: { agent: '{agent}', environment_id: '{env}' } },
          { ok: true, body: { agent: { type: 'agent', id: '{agent}', version: 1 }, environment_id: '{env}', title: 't', metadata: { k: 'v' } } },
          { ok: false, body: { agent: '{agent}' } },
          { ok: false, body: { agent: { type: 'agent' }, environment_id: '{env}' } },
          { ok: false, body: { agent: '{agent}', environment_id: '{env}', initial_events: [{ type: 'user.interrupt' }] } },
          { ok: false, body: { agent: '{agent}', environment_id: '{env}', metadata: seventeen } },
        ],
      },
      {
        method: 'post', path: '/v1/sessions/{id}', url: `/v1/sessions/{session}`,
        examples: [
          { ok: true, body: { title: 'renamed', metadata: { a: '1' } } },
          { ok: false, body: { metadata: { a: 5 } } },
          { ok: false, body: { title: 5 } },
        ],
      },
      {
        method: 'post', path: '/v1/sessions/{id}/fork', url: `/v1/sessions/{session}/fork`,
        examples: [
          { ok: true, body: {} },
          { ok: true, body: { title: 'f' } },
          { ok: false, body: { up_to_position: -1 } },
          { ok: false, body: { up_to_position: 1.5 } },
          { ok: false, body: { up_to_position: '3' } },
        ],
      },
      {
        method: 'post', path: '/v1/sessions/{id}/events', url: `/v1/sessions/{session}/events`,
        examples: [
          { ok: true, body: { events: [{ type: 'user.message', content: text('hi') }] } },
          { ok: false, body: { events: [] } },
          { ok: false, body: { events: [{ type: 'user.mesage', content: text('hi') }] } },
          { ok: false, body: { events: [{ type: 'user.message', content: [{ type: 'text' }] }] } },
          { ok: false, body: { events: [{ type: 'user.tool_confirmation', tool_use_id: 'x', result: 'maybe' }] } },
        ],
      },
      {
        method: 'post', path: '/v1/sessions/{id}/sandboxes/{name}/handoff', url: `/v1/sessions/{session}/sandboxes/default/handoff`,
        examples: [
          { ok: false, body: {} },
          { ok: false, body: { to_session_id: 'x', bogus: 1 } },
        ],
      },
    ];
    const fill = (v: unknown): unknown =>
      JSON.parse(JSON.stringify(v).replaceAll('{agent}', agentId).replaceAll('{env}', envId).replaceAll('{session}', sessionId));

    const disagreements: string[] = [];
    let checked = 0;
    for (const c of cases) {
      const op = doc.paths[c.path]?.[c.method];
      expect(op, `${c.method} ${c.path} in the document`).toBeDefined();
      const schema = op.requestBody!.content['application/json'].schema;
      const okSchema = op.responses['200'].content!['application/json'].schema;
      for (const ex of c.examples) {
        const body = fill(ex.body);
        const docErrors = validate(doc, schema, body);
        const res = await fetch(t.runtime.url + fill(c.url), {
          method: 'POST',
          headers: { 'x-api-key': t.runtime.apiKey, 'content-type': 'application/json' },
          body: JSON.stringify(body),
        });
        const answer = (await res.json()) as unknown;
        const apiOk = res.ok;
        const label = `${c.method.toUpperCase()} ${c.path} ${JSON.stringify(ex.body).slice(0, 120)}`;
        if (apiOk !== ex.ok) disagreements.push(`${label}: API answered ${res.status} ${JSON.stringify(answer)}`);
        if ((docErrors.length === 0) !== ex.ok) disagreements.push(`${label}: document ${docErrors.length ? `rejects (${docErrors.join('; ')})` : 'accepts'}`);
        if (!ex.ok && res.status !== 400) disagreements.push(`${label}: a rejected body should be a 400, got ${res.status}`);
        // the answer itself is what the document says it is
        const answerErrors = validate(doc, apiOk ? okSchema : { $ref: '#/components/schemas/Error' }, answer);
        if (answerErrors.length) disagreements.push(`${label}: answer does not match the document: ${answerErrors.join('; ')}`);
        checked++;
      }
    }
    expect(disagreements).toEqual([]);
    expect(checked).toBeGreaterThan(30);
  });

  it('list and read answers match the documented response schemas', async () => {
    const get = async (path: string) => {
      const res = await fetch(t.runtime.url + path, { headers: { 'x-api-key': t.runtime.apiKey } });
      expect(res.status, path).toBe(200);
      return res.json();
    };
    const checks: Array<[string, string]> = [
      ['/v1/agents', '/v1/agents'],
      ['/v1/agents/{id}', `/v1/agents/${agentId}`],
      ['/v1/agents/{id}/versions', `/v1/agents/${agentId}/versions`],
      ['/v1/environments', '/v1/environments'],
      ['/v1/environments/{id}', `/v1/environments/${envId}`],
      ['/v1/sessions', '/v1/sessions'],
      ['/v1/sessions/{id}', `/v1/sessions/${sessionId}`],
      ['/v1/sessions/{id}/events', `/v1/sessions/${sessionId}/events`],
      ['/v1/sessions/{id}/sandboxes', `/v1/sessions/${sessionId}/sandboxes`],
    ];
    for (const [path, url] of checks) {
      const schema = doc.paths[path].get.responses['200'].content!['application/json'].schema;
      expect(validate(doc, schema, await get(url)), path).toEqual([]);
    }
    // and the validator is not a pushover
    const bad = { data: [{ id: 'x' }], next_page: null };
    expect(validate(doc, doc.paths['/v1/agents'].get.responses['200'].content!['application/json'].schema, bad)).not.toEqual([]);
  });

  it('documents the positional extension of the events list and Last-Event-ID on the stream', () => {
    const list = doc.paths['/v1/sessions/{id}/events'].get as unknown as { parameters: Array<{ name: string; in: string }> };
    expect(list.parameters.map((p) => p.name)).toEqual(expect.arrayContaining(['from_position', 'to_position', 'types[]', 'limit', 'page']));
    const stream = doc.paths['/v1/sessions/{id}/events/stream'].get as unknown as { parameters: Array<{ name: string; in: string }> };
    expect(stream.parameters).toContainEqual(expect.objectContaining({ name: 'Last-Event-ID', in: 'header' }));
    expect((doc.paths['/v1/sessions/{id}/fork'].post as unknown as Record<string, unknown>)['x-corral-extension']).toBe(true);
  });
});
