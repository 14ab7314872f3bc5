import type { SessionEvent, StoredEvent } from '../core/session/events.js';
import type { PreviewChannel, PreviewType } from '../core/session/previews.js';

/** One SSE message of a preview. Previews carry no `id:` line: they are no position of the log. */
export interface PreviewMessage {
  event: 'event_start' | 'event_delta';
  data: string;
}

/** How far back a stream looks, when it opens, for a model request still in progress. */
export const OPEN_REQUEST_LOOKBACK = 20;

/**
 * What one stream with `event_deltas` shows of the previews (core/session/previews.ts): the
 * previews of the model request that is open in the log as this stream has followed it, of the
 * requested types only, each before the stored event that concludes it and never after it.
 *
 * The stream tells it every stored event before writing it (`before`, which may answer preview
 * messages to write first) and after (`after`), and asks it for new chunks while a request is
 * open (`drain`). A request opens with its `span.model_request_start` and closes with its
 * `span.model_request_end`; before writing a stored event that concludes a preview (its id is the
 * preview's) or the request's end, the channel is read once more, so every chunk the harness
 * published before appending the event is sent before it. Whatever the channel still holds of a
 * concluded preview is dropped.
 */
export class PreviewFollower {
  /** The open request's `span.model_request_start` id. */
  private open: string | null = null;
  /** Last chunk of the open request already read. */
  private seq = -1;
  /** Previews of the open request whose `event_start` this stream has sent. */
  private readonly started = new Set<string>();
  /** Events of the open request already written (their previews are over). */
  private readonly concluded = new Set<string>();

  constructor(
    private readonly channel: PreviewChannel,
    private readonly sessionId: string,
    private readonly types: ReadonlySet<PreviewType>,
  ) {}

  /** Whether a model request is open, so the stream reads the channel on its short interval. */
  get active(): boolean {
    return this.open !== null;
  }

  /**
   * Where the stream starts: `tail` is the log up to the stream's first position, newest first
   * (at most `OPEN_REQUEST_LOOKBACK` events). A request started there and not ended is open.
   */
  resume(tail: StoredEvent[]): void {
    for (const { event } of tail) {
      if (event.type === 'span.model_request_end') return;
      if (event.type === 'span.model_request_start') {
        this.reset(event.id);
        return;
      }
    }
  }

  /** Preview messages to write before `event` (the last chunks of what it concludes). */
  async before(event: SessionEvent): Promise<PreviewMessage[]> {
    if (event.type === 'span.model_request_start') {
      this.reset(event.id);
      return [];
    }
    if (!this.open) return [];
    const ends = event.type === 'span.model_request_end' && event.model_request_start_id === this.open;
    return ends || this.started.has(event.id) ? this.drain() : [];
  }

  /** `event` has been written. */
  after(event: SessionEvent): void {
    if (!this.open) return;
    if (event.type === 'span.model_request_end' && event.model_request_start_id === this.open) this.reset(null);
    else if (event.type === 'agent.message' || event.type === 'agent.thinking') this.concluded.add(event.id);
  }

  /** The messages of the open request's chunks not read yet. Best effort: a failed read shows nothing. */
  async drain(): Promise<PreviewMessage[]> {
    const request = this.open;
    if (!request) return [];
    const chunks = await this.channel.read(this.sessionId, request, this.seq).catch(() => []);
    if (this.open !== request) return [];
    const out: PreviewMessage[] = [];
    for (const chunk of chunks) {
      this.seq = Math.max(this.seq, chunk.seq);
      for (const f of chunk.frames) {
        if (f.kind === 'start') {
          if (!this.types.has(f.type) || this.concluded.has(f.id) || this.started.has(f.id)) continue;
          this.started.add(f.id);
          out.push({ event: 'event_start', data: JSON.stringify({ type: 'event_start', event: { type: f.type, id: f.id } }) });
        } else {
          // Deltas follow their start on this stream; agent.message is the one type with deltas.
          if (!this.started.has(f.event_id) || this.concluded.has(f.event_id)) continue;
          out.push({
            event: 'event_delta',
            data: JSON.stringify({
              type: 'event_delta',
              event_id: f.event_id,
              delta: { type: 'content_delta', index: f.index, content: { type: 'text', text: f.text } },
            }),
          });
        }
      }
    }
    return out;
  }

  private reset(request: string | null) {
    this.open = request;
    this.seq = -1;
    this.started.clear();
    this.concluded.clear();
  }
}
