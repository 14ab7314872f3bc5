import { ID_PREFIX, newId } from '../ids.js';
import { PREVIEW_LIMITS, type PreviewChannel, type PreviewFrame } from '../session/previews.js';
import type { ModelDelta } from './model.js';

export interface PreviewPublisherOptions {
  flushMs?: number;
  maxChunkChars?: number;
  maxRequestChars?: number;
  maxChunks?: number;
  /** A publish failed: the preview of this request stops there (the stored events are unaffected). */
  onError?: (err: unknown) => void;
  /** Longest `finish` waits for the channel before giving up on the preview's last chunk. */
  finishTimeoutMs?: number;
}

/**
 * Turns one model request's streamed fragments into preview chunks (session/previews.ts) and
 * publishes them, coalesced: at most one chunk per `flushMs` while the model streams, then what
 * is left when the answer is complete (`finish`, before the answer's events are appended, so a
 * stream that sees the stored `agent.message` has every chunk before it).
 *
 * It also chooses the ids of the events it previews (`agent.message`, `agent.thinking`) when
 * their first fragment arrives, so the stored events can carry them (`ids`). Text lands in the
 * previewed message's content at the index the stored message will give it: the order of the
 * response's non-empty text blocks (steps/model-response.ts). Tool inputs are not previewed: the
 * API declares no preview of tool calls.
 *
 * Publishing never blocks the model's stream and never fails the request: a failed publish stops
 * the preview, and past its caps (characters, chunks) the preview is cut.
 */
export class PreviewPublisher {
  private messageId: string | undefined;
  private thinkingId: string | undefined;
  /** Model content block → index in the previewed message's content. */
  private readonly textIndex = new Map<number, number>();
  private pending: PreviewFrame[] = [];
  private seq = 0;
  private chars = 0;
  private stopped = false;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private inflight: Promise<void> | undefined;
  private lastFlush = 0;
  private readonly limits: Required<Omit<PreviewPublisherOptions, 'onError'>>;

  constructor(
    private readonly channel: PreviewChannel,
    private readonly sessionId: string,
    /** The id of the request's `span.model_request_start`. */
    private readonly request: string,
    private readonly opts: PreviewPublisherOptions = {},
  ) {
    this.limits = {
      flushMs: opts.flushMs ?? PREVIEW_LIMITS.flushMs,
      maxChunkChars: opts.maxChunkChars ?? PREVIEW_LIMITS.maxChunkChars,
      maxRequestChars: opts.maxRequestChars ?? PREVIEW_LIMITS.maxRequestChars,
      maxChunks: opts.maxChunks ?? PREVIEW_LIMITS.maxChunks,
      finishTimeoutMs: opts.finishTimeoutMs ?? 2_000,
    };
  }

  /** The ids the previews announced, for the stored events (steps/model-response.ts). */
  ids(): { message?: string; thinking?: string } {
    return { message: this.messageId, thinking: this.thinkingId };
  }

  /** One streamed fragment (the model client's `onDelta`). */
  onDelta(d: ModelDelta): void {
    if (d.type === 'thinking') {
      if (this.thinkingId) return;
      this.thinkingId = newId(ID_PREFIX.event);
      if (!this.stopped) this.pending.push({ kind: 'start', type: 'agent.thinking', id: this.thinkingId });
    } else if (d.type === 'text') {
      if (!d.text) return;
      if (!this.messageId) {
        this.messageId = newId(ID_PREFIX.event);
        if (!this.stopped) this.pending.push({ kind: 'start', type: 'agent.message', id: this.messageId });
      }
      let index = this.textIndex.get(d.block);
      if (index === undefined) this.textIndex.set(d.block, (index = this.textIndex.size));
      if (this.stopped) return;
      let text = d.text;
      const room = this.limits.maxRequestChars - this.chars;
      if (text.length >= room) {
        text = text.slice(0, Math.max(0, room));
        this.stopped = true; // past the cap: the stored message carries the rest
      }
      this.chars += text.length;
      if (text) {
        const last = this.pending[this.pending.length - 1];
        if (last?.kind === 'delta' && last.event_id === this.messageId && last.index === index) last.text += text;
        else this.pending.push({ kind: 'delta', event_id: this.messageId, index, text });
      }
    } else {
      return; // tool inputs: no preview type for them
    }
    this.schedule();
  }

  /** Publish what is pending now (the answer is complete), waiting at most `finishTimeoutMs`. */
  async finish(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    const work = (async () => {
      await this.inflight;
      while (this.pending.length && this.seq < this.limits.maxChunks) await this.flushOnce();
    })();
    let timeout: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([work, new Promise<void>((r) => (timeout = setTimeout(r, this.limits.finishTimeoutMs)))]);
    clearTimeout(timeout);
    this.abandon();
  }

  /** Publish nothing more (the request failed or was interrupted: its span's end closes the preview). */
  abandon(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.stopped = true;
    this.pending = [];
  }

  private schedule() {
    if (this.timer || this.inflight || !this.pending.length) return;
    const wait = Math.max(0, this.lastFlush + this.limits.flushMs - Date.now());
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.inflight = this.flushOnce().finally(() => {
        this.inflight = undefined;
        this.schedule();
      });
    }, wait);
  }

  /** Publish one chunk: the pending frames, up to `maxChunkChars` of text. */
  private async flushOnce(): Promise<void> {
    if (!this.pending.length) return;
    if (this.seq >= this.limits.maxChunks) {
      this.abandon();
      return;
    }
    const frames: PreviewFrame[] = [];
    let chars = 0;
    while (this.pending.length) {
      const f = this.pending[0];
      if (f.kind === 'delta') {
        const room = this.limits.maxChunkChars - chars;
        if (room <= 0) break;
        if (f.text.length > room) {
          frames.push({ ...f, text: f.text.slice(0, room) });
          f.text = f.text.slice(room);
          chars += room;
          break;
        }
        chars += f.text.length;
      }
      frames.push(f);
      this.pending.shift();
    }
    this.lastFlush = Date.now();
    const chunk = { request: this.request, seq: this.seq++, frames };
    try {
      await this.channel.publish(this.sessionId, chunk);
    } catch (err) {
      this.abandon();
      this.opts.onError?.(err);
    }
  }
}
