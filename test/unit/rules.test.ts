import { describe, expect, it } from 'vitest';
import { AuthenticationError, ConflictError, CorralError, InvalidRequestError, NotFoundError, PositionConflictError } from '../../lambdas/core/errors.js';
import { listCostCents, parsePrices, priceOf, DEFAULT_PRICES } from '../../lambdas/core/harness/pricing.js';
import { ID_PREFIX, newId } from '../../lambdas/core/ids.js';
import { classify, DEFAULT_RATE_LIMITS, parseRateLimits, RateLimitedError, RateLimiter } from '../../lambdas/core/resources/rate-limits.js';
import { checkRepositoryUrl, isInternalHost, parseRepositoryUrlAllow, type RepositoryUrlRule } from '../../lambdas/core/resources/repository-url.js';
import { makeEvent } from '../../lambdas/core/session/events.js';
import { missingBatchEvents } from '../../lambdas/core/session/log.js';
import { MemoryStateTable } from './memory-store.js';

describe('rate limits', () => {
  it('parse any subset of create, write and read per minute over the defaults', () => {
    expect(parseRateLimits(undefined)).toEqual(DEFAULT_RATE_LIMITS);
    expect(parseRateLimits('')).toEqual(DEFAULT_RATE_LIMITS);
    expect(parseRateLimits(' write=5 , read=0 ')).toEqual({ create: 300, write: 5, read: 0 });
    expect(parseRateLimits('create=1', { create: 9, write: 9, read: 9 })).toEqual({ create: 1, write: 9, read: 9 });
    expect(() => parseRateLimits('delete=3')).toThrow('rate limit "delete=3": expected create=N, write=N or read=N');
    expect(() => parseRateLimits('read=-1')).toThrow(/read=-1/);
  });

  it('classify requests: reads, creates of a collection, and every other write', () => {
    expect(classify('GET', '/v1/sessions/sesn_1/events')).toBe('read');
    expect(classify('HEAD', '/v1/agents')).toBe('read');
    for (const c of ['agents', 'environments', 'sessions', 'vaults']) expect(classify('POST', `/v1/${c}`)).toBe('create');
    expect(classify('POST', '/v1/sessions/')).toBe('create');
    expect(classify('POST', '/v1/sessions/sesn_1/events')).toBe('write');
    expect(classify('DELETE', '/v1/sessions/sesn_1')).toBe('write');
  });

  it('count per tenant and class in fixed one-minute windows, and say when to retry', async () => {
    const table = new MemoryStateTable();
    const limiter = new RateLimiter(table, { create: 2, write: 1, read: 0 });
    const window = 1_700_000_040_000; // a window's start (a multiple of a minute)
    const t0 = window + 40_000; // 40 s into it
    await limiter.check('tnt_a', 'create', t0);
    await limiter.check('tnt_a', 'create', t0 + 1000);
    const err = await limiter.check('tnt_a', 'create', t0 + 5000).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RateLimitedError);
    expect(err).toMatchObject({ status: 429, type: 'rate_limit_error', retryAfterSeconds: 15 });
    expect((err as Error).message).toBe('rate limit of 2 create requests per minute reached; retry after 15 s');
    // another tenant and another class have their own counts; a class at 0 has no limit
    await limiter.check('tnt_b', 'create', t0);
    await limiter.check('tnt_a', 'write', t0);
    for (let i = 0; i < 5; i++) await limiter.check('tnt_a', 'read', t0);
    // the next window starts afresh
    await limiter.check('tnt_a', 'create', t0 + 20_000);
    // each window's counter expires two windows after it began
    expect(await table.get('rate#tnt_a#create', String(window))).toMatchObject({ count: 3, expiresAt: (window + 120_000) / 1000 });
  });

  it('never tell a client to retry in less than a second', async () => {
    const limiter = new RateLimiter(new MemoryStateTable(), { create: 1, write: 1, read: 1 });
    const end = 1_700_000_040_000 + 59_999; // the last millisecond of a window
    await limiter.check('t', 'read', end);
    await expect(limiter.check('t', 'read', end)).rejects.toMatchObject({ retryAfterSeconds: 1 });
  });
});

