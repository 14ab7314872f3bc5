import { describe, expect, it } from 'vitest';
import { CronError, matches, nextRuns, parseCron } from '../../lambdas/core/deployments/cron.js';

const iso = (ms: number[]) => ms.map((t) => new Date(t).toISOString());
const at = (s: string) => Date.parse(s);

describe('cron', () => {
  it('every minute: the next whole minutes, strictly after the given instant', () => {
    const s = parseCron('* * * * *', 'UTC');
    expect(iso(nextRuns(s, at('2026-03-01T10:00:00Z'), 3))).toEqual(['2026-03-01T10:01:00.000Z', '2026-03-01T10:02:00.000Z', '2026-03-01T10:03:00.000Z']);
    expect(iso(nextRuns(s, at('2026-03-01T10:00:30Z'), 1))).toEqual(['2026-03-01T10:01:00.000Z']);
  });

  it('ranges, steps and lists', () => {
    const s = parseCron('0,30 9-17/4 * * *', 'UTC');
    expect(iso(nextRuns(s, at('2026-03-01T00:00:00Z'), 7))).toEqual([
      '2026-03-01T09:00:00.000Z', '2026-03-01T09:30:00.000Z', '2026-03-01T13:00:00.000Z', '2026-03-01T13:30:00.000Z',
      '2026-03-01T17:00:00.000Z', '2026-03-01T17:30:00.000Z', '2026-03-02T09:00:00.000Z',
    ]);
    expect([...parseCron('*/15 * * * *', 'UTC').minutes]).toEqual([0, 15, 30, 45]);
    expect([...parseCron('50/5 * * * *', 'UTC').minutes]).toEqual([50, 55]);
    expect([...parseCron('0 0 * jan-mar,dec *', 'UTC').months].sort((a, b) => a - b)).toEqual([1, 2, 3, 12]);
  });

  it('day-of-week: 0 and 7 are Sunday, names work, weekdays only', () => {
    expect([...parseCron('0 0 * * 7', 'UTC').daysOfWeek]).toEqual([0]);
    expect([...parseCron('0 0 * * sun', 'UTC').daysOfWeek]).toEqual([0]);
    // 2026-03-06 is a Friday: the next weekday 9:00s are Fri, Mon, Tue.
    const s = parseCron('0 9 * * 1-5', 'UTC');
    expect(iso(nextRuns(s, at('2026-03-06T08:00:00Z'), 3))).toEqual(['2026-03-06T09:00:00.000Z', '2026-03-09T09:00:00.000Z', '2026-03-10T09:00:00.000Z']);
  });

  it('day-of-month and day-of-week both restricted: either matches (the OR rule); one restricted: both must', () => {
    // The 13th, or any Friday: March 2026 has Fridays on 6, 13, 20.
    const either = parseCron('0 0 13 * 5', 'UTC');
    expect(iso(nextRuns(either, at('2026-03-01T00:00:00Z'), 3))).toEqual(['2026-03-06T00:00:00.000Z', '2026-03-13T00:00:00.000Z', '2026-03-20T00:00:00.000Z']);
    // `*` in day-of-week: only the 13th.
    const dom = parseCron('0 0 13 * *', 'UTC');
    expect(iso(nextRuns(dom, at('2026-03-01T00:00:00Z'), 2))).toEqual(['2026-03-13T00:00:00.000Z', '2026-04-13T00:00:00.000Z']);
    // A stepped `*` still counts as unrestricted: every other day that is a Friday.
    const both = parseCron('0 0 */2 * 5', 'UTC');
    expect(both.dayOr).toBe(false);
  });

  it('matches in the schedule\'s time zone, through DST: a skipped wall time does not fire, a repeated one fires at both instants', () => {
    const s = parseCron('30 2 * * *', 'America/New_York');
    // 2026-03-08: clocks jump 02:00 -> 03:00 in New York, so 02:30 never happens that day.
    expect(iso(nextRuns(s, at('2026-03-07T12:00:00Z'), 2))).toEqual(['2026-03-09T06:30:00.000Z', '2026-03-10T06:30:00.000Z']);
    const f = parseCron('30 1 * * *', 'America/New_York');
    // 2026-11-01: clocks fall back 02:00 -> 01:00, so 01:30 is shown twice (EDT, then EST).
    expect(iso(nextRuns(f, at('2026-11-01T00:00:00Z'), 3))).toEqual(['2026-11-01T05:30:00.000Z', '2026-11-01T06:30:00.000Z', '2026-11-02T06:30:00.000Z']);
    // The morning's 09:00 in New York is 14:00 UTC in winter, 13:00 in summer.
    const nine = parseCron('0 9 * * *', 'America/New_York');
    expect(iso(nextRuns(nine, at('2026-03-07T00:00:00Z'), 2))).toEqual(['2026-03-07T14:00:00.000Z', '2026-03-08T13:00:00.000Z']);
  });

  it('matches() agrees with nextRuns() and wants a whole minute', () => {
    const s = parseCron('*/20 8 * * *', 'Europe/Paris');
    for (const t of nextRuns(s, at('2026-06-01T00:00:00Z'), 5)) expect(matches(s, t)).toBe(true);
    expect(matches(s, at('2026-06-01T06:20:00Z'))).toBe(true); // 08:20 CEST
    expect(matches(s, at('2026-06-01T06:21:00Z'))).toBe(false);
    expect(matches(s, at('2026-06-01T06:20:01Z'))).toBe(false);
  });

  it('29 February is found years ahead', () => {
    const s = parseCron('0 0 29 2 *', 'UTC');
    expect(iso(nextRuns(s, at('2026-03-01T00:00:00Z'), 2))).toEqual(['2028-02-29T00:00:00.000Z', '2032-02-29T00:00:00.000Z']);
  });

  it.each([
    ['0 0 * *', /5/],
    ['0 0 * * * *', /5/],
    ['60 * * * *', /minute field: 60 is outside 0-59/],
    ['* 24 * * *', /hour/],
    ['* * 0 * *', /day-of-month/],
    ['* * * 13 *', /month/],
    ['* * * * 8', /day-of-week/],
    ['5-1 * * * *', /backwards/],
    ['*/0 * * * *', /step/],
    ['0 0 L * *', /not supported/],
    ['0 0 ? * 1', /not supported/],
    ['0 0 * * 1#2', /not supported/],
    ['@daily', /shortcuts/],
    ['0 0 30 2 *', /never matches/],
    ['a * * * *', /not a number/],
    ['1,,2 * * * *', /empty/],
  ])('refuses %s', (expr, message) => {
    expect(() => parseCron(expr, 'UTC')).toThrow(CronError);
    expect(() => parseCron(expr, 'UTC')).toThrow(message);
  });

  it('refuses a time zone that is not an IANA name', () => {
    expect(() => parseCron('* * * * *', 'Mars/Olympus')).toThrow(/timezone/);
    expect(() => parseCron('* * * * *', 'europe/paris')).toThrow(/Europe\/Paris/);
    expect(() => parseCron('* * * * *', '')).toThrow(/timezone/);
    expect(parseCron('* * * * *', 'Asia/Kolkata').timezone).toBe('Asia/Kolkata');
  });
});

