import type Anthropic from '@anthropic-ai/sdk';
import type * as TS from 'typescript5';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestRuntime, type TestRuntime } from '../helpers/runtime.js';
import { SDK_RESOURCES } from '../helpers/sdk-resources.js';
import { SdkTypes, type ParamKey, type PathStep } from '../helpers/sdk-types.js';

/**
 * Every request field and value the official SDK can send to the resources Corral serves is either
 * honoured or refused with a 400 that names it and says it is not supported: never stored and
 * ignored. The fields come from the SDK's `.d.ts` (see `SdkTypes.paramKeys`), so a new SDK field
 * fails this test until it is given a verdict below. For each one, a realistic request carrying
 * it goes through the official SDK to a local runtime.
 */

type Verdict =
  /** Implemented; the string names where its behaviour is tested. */
  | {
      honoured: string;
      /** The call needs state this walk does not build (an open tool call): a 4xx that does not refuse the field is fine. */
      stateful?: true;
      /** The value is data, not fields (an upload's bytes): the walk does not go into its type. */
      opaque?: true;
    }
  | { refused: true };

const TESTED = {
  resources: 'test/api/resources.test.ts',
  unitResources: 'test/unit/resources.test.ts',
  query: 'test/api/query-params.test.ts',
  pages: 'test/api/pages.test.ts',
  session: 'test/e2e/session.test.ts',
  control: 'test/e2e/control.test.ts',
  egress: 'test/e2e/egress.test.ts',
  recipe: 'test/unit/sandbox-recipe.test.ts',
  git: 'test/e2e/credentials-git.test.ts',
  mcp: 'test/e2e/mcp-routing.test.ts',
  vaults: 'test/vault/vaults-api.test.ts',
  oauth: 'test/credential-proxy/oauth-e2e.test.ts',
  confirm: 'test/security/api-tool-confirmation.test.ts',
  budget: 'test/harness-step',
  modelOptions: 'test/e2e/model-options.test.ts',
  webTools: 'test/e2e/web-tools.test.ts',
  deltas: 'test/e2e/event-deltas.test.ts',
  files: 'test/files/files-api.test.ts',
  sessionFiles: 'test/files/session-files.test.ts',
  systemMessage: 'test/e2e/system-message.test.ts',
  memory: 'test/e2e/memory-stores.test.ts',
  threads: 'test/e2e/threads.test.ts',
} as const;