describe('pricing', () => {
  it('matches the longest model prefix', () => {
    expect(priceOf('claude-opus-4-5-20251101')).toEqual(DEFAULT_PRICES['claude-opus-4-5']);
    expect(priceOf('claude-opus-4-1')).toEqual(DEFAULT_PRICES['claude-opus-4']);
    expect(priceOf('claude-sonnet-4-6')).toEqual({ input: 3, output: 15, cacheRead: 0.3, cacheWrite: 3.75 });
    expect(priceOf('gpt-5')).toBeNull();
  });

  it('prices every kind of token, in cents', () => {
    const usage = { input_tokens: 1_000_000, output_tokens: 100_000, cache_read_input_tokens: 2_000_000, cache_creation_input_tokens: 400_000 };
    // 3 + 1.5 + 0.6 + 1.5 dollars
    expect(listCostCents('claude-sonnet-4-6', usage)).toBeCloseTo(660, 9);
    expect(listCostCents('unknown-model', usage)).toBeNull();
  });

  it('reads an operator table, deriving cache prices from the input price', () => {
    expect(parsePrices(undefined)).toBe(DEFAULT_PRICES);
    const table = parsePrices('{"my-model":{"input":2,"output":8},"my-cached":{"input":2,"output":8,"cacheRead":0.1,"cacheWrite":3}}');
    expect(table['my-model']).toEqual({ input: 2, output: 8, cacheRead: 0.2, cacheWrite: 2.5 });
    expect(table['my-cached']).toEqual({ input: 2, output: 8, cacheRead: 0.1, cacheWrite: 3 });
    expect(listCostCents('my-model-v2', { input_tokens: 500_000, output_tokens: 0, cache_read_input_tokens: 0, cache_creation_input_tokens: 0 }, table)).toBeCloseTo(100, 9);
    expect(() => parsePrices('{"m":{"input":1}}')).toThrow('price for m: input and output (dollars per million tokens) are required');
    expect(() => parsePrices('not json')).toThrow(SyntaxError);
  });
});

describe('repository URLs', () => {
  const none: RepositoryUrlRule = { allow: [] };
  const why = (url: string, rule: RepositoryUrlRule = none) => {
    try {
      checkRepositoryUrl(url, rule, 'resources[0]');
      return 'ok';
    } catch (e) {
      expect(e).toBeInstanceOf(InvalidRequestError);
      return (e as Error).message;
    }
  };

  it('accept https to a public host', () => {
    expect(why('https://github.com/octo/repo.git')).toBe('ok');
    expect(why('https://gitlab.example.com:8443/a/b')).toBe('ok');
  });

  it('refuse other schemes, credentials in the URL, internal hosts and non-URLs, naming the field', () => {
    expect(why('http://github.com/a/b')).toBe('resources[0]: url must be an https:// URL of a remote repository (http:// is not allowed on this deployment)');
    expect(why('file:///etc')).toMatch(/file:\/\/ is not allowed/);
    expect(why('ssh://git@github.com/a/b')).toMatch(/ssh:\/\/ is not allowed/);
    expect(why('/srv/repo')).toBe('resources[0]: url must be an https:// URL of a remote repository');
    expect(why('https://user:tok@github.com/a/b')).toBe('resources[0]: url must not carry credentials; use authorization_token');
    expect(why('https://127.0.0.1/a')).toBe('resources[0]: url must name a public host; 127.0.0.1 is a loopback, link-local or private address');
    expect(why('https://[::1]/a')).toMatch(/must name a public host/);
    expect(why('https://localhost/a')).toMatch(/must name a public host/);
  });

  it('accept origins the operator allowed, on any port when the entry names none', () => {
    const rule = { allow: parseRepositoryUrlAllow('http://127.0.0.1, https://git.internal:8443') };
    expect(rule.allow).toEqual(['http://127.0.0.1', 'https://git.internal:8443']);
    expect(why('http://127.0.0.1:39000/r.git', rule)).toBe('ok');
    expect(why('https://git.internal:8443/r.git', rule)).toBe('ok');
    // an entry with a port allows that port only: on another, the default rule judges (and refuses loopback)
    expect(why('https://127.0.0.1:8443/r.git', { allow: ['https://127.0.0.1:9443'] })).toMatch(/must name a public host/);
    expect(why('https://127.0.0.1:9443/r.git', { allow: ['https://127.0.0.1:9443'] })).toBe('ok');
    expect(why('http://10.0.0.1/r.git', rule)).toMatch(/http:\/\/ is not allowed/);
    expect(why('http://[::1]:4000/r', { allow: ['http://[::1]'] })).toBe('ok');
  });

  it('parse only http(s) origins as the operator setting', () => {
    expect(parseRepositoryUrlAllow(undefined)).toEqual([]);
    expect(parseRepositoryUrlAllow('  ')).toEqual([]);
    expect(() => parseRepositoryUrlAllow('file:///srv')).toThrow('is not an http(s) origin');
    expect(() => parseRepositoryUrlAllow('https://host/path')).toThrow('is not an http(s) origin');
    expect(() => parseRepositoryUrlAllow('https://u:p@host')).toThrow('is not an http(s) origin');
    expect(() => parseRepositoryUrlAllow('not a url')).toThrow('is not an origin like');
  });

  it('know which hosts are internal', () => {
    for (const h of ['localhost', 'a.localhost', '0.0.0.0', '::', '[::1]', '10.1.2.3', '127.0.0.2', '169.254.169.254', '172.16.0.1', '172.31.255.255', '192.168.1.1', '100.64.0.1', '0.1.2.3', 'fd00::1', 'fe80::1', '::ffff:10.0.0.1', 'LOCALHOST']) {
      expect(isInternalHost(h), h).toBe(true);
    }
    for (const h of ['github.com', '8.8.8.8', '172.15.0.1', '172.32.0.1', '100.63.0.1', '100.128.0.1', '169.253.0.1', '2001:db8::1', 'fc.example.com']) {
      expect(isInternalHost(h), h).toBe(false);
    }
  });
});

