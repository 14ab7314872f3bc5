/**
 * The AWS event-stream wire format (`application/vnd.amazon.eventstream`), which Bedrock's
 * InvokeModelWithResponseStream answers in: a sequence of binary messages, each
 *
 *   total length (u32) | headers length (u32) | prelude CRC32 (u32) | headers | payload | message CRC32 (u32)
 *
 * all big-endian, with typed headers (`:message-type`, `:event-type`, `:exception-type`, ...).
 * A decoder of a few dozen lines instead of `@smithy/eventstream-codec` (not in the install, and
 * the harness bundle would carry its serde layers for one loop). Messages arrive split across
 * network chunks however TCP likes: the decoder buffers until a whole message is in. A CRC that
 * does not match is an error (a corrupted stream is never read as events).
 */

/** CRC-32 (IEEE), as the format uses. */
const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

export function crc32(data: Uint8Array, start = 0, end = data.length): number {
  let c = 0xffffffff;
  for (let i = start; i < end; i++) c = CRC_TABLE[(c ^ data[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

export type HeaderValue = string | number | boolean | Uint8Array | bigint | Date;

export interface EventStreamMessage {
  headers: Record<string, HeaderValue>;
  payload: Uint8Array;
}

export class EventStreamError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'EventStreamError';
  }
}

const PRELUDE = 12;
const MIN_MESSAGE = PRELUDE + 4;
/** The format's limit for one message: 16 MiB. */
const MAX_MESSAGE = 16 * 1024 * 1024;

function decodeHeaders(buf: Buffer): Record<string, HeaderValue> {
  const out: Record<string, HeaderValue> = {};
  let i = 0;
  const need = (n: number) => {
    if (i + n > buf.length) throw new EventStreamError('event-stream header runs past its section');
  };
  while (i < buf.length) {
    need(1);
    const nameLen = buf[i++];
    need(nameLen + 1);
    const name = buf.toString('utf8', i, i + nameLen);
    i += nameLen;
    const type = buf[i++];
    switch (type) {
      case 0:
        out[name] = true;
        break;
      case 1:
        out[name] = false;
        break;
      case 2:
        need(1);
        out[name] = buf.readInt8(i);
        i += 1;
        break;
      case 3:
        need(2);
        out[name] = buf.readInt16BE(i);
        i += 2;
        break;
      case 4:
        need(4);
        out[name] = buf.readInt32BE(i);
        i += 4;
        break;
      case 5:
        need(8);
        out[name] = buf.readBigInt64BE(i);
        i += 8;
        break;
      case 6:
      case 7: {
        need(2);
        const len = buf.readUInt16BE(i);
        i += 2;
        need(len);
        out[name] = type === 6 ? new Uint8Array(buf.subarray(i, i + len)) : buf.toString('utf8', i, i + len);
        i += len;
        break;
      }
      case 8:
        need(8);
        out[name] = new Date(Number(buf.readBigInt64BE(i)));
        i += 8;
        break;
      case 9:
        need(16);
        out[name] = buf.subarray(i, i + 16).toString('hex');
        i += 16;
        break;
      default:
        throw new EventStreamError(`event-stream header ${name} has unknown type ${type}`);
    }
  }
  return out;
}

/** Buffers bytes and hands out each whole message; throws `EventStreamError` on a corrupt one. */
export class EventStreamDecoder {
  private buffer: Buffer = Buffer.alloc(0);

  /** The messages completed by `chunk` (none while a message is still partial). */
  push(chunk: Uint8Array): EventStreamMessage[] {
    this.buffer = this.buffer.length ? Buffer.concat([this.buffer, chunk]) : Buffer.from(chunk);
    const out: EventStreamMessage[] = [];
    while (this.buffer.length >= PRELUDE) {
      const total = this.buffer.readUInt32BE(0);
      const headersLen = this.buffer.readUInt32BE(4);
      if (this.buffer.readUInt32BE(8) !== crc32(this.buffer, 0, 8)) throw new EventStreamError('event-stream prelude CRC mismatch');
      if (total < MIN_MESSAGE || total > MAX_MESSAGE || headersLen > total - MIN_MESSAGE) {
        throw new EventStreamError(`event-stream message of impossible length ${total} (headers ${headersLen})`);
      }
      if (this.buffer.length < total) break;
      if (this.buffer.readUInt32BE(total - 4) !== crc32(this.buffer, 0, total - 4)) throw new EventStreamError('event-stream message CRC mismatch');
      const headers = decodeHeaders(this.buffer.subarray(PRELUDE, PRELUDE + headersLen));
      const payload = new Uint8Array(this.buffer.subarray(PRELUDE + headersLen, total - 4));
      out.push({ headers, payload });
      this.buffer = this.buffer.subarray(total);
    }
    return out;
  }

  /** At the end of the stream: bytes of an unfinished message are an error (a cut stream). */
  end(): void {
    if (this.buffer.length) throw new EventStreamError(`event-stream ended inside a message (${this.buffer.length} bytes left)`);
  }
}

/** One message with string headers (what Bedrock sends), for the stand-in and tests. */
export function encodeEventStreamMessage(headers: Record<string, string>, payload: Uint8Array): Buffer {
  const parts: Buffer[] = [];
  for (const [name, value] of Object.entries(headers)) {
    const n = Buffer.from(name, 'utf8');
    const v = Buffer.from(value, 'utf8');
    const len = Buffer.alloc(2);
    len.writeUInt16BE(v.length);
    parts.push(Buffer.from([n.length]), n, Buffer.from([7]), len, v);
  }
  const head = Buffer.concat(parts);
  const total = PRELUDE + head.length + payload.length + 4;
  const msg = Buffer.alloc(total);
  msg.writeUInt32BE(total, 0);
  msg.writeUInt32BE(head.length, 4);
  msg.writeUInt32BE(crc32(msg, 0, 8), 8);
  head.copy(msg, PRELUDE);
  Buffer.from(payload).copy(msg, PRELUDE + head.length);
  msg.writeUInt32BE(crc32(msg, 0, total - 4), total - 4);
  return msg;
}
