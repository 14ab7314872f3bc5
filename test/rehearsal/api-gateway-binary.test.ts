import { afterEach, describe, expect, it } from 'vitest';
import { isBinaryMediaType, RestApiGateway, type Integration } from '../../infra/rehearsal/api-gateway.js';

/**
 * The rehearsal's API Gateway does with `binaryMediaTypes` what API Gateway does, so a stack
 * without them fails the files scenario there rather than in production: request bodies reach
 * the function base64 only for a binary content type (else as UTF-8 text, invalid bytes
 * replaced), and a base64 response becomes bytes only when the first Accept value is binary.
 */
const EVERY_BYTE = Buffer.from(Array.from({ length: 256 }, (_, i) => i));

describe('rehearsal API Gateway binary media types', () => {
  let gateway: RestApiGateway | undefined;
  afterEach(async () => gateway?.close());

  /** A gateway whose one route records the event and answers `EVERY_BYTE` base64. */
  async function start(binaryMediaTypes: string[] | undefined) {
    const events: Array<{ body: string | null; isBase64Encoded: boolean }> = [];
    const integration: Integration = {
      functionName: 'echo',
      streaming: false,
      timeoutMs: 5_000,
      invoke: async (event) => {
        events.push(event as (typeof events)[number]);
        return { ok: true, value: { statusCode: 200, headers: { 'content-type': 'text/plain' }, body: EVERY_BYTE.toString('base64'), isBase64Encoded: true }, durationMs: 1, coldStart: false };
      },
      invokeStream: () => Promise.reject(new Error('not streamed')),
    };
    gateway = new RestApiGateway({ restApiId: 'api', stage: 'prod', account: '000000000000', binaryMediaTypes, resources: [{ id: 'root', path: '/', methods: new Map([['ANY', integration]]) }] });
    const url = await gateway.start();
    const post = async (headers: Record<string, string>) => {
      const res = await fetch(`${url}/`, { method: 'POST', headers, body: EVERY_BYTE });
      return Buffer.from(await res.arrayBuffer());
    };
    return { events, post };
  }

  it('passes bytes both ways when every type is binary, as the stack sets it', async () => {
    const { events, post } = await start(['*/*']);
    const back = await post({ 'content-type': 'multipart/form-data; boundary=x', accept: 'application/binary' });
    expect(events[0].isBase64Encoded).toBe(true);
    expect(Buffer.from(events[0].body!, 'base64').equals(EVERY_BYTE)).toBe(true);
    expect(back.equals(EVERY_BYTE)).toBe(true);
  });

  it('breaks bytes without binary media types: the body arrives as UTF-8 text and the response is the base64 text', async () => {
    const { events, post } = await start(undefined);
    const back = await post({ 'content-type': 'multipart/form-data; boundary=x', accept: 'application/binary' });
    expect(events[0].isBase64Encoded).toBe(false);
    expect(events[0].body).toContain('\ufffd');
    expect(Buffer.from(events[0].body!, 'utf8').equals(EVERY_BYTE)).toBe(false);
    expect(back.toString('utf8')).toBe(EVERY_BYTE.toString('base64'));
  });

  it('decides the response by the first Accept value, the request by the content type', async () => {
    const { events, post } = await start(['multipart/form-data', 'application/octet-stream']);
    expect((await post({ 'content-type': 'multipart/form-data; boundary=y', accept: 'text/html, application/octet-stream' })).toString()).toBe(EVERY_BYTE.toString('base64'));
    expect(events[0].isBase64Encoded).toBe(true);
    expect((await post({ 'content-type': 'application/json', accept: 'application/octet-stream' })).equals(EVERY_BYTE)).toBe(true);
    expect(events[1].isBase64Encoded).toBe(false);
  });

  it('matches media types with wildcards and without parameters', () => {
    expect(isBinaryMediaType(['image/*'], 'image/png')).toBe(true);
    expect(isBinaryMediaType(['image/*'], 'text/plain')).toBe(false);
    expect(isBinaryMediaType(['*/*'], 'application/json; charset=utf-8')).toBe(true);
    expect(isBinaryMediaType(['Multipart/Form-Data'], 'multipart/form-data; boundary=z')).toBe(true);
    expect(isBinaryMediaType(['application/octet-stream'], '*/*')).toBe(false);
    expect(isBinaryMediaType(['*/*'], undefined)).toBe(false);
  });
});
