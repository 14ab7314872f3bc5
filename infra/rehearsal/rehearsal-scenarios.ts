/**
 * What the rehearsal can show that a real deployment cannot (`scenarios.ts` has the scenarios
 * both run): after every scenario, that no AWS call was denied by IAM, that API Gateway gave no
 * 5xx of its own, that no function was killed at its timeout, and that a deleted session's
 * tasks stopped; and scenarios of its own that reach into the rehearsal: a step whose model call
 * would outlive the harness timeout, the idle reaper, sandbox handoff between two sessions, MCP
 * through the credential proxy with a vault credential, the security groups refusing what
 * they do not allow, and the sandbox boundary (limits, sealed capabilities, repository rule).
 */
import { DynamoDBClient, QueryCommand, ScanCommand, UpdateItemCommand } from '@aws-sdk/client-dynamodb';
import { createServer as createHttpServer, request as httpRequest } from 'node:http';
import { connect } from 'node:net';
import { SANDBOX_LIMITS_ENV, humanBytes, parseSandboxLimits, resolveSandboxLimits } from '../../sandbox/limits.js';
import { SANDBOX_PREFIX, keys } from '../../lambdas/core/storage/keys.js';
import type { Rehearsal } from './rehearsal.js';
import { fail, listPages, runTurn, text, type Event, type Scenario, type ScenarioHooks, type ScenarioResult } from './scenarios.js';
import type { FakeMessagesApi } from '../../test/fixtures/fake-messages-api.js';
import { startTestMcpServer } from '../../test/credential-proxy/fixtures/mcp-server.js';
import { WORKSPACE_SCENARIOS, workspaceScenarios } from './workspace-scenarios.js';
import { GIT_SCENARIOS, gitScenarios } from './git-scenarios.js';
import { CREDENTIAL_SCENARIOS, credentialScenarios } from './credential-scenarios.js';
import { MEMORY_SCENARIOS, memoryScenarios } from './memory-scenarios.js';
import { WEBHOOK_SCENARIOS, webhookScenarios } from './webhook-scenarios.js';
import { THREAD_SCENARIOS, threadScenarios } from './thread-scenarios.js';
import { DEPLOYMENT_SCENARIOS, deploymentScenarios } from './deployment-scenarios.js';

const BETA = { headers: { 'anthropic-beta': 'managed-agents-2026-04-01' } };


/** The names of the rehearsal's own scenarios (run after the smoke scenarios). */
export const REHEARSAL_SCENARIOS = ['egress', 'step-deadline', 'idle-reaper', 'sandbox-handoff', 'mcp-through-proxy', 'security-groups', 'stream-starvation', 'stream-tier', 'sandbox-boundary', ...WORKSPACE_SCENARIOS, ...GIT_SCENARIOS, ...CREDENTIAL_SCENARIOS, ...MEMORY_SCENARIOS, ...WEBHOOK_SCENARIOS, ...THREAD_SCENARIOS, ...DEPLOYMENT_SCENARIOS] as const;
/** Scenarios only run when named (`--only`): they need a rehearsal set up for them (`stream-tier`: `--context streamTier=fargate --dynamodb dynamodb-local`). */
export const OPT_IN_SCENARIOS = ['stream-starvation', 'stream-tier', 'egress', ...GIT_SCENARIOS, ...CREDENTIAL_SCENARIOS];

/** The stand-in names of the `egress` scenario (the rehearsal gives them to the proxy service: `RehearsalOptions.egressHosts`). */
export const EGRESS_STANDIN_HOSTS = ['allowed.rehearsal.test', 'denied.rehearsal.test', 'registry.npmjs.org', 'mcp.rehearsal.test'];

/**
 * Reads a session's stream through API Gateway with plain HTTP (the SDK drops pings) until an
 * `event: ping` heartbeat arrives; resolves to how long it took.
 */
