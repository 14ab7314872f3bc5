/**
 * A one-line spinner on stderr while the CLI waits, drawn only when stderr is a terminal (so
 * pipes, files and scripts never see it). Output to stdout goes through `print`, which clears the
 * line first and redraws it after, so the two never interleave on a terminal.
 */
export interface ProgressStream {
  write(chunk: string): unknown;
  isTTY?: boolean;
}

const FRAMES = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];

export class Progress {
  private text: string | null = null;
  private frame = 0;
  private timer: ReturnType<typeof setInterval> | null = null;
  private since = 0;
  private drawn = false;

  constructor(
    private readonly stderr: ProgressStream,
    private readonly stdout: ProgressStream,
    readonly enabled = !!stderr.isTTY,
  ) {}

  /** Show (or change) the waiting message. */
  set(text: string): void {
    if (!this.enabled) return;
    if (this.text === null) this.since = Date.now();
    this.text = text;
    if (!this.timer) {
      this.timer = setInterval(() => this.draw(), 80);
      this.timer.unref?.();
    }
    this.draw();
  }

  /** Remove the line. */
  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.text = null;
    this.clear();
  }

  /** Write to stdout without tearing the spinner line. */
  print(s: string): void {
    this.clear();
    this.stdout.write(s);
    if (this.text !== null) this.draw();
  }

  private clear() {
    if (this.enabled && this.drawn) this.stderr.write('\r\x1b[K');
    this.drawn = false;
  }

  private draw() {
    if (!this.enabled || this.text === null) return;
    const secs = Math.floor((Date.now() - this.since) / 1000);
    this.frame = (this.frame + 1) % FRAMES.length;
    this.stderr.write(`\r\x1b[K${FRAMES[this.frame]} ${this.text}${secs >= 2 ? ` (${secs}s)` : ''}`);
    this.drawn = true;
  }
}
