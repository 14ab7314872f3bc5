import { lookup } from 'node:dns/promises';
import type { Logger } from '../logger.js';
import { isInternalHost } from '../resources/repository-url.js';
import { ConditionFailedError, type Item, type StateTable } from '../store.js';
import { webhookKeys } from '../storage/keys.js';
import type { SecretStore } from '../vault/secret-store.js';
import { DEFAULT_BACKOFF, nextAttemptAt, type BackoffPolicy } from './backoff.js';
import { signPayload } from './signing.js';
import type { WebhookDelivery, WebhookEndpoint } from './types.js';
import { allowedOrigin, type WebhookUrlRule } from './url.js';

export interface DelivererOptions {
  table: StateTable;
  /** Reads signing secrets: the deliverer is the only part of Corral that does. */
  secrets: Pick<SecretStore, 'get'>;
  urlRule: WebhookUrlRule;
  backoff?: Partial<BackoffPolicy>;
  /** One attempt's time limit, ms. @default 10000 */
  timeoutMs?: number;
  /**
   * How long an attempt holds its delivery: another runner leaves it alone until then, and if
   * this one dies mid-attempt the delivery is tried again after it, ms. @default 60000
   */
  claimMs?: number;
  /** Where a delivery goes once its retry horizon passes (AWS: the dead-letter queue). */
  deadLetter?: (d: WebhookDelivery, tenant: string) => Promise<void>;
  /** Most deliveries one run attempts. @default 50 */
  batch?: number;
  fetch?: typeof fetch;
  clock?: () => number;
  random?: () => number;
  logger?: Logger;
}

export interface RunResult {
  attempted: number;
  delivered: number;
}

/**
 * The deliverer: runs every delivery that is due (`runDue`), at least once each. An attempt first
 * claims the delivery with a conditional write (its attempt count), so two runners never send it
 * at the same time; then it signs the stored payload with the endpoint's current secret and POSTs
 * it. A 2xx ends it; anything else (a refused connection, a timeout, a 500, a 410 …) schedules the
 * next attempt by `backoff`, until the horizon, after which it is `failed` and dead-lettered.
 * A delivery whose endpoint was deleted or disabled is dropped (`failed`, not dead-lettered).
 *
 * The URL was checked when the endpoint was saved; it is checked again at each attempt against
 * the addresses its host resolves to, so a public name that resolves to an internal address is
 * refused too (unless the operator allowed that origin).
 */
export class WebhookDeliverer {
  private readonly policy: BackoffPolicy;
  private readonly clock: () => number;
  private running: Promise<RunResult> | null = null;
  private again = false;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(private readonly o: DelivererOptions) {
    this.policy = { ...DEFAULT_BACKOFF, ...o.backoff };
    this.clock = o.clock ?? Date.now;
  }

  /** Attempt every pending delivery that is due now (one run at a time per deliverer). */
  runDue(): Promise<RunResult> {
    if (this.running) {
      this.again = true;
      return this.running;
    }
    this.running = (async () => {
      const total: RunResult = { attempted: 0, delivered: 0 };
      do {
        this.again = false;
        const r = await this.runOnce();
        total.attempted += r.attempted;
        total.delivered += r.delivered;
      } while (this.again && !this.stopped);
      return total;
    })().finally(() => {
      this.running = null;
    });
    return this.running;
  }

  /** Ask for a run now (a new event); coalesced with one in progress. */
  kick(): void {
    if (this.stopped) return;
    this.runDue().catch((err: unknown) => this.o.logger?.warn('webhook delivery run failed', { error: (err as Error)?.message ?? String(err) }));
  }

  /** Sweep for due deliveries every `intervalMs` (retries, and any kick that was lost). */
  start(intervalMs: number): void {
    this.stopped = false;
    const tick = () => {
      this.timer = setTimeout(async () => {
        await this.runDue().catch((err: unknown) => this.o.logger?.warn('webhook delivery run failed', { error: (err as Error)?.message ?? String(err) }));
        if (!this.stopped) tick();
      }, intervalMs);
      this.timer.unref();
    };
    tick();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.running?.catch(() => undefined);
  }

  private async runOnce(): Promise<RunResult> {
    const now = new Date(this.clock()).toISOString();
    const page = await this.o.table.queryIndex(webhookKeys.due, { limit: this.o.batch ?? 50 });
    const due = page.items.filter((i) => typeof i.gsi1sk === 'string' && i.gsi1sk.slice(0, now.length) <= now);
    const results = await Promise.all(due.map((item) => this.attempt(item)));
    return { attempted: results.filter((r) => r !== 'skipped').length, delivered: results.filter((r) => r === 'delivered').length };
  }