describe('errors', () => {
  it('carry the API error type and status they are answered with', () => {
    expect(new InvalidRequestError('x')).toMatchObject({ type: 'invalid_request_error', status: 400, message: 'x', name: 'CorralError' });
    expect(new NotFoundError('y')).toMatchObject({ type: 'not_found_error', status: 404 });
    expect(new ConflictError('z')).toMatchObject({ type: 'invalid_request_error', status: 409 });
    expect(new AuthenticationError()).toMatchObject({ type: 'authentication_error', status: 401, message: 'invalid x-api-key' });
    for (const e of [new InvalidRequestError('a'), new NotFoundError('b'), new ConflictError('c'), new AuthenticationError()]) expect(e).toBeInstanceOf(CorralError);
    const p = new PositionConflictError('sesn_1', 4);
    expect(p).toMatchObject({ name: 'PositionConflictError', sessionId: 'sesn_1', position: 4, message: 'position 4 of session sesn_1 is already written' });
    expect(p).not.toBeInstanceOf(CorralError);
  });
});

describe('ids', () => {
  it('are prefixed, 26 Crockford characters, and sort by creation time', () => {
    const a = newId(ID_PREFIX.session, 1_700_000_000_000);
    const b = newId(ID_PREFIX.session, 1_700_000_000_001);
    expect(a).toMatch(/^sesn_[0-9A-HJKMNP-TV-Z]{26}$/);
    expect(a < b).toBe(true);
    expect(newId('x', 0).slice(2, 12)).toBe('0000000000');
    expect(newId('x', 31).slice(2, 12)).toBe('000000000Z');
    expect(newId('x', 32).slice(2, 12)).toBe('0000000010');
    // the random part differs between ids of the same millisecond
    const same = new Set(Array.from({ length: 50 }, () => newId('x', 5)));
    expect(same.size).toBe(50);
  });
});

describe('events and the log', () => {
  it('an event gets an event id and its processing time', () => {
    const at = new Date('2026-01-02T03:04:05.678Z');
    const e = makeEvent({ type: 'user.message', content: [] }, at);
    expect(e).toEqual({ type: 'user.message', content: [], id: expect.stringMatching(/^sevt_/), processed_at: '2026-01-02T03:04:05.678Z' });
    expect(makeEvent({ type: 'x' }, at, 'sevt_given').id).toBe('sevt_given');
  });

  it('missingBatchEvents finds what the last interrupted batch did not write', () => {
    const [a, b, c, u] = ['a', 'b', 'c', 'u'].map((id) => makeEvent({ type: id === 'u' ? 'user.message' : 'agent.message' }, new Date(0), id));
    expect(missingBatchEvents([])).toEqual([]);
    expect(missingBatchEvents([{ position: 1, event: u }])).toEqual([]);
    // head a carries b and c; only b made it (after a user event that slipped in)
    expect(missingBatchEvents([{ position: 4, event: a, rest: [b, c] }, { position: 5, event: u }, { position: 6, event: b }])).toEqual([c]);
    // a complete batch leaves nothing
    expect(missingBatchEvents([{ position: 4, event: a, rest: [b, c] }, { position: 5, event: b }, { position: 6, event: c }])).toEqual([]);
    // only the last head counts
    const d = makeEvent({ type: 'agent.message' }, new Date(0), 'd');
    expect(missingBatchEvents([{ position: 1, event: a, rest: [b] }, { position: 2, event: c, rest: [d] }])).toEqual([d]);
  });
});
