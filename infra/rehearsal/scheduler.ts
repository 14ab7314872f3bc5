/**
 * EventBridge Scheduler, as the deploy rehearsal runs it: the REST API the API function calls
 * (CreateSchedule `POST /schedules/{name}`, UpdateSchedule `PUT`, GetSchedule `GET`,
 * DeleteSchedule `DELETE`, each with the group in the body or `?groupName=`), reached through the
 * rehearsal's AWS gateway (so the caller's role must allow `scheduler:*Schedule` on the schedule's
 * ARN, and `iam:PassRole` of the target role, which the gateway's authorizer checks), and the
 * firing: each ENABLED schedule's `cron(...)` occurrences in its time zone, with scheduled time
 * running `timeScale` times faster than real time, invoke the target with the schedule's `Input`
 * (`<aws.scheduler.scheduled-time>` replaced) through `invoke`, which the rehearsal makes act as
 * the schedule's role. It keeps to the wire shapes the adapter uses; it does not try to be complete.
 */
import type { AwsCall, Backend } from './aws-gateway.js';
import { jsonError } from './aws-gateway.js';
import { nextRuns, parseCron } from '../../lambdas/core/deployments/cron.js';

type Reply = Awaited<ReturnType<Backend['handle']>>;
const ok = (body: unknown): Reply => ({ status: 200, headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });

export interface EmulatedSchedule {
  name: string;
  group: string;
  arn: string;
  expression: string;
  timezone: string;
  state: 'ENABLED' | 'DISABLED';
  target: { Arn: string; RoleArn: string; Input?: string };
}

/** EventBridge's `cron(min hour dom month dow year)` as the POSIX cron the core parses (`?` is `*`, weekdays 1-7 → 0-6). */
export function posixOf(expression: string): string {
  const m = expression.match(/^cron\((.+)\)$/);
  if (!m) throw new Error(`only cron() expressions are emulated, not ${expression}`);
  const [min, hour, dom, month, dow, year] = m[1].trim().split(/\s+/);
  if (year !== '*') throw new Error(`the year field must be *, not ${year}`);
  const weekday = dow === '?' ? '*' : dow.replace(/\d+/g, (d) => String(Number(d) - 1));
  return [min, hour, dom === '?' ? '*' : dom, month, weekday].join(' ');
}

export class SchedulerEmulator implements Backend {
  readonly schedules = new Map<string, EmulatedSchedule>();
  private readonly timers = new Map<string, NodeJS.Timeout>();
  private readonly origin = Date.now();
  /** Every invocation made, in order (reports and tests). */
  readonly fired: Array<{ schedule: string; scheduledAt: string }> = [];

  constructor(
    private readonly opts: {
      /** `arn:aws:scheduler:<region>:<account>:schedule/` */
      arnPrefix: string;
      timeScale?: number;
      /** Invoke the target function as the role (the rehearsal's Lambda runtime, with that role's key). */
      invoke(target: EmulatedSchedule['target'], payload: string): Promise<unknown>;
      onError?(message: string): void;
    },
  ) {}

  /** How many times faster than real time scheduled time runs. */
  get timeScale(): number {
    return this.opts.timeScale ?? 1;
  }

  /** Scheduled time now. */
  clock(): number {
    return this.origin + (Date.now() - this.origin) * (this.opts.timeScale ?? 1);
  }