/** First match wins. Each rule must match a key the SDK has (a stale rule fails the test). */
const RULES: Array<[RegExp, Verdict]> = [
  // --- refused: Corral does not implement these ---
  // Multi-agent: the coordinator roster is built (threads); the 20261001 form and advisors are not.
  [/\.multiagent=BetaManagedAgentsMultiagent20261001Params$|\.agents\[\]=BetaManagedAgentsAdvisorParams$/, { refused: true }],
  [/\.multiagent(=BetaManagedAgentsMultiagentCoordinatorParams)?$|^BetaManagedAgentsMultiagentCoordinatorParams\./, { honoured: TESTED.threads, stateful: true }],
  [/\.skills\[\]=/, { refused: true }],
  [/\.execution_identity=BetaManagedAgentsAWSRoleExecutionIdentityParams$/, { refused: true }],
  [/\.permission_policy=BetaManagedAgentsAutoPolicy$/, { refused: true }],
  [/\.config=BetaSelfHostedConfigParams$/, { refused: true }],
  [/\.scope="account"$/, { refused: true }],
  [/\[\]=BetaManagedAgentsUserDefineOutcomeEventParams$/, { refused: true }],
  [/^EventSendParams\.events\[\]=BetaManagedAgentsUserToolResultEventParams$/, { refused: true }],
  [/^BetaManagedAgentsUserInterruptEventParams\.session_thread_id$/, { refused: true }],
  [/\.content\[\]=BetaManagedAgentsRedactedBlock$/, { refused: true }],
  [/\.content\[\]=BetaManagedAgentsSearchResultBlock$/, { refused: true }],
  [/^SessionListParams\.(deployment_id|memory_store_id)$/, { refused: true }],
  [/^BetaPackagesParams\.(cargo|gem|go)$/, { refused: true }],
  [/^SessionUpdateParams\.vault_ids$/, { refused: true }],
  [/^ResourceListParams\.(limit|page)$/, { refused: true }],
  // The provider runs the web tools without asking: they cannot wait for a confirmation.
  [/^BetaManagedAgentsWeb(Fetch|Search)ToolConfigParams\.permission_policy=BetaManagedAgentsAlwaysAskPolicy$/, { refused: true }],
  // --- model options, web tools, previews, files ---
  [/^BetaManagedAgentsModelConfigParams\.(effort|speed|inference_geo|thinking)/, { honoured: TESTED.modelOptions }],
  [/\.configs\[\]=BetaManagedAgentsWeb(Fetch|Search)ToolConfigParams$|^BetaManagedAgentsWeb(Fetch|Search)ToolConfigParams\./, { honoured: TESTED.webTools }],
  [/^BetaManagedAgentsWebFetchURLSource|^BetaManagedAgentsUserLocation\./, { honoured: TESTED.webTools }],
  [/^EventStreamParams\.event_deltas/, { honoured: TESTED.deltas }],
  [/\.resources\[\]=BetaManagedAgentsFileResourceParams$|^BetaManagedAgentsFileResourceParams\./, { honoured: TESTED.sessionFiles }],
  [/^Resource(Add|Delete)Params\./, { honoured: TESTED.sessionFiles }],
  [/\.resources\[\]=BetaManagedAgentsMemoryStoreResourceParam$|^BetaManagedAgentsMemoryStoreResourceParam\./, { honoured: TESTED.memory }],
  [/Source\.file_id$|\.source=BetaManagedAgentsFile(Image|Document)Source$/, { honoured: TESTED.sessionFiles }],
  [/^FileUploadParams\.file$/, { honoured: TESTED.files, opaque: true }],
  [/^File(Upload|List|RetrieveMetadata|Download|Delete)Params\./, { honoured: TESTED.files }],
  // --- honoured ---
  [/^(Agent|Version|Environment|Session|Event|Vault|Credential)ListParams\.(limit|page|include_archived|order)/, { honoured: TESTED.pages }],
  [/^(Agent|Session|Event)ListParams\.created_at\[/, { honoured: TESTED.query }],
  [/^SessionListParams\.(agent_id|agent_version|statuses)/, { honoured: TESTED.query }],
  [/^EventListParams\.types/, { honoured: TESTED.session }],
  [/^AgentRetrieveParams\.version$/, { honoured: TESTED.resources }],
  [/^Agent(Create|Update)Params\.|^BetaManagedAgentsModelConfigParams\.id$/, { honoured: TESTED.resources }],
  [/^BetaManagedAgentsURLMCPServerParams\.|^BetaManagedAgentsMCPToolset/, { honoured: TESTED.mcp }],
  [/^BetaManagedAgentsAgentToolset20260401Params\.|ToolConfigParams\.|^BetaManagedAgentsAgentToolsetDefaultConfigParams\./, { honoured: TESTED.confirm }],
  [/^BetaManagedAgentsCustomToolParams\./, { honoured: TESTED.session }],
  [/^Environment(Create|Update)Params\.|^BetaCloudConfigParams\.|^BetaPackagesParams\./, { honoured: TESTED.recipe }],
  [/^BetaLimitedNetworkParams\./, { honoured: TESTED.egress }],
  [/^SessionCreateParams\.budget|^SessionUpdateParams\.budget|^BetaManagedAgentsBudgetLimit\.|^BetaMonetaryAmount\./, { honoured: TESTED.budget }],
  [/^Session(Create|Update)Params\.|^BetaManagedAgentsAgent(WithOverrides)?Params\.|^BetaManagedAgentsSessionAgentUpdate\./, { honoured: TESTED.resources }],
  [/^BetaManagedAgentsGitHubRepositoryResourceParams\.|Checkout\./, { honoured: TESTED.git }],
  [/^ResourceUpdateParams\./, { honoured: TESTED.git, stateful: true }],
  [/^BetaManagedAgentsUserMessageEventParams\.|^BetaManagedAgents(Text|Image|Document)Block\.|(Base64|URL|PlainText)(Image|Document)Source\./, { honoured: TESTED.session }],
  [/^EventSendParams\.events(\[\]=BetaManagedAgents(UserMessage|UserInterrupt)EventParams)?$/, { honoured: TESTED.control }],
  [/^EventSendParams\.events\[\]=BetaManagedAgentsUser(ToolConfirmation|CustomToolResult)EventParams$|^BetaManagedAgentsUser(ToolConfirmation|CustomToolResult)EventParams\./, { honoured: TESTED.confirm, stateful: true }],
  [/^EventSendParams\.events\[\]=BetaManagedAgentsSystemMessageEventParams$|^BetaManagedAgentsSystemMessageEventParams\.|^BetaManagedAgentsSystemContentBlock\./, { honoured: TESTED.systemMessage }],
  [/^Vault(Create|Update)Params\./, { honoured: TESTED.vaults }],
  [/^Credential(Create|Update)Params\.|^BetaManagedAgents(StaticBearer|MCPOAuth|EnvironmentVariable|TokenEndpoint|InjectionLocation|LimitedCredential|UnrestrictedCredential)/, { honoured: TESTED.vaults }],
];

/** Realistic values for string fields, by `Owner.field` or by field name. `$name` is an id made in `beforeAll`. */
const STRINGS: Record<string, string> = {
  'BetaManagedAgentsURLMCPServerParams.url': 'https://mcp.example.com/mcp',
  mcp_server_url: 'https://mcp.example.com/mcp',
  token_endpoint: 'https://auth.example.com/token',
  url: 'https://github.com/octocat/Hello-World.git',
  model: 'claude-sonnet-4-6',
  'BetaManagedAgentsModelConfigParams.id': 'claude-sonnet-4-6',
  id: '$agent',
  agent: '$agent',
  agent_id: '$agent',
  environment_id: '$environment',
  vault_ids: '$vault',
  mcp_server_name: 'docs',
  name: 'strict',
  secret_name: 'STRICT_TOKEN',
  mount_path: '/workspace/strict',
  media_type: 'image/png',
  'BetaManagedAgentsPlainTextDocumentSource.media_type': 'text/plain',
  'BetaManagedAgentsBase64DocumentSource.media_type': 'application/pdf',
  data: 'aGVsbG8=',
  sha: '7fd1a60b01f91b314f59955a4e4d4e80d8edf11d',
  expires_at: '2030-01-01T00:00:00Z',
  'created_at[gt]': '2020-01-01T00:00:00Z',
  'created_at[gte]': '2020-01-01T00:00:00Z',
  'created_at[lt]': '2100-01-01T00:00:00Z',
  'created_at[lte]': '2100-01-01T00:00:00Z',
  amount: '500',
  currency: 'USD',
  tool_use_id: 'sevt_0000000000000000000000000',
  custom_tool_use_id: 'sevt_0000000000000000000000000',
  allowed_hosts: 'api.example.com',
  page: '',
  'BetaManagedAgentsUserLocation.country': 'US',
  'BetaManagedAgentsUserLocation.timezone': 'America/New_York',
  'BetaManagedAgentsFileResourceParams.mount_path': '/mnt/session/uploads/strict.txt',
  'ResourceAddParams.mount_path': '/mnt/session/uploads/strict-added.txt',
  inference_geo: 'us',
  file_id: '$file',
  ids: '$file',
  scope_id: '$chat',
  memory_store_id: '$memoryStore',
};

/**
 * How each method is called, with the params the walk built: ids of the objects made in
 * `beforeAll` fill the path arguments. A method missing here fails the test when the SDK has keys
 * that only it reaches.
 */
type Ids = {
  agent: string;
  /** The agent updates go to (sessions use `agent`, whose tools stay as made). */
  updated: string;
  environment: string;
  session: string;
  chat: string;
  vault: string;
  /** An uploaded file, for the calls and file resources that name one. */
  file: string;
  memoryStore: string;
  /** A credential of `vault` per auth type, for updates of that type. */
  credentials: Record<string, string>;
};
type Call = (c: Anthropic, ids: Ids, p: never) => Promise<unknown>;
const CALLS: Record<string, Call> = {
  'agents.create': (c, _i, p) => c.beta.agents.create(p),
  'agents.retrieve': (c, i, p) => c.beta.agents.retrieve(i.agent, p),
  'agents.update': async (c, i, p: Record<string, unknown>) =>
    c.beta.agents.update(i.updated, { ...p, ...('version' in p ? { version: (await c.beta.agents.retrieve(i.updated)).version } : {}) } as never),
  'agents.list': (c, _i, p) => c.beta.agents.list(p),
  'agents.versions.list': (c, i, p) => c.beta.agents.versions.list(i.agent, p),
  'environments.create': (c, _i, p) => c.beta.environments.create(p),
  'environments.update': (c, i, p) => c.beta.environments.update(i.environment, p),
  'environments.list': (c, _i, p) => c.beta.environments.list(p),
  'sessions.create': (c, _i, p) => c.beta.sessions.create(p),
  'sessions.update': (c, i, p) => c.beta.sessions.update(i.session, p),
  'sessions.list': (c, i, p: Record<string, unknown>) => c.beta.sessions.list({ ...p, ...('agent_version' in p ? { agent_id: i.agent } : {}) }),
  'sessions.events.list': (c, i, p) => c.beta.sessions.events.list(i.chat, p),
  // A system.message goes with the user turn before it: the walk's gets one.
  'sessions.events.send': (c, i, p: { events: Array<{ type: string }> }) =>
    c.beta.sessions.events.send(i.chat, {
      events: p.events.at(-1)?.type === 'system.message' ? [{ type: 'user.message', content: [{ type: 'text', text: 'strict' }] }, ...p.events] : p.events,
    } as never),
  'sessions.events.stream': (c, i, p) => c.beta.sessions.events.stream(i.chat, p).then((s) => s.controller.abort()),
  'sessions.resources.list': (c, i, p) => c.beta.sessions.resources.list(i.session, p),
  'sessions.resources.update': (c, i, p) => c.beta.sessions.resources.update('unused', { ...(p as object), session_id: i.session } as never),
  'vaults.create': (c, _i, p) => c.beta.vaults.create(p),
  'vaults.update': (c, i, p) => c.beta.vaults.update(i.vault, p),
  'vaults.list': (c, _i, p) => c.beta.vaults.list(p),
  // A vault holds one credential per MCP server: each create gets a vault of its own.
  'vaults.credentials.create': async (c, _i, p) => c.beta.vaults.credentials.create((await c.beta.vaults.create({ display_name: 'strict' })).id, p),
  'vaults.credentials.update': (c, i, p: { auth?: { type: string } }) =>
    c.beta.vaults.credentials.update(i.credentials[p.auth?.type ?? 'static_bearer'], { ...p, vault_id: i.vault } as never),
  'vaults.credentials.list': (c, i, p) => c.beta.vaults.credentials.list(i.vault, p),
  'sessions.resources.add': (c, i, p) => c.beta.sessions.resources.add(i.session, p),
  // Each delete removes a resource of its own, added for it.
  'sessions.resources.delete': async (c, i, p) =>
    c.beta.sessions.resources.delete((await c.beta.sessions.resources.add(i.session, { type: 'file', file_id: i.file })).id, { ...(p as object), session_id: i.session } as never),
  'files.upload': (c, _i, p) => c.beta.files.upload(p),
  'files.list': (c, _i, p) => c.beta.files.list(p),
  'files.retrieveMetadata': (c, i, p) => c.beta.files.retrieveMetadata(i.file, p),
  'files.download': (c, i, p) => c.beta.files.download(i.file, p).then((r) => r.arrayBuffer()),
  'files.delete': async (c, _i, p) => c.beta.files.delete((await c.beta.files.upload({ file: strictFile() })).id, p),
};

/** A small text file to upload. */
function strictFile(): File {
  return new File(['strict\n'], 'strict.txt', { type: 'text/plain' });
}

const sdk = new SdkTypes(Object.values(SDK_RESOURCES).map((r) => r.file));

function verdictOf(key: string): { verdict: Verdict; rule: number } | undefined {
  const rule = RULES.findIndex(([re]) => re.test(key));
  return rule >= 0 ? { verdict: RULES[rule][1], rule } : undefined;
}

/** Every key, with the method that first reaches it; refused and owned keys are not walked below. */
function collectKeys(): Array<ParamKey & { method: string }> {
  const seen = new Set<string>();
  const stop = (key: string) => {
    const v = verdictOf(key)?.verdict;
    return !!v && (!('honoured' in v) || !!v.opaque);
  };
  const out: Array<ParamKey & { method: string }> = [];
  for (const [path, resource] of Object.entries(SDK_RESOURCES)) {
    for (const m of sdk.methods(resource)) {
      if (!m.params) continue;
      for (const k of sdk.paramKeys(m.params, { seen, stop })) out.push({ ...k, method: `${path}.${m.name}` });
    }
  }
  return out;
}

// --- building a request that carries one key ----------------------------------------------------

const ts = sdk.checker;

/** Objects the walk cannot make from their type alone, by `Owner.field`. */
const OBJECTS: Record<string, unknown> = {
  'FileUploadParams.file': strictFile(),
  'BetaManagedAgentsWebFetchURLSourceOnly.tools': [{ type: 'tool_reference', name: 'web_search' }],
  'BetaManagedAgentsWebFetchURLSourceExcept.tools': [{ type: 'tool_reference', name: 'web_search' }],
  'BetaManagedAgentsCustomToolParams.input_schema': { type: 'object', properties: { q: { type: 'string' } } },
};

function stringFor(owner: string, prop: string): string {
  return STRINGS[`${owner}.${prop}`] ?? STRINGS[prop] ?? 'strict';
}

/** The smallest value of type `t` the API accepts: required fields only, realistic strings. */
function minimal(t: TS.Type, owner = '', prop = '', depth = 0): unknown {
  const choices = sdk.choices(t);
  const c = choices.find((x) => sdk.isObject(x.type)) ?? choices[0];
  if (!c) return null;
  const type = c.type;
  if (type.isStringLiteral()) return type.value;
  if (type.isNumberLiteral()) return type.value;
  if (c.label === 'string') return stringFor(owner, prop);
  if (c.label === 'number') return prop === 'max_iterations' ? 3 : prop === 'limit' ? 5 : prop === 'expires_in_seconds' ? 3600 : 1;
  if (c.label === 'boolean' || c.label === 'true' || c.label === 'false') return prop === 'include_archived' ? true : false;
  const el = sdk.elementType(type);
  if (el) return prop === 'statuses' || prop === 'types' || prop === 'vault_ids' || prop === 'allowed_hosts' || prop === 'content' ? [minimal(el, owner, prop, depth + 1)] : [];
  if (sdk.isObject(type) && depth < 12) {
    if (ts.getIndexInfosOfType(type).length) return { team: 'strict' };
    const name = sdk.name(type);
    const out: Record<string, unknown> = {};
    for (const p of sdk.properties(type)) {
      if (p.optional) continue;
      out[p.name] = OBJECTS[`${name}.${p.name}`] ?? minimal(p.type, name, p.name, depth + 1);
    }
    return out;
  }
  return stringFor(owner, prop);
}

/** The params of `key`'s method, the smallest there are, with the key's field set along its path. */
function build(root: TS.Type, path: PathStep[]): unknown {
  // A field with several choices is sent with the first one that is honoured (an array whose
  // elements are all refused, empty); its other choices are keys of their own.
  const honouredChoice = (key: string, choices: Array<{ label: string; type: TS.Type }>) =>
    choices.find((c) => choices.length === 1 || 'honoured' in (verdictOf(`${key}=${c.label}`)?.verdict ?? { honoured: '' }));
  const leafOf = (step: PathStep, owner: string) => {
    const key = `${owner}.${step.prop}`;
    if (key in OBJECTS) return OBJECTS[key];
    if (step.choice) return minimal(step.choice, owner, step.prop);
    const t = sdk.variants(step.type).find((v) => sdk.elementType(v)) ?? step.type;
    const el = sdk.elementType(t);
    if (el) {
      const c = honouredChoice(`${key}[]`, sdk.choices(el));
      return c ? [minimal(c.type, owner, step.prop)] : [];
    }
    const c = honouredChoice(key, sdk.choices(step.type));
    return minimal(c?.type ?? step.type, owner, step.prop);
  };
  const into = (t: TS.Type, i: number): unknown => {
    const step = path[i];
    if (step.prop === '[]') return [i === path.length - 1 ? minimal(step.choice ?? step.type) : into(step.choice ?? step.type, i + 1)];
    const obj = minimal(t) as Record<string, unknown>;
    const owner = sdk.name(t);
    if (i === path.length - 1) obj[step.prop] = leafOf(step, owner);
    else {
      const next = step.choice ?? sdk.choices(step.type).find((x) => sdk.isObject(x.type) || sdk.elementType(x.type))?.type ?? step.type;
      obj[step.prop] = path[i + 1].prop === '[]' ? into(next, i + 1) : into(next, i + 1);
    }
    return obj;
  };
  return into(root, 0);
}

/** `$agent` and the like to the ids made for the test; an MCP toolset gets the server it names. */
function resolve(value: unknown, ids: Ids): unknown {
  if (typeof value === 'string' && value.startsWith('$')) return (ids[value.slice(1) as keyof Ids] as string) ?? value;
  if (Array.isArray(value)) return value.map((v) => resolve(v, ids));
  if (value && typeof value === 'object' && Object.getPrototypeOf(value) === Object.prototype) {
    const out = Object.fromEntries(Object.entries(value).map(([k, v]) => [k, resolve(v, ids)]));
    if (Array.isArray(out.tools) && out.tools.some((t: { type?: string }) => t?.type === 'mcp_toolset') && out.mcp_servers === undefined) {
      out.mcp_servers = [{ name: 'docs', type: 'url', url: 'https://mcp.example.com/mcp' }];
    }
    return out;
  }
  return value;
}

describe('every field the SDK can send is honoured or refused', () => {
  const keys = collectKeys();
  let t: TestRuntime;
  let ids: Ids;
  beforeAll(async () => {
    t = await startTestRuntime();
    const c = t.client;
    const agent = await c.beta.agents.create({ name: 'strict', model: 'claude-sonnet-4-6' });
    const updated = await c.beta.agents.create({ name: 'strict-updated', model: 'claude-sonnet-4-6' });
    const environment = await c.beta.environments.create({ name: 'strict' });
    const vault = await c.beta.vaults.create({ display_name: 'strict' });
    const credentials: Record<string, string> = {};
    for (const auth of [
      { type: 'static_bearer', token: 'strict-token', mcp_server_url: 'https://mcp.example.com/mcp' },
      {
        type: 'mcp_oauth',
        access_token: 'strict-token',
        mcp_server_url: 'https://oauth.example.com/mcp',
        refresh: { client_id: 'strict', refresh_token: 'strict-refresh', token_endpoint: 'https://auth.example.com/token', token_endpoint_auth: { type: 'client_secret_basic', client_secret: 'strict-secret' } },
      },
      { type: 'environment_variable', secret_name: 'STRICT', secret_value: 'strict-token', networking: { type: 'unrestricted' } },
    ] as const) {
      credentials[auth.type] = (await c.beta.vaults.credentials.create(vault.id, { auth })).id;
    }
    const session = await c.beta.sessions.create({ agent: agent.id, environment_id: environment.id });
    const chat = await c.beta.sessions.create({ agent: agent.id, environment_id: environment.id });
    const file = await c.beta.files.upload({ file: strictFile() });
    const memoryStore = await c.beta.memoryStores.create({ name: 'strict' });
    ids = { agent: agent.id, updated: updated.id, environment: environment.id, session: session.id, chat: chat.id, vault: vault.id, file: file.id, memoryStore: memoryStore.id, credentials };
  });
  afterAll(() => t?.close());

  it('has a verdict for every field the SDK declares, and no verdict for a field it does not', () => {
    const missing = keys.filter((k) => !verdictOf(k.key)).map((k) => `${k.method}: ${k.key}`);
    expect(missing, 'SDK fields with no verdict: implement or refuse them, then add a rule').toEqual([]);
    const used = new Set(keys.map((k) => verdictOf(k.key)!.rule));
    const stale = RULES.filter((_, i) => !used.has(i)).map(([re]) => String(re));
    expect(stale, 'rules that match no SDK field').toEqual([]);
  });

  it('answers each field through the official SDK as its verdict says', async () => {
    const failures: string[] = [];
    let honoured = 0;
    let refused = 0;
    for (const k of keys) {
      const v = verdictOf(k.key)?.verdict;
      if (!v) continue;
      const call = CALLS[k.method];
      if (!call) {
        failures.push(`${k.key}: no call for ${k.method}`);
        continue;
      }
      const m = sdk.methods(SDK_RESOURCES[k.method.split('.').slice(0, -1).join('.')]).find((x) => x.name === k.method.split('.').at(-1))!;
      const params = resolve(build(m.params!, k.path), ids);
      const field = [...k.path].reverse().find((s) => s.prop !== '[]')!.prop;
      let error: { status?: number; message?: string } | undefined;
      try {
        const out = await call(t.client, ids, params as never);
        // A list only asks when it is iterated; the first page is enough.
        if (out && typeof (out as { getPaginatedItems?: unknown }).getPaginatedItems === 'function') void out;
      } catch (err) {
        error = err as { status?: number; message?: string };
      }
      const said = `${k.key} via ${k.method}(${JSON.stringify(params)})`;
      if ('refused' in v) {
        refused++;
        if (error?.status !== 400) failures.push(`${said}: expected a 400, got ${error ? `${error.status} ${error.message}` : 'success'}`);
        else if (!error.message?.includes(field) || !/not supported/.test(error.message)) failures.push(`${said}: the 400 does not name ${field} as not supported: ${error.message}`);
      } else {
        honoured++;
        const refusedIt = error?.status === 400 && /not supported/.test(error.message ?? '');
        if (error && (!v.stateful || refusedIt || (error.status ?? 500) >= 500)) failures.push(`${said}: expected it honoured (${v.honoured}), got ${error.status} ${error.message}`);
      }
    }
    expect(failures).toEqual([]);
    // The walk reached both kinds (a walk that sent nothing would pass vacuously).
    expect(honoured).toBeGreaterThan(50);
    expect(refused).toBeGreaterThan(10);
  }, 120_000);
});
