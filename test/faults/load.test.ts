import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { collectUntil, createAgentAndEnvironment, isIdle, listAll, startTestRuntime, type TestRuntime } from '../helpers/runtime.js';

const SECONDS = Number(process.env.CORRAL_LOAD_SECONDS ?? 60);
const SESSIONS = 50;
const STREAMS_PER_SESSION = 4; // 200 streams in all

describe(`load: ${SESSIONS * STREAMS_PER_SESSION} event streams and ${SESSIONS} busy sessions for ${SECONDS} s`, () => {
  let t: TestRuntime;
  beforeAll(async () => {
    t = await startTestRuntime({ runtime: { rateLimits: { create: 0, write: 0, read: 0 } } });
  });
  afterAll(() => t.close());

  it('loses and duplicates no event on any stream', async () => {
    const { agent, environment } = await createAgentAndEnvironment(t.client, { tools: [] });
    const sessions = await Promise.all(
      Array.from({ length: SESSIONS }, () => t.client.beta.sessions.create({ agent: agent.id, environment_id: environment.id })),
    );
    // Every stream reads from its own connection until told to stop.
    const streams = await Promise.all(
      sessions.flatMap((s) =>
        Array.from({ length: STREAMS_PER_SESSION }, async () => {
          const controller = new AbortController();
          const stream = await t.client.beta.sessions.events.stream(s.id, {}, { signal: controller.signal });
          const ids: string[] = [];
          const done = (async () => {
            try {
              for await (const e of stream) ids.push((e as { id: string }).id);
            } catch (err) {
              if (!controller.signal.aborted) throw err;
            }
          })();
          return { sessionId: s.id, ids, done, stop: () => controller.abort() };
        }),
      ),
    );
    const deadline = Date.now() + SECONDS * 1000;
    let turns = 0;
    await Promise.all(
      sessions.map(async (s, i) => {
        const own = await t.client.beta.sessions.events.stream(s.id);
        for (let n = 0; Date.now() < deadline; n++) {
          await t.client.beta.sessions.events.send(s.id, {
            events: [{ type: 'user.message', content: [{ type: 'text', text: `session ${i} message ${n}` }] }],
          });
          await collectUntil(own, isIdle);
          turns++;
        }
      }),
    );
    // Every session is idle, so its log is complete: wait until every stream has read as many
    // events as its session's log holds (a loaded machine may take a while), then stop them. A
    // stream that lost an event never gets there; the wait then ends and the comparison below
    // names what it missed.
    const histories = new Map(await Promise.all(sessions.map(async (s) => [s.id, (await listAll(t.client, s.id)).map((e) => e.id)] as const)));
    const caughtUp = () => streams.every((s) => s.ids.length >= histories.get(s.sessionId)!.length);
    for (const until = Date.now() + 60_000; !caughtUp() && Date.now() < until; ) await new Promise((r) => setTimeout(r, 25));
    for (const s of streams) s.stop();
    await Promise.all(streams.map((s) => s.done));

    let events = 0;
    for (const s of sessions) {
      const history = histories.get(s.id)!;
      events += history.length;
      for (const stream of streams.filter((x) => x.sessionId === s.id)) {
        expect(stream.ids).toEqual(history);
      }
    }
    console.info(`load: ${turns} turns, ${events} events, each read by ${STREAMS_PER_SESSION} streams, over ${SECONDS} s`);
    expect(turns).toBeGreaterThan(SESSIONS);
  }, (SECONDS + 180) * 1000);
});
