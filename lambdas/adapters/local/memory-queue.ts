import type { WakeOptions, WakeQueue } from '../../core/harness/queue.js';

export type WakeHandler = (sessionId: string, message: { traceparent?: string }) => Promise<{ retryAfterMs?: number } | void>;

interface Message {
  sessionId: string;
  availableAt: number;
  receives: number;
  /** The trace context of the first wake merged into this message. */
  traceparent?: string;
}

/**
 * The wake queue of the local runtime, with the semantics the harness gets from SQS FIFO:
 * at least once (a handler that throws gets the message again after a backoff), and one message
 * in flight per session (the message group). A wake for a session that already has one waiting
 * is merged into it, which SQS would deliver twice; a wake is idempotent, so nothing changes.
 */
export class MemoryQueue implements WakeQueue {
  private readonly waiting = new Map<string, Message>();
  private readonly inFlight = new Set<string>();
  private handler: WakeHandler | null = null;
  private running = 0;
  private timer: NodeJS.Timeout | null = null;
  private stopped = false;
  private idleWaiters: Array<() => void> = [];

  constructor(
    private readonly opts: {
      concurrency?: number;
      /** Delay before a failed message is delivered again (attempt n). */
      retryDelayMs?: (receives: number) => number;
      onError?: (sessionId: string, err: unknown) => void;
    } = {},
  ) {}

  async wake(sessionId: string, opts: WakeOptions = {}): Promise<void> {
    const availableAt = Date.now() + (opts.delayMs ?? 0);
    const existing = this.waiting.get(sessionId);
    if (existing) {
      existing.availableAt = Math.min(existing.availableAt, availableAt);
      existing.traceparent ??= opts.traceparent;
    } else this.waiting.set(sessionId, { sessionId, availableAt, receives: 0, ...(opts.traceparent ? { traceparent: opts.traceparent } : {}) });
    this.pump();
  }

  start(handler: WakeHandler): void {
    this.handler = handler;
    this.stopped = false;
    this.pump();
  }

  /** Stop delivering; resolves when the handlers in flight have returned. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await this.drained(() => this.running === 0);
  }

  /** Resolves when nothing is waiting or in flight (tests). */
  idle(): Promise<void> {
    return this.drained(() => this.running === 0 && this.waiting.size === 0);
  }

  get depth(): number {
    return this.waiting.size + this.inFlight.size;
  }

  private drained(done: () => boolean): Promise<void> {
    if (done()) return Promise.resolve();
    return new Promise((resolve) => {
      const check = () => {
        if (done()) resolve();
        else this.idleWaiters.push(check);
      };
      this.idleWaiters.push(check);
    });
  }

  private notify() {
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const w of waiters) w();
  }

  private pump() {
    if (!this.handler || this.stopped) return;
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    const now = Date.now();
    let nextAt = Infinity;
    for (const msg of [...this.waiting.values()]) {
      if (this.running >= (this.opts.concurrency ?? 32)) break;
      if (this.inFlight.has(msg.sessionId)) continue;
      if (msg.availableAt > now) {
        nextAt = Math.min(nextAt, msg.availableAt);
        continue;
      }
      this.waiting.delete(msg.sessionId);
      this.deliver(msg);
    }
    if (nextAt !== Infinity) this.timer = setTimeout(() => this.pump(), Math.max(1, nextAt - Date.now()));
  }

  private deliver(msg: Message) {
    this.inFlight.add(msg.sessionId);
    this.running++;
    msg.receives++;
    const handler = this.handler!;
    handler(msg.sessionId, { ...(msg.traceparent ? { traceparent: msg.traceparent } : {}) })
      .then(
        (result) => {
          if (result && result.retryAfterMs !== undefined) this.requeue(msg, result.retryAfterMs);
        },
        (err) => {
          this.opts.onError?.(msg.sessionId, err);
          const delay = this.opts.retryDelayMs?.(msg.receives) ?? Math.min(30_000, 250 * 2 ** Math.min(msg.receives, 7));
          this.requeue(msg, delay);
        },
      )
      .finally(() => {
        this.inFlight.delete(msg.sessionId);
        this.running--;
        this.notify();
        this.pump();
      });
  }

  private requeue(msg: Message, delayMs: number) {
    const existing = this.waiting.get(msg.sessionId);
    const availableAt = Date.now() + delayMs;
    if (existing) existing.availableAt = Math.min(existing.availableAt, availableAt);
    else this.waiting.set(msg.sessionId, { ...msg, availableAt });
  }
}
