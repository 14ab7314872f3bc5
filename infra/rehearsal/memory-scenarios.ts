/**
 * The rehearsal's memory scenario (docs/MEMORY.md): a memory store mounted in a Fargate sandbox
 * (an ECS task of the template's own definition), written by the agent with bash in one session
 * and read in the next; a redacted version is gone from the API's reads and from the next mount.
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
        'a memory store mounted read-write in a Fargate sandbox: what the agent writes with bash is a memory version of the session, the next session reads it, and a redacted version is gone from every read and from the next mount',
      timeoutMs: 240_000,
      async run(ctx) {
        const marker = ctx.marker('memory');
        const store = await ctx.client.beta.memoryStores.create({ name: marker, description: 'rehearsal notes' });
        try {
          const mount = `/mnt/memory/${marker.toLowerCase().replace(/[^a-z0-9]+/g, '-')}`;
          const first = await ctx.newSession('default', { resources: [{ type: 'memory_store', memory_store_id: store.id }] });
          const wrote = await runTurn(ctx, first, `Use bash to run \`mkdir -p ${mount}/notes && echo ${marker}-v1 > ${mount}/notes/today.md && echo written\` and tell me what it printed.`);
          if (!toolResults(wrote).includes('written')) fail(`the write did not run: ${toolResults(wrote).slice(0, 300)}`);
          const page = await ctx.client.beta.memoryStores.memories.list(store.id, { view: 'full' });
          const memory = page.data.find((m) => m.path === '/notes/today.md') as { id: string; content?: string | null; memory_version_id: string } | undefined;
          if (!memory) fail(`the store has no /notes/today.md after the tool call (it has ${page.data.map((m) => m.path).join(', ') || 'nothing'})`);
          if (memory.content !== `${marker}-v1\n`) fail(`the memory holds ${JSON.stringify(memory.content)}`);
          const versions = await ctx.client.beta.memoryStores.memoryVersions.list(store.id, { session_id: first });
          if (versions.data.length !== 1) fail(`the session wrote ${versions.data.length} versions, not 1`);

          // The user replaces it and redacts what the agent wrote.
          await ctx.client.beta.memoryStores.memories.update(memory.id, { memory_store_id: store.id, content: `${marker}-v2\n` });
          await ctx.client.beta.memoryStores.memoryVersions.redact(memory.memory_version_id, { memory_store_id: store.id });
          const redacted = await ctx.client.beta.memoryStores.memoryVersions.retrieve(memory.memory_version_id, { memory_store_id: store.id });
          if (redacted.content !== null || redacted.path !== null || !redacted.redacted_at) fail(`the redacted version still reads ${JSON.stringify(redacted).slice(0, 200)}`);
          const all = await ctx.client.beta.memoryStores.memoryVersions.list(store.id, { view: 'full' });
          if (JSON.stringify(all.data).includes(`${marker}-v1`)) fail('a version list still carries the redacted content');

          const second = await ctx.newSession('default', { resources: [{ type: 'memory_store', memory_store_id: store.id, access: 'read_only' }] });
          // (A write to the read-only mount is not tried here: the rehearsal's tasks run without the image's uid split, so
          // the tools are the agent's user; test/e2e/memory-stores.test.ts proves the refusal where the split is real.)
          const read = await runTurn(ctx, second, `Use bash to run \`cat ${mount}/notes/today.md\` and tell me what it printed.`);
          const out = toolResults(read);
          if (!out.includes(`${marker}-v2`)) fail(`the next session did not read the memory: ${out.slice(0, 300)}`);
          if (out.includes(`${marker}-v1`)) fail('the next session still sees the redacted content');
          return `the agent's write became version ${memory.memory_version_id} of session ${first}; the next session read ${marker}-v2 (mounted read-only); the redacted version is gone from the reads`;
        } finally {
          await ctx.client.beta.memoryStores.delete(store.id).catch(() => undefined);
        }
      },
    },
  ];
}
