import { describe, expect, it } from 'vitest';
import {
  MODEL_TABLE,
  UnsupportedModelError,
  bedrockProfilePrefix,
  bedrockTarget,
  checkModelServed,
  parseModelProvider,
} from '../../lambdas/core/harness/model-ids.js';
import { DEFAULT_PRICES, priceOf } from '../../lambdas/core/harness/pricing.js';
import { EventStreamDecoder, EventStreamError, crc32, encodeEventStreamMessage } from '../../lambdas/adapters/aws/event-stream.js';

describe('the model id table', () => {
  it('translates a Claude id to a Bedrock inference profile of the region, and its foundation model', () => {
    expect(bedrockTarget('claude-sonnet-4-5', { profile: bedrockProfilePrefix('us-east-1') })).toEqual({
      invokeId: 'us.anthropic.claude-sonnet-4-5-20250929-v1:0',
      foundationModel: 'anthropic.claude-sonnet-4-5-20250929-v1:0',
      inferenceProfile: 'us.anthropic.claude-sonnet-4-5-20250929-v1:0',
    });
    expect(bedrockTarget('claude-haiku-4-5-20251001', { profile: bedrockProfilePrefix('eu-west-1') }).invokeId).toBe('eu.anthropic.claude-haiku-4-5-20251001-v1:0');
    expect(bedrockTarget('claude-opus-4-6', { profile: 'global' }).invokeId).toBe('global.anthropic.claude-opus-4-6-v1');
    expect(bedrockProfilePrefix('ap-northeast-1')).toBe('apac');
    expect(() => bedrockProfilePrefix('me-south-1')).toThrow(/CORRAL_BEDROCK_PROFILE/);
  });

  it('refuses a model Bedrock cannot serve, or the deployment is not configured for, instead of substituting one', () => {
    expect(() => bedrockTarget('claude-fake-echo', { profile: 'us' })).toThrow(UnsupportedModelError);
    expect(() => bedrockTarget('claude-fake-echo', { profile: 'us' })).toThrow(/claude-fake-echo.*bedrock/);
    expect(() => bedrockTarget('claude-opus-4-6', { profile: 'us', allowed: ['claude-sonnet-4-5'] })).toThrow(/configured models/);
    expect(() => checkModelServed('claude-fake-echo', 'bedrock')).toThrow(UnsupportedModelError);
    // The Anthropic API and a gateway take any id unless the deployment lists its models.
    expect(() => checkModelServed('claude-fake-echo', 'anthropic')).not.toThrow();
    expect(() => checkModelServed('claude-fake-echo', 'gateway', ['claude-sonnet-4-5'])).toThrow(/gateway/);
  });

  it('keeps every Claude id of the table priced (prices key on the Claude id, not the provider id)', () => {
    for (const id of Object.keys(MODEL_TABLE)) expect(priceOf(id, DEFAULT_PRICES), id).not.toBeNull();
  });

  it('parses the provider setting', () => {
    expect(parseModelProvider(undefined)).toBe('anthropic');
    expect(parseModelProvider('Bedrock')).toBe('bedrock');
    expect(() => parseModelProvider('vertex')).toThrow(/anthropic, bedrock, gateway/);
  });
});

describe('the event-stream decoder', () => {
  const frame = (n: number) =>
    encodeEventStreamMessage({ ':message-type': 'event', ':event-type': 'chunk' }, Buffer.from(JSON.stringify({ bytes: Buffer.from(`event ${n}`).toString('base64') })));

  it('computes the CRC-32 the format uses', () => {
    expect(crc32(Buffer.from('123456789'))).toBe(0xcbf43926);
  });

  it('reads messages however the bytes are cut, a frame split across chunks included', () => {
    const bytes = Buffer.concat([frame(1), frame(2), frame(3)]);
    for (const cuts of [[1], [5, 13], [frame(1).length + 3], [bytes.length - 1]]) {
      const decoder = new EventStreamDecoder();
      const got: string[] = [];
      let at = 0;
      for (const cut of [...cuts, bytes.length]) {
        for (const m of decoder.push(bytes.subarray(at, cut))) {
          expect(m.headers[':event-type']).toBe('chunk');
          got.push(Buffer.from((JSON.parse(Buffer.from(m.payload).toString()) as { bytes: string }).bytes, 'base64').toString());
        }
        at = cut;
      }
      decoder.end();
      expect(got).toEqual(['event 1', 'event 2', 'event 3']);
    }
  });

  it('refuses a message whose CRC does not match, and a stream cut inside a message', () => {
    const bad = frame(1);
    bad[bad.length - 6] ^= 0xff; // a payload byte
    expect(() => new EventStreamDecoder().push(bad)).toThrow(EventStreamError);
    expect(() => new EventStreamDecoder().push(bad)).toThrow(/message CRC/);
    const badPrelude = frame(1);
    badPrelude[2] ^= 0x01;
    expect(() => new EventStreamDecoder().push(badPrelude)).toThrow(/prelude CRC/);
    const cut = new EventStreamDecoder();
    expect(cut.push(frame(1).subarray(0, 20))).toEqual([]);
    expect(() => cut.end()).toThrow(/ended inside a message/);
  });
});
