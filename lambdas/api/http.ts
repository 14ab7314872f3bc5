import type { Context } from 'hono';
import { z } from 'zod';
import { CorralError, InvalidRequestError } from '../core/errors.js';

/** Shared request and response helpers of the API routes. */

export type Env = { Variables: { tenant: string } };

export function errorBody(type: string, message: string) {
  return { type: 'error', error: { type, message } };
}

/** Describe a zod error as one line: `field.path: problem; other: problem`. */
export function describeZodError(err: z.ZodError): string {
  return err.issues
    .slice(0, 5)
    .map((i) => {
      const path = i.path.length ? i.path.join('.') : 'body';
      if (i.code === 'unrecognized_keys') return `${path}: unknown field(s) ${i.keys.join(', ')}`;
      return `${path}: ${i.message}`;
    })
    .join('; ');
}

/** Parse the JSON body against a schema; malformed JSON and invalid fields are 400s. */
export async function parseBody<T extends z.ZodType>(c: Context, schema: T): Promise<z.infer<T>> {
  const text = await c.req.text();
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

export function queryInt(c: Context, name: string): number | undefined {
  const v = c.req.query(name);
  if (v === undefined || v === '') return undefined;
  const n = Number(v);
  if (!Number.isInteger(n)) throw new InvalidRequestError(`${name}: must be an integer`);
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
