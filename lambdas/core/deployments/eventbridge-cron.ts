import type { CronSchedule } from './cron.js';

/**
 * A deployment's POSIX cron as EventBridge Scheduler expressions (`cron(min hour dom month dow
 * year)`, in the schedule's `ScheduleExpressionTimezone`). EventBridge's cron differs: weekdays are
 * 1-7 from Sunday, one of day-of-month and day-of-week must be `?`, and it has no OR of the two.
 * So the translation is a SUPERSET: every occurrence of the POSIX schedule is an occurrence of one
 * of the expressions, and the fire path (`DeploymentService.fire`) starts a run only for a time
 * that `matches` the POSIX schedule. Two expressions when day-of-month and day-of-week are both
 * restricted (their OR); a field whose list would push an expression past EventBridge's 256
 * characters is widened to `*`. A time both expressions produce is claimed once.
 */
export const EVENTBRIDGE_EXPRESSION_MAX = 256;

const list = (values: ReadonlySet<number>, full: number, map = (v: number) => v) =>
  values.size >= full ? '*' : [...values].sort((a, b) => a - b).map(map).join(',');

export function eventBridgeExpressions(s: CronSchedule): string[] {
  let minute = list(s.minutes, 60);
  let hour = list(s.hours, 24);
  const month = list(s.months, 12);
  const dom = list(s.daysOfMonth, 31);
  const dow = list(s.daysOfWeek, 7, (v) => v + 1);
  const days: Array<[string, string]> = s.dayOr
    ? [[dom, '?'], ['?', dow]]
    : dow === '*'
      ? [[dom, '?']]
      : // Day-of-week restricted (day-of-month `*` or a stepped `*`): weekdays only, a superset when
        // day-of-month is stepped; the fire path keeps the days that match both.
        [['?', dow]];
  const build = () => days.map(([d, w]) => `cron(${minute} ${hour} ${d} ${month} ${w} *)`);
  if (build().some((e) => e.length > EVENTBRIDGE_EXPRESSION_MAX)) minute = '*';
  if (build().some((e) => e.length > EVENTBRIDGE_EXPRESSION_MAX)) hour = '*';
  return build();
}
