import type { Context } from 'hono';
import * as z from 'zod';
import { ID_PATTERN, ID_RULE, MAX_INT } from '../core/api/schemas.js';
import { CorralError, InvalidRequestError } from '../core/errors.js';

/** Shared request and response helpers of the API routes. */

export type Env = { Variables: { tenant: string } };

export function errorBody(type: string, message: string) {
  return { type: 'error', error: { type, message } };
}

/**
 * The issues to report: a union none of whose members matched reports the refusal of the member
 * the value was meant for (`agent.skills.0: skills is not supported by Corral`) when one of its
 * members refused it as not supported, rather than zod's bare "Invalid input".
 */
function reported(issues: readonly z.core.$ZodIssue[], base: PropertyKey[] = []): z.core.$ZodIssue[] {
  return issues.flatMap((i) => {
    const path = [...base, ...i.path];
    if (i.code === 'invalid_union') {
      const branch = i.errors.find((e) => e.some((x) => /not supported by Corral/.test(x.message) || x.code === 'invalid_union'));
      const inner = branch ? reported(branch, path) : [];
      if (inner.some((x) => /not supported by Corral/.test(x.message))) return inner.filter((x) => /not supported by Corral/.test(x.message));
    }
    return [{ ...i, path }];
  });
}

/** Describe a zod error as one line: `field.path: problem; other: problem`. */
export function describeZodError(err: z.ZodError): string {
  return unionBranch(reported(err.issues))
    .slice(0, 5)
    .map((i) => {
      const path = i.path.length ? i.path.join('.') : 'body';
      if (i.code === 'unrecognized_keys') return `${path}: unknown field(s) ${i.keys.join(', ')}`;
      return `${path}: ${i.message}`;
    })
    .join('; ');
}

/**
 * A union whose every branch but one failed on the value's type (`model` is a string or an
 * object): the issues of that one branch, so that the message names the field that is wrong
 * (`model.inference_geo: ...`) instead of `model: Invalid input`.
 */
function unionBranch(issues: z.core.$ZodIssue[]): z.core.$ZodIssue[] {
  return issues.flatMap((i) => {
    if (i.code !== 'invalid_union' || !i.errors?.length) return [i];
    const branches = i.errors.filter((b) => !(b.length === 1 && b[0].code === 'invalid_type' && b[0].path.length === 0));
    if (branches.length !== 1) return [i];
    return unionBranch(branches[0].map((b) => ({ ...b, path: [...i.path, ...b.path] })));
  });
}

/** Deepest nesting of arrays and objects a request body may have. */
export const MAX_JSON_DEPTH = 64;

/**
 * The deepest nesting of `[`/`{` in a JSON text, counted without parsing (strings skipped), so
 * that a body nested thousands deep is refused before anything recursive (zod, `JSON.stringify`,
 * `structuredClone`) walks it and runs out of stack. Stops counting once past `limit`.
 */
export function jsonDepth(text: string, limit = Infinity): number {
  let depth = 0;
  let max = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text.charCodeAt(i);
    if (inString) {
      if (ch === 0x5c) i++; // a backslash: skip the escaped character
      else if (ch === 0x22) inString = false;
    } else if (ch === 0x22) inString = true;
    else if (ch === 0x5b || ch === 0x7b) {
      if (++depth > max) {
        max = depth;
        if (max > limit) return max;
      }
    } else if (ch === 0x5d || ch === 0x7d) depth--;
  }
  return max;
}

/** Parse the JSON body against a schema; malformed JSON, too deep JSON and invalid fields are 400s. */
export async function parseBody<T extends z.ZodType>(c: Context, schema: T): Promise<z.infer<T>> {
  const text = await c.req.text();
  if (jsonDepth(text, MAX_JSON_DEPTH) > MAX_JSON_DEPTH) {
    throw new InvalidRequestError(`request body is nested more than ${MAX_JSON_DEPTH} levels deep`);
  }
  let raw: unknown;
  try {
    raw = text.length ? JSON.parse(text) : {};
  } catch {
    throw new InvalidRequestError('request body is not valid JSON');
  }
  const parsed = schema.safeParse(raw);
  if (!parsed.success) throw new InvalidRequestError(describeZodError(parsed.error));
  return parsed.data;
}

/** A path parameter that names an object: 400 unless it looks like an id (see `ID_PATTERN`). */
export function pathId(c: Context, name: string): string {
  const v = c.req.param(name) ?? '';
  if (!ID_PATTERN.test(v)) throw new InvalidRequestError(`${name}: ${ID_RULE}`);
  return v;
}

/** An optional query parameter that names an object (`agent_id=`). */
export function queryId(c: Context, name: string): string | undefined {
  const v = c.req.query(name);
  if (v === undefined || v === '') return undefined;
  if (!ID_PATTERN.test(v)) throw new InvalidRequestError(`${name}: ${ID_RULE}`);
  return v;
}

/** Longest page cursor accepted; the ones Corral hands out are far shorter. */
export const MAX_CURSOR_CHARS = 1024;

/** The `page` cursor, bounded in length so that what it decodes to stays well inside a key. */
export function queryPage(c: Context): string | undefined {
  const v = c.req.query('page');
  if (v !== undefined && v.length > MAX_CURSOR_CHARS) throw new InvalidRequestError('page: not a valid page cursor');
  return v;
}

/** An integer query parameter within `[min, max]` (default: 0 to the largest safe integer). */
export function queryInt(c: Context, name: string, bounds: { min?: number; max?: number } = {}): number | undefined {
  const v = c.req.query(name);
  if (v === undefined || v === '') return undefined;
  const min = bounds.min ?? 0;
  const max = bounds.max ?? MAX_INT;
  const n = Number(v);
  if (!/^-?[0-9]{1,16}$/.test(v) || !Number.isSafeInteger(n) || n < min || n > max) {
    throw new InvalidRequestError(`${name}: must be an integer from ${min} to ${max}`);
  }
  return n;
}

export function queryBool(c: Context, name: string): boolean | undefined {
  const v = c.req.query(name);
  if (v === undefined) return undefined;
  if (v === 'true') return true;
  if (v === 'false') return false;
  throw new InvalidRequestError(`${name}: must be true or false`);
}

export function queryOrder(c: Context): 'asc' | 'desc' | undefined {
  const v = c.req.query('order');
  if (v === undefined) return undefined;
  if (v !== 'asc' && v !== 'desc') throw new InvalidRequestError('order: must be asc or desc');
  return v;
}

/** Array query parameters as the SDK sends them (`name[]=a&name[]=b`), or repeated `name=`. */
export function queryList(c: Context, name: string): string[] {
  return [...(c.req.queries(`${name}[]`) ?? []), ...(c.req.queries(name) ?? [])];
}

export function toErrorResponse(err: unknown): { status: number; body: ReturnType<typeof errorBody> } {
  if (err instanceof CorralError) return { status: err.status, body: errorBody(err.type, err.message) };
  return { status: 500, body: errorBody('api_error', 'internal error') };
}
