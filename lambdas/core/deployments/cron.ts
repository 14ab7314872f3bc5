/**
 * 5-field POSIX cron (`minute hour day-of-month month day-of-week`), as a deployment's schedule
 * takes it (`BetaManagedAgentsScheduleParams`): `*`, values, ranges `a-b`, steps `*\/n`, `a-b/n`
 * and `a/n` (from `a` to the field's end), lists `a,b-c`, month and weekday names (`jan`, `mon`),
 * day-of-week 0-7 with 0 and 7 both Sunday. Extended syntax (seconds or year fields, `L`, `W`,
 * `#`, `?`) and the `@daily` shortcuts are refused, as the API documents.
 *
 * Matching is literal wall-clock matching in the schedule's IANA time zone: an instant matches
 * when the clock in that zone shows a matching minute. So a time skipped by a daylight-saving
 * jump never fires that day, and a time the clock shows twice (the hour repeated in autumn) fires
 * at both instants. Day-of-month and day-of-week combine as classic cron does: when both are
 * restricted (neither starts with `*`), a day matches if EITHER matches; otherwise both must.
 */

export interface CronSchedule {
  readonly expression: string;
  readonly timezone: string;
  readonly minutes: ReadonlySet<number>;
  readonly hours: ReadonlySet<number>;
  readonly daysOfMonth: ReadonlySet<number>;
  readonly months: ReadonlySet<number>;
  /** 0-6, Sunday 0 (a 7 in the expression is stored as 0). */
  readonly daysOfWeek: ReadonlySet<number>;
  /** Day-of-month and day-of-week are both restricted: a day matches if either does. */
  readonly dayOr: boolean;
  /** The field as written was `*` (or `*` with a step): EventBridge translation keeps it. */
  readonly domStar: boolean;
  readonly dowStar: boolean;
}

/** An expression or time zone the API refuses (the message names the problem, for a 400). */
export class CronError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CronError';
  }
}

const MONTH_NAMES = ['jan', 'feb', 'mar', 'apr', 'may', 'jun', 'jul', 'aug', 'sep', 'oct', 'nov', 'dec'];
const DAY_NAMES = ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'];

interface FieldSpec {
  name: string;
  min: number;
  max: number;
  names?: string[];
  /** the value of names[0] */
  namesFrom?: number;
}

const FIELDS: FieldSpec[] = [
  { name: 'minute', min: 0, max: 59 },
  { name: 'hour', min: 0, max: 23 },
  { name: 'day-of-month', min: 1, max: 31 },
  { name: 'month', min: 1, max: 12, names: MONTH_NAMES, namesFrom: 1 },
  { name: 'day-of-week', min: 0, max: 7, names: DAY_NAMES, namesFrom: 0 },
];

function parseValue(text: string, f: FieldSpec): number {
  const lower = text.toLowerCase();
  if (f.names) {
    const i = f.names.indexOf(lower);
    if (i >= 0) return i + (f.namesFrom ?? 0);
  }
  if (!/^\d{1,2}$/.test(text)) throw new CronError(`${f.name} field: "${text}" is not a number${f.names ? ' or a name' : ''}`);
  const n = Number(text);
  if (n < f.min || n > f.max) throw new CronError(`${f.name} field: ${n} is outside ${f.min}-${f.max}`);
  return n;
}

function parseField(text: string, f: FieldSpec): Set<number> {
  const out = new Set<number>();
  for (const part of text.split(',')) {
    if (!part) throw new CronError(`${f.name} field: empty list item in "${text}"`);
    const [range, stepText, extra] = part.split('/');
    if (extra !== undefined) throw new CronError(`${f.name} field: "${part}" has more than one step`);
    let step = 1;
    if (stepText !== undefined) {
      if (!/^\d{1,2}$/.test(stepText) || Number(stepText) < 1) throw new CronError(`${f.name} field: step "${stepText}" must be a positive number`);
      step = Number(stepText);
    }
    let lo: number;
    let hi: number;
    if (range === '*') {
      lo = f.min;
      hi = f.name === 'day-of-week' ? 6 : f.max;
    } else if (range.includes('-')) {
      const [a, b, more] = range.split('-');
      if (more !== undefined || !a || !b) throw new CronError(`${f.name} field: "${range}" is not a range`);
      lo = parseValue(a, f);
      hi = parseValue(b, f);
      if (lo > hi) throw new CronError(`${f.name} field: range "${range}" runs backwards`);
    } else {
      lo = parseValue(range, f);
      // `a/n` runs from a to the field's end; a bare value is itself.
      hi = stepText !== undefined ? f.max : lo;
    }
    for (let v = lo; v <= hi; v += step) out.add(f.name === 'day-of-week' && v === 7 ? 0 : v);
  }
  return out;
}

const ZONE_FORMATS = new Map<string, Intl.DateTimeFormat>();

function zoneFormat(timezone: string): Intl.DateTimeFormat {
  let fmt = ZONE_FORMATS.get(timezone);
  if (!fmt) {
    fmt = new Intl.DateTimeFormat('en-US', {
      timeZone: timezone,
      hourCycle: 'h23',
      year: 'numeric',
      month: 'numeric',
      day: 'numeric',
      hour: 'numeric',
      minute: 'numeric',
    });
    ZONE_FORMATS.set(timezone, fmt);
  }
  return fmt;
}