  async handle(call: AwsCall): Promise<Reply> {
    const url = new URL(call.path, 'http://scheduler');
    const m = url.pathname.match(/^\/schedules\/([^/]+)$/);
    if (!m) return jsonError(400, 'ValidationException', `unsupported scheduler call ${call.method} ${url.pathname}`, 'scheduler');
    const name = decodeURIComponent(m[1]);
    const body = (call.json ?? {}) as Record<string, unknown>;
    const group = String(body.GroupName ?? url.searchParams.get('groupName') ?? 'default');
    const key = `${group}/${name}`;
    const existing = this.schedules.get(key);
    switch (call.method) {
      case 'GET':
        if (!existing) return jsonError(404, 'ResourceNotFoundException', `Schedule ${name} does not exist.`, 'scheduler');
        return ok({ Name: name, GroupName: group, Arn: existing.arn, ScheduleExpression: existing.expression, ScheduleExpressionTimezone: existing.timezone, State: existing.state, Target: existing.target });
      case 'DELETE':
        if (!existing) return jsonError(404, 'ResourceNotFoundException', `Schedule ${name} does not exist.`, 'scheduler');
        this.disarm(key);
        this.schedules.delete(key);
        return ok({});
      case 'POST':
      case 'PUT': {
        if (call.method === 'POST' && existing) return jsonError(409, 'ConflictException', `Schedule ${name} already exists.`, 'scheduler');
        if (call.method === 'PUT' && !existing) return jsonError(404, 'ResourceNotFoundException', `Schedule ${name} does not exist.`, 'scheduler');
        const target = body.Target as EmulatedSchedule['target'] | undefined;
        const expression = String(body.ScheduleExpression ?? '');
        const timezone = String(body.ScheduleExpressionTimezone ?? 'UTC');
        try {
          parseCron(posixOf(expression), timezone);
        } catch (err) {
          return jsonError(400, 'ValidationException', `Invalid Schedule Expression ${expression}: ${(err as Error).message}`, 'scheduler');
        }
        if (!target?.Arn || !target.RoleArn) return jsonError(400, 'ValidationException', 'Target.Arn and Target.RoleArn are required', 'scheduler');
        const schedule: EmulatedSchedule = { name, group, arn: `${this.opts.arnPrefix}${group}/${name}`, expression, timezone, state: body.State === 'DISABLED' ? 'DISABLED' : 'ENABLED', target };
        this.schedules.set(key, schedule);
        this.disarm(key);
        if (schedule.state === 'ENABLED') this.arm(key, this.clock());
        return ok({ ScheduleArn: schedule.arn });
      }
      default:
        return jsonError(400, 'ValidationException', `unsupported method ${call.method}`, 'scheduler');
    }
  }

  private arm(key: string, after: number): void {
    const s = this.schedules.get(key);
    if (!s) return;
    const [at] = nextRuns(parseCron(posixOf(s.expression), s.timezone), after, 1);
    if (at === undefined) return;
    const timer = setTimeout(() => {
      if (this.timers.get(key) !== timer) return;
      this.arm(key, at);
      const scheduledAt = new Date(at).toISOString();
      this.fired.push({ schedule: key, scheduledAt });
      this.deliver(s, scheduledAt).catch((err: unknown) => this.opts.onError?.(`schedule ${key} at ${scheduledAt}: ${(err as Error)?.message ?? err}`));
    }, Math.max(0, (at - this.clock()) / (this.opts.timeScale ?? 1)));
    timer.unref();
    this.timers.set(key, timer);
  }

  /** The target's input for one scheduled time, as EventBridge Scheduler fills it in. */
  private deliver(s: EmulatedSchedule, scheduledAt: string): Promise<unknown> {
    const payload = (s.target.Input ?? '{}').replaceAll('<aws.scheduler.scheduled-time>', scheduledAt.replace(/\.000Z$/, 'Z'));
    return this.opts.invoke(s.target, payload);
  }

  /**
   * Delivers a firing once more (EventBridge Scheduler delivers at least once): the same schedule's
   * target with the same scheduled time, answered with what the target returned.
   */
  fireAgain(key: string, scheduledAt: string): Promise<unknown> {
    const s = this.schedules.get(key);
    if (!s) return Promise.reject(new Error(`no schedule ${key}`));
    return this.deliver(s, scheduledAt);
  }

  private disarm(key: string): void {
    const t = this.timers.get(key);
    if (t) clearTimeout(t);
    this.timers.delete(key);
  }

  close(): void {
    for (const t of this.timers.values()) clearTimeout(t);
    this.timers.clear();
  }
}
