/**
 * Starts the fake Anthropic Messages API with the deterministic echo model.
 *
 *   npx tsx scripts/fake-model.ts [--port 4001] [--host 127.0.0.1] [--latency-ms 0]
 *   FAKE_MODEL_PORT=4001 npx tsx scripts/fake-model.ts
 *
 * Then point the runtime at it: ANTHROPIC_BASE_URL=http://127.0.0.1:4001 ANTHROPIC_API_KEY=fake
 */
import { startFakeMessagesApi } from '../test/fixtures/fake-messages-api.js';

function argValue(name: string): string | undefined {
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === `--${name}`) return argv[i + 1];
    if (a.startsWith(`--${name}=`)) return a.slice(name.length + 3);
  }
  return undefined;
}

function intArg(raw: string | undefined, fallback: number, what: string): number {
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 0 || n > 65535) {
    console.error(`invalid ${what}: ${raw}`);
    process.exit(2);
  }
  return n;
}

const port = intArg(argValue('port') ?? process.env.FAKE_MODEL_PORT, 4001, 'port');
const latencyMs = intArg(argValue('latency-ms'), 0, 'latency');
const host = argValue('host') ?? '127.0.0.1';
const quiet = process.argv.includes('--quiet');

const fake = await startFakeMessagesApi({
  port,
  host,
  latencyMs,
  onRequest: (req, turn) => {
    if (quiet) return;
    const n = Array.isArray(req.body.messages) ? req.body.messages.length : 0;
    const stream = req.body.stream === true ? 'stream' : 'json';
    console.error(`POST /v1/messages (${stream}, ${n} messages) -> ${turn.kind}`);
  },
});
console.log(`fake Messages API listening on ${fake.url}`);

let stopping = false;
const stop = (signal: string) => {
  if (stopping) return;
  stopping = true;
  if (!quiet) console.error(`received ${signal}, shutting down`);
  fake.close().then(
    () => process.exit(0),
    () => process.exit(1),
  );
};
process.on('SIGINT', () => stop('SIGINT'));
process.on('SIGTERM', () => stop('SIGTERM'));
