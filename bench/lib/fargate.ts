/**
 * Simulated Fargate start-up: a provider wrapper that makes provisioning take a time drawn from a
 * distribution of Fargate task start-up times, while it provisions the real (local) sandbox in
 * that time. Everything else about the sandbox is real; only the wait is simulated, and the
 * results say so.
 */
import type { ProvisionRequest, ProvisionedSandbox, SandboxOwner, SandboxProvider } from '../../lambdas/core/sandbox/types.js';
import { normal, rng, sleep } from './stats.js';

/**
 * The distribution, and where it comes from. Public reports of Fargate task start-up (RunTask to
 * a running container), for images of a few hundred MB pulled inside a VPC:
 *  - aws/containers-roadmap#358 (2019-12-13): "20-40 seconds when pulling images from within a
 *    VPC", over a minute from Docker Hub;
 *  - aws/containers-roadmap#696 (2022-01-05): "consistently ... around 60 seconds" for a 250 MB
 *    image, over thousands of one-off tasks;
 *  - the Amazon ECS developer guide, "Optimize Amazon ECS task launch time": the awsvpc network
 *    mode (which Fargate requires) adds "several seconds" for the ENI.
 * Modelled as a log-normal with its median at 30 s (the middle of the in-VPC 20-40 s report) and
 * its 95th percentile at 60 s (the 250 MB report), cut to [8 s, 180 s] (180 s is Fargate's default
 * start timeout). A model of reported figures, not a measurement: where a deployment has its own
 * `SandboxProvisioningTime` metric, use that instead (`--fargate-median-ms`, `--fargate-p95-ms`).
 */
export const FARGATE_SOURCES = [
  { label: 'aws/containers-roadmap#358', url: 'https://github.com/aws/containers-roadmap/issues/358', says: '20-40 s to start a Fargate task pulling its image inside a VPC; over a minute from Docker Hub' },
  { label: 'aws/containers-roadmap#696', url: 'https://github.com/aws/containers-roadmap/issues/696', says: 'about 60 s, consistently, for a 250 MB image over thousands of one-off tasks' },
  {
    label: 'Amazon ECS developer guide: Optimize task launch time',
    url: 'https://docs.aws.amazon.com/AmazonECS/latest/developerguide/task-recommendations.html',
    says: 'the awsvpc network mode adds several seconds to each task launch for its ENI',
  },
];

export interface DelayDistribution {
  medianMs: number;
  p95Ms: number;
  minMs: number;
  maxMs: number;
  /** Multiply every draw (and the bounds) by this: < 1 shortens runs (`--quick`), and says so. */
  scale: number;
}

export const FARGATE_DISTRIBUTION: DelayDistribution = { medianMs: 30_000, p95Ms: 60_000, minMs: 8_000, maxMs: 180_000, scale: 1 };

/** Draws from the log-normal with that median and 95th percentile, scaled and cut. */
export function delaySampler(d: DelayDistribution, seed: number): () => number {
  const random = rng(seed);
  const sigma = Math.log(d.p95Ms / d.medianMs) / 1.6448536;
  return () => {
    const x = d.medianMs * Math.exp(sigma * normal(random));
    return Math.min(d.maxMs, Math.max(d.minMs, x)) * d.scale;
  };
}

export class DelayedProvider implements SandboxProvider {
  readonly delays: number[] = [];

  constructor(
    private readonly inner: SandboxProvider & { close?: () => Promise<void> },
    private readonly nextDelayMs: () => number,
  ) {}

  get recipeSupport() {
    return this.inner.recipeSupport;
  }

  /**
   * The simulated time stands for the whole task start-up, the agent's own start included: the
   * real local sandbox starts during the wait, and the call returns when both are done.
   */
  async provision(req: ProvisionRequest): Promise<ProvisionedSandbox> {
    const delay = this.nextDelayMs();
    this.delays.push(delay);
    const [, sandbox] = await Promise.all([sleep(delay), this.inner.provision(req)]);
    return sandbox;
  }

  release(sessionId: string, name: string, ref: string): Promise<void> {
    return this.inner.release(sessionId, name, ref);
  }

  async releaseAll(sessionId: string): Promise<void> {
    await this.inner.releaseAll?.(sessionId);
  }

  async transfer(from: SandboxOwner, to: SandboxOwner, ref: string): Promise<void> {
    await this.inner.transfer?.(from, to, ref);
  }

  async close(): Promise<void> {
    await this.inner.close?.();
  }
}
