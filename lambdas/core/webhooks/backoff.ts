/**
 * When a failed delivery is tried again: exponential backoff with full jitter in its upper half
 * (`base * 2^(attempts-1)`, capped, times 0.5-1), so endpoints that fail together do not all come
 * back at once. Attempts go on until `horizonMs` after the event: with the defaults (5 s doubling
 * to an hour between attempts, for 24 hours) a receiver that is down for an hour, or a day less a
 * few minutes, loses nothing. Tests scale every figure down.
 */
export interface BackoffPolicy {
  /** Delay after the first failure, ms. @default 5000 */
  baseMs: number;
  /** Longest delay between attempts, ms. @default 3_600_000 */
  capMs: number;
  /** How long after the event attempts go on; then it is dead-lettered, ms. @default 86_400_000 */
  horizonMs: number;
}

export const DEFAULT_BACKOFF: BackoffPolicy = { baseMs: 5_000, capMs: 3_600_000, horizonMs: 86_400_000 };

/** Delay before the attempt after `attempts` failed ones (attempts >= 1), ms. */
export function backoffDelay(attempts: number, policy: BackoffPolicy, random: () => number = Math.random): number {
  const exp = Math.min(policy.capMs, policy.baseMs * 2 ** Math.min(Math.max(attempts - 1, 0), 40));
  return Math.round(exp * (0.5 + 0.5 * random()));
}

/**
 * The next attempt's time after a failure at `now`, or null when it would fall past the horizon
 * (the delivery is then dead-lettered). The last attempt is moved up to the horizon itself, so
 * the horizon is honoured whatever the cap.
 */
export function nextAttemptAt(createdMs: number, attempts: number, nowMs: number, policy: BackoffPolicy, random?: () => number): number | null {
  const end = createdMs + policy.horizonMs;
  if (nowMs >= end) return null;
  return Math.min(nowMs + backoffDelay(attempts, policy, random), end);
}