  /** One attempt of one delivery item read from the due index. */
  private async attempt(indexed: Item): Promise<'delivered' | 'failed' | 'retry' | 'skipped'> {
    const item = await this.o.table.get(indexed.pk, indexed.sk);
    if (!item || item.gsi1pk !== webhookKeys.due) return 'skipped';
    const d = item.delivery as WebhookDelivery;
    const tenant = item.tenant as string;
    const nowMs = this.clock();
    if (d.next_attempt_at && Date.parse(d.next_attempt_at) > nowMs) return 'skipped';
    // Claim: the attempt count moves on only for the runner whose write lands first.
    const claimUntil = new Date(nowMs + (this.o.claimMs ?? 60_000)).toISOString();
    const claimed: WebhookDelivery = { ...d, attempts: d.attempts + 1, next_attempt_at: claimUntil, last_attempt_at: new Date(nowMs).toISOString() };
    try {
      await this.o.table.put({ ...item, delivery: claimed, gsi1sk: webhookKeys.dueSort(claimUntil, d.endpoint_id, item.sk) }, { ifEquals: { gsi1sk: item.gsi1sk } });
    } catch (err) {
      if (err instanceof ConditionFailedError) return 'skipped';
      throw err;
    }

    const ek = webhookKeys.endpoint(d.endpoint_id);
    const endpoint = (await this.o.table.get(ek.pk, ek.sk))?.data as WebhookEndpoint | undefined;
    if (!endpoint || endpoint.state !== 'enabled') {
      await this.finish(item, { ...claimed, status: 'failed', next_attempt_at: null, last_status_code: null, last_error: endpoint ? 'endpoint disabled' : 'endpoint deleted' });
      return 'failed';
    }
    const outcome = await this.send(endpoint, d.event_id, item.payload as string);
    if (outcome.ok) {
      await this.finish(item, { ...claimed, status: 'delivered', next_attempt_at: null, last_status_code: outcome.status, last_error: null });
      return 'delivered';
    }
    const next = nextAttemptAt(Date.parse(d.created_at), claimed.attempts, this.clock(), this.policy, this.o.random);
    if (next === null) {
      const failed: WebhookDelivery = { ...claimed, status: 'failed', next_attempt_at: null, last_status_code: outcome.status, last_error: outcome.error };
      await this.o.deadLetter?.(failed, tenant);
      await this.finish(item, failed);
      this.o.logger?.warn('webhook delivery dead-lettered', { endpointId: d.endpoint_id, eventId: d.event_id, attempts: failed.attempts });
      return 'failed';
    }
    const at = new Date(next).toISOString();
    await this.o.table.put({
      ...item,
      delivery: { ...claimed, next_attempt_at: at, last_status_code: outcome.status, last_error: outcome.error },
      gsi1sk: webhookKeys.dueSort(at, d.endpoint_id, item.sk),
    });
    return 'retry';
  }

  /** The delivery is over: its log line stays, it leaves the due index. */
  private async finish(item: Item, d: WebhookDelivery): Promise<void> {
    const { gsi1pk: _pk, gsi1sk: _sk, ...rest } = item;
    await this.o.table.put({ ...rest, pk: item.pk, sk: item.sk, delivery: d });
  }

  private async send(endpoint: WebhookEndpoint, eventId: string, body: string): Promise<{ ok: boolean; status: number | null; error: string | null }> {
    const refusal = await this.refusal(endpoint.url);
    if (refusal) return { ok: false, status: null, error: refusal };
    const secret = (await this.o.secrets.get(webhookKeys.secretRef(endpoint.id)))?.signing_secret;
    if (!secret) return { ok: false, status: null, error: 'the endpoint has no signing secret' };
    const headers = { 'content-type': 'application/json', 'user-agent': 'Corral-Webhooks/1', ...signPayload(secret, eventId, body, new Date(this.clock())) };
    try {
      const res = await (this.o.fetch ?? fetch)(endpoint.url, {
        method: 'POST',
        headers,
        body,
        redirect: 'manual', // a redirect is not followed: it could point anywhere
        signal: AbortSignal.timeout(this.o.timeoutMs ?? 10_000),
      });
      await res.body?.cancel().catch(() => undefined);
      return res.ok ? { ok: true, status: res.status, error: null } : { ok: false, status: res.status, error: `HTTP ${res.status}` };
    } catch (err) {
      // The error's name and code only: a message could echo the URL's query (the user's own
      // token, say) into the delivery log.
      const e = err as Error & { cause?: { code?: string } };
      return { ok: false, status: null, error: e.cause?.code ?? e.name ?? 'request failed' };
    }
  }

  /** Why this URL may not be called now (its host resolves to an internal address), or null. */
  private async refusal(url: string): Promise<string | null> {
    const u = new URL(url);
    if (allowedOrigin(u, this.o.urlRule)) return null;
    const host = u.hostname.replace(/^\[|\]$/g, '');
    if (isInternalHost(host)) return 'the URL names an internal address';
    try {
      const addresses = await lookup(host, { all: true });
      if (addresses.some((a) => isInternalHost(a.address))) return 'the URL resolves to an internal address';
    } catch {
      return 'the host does not resolve';
    }
    return null;
  }
}