describe('EventBridge Scheduler expressions', () => {
  // Imported here so the cron tests above need nothing else.
  const load = () => import('../../lambdas/core/deployments/eventbridge-cron.js');

  it('translates fields: weekdays 1-7 from Sunday, one of the day fields "?"', async () => {
    const { eventBridgeExpressions } = await load();
    expect(eventBridgeExpressions(parseCron('* * * * *', 'UTC'))).toEqual(['cron(* * * * ? *)']);
    expect(eventBridgeExpressions(parseCron('0 9 * * 1-5', 'UTC'))).toEqual(['cron(0 9 ? * 2,3,4,5,6 *)']);
    expect(eventBridgeExpressions(parseCron('*/15 8-10 1 jan,jul *', 'UTC'))).toEqual(['cron(0,15,30,45 8,9,10 1 1,7 ? *)']);
    expect(eventBridgeExpressions(parseCron('0 0 * * 0,7', 'UTC'))).toEqual(['cron(0 0 ? * 1 *)']);
  });

  it('the OR of day-of-month and day-of-week is two expressions', async () => {
    const { eventBridgeExpressions } = await load();
    expect(eventBridgeExpressions(parseCron('0 0 13 * 5', 'UTC'))).toEqual(['cron(0 0 13 * ? *)', 'cron(0 0 ? * 6 *)']);
  });

  it('never drops an occurrence: a stepped day-of-month with a weekday, or a list too long, is widened', async () => {
    const { eventBridgeExpressions, EVENTBRIDGE_EXPRESSION_MAX } = await load();
    expect(eventBridgeExpressions(parseCron('0 0 */2 * 1', 'UTC'))).toEqual(['cron(0 0 ? * 2 *)']);
    const long = eventBridgeExpressions(parseCron('0-58 0-22 1-30 * *', 'UTC'));
    expect(long.every((e) => e.length <= EVENTBRIDGE_EXPRESSION_MAX)).toBe(true);
    expect(long[0]).toMatch(/^cron\(\* /);
  });
});
