/**
 * Where this process's CPU goes: the V8 sampling profiler (through `node:inspector`), with the
 * samples' self time summed by where the code comes from (Corral, the AWS SDK, dynalite, ...).
 */
import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string };
}

interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

const BUCKETS: Array<[string, RegExp]> = [
  ['Corral (lambdas/, sandbox/)', /\/(lambdas|sandbox)\//],
  ['benchmark client (bench/, test/fixtures/)', /\/(bench|test)\//],
  ['AWS SDK (@aws-sdk, @smithy)', /node_modules\/(@aws-sdk|@smithy|@aws-crypto)\//],
  ['dynalite and LevelDB', /node_modules\/(dynalite|level[^/]*|memdown|abstract-leveldown|encoding-down|deferred-leveldown|lazy|big\.js|buffer-crc32|once|async)\//],
  ['Anthropic SDK', /node_modules\/@anthropic-ai\//],
  ['Hono', /node_modules\/(hono|@hono)\//],
  ['zod', /node_modules\/zod\//],
  ['other packages', /node_modules\//],
  ['Node.js (http, streams, crypto, ...)', /^node:/],
];

export interface CpuBreakdown {
  sampled_ms: number;
  /** Share of sampled time, in percent, by origin; `idle` is time the event loop waited. */
  shares: Record<string, number>;
}

export async function startCpuProfile(): Promise<() => Promise<CpuBreakdown>> {
  const session = new Session();
  session.connect();
  await session.post('Profiler.enable');
  await session.post('Profiler.setSamplingInterval', { interval: 1000 });
  await session.post('Profiler.start');
  return async () => {
    const { profile } = (await session.post('Profiler.stop')) as unknown as { profile: Profile };
    session.disconnect();
    // For a function-level look: CORRAL_CPU_PROFILE_OUT=<file.cpuprofile> keeps the raw profile.
    if (process.env.CORRAL_CPU_PROFILE_OUT) writeFileSync(process.env.CORRAL_CPU_PROFILE_OUT, JSON.stringify(profile));
    const byId = new Map(profile.nodes.map((n) => [n.id, n]));
    const sums = new Map<string, number>();
    let total = 0;
    profile.samples.forEach((id, i) => {
      const dt = profile.timeDeltas[i] ?? 0;
      total += dt;
      const frame = byId.get(id)?.callFrame;
      const name = frame?.functionName ?? '';
      const url = frame?.url ?? '';
      const bucket =
        name === '(idle)' ? 'idle' : name === '(garbage collector)' ? 'garbage collection' : !url ? 'V8 / native (program, microtasks, I/O)' : (BUCKETS.find(([, re]) => re.test(url))?.[0] ?? 'other');
      sums.set(bucket, (sums.get(bucket) ?? 0) + dt);
    });
    const shares = Object.fromEntries(
      [...sums.entries()].sort((a, b) => b[1] - a[1]).map(([k, v]) => [k, total ? Math.round((v / total) * 1000) / 10 : 0]),
    );
    return { sampled_ms: Math.round(total / 1000), shares };
  };
}
