/**
 * Output bounding: every tool's `output` is at most `MAX_OUTPUT_CHARS`, keeping its beginning and
 * its end with a marker saying how much was cut, and a stream is accumulated in bounded memory.
 */

/** Upper bound on the `output` of any tool, in characters (UTF-16 code units). */
export const MAX_OUTPUT_CHARS = 100_000;

/** The marker placed where characters were cut out of an output. */
function truncationMarker(count: number): string {
  return `\n[... ${count} characters truncated ...]\n`;
}

/**
 * Joins `head`, (`dropped` characters not retained), and `tail` into at most `limit` characters,
 * keeping the beginning and the end with a marker saying how much was cut.
 */
function joinBounded(head: string, tail: string, dropped: number, limit: number): string {
  const total = head.length + dropped + tail.length;
  if (dropped === 0 && total <= limit) return head + tail;
  const full = dropped === 0 ? head + tail : undefined;
  let marker = truncationMarker(total);
  for (let i = 0; i < 3; i++) {
    const keep = Math.max(0, limit - marker.length);
    const next = truncationMarker(total - keep);
    if (next.length === marker.length) {
      marker = next;
      break;
    }
    marker = next;
  }
  const keep = Math.max(0, limit - marker.length);
  const keepHead = Math.ceil(keep / 2);
  const keepTail = keep - keepHead;
  if (full !== undefined) {
    return full.slice(0, keepHead) + marker + (keepTail > 0 ? full.slice(full.length - keepTail) : '');
  }
  // Streaming case: head and tail each hold at least MAX_OUTPUT_CHARS, so both slices are full.
  return head.slice(0, keepHead) + marker + (keepTail > 0 ? tail.slice(Math.max(0, tail.length - keepTail)) : '');
}

/** Truncates `text` to at most `limit` characters, keeping head and tail. */
export function truncateOutput(text: string, limit = MAX_OUTPUT_CHARS): string {
  return text.length <= limit ? text : joinBounded(text, '', 0, limit);
}

/**
 * Accumulates a stream of text in bounded memory: the first `cap` characters and a ring of
 * (at least) the last `cap` characters; everything in between is only counted.
 */
export class BoundedText {
  private head = '';
  private tail: string[] = [];
  private tailLength = 0;
  total = 0;

  constructor(private readonly cap = MAX_OUTPUT_CHARS) {}

  push(chunk: string): void {
    if (!chunk) return;
    this.total += chunk.length;
    if (this.head.length < this.cap) {
      const take = this.cap - this.head.length;
      this.head += chunk.slice(0, take);
      chunk = chunk.slice(take);
      if (!chunk) return;
    }
    this.tail.push(chunk);
    this.tailLength += chunk.length;
    while (this.tail.length > 1 && this.tailLength - this.tail[0]!.length >= this.cap) {
      this.tailLength -= this.tail.shift()!.length;
    }
    if (this.tail.length === 1 && this.tailLength > 2 * this.cap) {
      // One huge chunk: keep only its end.
      const only = this.tail[0]!.slice(-this.cap);
      this.tail = [only];
      this.tailLength = only.length;
    }
  }

  /** The accumulated text, bounded to `limit` characters. */
  text(limit = MAX_OUTPUT_CHARS): string {
    const tail = this.tail.join('');
    const dropped = this.total - this.head.length - tail.length;
    return joinBounded(this.head, tail, dropped, limit);
  }
}

/** Appends a status line (e.g. `[exit code 2]`) to bounded output without exceeding the limit. */
export function withStatusLine(buffer: BoundedText, status: string): string {
  const body = buffer.text(MAX_OUTPUT_CHARS - status.length - 1);
  if (body === '') return status;
  return body.endsWith('\n') ? body + status : `${body}\n${status}`;
}