/** Throws `CronError` unless `timezone` is an IANA zone name this runtime knows. */
export function validateTimezone(timezone: string): void {
  if (!/^[A-Za-z][A-Za-z0-9_+\-/]{0,63}$/.test(timezone)) throw new CronError(`timezone: "${timezone}" is not an IANA time zone name`);
  let resolved: string;
  try {
    resolved = zoneFormat(timezone).resolvedOptions().timeZone;
  } catch {
    throw new CronError(`timezone: "${timezone}" is not an IANA time zone`);
  }
  // Intl accepts any casing ("utc", "europe/paris"); the API takes the database's spelling. A
  // link ("Asia/Kolkata" resolving to "Asia/Calcutta") is a name of its own, and accepted.
  if (resolved !== timezone && resolved.toLowerCase() === timezone.toLowerCase()) throw new CronError(`timezone: "${timezone}" is not an IANA time zone (did you mean "${resolved}"?)`);
}

/** Parse and validate; throws `CronError` naming the problem. */
export function parseCron(expression: string, timezone: string): CronSchedule {
  validateTimezone(timezone);
  const text = expression.trim();
  if (text.startsWith('@')) throw new CronError(`expression: shortcuts such as "${text.split(/\s/)[0]}" are not supported; write the 5 fields`);
  if (/[LW#?]/i.test(text.replace(/[a-z]{3}/gi, (w) => (MONTH_NAMES.includes(w.toLowerCase()) || DAY_NAMES.includes(w.toLowerCase()) ? '' : w)))) {
    throw new CronError('expression: the extended characters L, W, # and ? are not supported');
  }
  const parts = text.split(/\s+/);
  if (parts.length !== 5) throw new CronError(`expression: "${expression}" has ${parts.length} fields; a cron expression has 5 (minute hour day-of-month month day-of-week)`);
  const [minutes, hours, daysOfMonth, months, daysOfWeek] = parts.map((p, i) => parseField(p, FIELDS[i]));
  const domStar = parts[2].startsWith('*');
  const dowStar = parts[4].startsWith('*');
  const schedule: CronSchedule = { expression: text, timezone, minutes, hours, daysOfMonth, months, daysOfWeek, dayOr: !domStar && !dowStar, domStar, dowStar };
  // "0 0 30 2 *" parses but never fires: refuse it rather than keep a schedule that never runs.
  if (nextRuns(schedule, Date.UTC(2000, 0, 1), 1).length === 0) throw new CronError(`expression: "${expression}" never matches a date`);
  return schedule;
}

/** Wall-clock fields of an instant in the schedule's zone. */
function wallClock(timezone: string, ms: number) {
  const parts = zoneFormat(timezone).formatToParts(new Date(ms));
  const get = (t: string) => Number(parts.find((p) => p.type === t)!.value);
  return { year: get('year'), month: get('month'), day: get('day'), hour: get('hour'), minute: get('minute') };
}

/** The zone's offset from UTC at an instant, in ms (wall clock minus UTC). */
function offsetAt(timezone: string, ms: number): number {
  const w = wallClock(timezone, ms);
  return Date.UTC(w.year, w.month - 1, w.day, w.hour, w.minute) - Math.floor(ms / 60_000) * 60_000;
}

/** Every instant at which the zone's clock shows this wall time: none in a DST gap, two in an overlap. */
function instantsOf(timezone: string, y: number, mo: number, d: number, h: number, mi: number): number[] {
  const naive = Date.UTC(y, mo - 1, d, h, mi);
  const offsets = new Set([offsetAt(timezone, naive - 86_400_000), offsetAt(timezone, naive), offsetAt(timezone, naive + 86_400_000)]);
  const out: number[] = [];
  for (const off of offsets) {
    const t = naive - off;
    const w = wallClock(timezone, t);
    if (w.year === y && w.month === mo && w.day === d && w.hour === h && w.minute === mi) out.push(t);
  }
  return [...new Set(out)].sort((a, b) => a - b);
}

function dayMatches(s: CronSchedule, y: number, mo: number, d: number): boolean {
  if (!s.months.has(mo)) return false;
  const dom = s.daysOfMonth.has(d);
  const dow = s.daysOfWeek.has(new Date(Date.UTC(y, mo - 1, d)).getUTCDay());
  return s.dayOr ? dom || dow : dom && dow;
}

/** How far ahead a search looks: 29 February on a given weekday can be 28 years away. */
const MAX_SEARCH_DAYS = 366 * 29;

/** The first `count` instants (ms since the epoch, each on a whole minute) strictly after `afterMs`. */
export function nextRuns(s: CronSchedule, afterMs: number, count: number): number[] {
  const out: number[] = [];
  if (count <= 0) return out;
  // Start a day early in wall-clock terms, so no zone's offset can make us skip the first day.
  const start = wallClock(s.timezone, afterMs - 86_400_000);
  const hours = [...s.hours].sort((a, b) => a - b);
  const minutes = [...s.minutes].sort((a, b) => a - b);
  for (let i = 0; i < MAX_SEARCH_DAYS && out.length < count; i++) {
    const day = new Date(Date.UTC(start.year, start.month - 1, start.day + i));
    const y = day.getUTCFullYear();
    const mo = day.getUTCMonth() + 1;
    const d = day.getUTCDate();
    if (!dayMatches(s, y, mo, d)) continue;
    const todays: number[] = [];
    for (const h of hours) for (const mi of minutes) for (const t of instantsOf(s.timezone, y, mo, d, h, mi)) if (t > afterMs) todays.push(t);
    todays.sort((a, b) => a - b);
    for (const t of todays) {
      if (out.length >= count) break;
      if (out.length === 0 || t > out[out.length - 1]) out.push(t);
    }
  }
  return out;
}

/** Whether the schedule fires at this instant (a whole minute whose wall clock matches). */
export function matches(s: CronSchedule, ms: number): boolean {
  if (ms % 60_000 !== 0) return false;
  const w = wallClock(s.timezone, ms);
  return s.minutes.has(w.minute) && s.hours.has(w.hour) && dayMatches(s, w.year, w.month, w.day);
}