async function heartbeatThrough(apiUrl: string, apiKey: string, session: string, signal: AbortSignal): Promise<number> {
  const started = Date.now();
  // A stream that ends (its task replaced) is opened again.
  for (let attempt = 0; attempt < 5; attempt++) {
    const abort = new AbortController();
    const onAbort = () => abort.abort(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    try {
      const res = await fetch(`${apiUrl}/v1/sessions/${session}/events/stream`, {
        headers: { 'x-api-key': apiKey, 'anthropic-version': '2023-06-01', ...BETA.headers, accept: 'text/event-stream' },
        signal: abort.signal,
      });
      if (res.status !== 200 || !res.body) fail(`the heartbeat probe got ${res.status}`);
      const decoder = new TextDecoder();
      let seen = '';
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
        seen += decoder.decode(chunk, { stream: true });
        if (/^event: ping$/m.test(seen)) return Date.now() - started;
      }
    } finally {
      signal.removeEventListener('abort', onAbort);
      abort.abort();
    }
  }
  fail('the idle stream ended 5 times without a heartbeat');
}

/** The rehearsal's checks after each scenario, and its own scenarios. */
export function rehearsalHooks(r: Rehearsal, fake: FakeMessagesApi, only?: string[]): ScenarioHooks {
  let denials = 0;
  let failures = 0;
  const timeouts = () => [...r.functions.values()].reduce((n, f) => n + f.stats.timeouts, 0);
  let killed = timeouts();
  const admin = new DynamoDBClient({ region: r.model.region, endpoint: r.dynamoEndpoint, credentials: { accessKeyId: 'RehearsalOperator', secretAccessKey: 'x' } });

  const afterEach = async (result: ScenarioResult): Promise<string | void> => {
    const problems: string[] = [];
    const newDenials = r.gateway.denials.slice(denials);
    denials = r.gateway.denials.length;
    for (const d of newDenials) problems.push(`IAM denied ${d.action} on ${d.resource} to ${d.function}`);
    // stream-starvation opens more streams than the stream function may run on purpose: those
    // are refused (a 5xx, which the SDK retries), and that is the setting working.
    const expected = (f: { path: string; reason: string }) => result.name === 'stream-starvation' && f.path.endsWith('/events/stream') && /throttled/.test(f.reason);
    const newFailures = r.api.failures.slice(failures).filter((f) => f.status >= 500 && !expected(f));
    failures = r.api.failures.length;
    for (const f of newFailures) problems.push(`API Gateway answered ${f.status} to ${f.method} ${f.path}: ${f.reason}`);
    const k = timeouts();
    if (k > killed) problems.push(`${k - killed} function invocation(s) were killed at their timeout`);
    killed = k;
    // Items that carry an expiry must be in a table whose TTL attribute it is, or they stay forever.
    for (const t of r.model.tables) {
      const expiring = await admin.send(new ScanCommand({ TableName: t.name, FilterExpression: 'attribute_exists(expiresAt)', Limit: 1000 }));
      if (expiring.Items?.length && t.ttlAttribute !== 'expiresAt') {
        problems.push(`${expiring.Items.length} item(s) of ${t.logicalId} carry expiresAt, but the table's TTL attribute is ${t.ttlAttribute ?? 'not set'}: they are never deleted`);
      }
    }
    // Deleted sessions stop their tasks (the scenarios delete every session they made).
    await new Promise((res) => setTimeout(res, 200));
    const left = r.ecs.running().filter((t) => t.tags.some((tag) => tag.key === 'corral:session' && result.sessionIds.includes(tag.value)));
    if (left.length) problems.push(`${left.length} task(s) of deleted sessions still run`);
    return problems.length ? problems.join('; ') : undefined;
  };

  /** One HTTP request to a sandbox task's agent, from `localAddress` (a VPC address). */
  function agentRequest(host: string, port: number, localAddress: string, method: string, path: string, headers: Record<string, string> = {}, body?: string) {
    return new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = httpRequest({ host, port, localAddress, method, path, headers: { ...headers, ...(body ? { 'content-type': 'application/json' } : {}) } }, (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (d) => (text += d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
      });
      req.once('error', reject);
      req.end(body);
    });
  }

  const scenarios: Scenario[] = [
    {
      name: 'egress',
      proves:
        'with proxyService=fargate a sandbox reaches an allowed host, a package registry and its MCP server through the proxy service, a denied host answers with a 403 the model reads, and a connection around the proxy fails',
      timeoutMs: 240_000,
      async run(ctx) {
        const hits: string[] = [];
        const origin = createHttpServer((req, res) => {
          hits.push(req.headers.host ?? '');
          res.end(`hello from ${req.headers.host}`);
        });
        await new Promise<void>((done) => origin.listen(0, '127.0.0.1', () => done()));
        const port = (origin.address() as { port: number }).port;
        let session: string | undefined;
        try {
          const env = await ctx.client.beta.environments.create({
            name: 'rehearsal-egress',
            config: { type: 'cloud', networking: { type: 'limited', allowed_hosts: ['allowed.rehearsal.test'], allow_package_managers: true, allow_mcp_servers: true } },
          });
          const agent = await ctx.client.beta.agents.create({
            name: 'rehearsal-egress',
            model: ctx.model,
            tools: [{ type: 'agent_toolset_20260401' }],
            mcp_servers: [{ name: 'standin', type: 'url', url: `http://mcp.rehearsal.test:${port}/mcp` }],
          });
          session = (await ctx.client.beta.sessions.create({ agent: agent.id, environment_id: env.id })).id;
          const hosts = ['allowed.rehearsal.test', 'registry.npmjs.org', 'mcp.rehearsal.test', 'denied.rehearsal.test'];
          const command =
            `for h in ${hosts.join(' ')}; do echo "$h: $(curl -s -m 20 http://$h:${port}/)"; done; ` +
            `echo "tunnel: $(curl -s -p -m 20 http://registry.npmjs.org:${port}/)"; ` +
            `curl -s -m 5 --noproxy '*' http://127.0.0.1:${port}/ || echo "direct: failed"`;
          const events = await runTurn(ctx, session, `Run \`${command}\``);
          const result = events.find((e) => e.type === 'agent.tool_result');
          const out = JSON.stringify(result?.content ?? null);
          const expected = [
            `allowed.rehearsal.test: hello from allowed.rehearsal.test:${port}`,
            `registry.npmjs.org: hello from registry.npmjs.org:${port}`,
            `mcp.rehearsal.test: hello from mcp.rehearsal.test:${port}`,
            `denied.rehearsal.test: Corral egress proxy: denied.rehearsal.test:${port} is not allowed by this environment's networking policy`,
            `tunnel: hello from registry.npmjs.org:${port}`,
            'direct: failed',
          ];
          const missing = expected.filter((line) => !out.includes(JSON.stringify(line).slice(1, -1)));
          if (!result || missing.length) fail(`the tool result lacks ${JSON.stringify(missing)}: ${out.slice(0, 800)}`);
          if (hits.some((h) => h.startsWith('denied') || h.startsWith('127.0.0.1'))) fail(`the origin was reached as ${hits.join(', ')}`);
          const proxied = r.network.accepted.filter((a) => a.port === 3128).length;
          if (!proxied) fail('no connection reached the proxy service\'s port 3128 through the security groups');
          return `allowed, registry, MCP and tunnel through the proxy service (${proxied} connections to its load balancer); denied with its reason; direct failed`;
        } finally {
          if (session) await ctx.client.beta.sessions.delete(session).catch(() => undefined);
          origin.close();
        }
      },
    },
    {
      name: 'step-deadline',
      proves: 'a model call that would outlive the harness function ends before Lambda kills it; the turn goes on in a new step',
      timeoutMs: 240_000,
      async run(ctx) {
        const harness = r.fn('HarnessStepFunction');
        const timeoutsBefore = harness.stats.timeouts;
        const session = await ctx.newSession();
        const marker = ctx.marker('deadline');
        // The model hangs for longer than the harness function's whole timeout, then answers.
        fake.push({ kind: 'hang' }, { kind: 'text', text: `answered after the stall: ${marker}` });
        const events = await runTurn(ctx, session, 'Please answer.');
        if (harness.stats.timeouts > timeoutsBefore) fail(`the harness was killed at its ${harness.fn.timeoutSeconds} s timeout ${harness.stats.timeouts - timeoutsBefore} time(s)`);
        const answer = events.find((e) => e.type === 'agent.message' && JSON.stringify(e.content).includes(marker));
        if (!answer) fail('the turn did not go on after the stalled model call');
        const retried = events.filter((e) => e.type === 'session.error');
        return `stalled call cut before the ${harness.fn.timeoutSeconds} s timeout (${retried.length} session.error, retried), then answered`;
      },
    },
    {
      name: 'idle-reaper',
      proves:
        'the harness waits on task state recorded from ECS\'s events by the reaper (no DescribeTasks), and the scheduled reaper stops a sandbox nobody used, with its own role, and the next call gets a fresh one',
      timeoutMs: 180_000,
      async run(ctx) {
        const session = await ctx.newSession();
        const marker = ctx.marker('reaper');
        await runTurn(ctx, session, `Use bash to run \`echo ${marker}\` and tell me what it printed.`);
        const tasksOf = () => r.ecs.running().filter((t) => t.tags.some((tag) => tag.key === 'corral:session' && tag.value === session));
        if (tasksOf().length !== 1) fail(`expected one running task for the session, found ${tasksOf().length}`);
        // The task's events reached the reaper through the rule, which recorded them; the harness
        // waited on that record, not on DescribeTasks.
        const taskKey = keys.taskState(tasksOf()[0].id);
        const recorded = await admin.send(new QueryCommand({ TableName: r.model.outputs.StateTableName, KeyConditionExpression: 'pk = :pk', ExpressionAttributeValues: { ':pk': { S: taskKey.pk } } }));
        if (recorded.Items?.[0]?.lastStatus?.S !== 'RUNNING') fail(`the task's state record is ${JSON.stringify(recorded.Items?.[0]?.lastStatus)}, not RUNNING`);
        const harnessName = r.fn('HarnessStepFunction').fn.name;
        const described = r.gateway.calls.get(`${harnessName} ecs:DescribeTasks`) ?? 0;
        if (described > 0) fail(`the harness called DescribeTasks ${described} time(s) while the task state events were recorded`);
        // Make the sandbox look idle for an hour (as an operator could see it in the table).
        const table = r.model.outputs.StateTableName;
        const items = await admin.send(new QueryCommand({ TableName: table, KeyConditionExpression: 'pk = :pk AND begins_with(sk, :s)', ExpressionAttributeValues: { ':pk': { S: keys.partition('session', session) }, ':s': { S: SANDBOX_PREFIX } } }));
        if (!items.Items?.length) fail('no sandbox record in the state table');
        const old = new Date(Date.now() - 3_600_000).toISOString();
        for (const item of items.Items) {
          const record = JSON.parse(JSON.stringify(item.record));
          record.M.lastUsedAt = { S: old };
          const name = item.sk.S!.slice(SANDBOX_PREFIX.length);
          await admin.send(
            new UpdateItemCommand({
              TableName: table,
              Key: { pk: item.pk, sk: item.sk },
              UpdateExpression: 'SET lastUsedAt = :t, gsi1sk = :g, #r = :r',
              ExpressionAttributeNames: { '#r': 'record' },
              ExpressionAttributeValues: { ':t': { S: old }, ':g': { S: keys.activeSandboxOrder(old, session, name) }, ':r': record },
            }),
          );
        }
        const out = (await r.runSchedule('SandboxReaper')) as { reaped?: number; failed?: number };
        if (!out?.reaped) fail(`the reaper reaped nothing: ${JSON.stringify(out)}`);
        if (tasksOf().length) fail('the reaped sandbox task still runs');
        const again = ctx.marker('after-reap');
        const events = await runTurn(ctx, session, `Use bash to run \`echo ${again}\` and tell me what it printed.`);
        const result = events.find((e) => e.type === 'agent.tool_result' && JSON.stringify(e.content).includes(again));
        if (!result) fail('the call after the reap did not run in a fresh sandbox');
        return `task state from events (version ${recorded.Items?.[0]?.version?.N}, no DescribeTasks); reaped ${out.reaped} sandbox(es); the next call started a fresh task`;
      },
    },
    {
      name: 'sandbox-handoff',
      proves: 'a running sandbox moves from one session to another (capability rotated by the API function) and keeps its files',
      timeoutMs: 240_000,
      async run(ctx) {
        const from = await ctx.newSession();
        const to = await ctx.newSession();
        const marker = ctx.marker('handoff');
        await runTurn(ctx, from, `Use bash to run \`echo ${marker} > handed.txt && cat handed.txt\` and tell me what it printed.`);
        // The receiving session must be idle; it is (it never ran). Hand the default sandbox over.
        await ctx.client.post(`/v1/sessions/${from}/sandboxes/default/handoff`, { body: { to_session_id: to }, ...BETA });
        const events = await runTurn(ctx, to, 'Use bash to run `cat handed.txt` and tell me what it printed.');
        const read = events.find((e) => e.type === 'agent.tool_result' && JSON.stringify(e.content).includes(marker));
        if (!read) fail(`the receiving session did not find the file: ${JSON.stringify(events.filter((e) => e.type === 'agent.tool_result').map((e) => e.content)).slice(0, 300)}`);
        return 'the file written in the first session was read in the second';
      },
    },
    {
      name: 'mcp-through-proxy',
      proves: 'an MCP tool call goes through the credential proxy function with the vault credential, and the token appears in no event',
      timeoutMs: 180_000,
      async run(ctx) {
        const token = `rehearsal-mcp-${ctx.marker('token')}`;
        const mcp = await startTestMcpServer({ token });
        try {
          const vault = await ctx.client.beta.vaults.create({ display_name: 'rehearsal vault' });
          await ctx.client.beta.vaults.credentials.create(vault.id, { auth: { type: 'static_bearer', token, mcp_server_url: mcp.url }, display_name: 'crm' });
          const agent = await ctx.client.beta.agents.create({
            name: 'rehearsal-mcp',
            model: ctx.model,
            mcp_servers: [{ name: 'crm', type: 'url', url: mcp.url }],
            tools: [{ type: 'mcp_toolset', mcp_server_name: 'crm', default_config: { permission_policy: { type: 'always_allow' } } }],
          });
          const envs = await ctx.client.beta.environments.create({ name: 'rehearsal-mcp', config: { type: 'cloud' } });
          const session = (await ctx.client.beta.sessions.create({ agent: agent.id, environment_id: envs.id, vault_ids: [vault.id] })).id;
          fake.push({ kind: 'tool_use', calls: [{ name: 'mcp__crm__lookup_customer', input: { name: 'Ada' } }] });
          try {
            const events = await runTurn(ctx, session, 'Who is Ada?');
            const result = events.find((e) => e.type === 'agent.mcp_tool_result');
            if (!result) fail(`no agent.mcp_tool_result: ${events.map((e) => e.type).join(', ')}`);
            if (result.is_error) fail(`the MCP call failed: ${JSON.stringify(result.content).slice(0, 300)}`);
            const all = await ctx.client.beta.sessions.events.list(session, { limit: 100 });
            if (JSON.stringify(all.data).includes(token)) fail('the token appears in the session log');
            return `MCP tool answered through the proxy: ${JSON.stringify(result.content).slice(0, 80)}`;
          } finally {
            await ctx.client.beta.sessions.delete(session).catch(() => undefined);
          }
        } finally {
          await mcp.close();
        }
      },
    },
    {
      name: 'security-groups',
      proves: 'a sandbox task is reachable from the harness and from nothing else: the VPC refuses what no security group allows',
      timeoutMs: 180_000,
      async run(ctx) {
        const session = await ctx.newSession();
        const marker = ctx.marker('sg');
        await runTurn(ctx, session, `Use bash to run \`echo ${marker}\` and tell me what it printed.`);
        const task = r.ecs.running().find((t) => t.tags.some((tag) => tag.key === 'corral:session' && tag.value === session));
        if (!task) fail('no task for the session');
        const port = r.model.taskDefinitions[0].containers[0].ports[0];
        const attempt = (localAddress?: string) =>
          new Promise<'connected' | 'refused'>((resolve) => {
            const s = connect({ host: task.address, port, localAddress });
            s.once('connect', () => {
              s.once('close', () => resolve('refused'));
              s.write('GET /health HTTP/1.1\r\nHost: x\r\n\r\n');
              s.once('data', () => {
                s.destroy();
                resolve('connected');
              });
            });
            s.once('error', () => resolve('refused'));
          });
        const addressOf = (prefix: string) => {
          const f = r.fn(prefix);
          return f.fn.runtimeEnvironment.CORRAL_REHEARSAL_SOURCE_ADDRESS;
        };
        const results: string[] = [];
        const harness = addressOf('HarnessStepFunction');
        if (!harness) fail('the harness is not in the VPC');
        if ((await attempt(harness)) !== 'connected') fail('the harness cannot reach its sandbox');
        results.push('harness: allowed');
        const proxy = addressOf('CredentialProxyFunction');
        if (proxy) {
          const refusalsBefore = r.network.refusals.length;
          if ((await attempt(proxy)) !== 'refused') fail('the credential proxy reached a sandbox: no security group allows that');
          if (r.network.refusals.length === refusalsBefore) fail('the refusal was not recorded');
          results.push('credential proxy: refused');
        }
        if ((await attempt()) !== 'refused') fail('a caller outside the VPC reached a sandbox');
        results.push('outside the VPC: refused');
        return results.join(', ');
      },
    },
    {
      name: 'stream-starvation',
      proves: 'with the whole account\'s concurrency taken by open event streams, a session still makes progress (run with a small --account-concurrency)',
      timeoutMs: 240_000,
      async run(ctx) {
        const harness = r.fn('HarnessStepFunction');
        const stream = r.fn('ApiStreamHandler');
        const session = await ctx.newSession();
        // Open as many streams as the account could run at once (each holds an execution).
        const hold = new AbortController();
        const opened: Array<Promise<unknown>> = [];
        for (let i = 0; i < r.accountConcurrency; i++) {
          opened.push(
            ctx.client.beta.sessions.events
              .stream(session, undefined, { signal: hold.signal, maxRetries: 0 })
              .then(async (s) => {
                for await (const _ of s) void _;
              })
              .catch(() => undefined),
          );
        }
        await new Promise((res) => setTimeout(res, 3_000));
        const held = stream.stats.maxConcurrent;
        const throttlesBefore = harness.stats.throttles;
        try {
          // Follow the turn through the event list (a buffered route): every stream slot is held.
          const marker = ctx.marker('starved');
          const before = (await ctx.client.beta.sessions.events.list(session, { limit: 1000 })).data.length;
          await ctx.client.beta.sessions.events.send(session, { events: [{ type: 'user.message', content: text(`Use bash to run \`echo ${marker}\` and tell me what it printed.`) }] });
          let events: Event[] = [];
          while (!events.some((e) => e.type === 'session.status_idle')) {
            await new Promise((res) => setTimeout(res, 500));
            if (ctx.signal.aborted) fail('the turn did not end in time');
            events = ((await ctx.client.beta.sessions.events.list(session, { limit: 1000 })).data as unknown as Event[]).slice(before);
          }
          if (!events.some((e) => e.type === 'agent.tool_result' && JSON.stringify(e.content).includes(marker))) fail('the turn ended without the tool result');
          return `${held} streams held executions; the harness ran (${harness.stats.throttles - throttlesBefore} throttled invocations), reserved ${harness.fn.reservedConcurrency ?? 'none'}, stream cap ${stream.fn.reservedConcurrency ?? 'none'}`;
        } finally {
          hold.abort();
          await Promise.all(opened);
        }
      },
    },
    {
      name: 'stream-tier',
      proves:
        'with streamTier=fargate the SDK streams a session through API Gateway, the VPC link and the NLB to the stream tier tasks (fed by DynamoDB Streams); a socket cut mid-turn and the serving task replaced mid-turn are both resumed with Last-Event-ID: what was received is the log, no gap, no duplicate; an idle stream gets heartbeats',
      timeoutMs: 120_000,
      async run(ctx) {
        const service = r.model.services.find((s) => s.loadBalancers.length > 0);
        if (!service) fail('the template has no stream tier service (synthesize with streamTier=fargate)');
        const [target] = service.loadBalancers;
        const lb = r.loadBalancers.find((l) => l.serves(target.targetGroupArn))!;
        const quiet = await ctx.newSession();
        const session = await ctx.newSession();
        const first = await ctx.follow(session);
        const marker = ctx.marker('tier');
        await ctx.client.beta.sessions.events.send(session, {
          events: [{ type: 'user.message', content: text(`Use bash to run \`sleep 10; echo ${marker}\` and tell me what it printed.`) }],
        });
        await first.until((e) => e.type === 'agent.tool_use', 'agent.tool_use');
        // Cut 1: the client drops its connection mid-turn and resumes after what it saw.
        first.close();
        const cut = first.position;
        const forwarded = lb.forwarded.length;
        const second = await ctx.follow(session, { after: cut });
        // Cut 2: the task that serves the resumed stream is replaced (as a deployment or a scale-in
        // does): out of the target group, SIGTERM, its streams end; the SDK resumes through the NLB.
        const servingId = lb.forwarded[forwarded];
        const serving = r.ecs.serviceTasks(service.name).find((t) => t.id === servingId);
        if (!serving) fail('the resumed stream did not reach a tier task through the NLB');
        await r.ecs.stop(serving, 'rehearsal: the stream tier task is replaced mid-turn', 'UserInitiated');
        for (let i = 0; lb.healthyTargets(target.targetGroupArn) < service.desiredCount; i++) {
          if (i > 300) fail(`the stream tier did not come back to ${service.desiredCount} healthy tasks`);
          await new Promise((res) => setTimeout(res, 100));
        }
        // An idle session's stream through the tier, opened now (the tier back to full strength),
        // while the turn runs on: a heartbeat must come.
        const heartbeat = heartbeatThrough(r.apiUrl, r.apiKey, quiet, ctx.signal);
        heartbeat.catch(() => undefined);
        const { events: sofar } = await listPages(ctx.client, session);
        const asked = sofar.findIndex((e) => e.type === 'user.message');
        if (sofar.some((e, i) => i > asked && e.type === 'session.status_idle')) fail('the turn ended before both cuts were made: they were not mid-turn');
        await second.idle('end_turn');
        second.close();
        if (second.reconnects < 1) fail('the resumed stream did not end when its task stopped (no reconnect)');
        const streamed = [...first.events, ...second.events].map((e) => e.id);
        const { events } = await listPages(ctx.client, session);
        const listed = events.map((e) => e.id);
        const missed = listed.filter((id) => !streamed.includes(id));
        const repeated = streamed.filter((id, i) => streamed.indexOf(id) !== i);
        if (missed.length || repeated.length) fail(`${missed.length} events missed, ${repeated.length} repeated (resumed at ${cut}, ${second.reconnects} reconnects)`);
        if (streamed.join() !== listed.join()) fail('the streamed events are not the log, in order');
        if (!second.events.some((e) => e.type === 'agent.tool_result' && JSON.stringify(e.content ?? '').includes(marker))) fail(`no tool result with ${marker} after the cuts`);
        const heartbeatMs = await heartbeat;
        return `resumed at ${cut} after the socket cut, then after its task was replaced (${second.reconnects} reconnect(s)): ${first.events.length} + ${second.events.length} events, the log's ${listed.length} exactly; an idle stream's heartbeat after ${(heartbeatMs / 1000).toFixed(1)} s`;
      },
    },
    {
      name: 'sandbox-boundary',
      proves:
        'on Fargate a tool that hits a limit of the stack gets a tool error naming it; the state table holds the capability sealed with the KMS key (the agent refuses what the table holds); the API refuses local and internal repositories',
      timeoutMs: 240_000,
      async run(ctx) {
        const container = r.model.taskDefinitions[0].containers[0];
        const setting = container.environment[SANDBOX_LIMITS_ENV];
        if (!setting) fail(`the sandbox task definition has no ${SANDBOX_LIMITS_ENV}`);
        const limits = resolveSandboxLimits(parseSandboxLimits(setting));
        const session = await ctx.newSession();
        // A file one byte over the stack's file size limit: the tool call is an error naming it.
        const over = await runTurn(ctx, session, `Use bash to run \`head -c ${limits.file_size + 1} /dev/zero > big.bin\` and tell me what it printed.`);
        const hit = over.find((e) => e.type === 'agent.tool_result');
        const named = `file size limit (${humanBytes(limits.file_size)} per file)`;
        if (!hit?.is_error || !JSON.stringify(hit.content).includes(named)) {
          fail(`the tool result (is_error ${String(hit?.is_error)}) does not name the ${named}: ${JSON.stringify(hit?.content ?? null).slice(0, 300)}; events: ${over.map((e) => e.type).join(', ')}`);
        }

        // What the state table holds (as the operator reads it) opens nothing.
        const table = r.model.outputs.StateTableName;
        const items = await admin.send(
          new QueryCommand({ TableName: table, KeyConditionExpression: 'pk = :pk AND begins_with(sk, :s)', ExpressionAttributeValues: { ':pk': { S: keys.partition('session', session) }, ':s': { S: SANDBOX_PREFIX } } }),
        );
        const stored = items.Items?.[0]?.record?.M?.endpoint?.M?.capability?.S;
        if (!stored) fail('no sandbox record with a capability in the state table');
        if (!stored.startsWith('kms:v1:')) fail(`the capability is not sealed with the KMS key (${stored.slice(0, 10)}…)`);
        const task = r.ecs.running().find((t) => t.tags.some((tag) => tag.key === 'corral:session' && tag.value === session));
        if (!task) fail('no task for the session');
        const harnessAddress = r.fn('HarnessStepFunction').fn.runtimeEnvironment.CORRAL_REHEARSAL_SOURCE_ADDRESS;
        if (!harnessAddress) fail('the harness is not in the VPC');
        const port = container.ports[0];
        const health = await agentRequest(task.address, port, harnessAddress, 'GET', '/health');
        if (health.status !== 200) fail(`the agent did not answer /health from the harness's address (${health.status})`);
        const sealedPart = stored.slice(stored.indexOf('.') + 1);
        for (const candidate of [stored, sealedPart]) {
          const res = await agentRequest(task.address, port, harnessAddress, 'POST', '/execute', { authorization: `Bearer ${candidate}` }, JSON.stringify({ tool: 'bash', input: { command: 'touch pwned' } }));
          if (res.status !== 401) fail(`POST /execute with what the table holds answered ${res.status}: ${res.body.slice(0, 200)}`);
        }
        // The harness opens it (KMS Decrypt with its role): the next call runs in the same sandbox,
        // where the refused request left nothing.
        const marker = ctx.marker('sealed');
        const again = await runTurn(ctx, session, `Use bash to run \`ls big.bin pwned 2>&1; echo ${marker}\` and tell me what it printed.`);
        const next = again.find((e) => e.type === 'agent.tool_result' && JSON.stringify(e.content).includes(marker));
        if (!next) fail('the next tool call did not run');
        const listing = JSON.stringify(next.content);
        if (!/cannot access 'pwned'/.test(listing)) fail(`the refused request ran a command in the sandbox: ${listing.slice(0, 200)}`);
        if (/cannot access 'big.bin'/.test(listing)) fail('the next call ran in a fresh sandbox: the harness could not open the stored capability');
        const tasks = r.ecs.running().filter((t) => t.tags.some((tag) => tag.key === 'corral:session' && tag.value === session));
        if (tasks.length !== 1 || tasks[0].id !== task.id) fail(`expected the session's one task to still serve it, found ${tasks.length}`);

        // The deployed API's repository rule, as locally.
        const environment = await ctx.client.beta.environments.create({ name: `rehearsal-boundary-${ctx.marker('env')}`, config: { type: 'cloud' } });
        const agent = await ctx.agent();
        const refused: string[] = [];
        for (const url of ['file:///etc', '/srv/git/private.git', 'http://10.0.0.5/x.git', 'https://127.0.0.1/x.git', 'ssh://git@github.com/a/b.git']) {
          const err = await ctx.client.beta.sessions
            .create({ agent, environment_id: environment.id, resources: [{ type: 'github_repository', url, mount_path: '/workspace/x' } as never] })
            .then((s) => (ctx.client.beta.sessions.delete(s.id).catch(() => undefined), undefined), (e: { status?: number }) => e);
          if (err?.status !== 400) fail(`a session with repository ${url} was answered ${err?.status ?? 'with a session'}`);
          refused.push(url);
        }
        const kmsCalls = [...r.gateway.calls.entries()].filter(([k]) => k.includes(' kms:')).map(([k, n]) => `${k.replace(/^.*?(Harness|Api)[^ ]* /, '$1 ')} x${n}`);
        return `${named} hit; stored capability sealed (401 for it at the agent, next call ran); ${refused.length} repository URLs refused with 400; ${kmsCalls.join(', ')}`;
      },
    },
  ];
  // Workspaces that outlive idleness (workspace-scenarios.ts).
  scenarios.push(...workspaceScenarios(r, admin));
  // Private repositories through the proxy service (git-scenarios.ts; opt-in: `proxyService=fargate`).
  scenarios.push(...gitScenarios(r, fake));
  scenarios.push(...credentialScenarios(r, fake));
  scenarios.push(...memoryScenarios(r));
  scenarios.push(...webhookScenarios(r));
  scenarios.push(...threadScenarios(fake)); // multi-agent threads (thread-scenarios.ts)
  scenarios.push(...deploymentScenarios(r));
  if (scenarios.map((s) => s.name).join() !== REHEARSAL_SCENARIOS.join()) throw new Error('REHEARSAL_SCENARIOS is out of date');
  return { scenarios: scenarios.filter((s) => !OPT_IN_SCENARIOS.includes(s.name) || only?.includes(s.name)), afterEach };
}

