import type { Deployment, DeploymentSchedules } from '../lambdas/core/deployments/deployments.js';
import { nextRuns, parseCron } from '../lambdas/core/deployments/cron.js';

/**
 * The local runtime's scheduler of deployments: one timer per armed deployment, set for its next
 * cron occurrence; when it goes off it fires that scheduled time (`DeploymentService.fire`, which
 * claims the time, so a second timer for the same time starts nothing) and arms the next.
 *
 * It keeps nothing of its own: on start it arms every deployment from storage, and on each
 * change (`sync`) re-arms that one. A tick that fell while the runtime was down is SKIPPED: the
 * next tick is the first occurrence after the start, as EventBridge Scheduler, which does not
 * replay either, would have it. (Running a missed tick late would start sessions at a time nobody
 * chose, once per restart after a long stop.) While it runs, a tick whose timer went off late is
 * fired all the same, and so is every tick after it up to now, if it is at most
 * `MISFIRE_GRACE_MS` late.
 *
 * `timeScale` (tests, the rehearsal) makes scheduled time run faster than real time: the clock
 * starts at the real time and advances `timeScale` scheduled milliseconds per real one, so a
 * one-minute schedule ticks every second at 60. The deployments' own clock must be this one
 * (`clock`), so that their upcoming runs are in the same time.
 */
/**
 * How late (in scheduled time) a tick may still be fired while the runtime runs: a tick later than
 * this (the machine slept) is skipped, as one missed while the runtime was down is.
 */
export const MISFIRE_GRACE_MS = 10 * 60_000;

export class LocalDeploymentScheduler implements DeploymentSchedules {
  private readonly timers = new Map<string, { timer: NodeJS.Timeout; at: number; key: string }>();
  /** The last time fired per deployment: a re-arm never goes back to it. */
  private readonly fired = new Map<string, number>();
  private readonly origin = Date.now();
  private closed = false;
  /** Set once the deployments service exists (it needs this scheduler first). */
  fire: (deploymentId: string, scheduledAt: string) => Promise<unknown> = async () => undefined;

  constructor(
    private readonly opts: {
      timeScale?: number;
      logger?: { warn(msg: string, fields?: Record<string, unknown>): void };
    } = {},
  ) {
    if (opts.timeScale !== undefined && !(opts.timeScale > 0)) throw new RangeError('timeScale must be positive');
  }

  /** Scheduled time now, in ms since the epoch. */
  readonly clock = (): number => this.origin + (Date.now() - this.origin) * (this.opts.timeScale ?? 1);

  /** The deployments armed, and the scheduled time each waits for (tests, `corral` diagnostics). */
  armed(): Map<string, string> {
    return new Map([...this.timers].map(([id, t]) => [id, new Date(t.at).toISOString()]));
  }

  async start(deployments: readonly Deployment[]): Promise<void> {
    for (const d of deployments) await this.sync(d, this.clock());
  }

  async sync(d: Deployment, since: number): Promise<void> {
    const live = !this.closed && d.schedule !== null && d.status === 'active' && !d.archived_at;
    const key = live ? `${d.schedule!.expression}\u0000${d.schedule!.timezone}` : '';
    const current = this.timers.get(d.id);
    // An unchanged schedule keeps its timer (an update of the name re-arms nothing).
    if (current && current.key === key) return;
    if (current) clearTimeout(current.timer);
    this.timers.delete(d.id);
    if (live) {
      // A change's first tick is the first after the moment it was made (see `DeploymentSchedules`).
      if (this.clock() - since <= MISFIRE_GRACE_MS) this.fired.set(d.id, Math.max(since, this.fired.get(d.id) ?? -Infinity));
      this.arm(d.id, key, d.schedule!.expression, d.schedule!.timezone);
    }
  }

  private arm(id: string, key: string, expression: string, timezone: string): void {
    const schedule = parseCron(expression, timezone);
    // After a fire, the next tick is the one after it, even if its time has passed (a timer that
    // went off late, a busy event loop: at a time scale of 60 a second's lag is a minute), unless
    // it is more than the grace behind; before any fire (a start, a change), the next from now.
    const now = this.clock();
    const last = this.fired.get(id);
    const after = last !== undefined && now - last <= MISFIRE_GRACE_MS ? last : now;
    const [at] = nextRuns(schedule, after, 1);
    if (at === undefined) return;
    const realDelay = Math.max(0, (at - this.clock()) / (this.opts.timeScale ?? 1));
    // setTimeout holds at most ~24.8 days: a longer wait re-arms when that one ends.
    const MAX_DELAY = 2 ** 31 - 1;
    const timer = setTimeout(() => {
      if (this.timers.get(id)?.timer !== timer) return;
      this.timers.delete(id);
      if (realDelay > MAX_DELAY) return this.arm(id, key, expression, timezone);
      this.fired.set(id, at);
      // Armed for the next before this one's session is created: a slow fire delays no tick.
      this.arm(id, key, expression, timezone);
      this.fire(id, new Date(at).toISOString()).catch((err: unknown) =>
        this.opts.logger?.warn('deployment fire failed', { deployment_id: id, scheduled_at: new Date(at).toISOString(), error: (err as Error)?.message ?? String(err) }),
      );
    }, Math.min(realDelay, MAX_DELAY));
    timer.unref();
    this.timers.set(id, { timer, at, key });
  }

  close(): void {
    this.closed = true;
    for (const t of this.timers.values()) clearTimeout(t.timer);
    this.timers.clear();
  }
}
