/**
 * The rehearsal's memory scenario (docs/MEMORY.md): a memory store mounted in a Fargate sandbox
 * (an ECS task of the template's own definition): what an earlier writer left is in the mount, a
 * redacted version is not (nor in the API's reads), and what the agent writes with bash becomes a
 * memory version of its session. One task, to keep the rehearsal short; the e2e test
 * (test/e2e/memory-stores.test.ts) runs the two-session story and the read-only refusal.
 * The harness does the sync with its own role (state table items of the store's partition), the
 * task only through its agent; the rehearsal's checks after the scenario fail it for any IAM
 * denial on the way.
 */
import type { Rehearsal } from './rehearsal.js';
import { fail, runTurn, type Event, type Scenario } from './scenarios.js';

export const MEMORY_SCENARIOS = ['memory'] as const;

const toolResults = (events: Event[]) => events.filter((e) => e.type === 'agent.tool_result').map((e) => JSON.stringify(e.content)).join(' ');

export function memoryScenarios(_r: Rehearsal): Scenario[] {
  return [
    {
      name: 'memory',
      proves:
        'a memory store mounted read-write in a Fargate sandbox: the store is in the mount (a redacted version gone from it and from every read), and what the agent writes with bash is a memory version of the session',
      timeoutMs: 180_000,
      async run(ctx) {
        const marker = ctx.marker('memory');
        const store = await ctx.client.beta.memoryStores.create({ name: marker, description: 'rehearsal notes' });
        try {
          const mount = `/mnt/memory/${marker.toLowerCase().replace(/[^a-z0-9]+/g, '-')}`;
          // What an earlier session left (through the API here, so one task suffices), then replaced and its first version redacted.
          const earlier = await ctx.client.beta.memoryStores.memories.create(store.id, { path: '/notes/earlier.md', content: `${marker}-secret\n` });
          await ctx.client.beta.memoryStores.memories.update(earlier.id, { memory_store_id: store.id, content: `${marker}-kept\n` });
          await ctx.client.beta.memoryStores.memoryVersions.redact(earlier.memory_version_id, { memory_store_id: store.id });
          const redacted = await ctx.client.beta.memoryStores.memoryVersions.retrieve(earlier.memory_version_id, { memory_store_id: store.id });
          if (redacted.content !== null || redacted.path !== null || !redacted.redacted_at) fail(`the redacted version still reads ${JSON.stringify(redacted).slice(0, 200)}`);

          // One Fargate session reads the store through its mount and writes to it with bash.
          const session = await ctx.newSession('default', { resources: [{ type: 'memory_store', memory_store_id: store.id }] });
          const events = await runTurn(ctx, session, `Use bash to run \`grep -r . ${mount}/; echo ${marker}-new > ${mount}/notes/today.md && echo written\` and tell me what it printed.`);
          const out = toolResults(events);
          if (!out.includes(`${marker}-kept`) || !out.includes('written')) fail(`the sandbox did not read the store or write to it: ${out.slice(0, 300)}`);
          if (out.includes(`${marker}-secret`)) fail('the sandbox sees the redacted content');
          const page = await ctx.client.beta.memoryStores.memories.list(store.id, { view: 'full' });
          const today = page.data.find((m) => m.path === '/notes/today.md') as { content?: string | null } | undefined;
          if (today?.content !== `${marker}-new\n`) fail(`the agent's write is not a memory after the tool call (the store has ${page.data.map((m) => m.path).join(', ') || 'nothing'})`);
          const versions = await ctx.client.beta.memoryStores.memoryVersions.list(store.id, { session_id: session, view: 'full' });
          if (versions.data.length !== 1 || versions.data[0].created_by?.type !== 'session_actor') fail(`the session wrote ${versions.data.length} versions: ${JSON.stringify(versions.data).slice(0, 200)}`);
          const all = await ctx.client.beta.memoryStores.memoryVersions.list(store.id, { view: 'full' });
          if (JSON.stringify(all.data).includes(`${marker}-secret`)) fail('a version list still carries the redacted content');
          return `the Fargate sandbox read ${marker}-kept from its mount (not the redacted version) and its write became version ${versions.data[0].id} of session ${session}`;
        } finally {
          await ctx.client.beta.memoryStores.delete(store.id).catch(() => undefined);
        }
      },
    },
  ];
}
