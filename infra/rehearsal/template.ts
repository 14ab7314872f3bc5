/**
 * Reading and resolving a synthesized CloudFormation template for the deploy rehearsal.
 *
 * The rehearsal runs the system as the template describes it, so every value a function, a role or
 * a route sees has to be the value CloudFormation would give it: intrinsic functions resolved,
 * `Ref`/`Fn::GetAtt` answered with physical ids shaped like the real ones. Nothing here touches the
 * network or AWS; the physical ids are invented (stably, from the stack and logical id) by a
 * {@link PhysicalIds} strategy the rehearsal can override per resource.
 */
import { createHash } from 'node:crypto';

// ---------------------------------------------------------------------------------------------
// Template shapes
// ---------------------------------------------------------------------------------------------

/** One resource of a template, as synthesized (values may hold intrinsic functions). */
export interface CfnResource {
  readonly Type: string;
  readonly Properties?: Record<string, unknown>;
  readonly DependsOn?: string | string[];
  readonly Metadata?: Record<string, unknown>;
  readonly Condition?: string;
  readonly DeletionPolicy?: string;
  readonly UpdateReplacePolicy?: string;
}

/** A template parameter (only what resolution needs). */
export interface CfnParameter {
  readonly Type: string;
  readonly Default?: unknown;
  readonly Description?: string;
  readonly AllowedValues?: unknown[];
}

/** The parts of a CloudFormation template the rehearsal reads. */
export interface CfnTemplate {
  readonly Description?: string;
  readonly Parameters?: Record<string, CfnParameter>;
  readonly Mappings?: Record<string, Record<string, Record<string, unknown>>>;
  readonly Conditions?: Record<string, unknown>;
  readonly Resources: Record<string, CfnResource>;
  readonly Outputs?: Record<string, { Value: unknown; Description?: string; Export?: unknown; Condition?: string }>;
  readonly Rules?: Record<string, unknown>;
}

/** Where the stack is (pretend to be) deployed: the values of the pseudo parameters. */
export interface StackEnvironment {
  readonly accountId: string;
  readonly region: string;
  readonly partition: string;
  readonly urlSuffix: string;
  readonly stackName: string;
  /** `arn:<partition>:cloudformation:<region>:<account>:stack/<name>/<uuid>` */
  readonly stackId: string;
}

/** Everything {@link resolve} needs. Build one with {@link createContext}. */
export interface ResolveContext {
  readonly template: CfnTemplate;
  readonly env: StackEnvironment;
  /** Values given for template parameters (strings, as `--parameters` would give them). */
  readonly parameters: Readonly<Record<string, string>>;
  /** What `Fn::GetAZs` returns. */
  readonly availabilityZones: readonly string[];
  readonly physicalIds: PhysicalIds;
}

/**
 * How `Ref` and `Fn::GetAtt` of a resource are answered. The default, {@link DefaultPhysicalIds},
 * invents ids the way CloudFormation would; the rehearsal wraps or replaces it to point names at
 * its local emulators.
 */
export interface PhysicalIds {
  /** The value of `{ Ref: logicalId }`. */
  ref(logicalId: string, ctx: ResolveContext): string;
  /** The value of `{ 'Fn::GetAtt': [logicalId, attribute] }`; throws for an attribute the type lacks. */
  getAtt(logicalId: string, attribute: string, ctx: ResolveContext): unknown;
}

/** A failure to resolve, naming the intrinsic and where in the template it was found. */
export class TemplateError extends Error {
  constructor(
    message: string,
    /** Dotted path into the template, e.g. `Resources.Fn.Properties.Environment.Variables.X` */
    readonly path: string,
  ) {
    super(path ? `${message} (at ${path})` : message);
    this.name = 'TemplateError';
  }
}

// ---------------------------------------------------------------------------------------------
// Context
// ---------------------------------------------------------------------------------------------

/** Options for {@link createContext}; every field has a realistic default. */
export interface ContextOptions {
  /** @default '123456789012' */
  readonly accountId?: string;
  /** @default 'us-east-1' */
  readonly region?: string;
  /** @default 'aws' (or `aws-cn` / `aws-us-gov` from the region) */
  readonly partition?: string;
  /** @default 'Corral' */
  readonly stackName?: string;
  readonly parameters?: Record<string, string>;
  /** @default `<region>a`, `<region>b`, `<region>c` */
  readonly availabilityZones?: readonly string[];
  /** @default a {@link DefaultPhysicalIds} with no overrides */
  readonly physicalIds?: PhysicalIds;
}

const partitionOf = (region: string) => (region.startsWith('cn-') ? 'aws-cn' : region.startsWith('us-gov-') ? 'aws-us-gov' : 'aws');

/** A resolution context for a template with realistic defaults for everything not given. */
export function createContext(template: CfnTemplate, options: ContextOptions = {}): ResolveContext {
  if (!template || typeof template !== 'object' || !template.Resources || typeof template.Resources !== 'object') {
    throw new TemplateError('not a CloudFormation template: no Resources', '');
  }
  const region = options.region ?? 'us-east-1';
  const partition = options.partition ?? partitionOf(region);
  const accountId = options.accountId ?? '123456789012';
  const stackName = options.stackName ?? 'Corral';
  const uuid = uuidFrom(`${accountId}/${region}/${stackName}`);
  return {
    template,
    env: {
      accountId,
      region,
      partition,
      urlSuffix: partition === 'aws-cn' ? 'amazonaws.com.cn' : 'amazonaws.com',
      stackName,
      stackId: `arn:${partition}:cloudformation:${region}:${accountId}:stack/${stackName}/${uuid}`,
    },
    parameters: { ...(options.parameters ?? {}) },
    availabilityZones: options.availabilityZones ?? [`${region}a`, `${region}b`, `${region}c`],
    physicalIds: options.physicalIds ?? new DefaultPhysicalIds(),
  };
}

/** Helpers accept a template (resolved with default settings) or a prepared context. */
export type TemplateOrContext = CfnTemplate | ResolveContext;
export const toContext = (input: TemplateOrContext): ResolveContext =>
  'physicalIds' in input && 'template' in input ? (input as ResolveContext) : createContext(input as CfnTemplate);

// ---------------------------------------------------------------------------------------------
// resolve
// ---------------------------------------------------------------------------------------------

/** `{ Ref: 'AWS::NoValue' }`: removes the property (or list element) holding it. */
const NO_VALUE: unique symbol = Symbol('AWS::NoValue');

const PSEUDO = new Set(['AWS::AccountId', 'AWS::Region', 'AWS::Partition', 'AWS::URLSuffix', 'AWS::StackName', 'AWS::StackId', 'AWS::NoValue', 'AWS::NotificationARNs']);

/**
 * Resolves every intrinsic function in `value` (recursively), as CloudFormation does at deploy
 * time. `path` names where `value` sits in the template and is used in error messages.
 *
 * Supported: `Ref` (resources, parameters, pseudo parameters), `Fn::GetAtt`, `Fn::Join`, `Fn::Sub`,
 * `Fn::Select`, `Fn::Split`, `Fn::If` with the template's Conditions (`Fn::Equals`, `Fn::Not`,
 * `Fn::And`, `Fn::Or`, `Condition`), `Fn::GetAZs`, `Fn::FindInMap`, `Fn::Base64`. `Fn::ImportValue`
 * and anything else throw a {@link TemplateError} naming the function and the path.
 */
export function resolve(value: unknown, ctx: ResolveContext, path = ''): unknown {
  const out = resolveInner(value, ctx, path);
  return out === NO_VALUE ? undefined : out;
}

/** {@link resolve}, then insists on a string (what most properties are). */
export function resolveString(value: unknown, ctx: ResolveContext, path = ''): string {
  const v = resolve(value, ctx, path);
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  throw new TemplateError(`expected a string, got ${JSON.stringify(v)}`, path);
}

function intrinsicName(obj: Record<string, unknown>): string | undefined {
  const keys = Object.keys(obj);
  if (keys.length !== 1) return undefined;
  const k = keys[0];
  return k === 'Ref' || k.startsWith('Fn::') ? k : undefined;
}

function resolveInner(value: unknown, ctx: ResolveContext, path: string): unknown {
  if (Array.isArray(value)) {
    const out: unknown[] = [];
    value.forEach((v, i) => {
      const r = resolveInner(v, ctx, `${path}[${i}]`);
      if (r !== NO_VALUE) out.push(r);
    });
    return out;
  }
  if (value === null || typeof value !== 'object') return value;
  const obj = value as Record<string, unknown>;
  const fn = intrinsicName(obj);
  if (fn === undefined) {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(obj)) {
      const r = resolveInner(v, ctx, path ? `${path}.${k}` : k);
      if (r !== NO_VALUE) out[k] = r;
    }
    return out;
  }
  const arg = obj[fn];
  const here = `${path}.${fn}`;
  switch (fn) {
    case 'Ref':
      return ref(arg, ctx, here);
    case 'Fn::GetAtt':
      return getAtt(arg, ctx, here);
    case 'Fn::Join': {
      const [delim, parts] = expectArray(arg, 2, fn, here);
      const list = resolveInner(parts, ctx, here);
      if (typeof delim !== 'string' || !Array.isArray(list)) throw new TemplateError('Fn::Join takes [delimiter, [values]]', here);
      return list.map((p, i) => scalar(p, `${here}[${i}]`)).join(delim);
    }
    case 'Fn::Sub':
      return sub(arg, ctx, here);
    case 'Fn::Select': {
      const [index, list] = expectArray(arg, 2, fn, here);
      const i = Number(resolveInner(index, ctx, here));
      const items = resolveInner(list, ctx, here);
      if (!Array.isArray(items)) throw new TemplateError('Fn::Select takes [index, list]', here);
      if (!Number.isInteger(i) || i < 0 || i >= items.length) throw new TemplateError(`Fn::Select index ${i} out of range (list of ${items.length})`, here);
      return items[i];
    }
    case 'Fn::Split': {
      const [delim, source] = expectArray(arg, 2, fn, here);
      const s = resolveInner(source, ctx, here);
      if (typeof delim !== 'string' || typeof s !== 'string') throw new TemplateError('Fn::Split takes [delimiter, string]', here);
      return s.split(delim);
    }
    case 'Fn::If': {
      const [cond, whenTrue, whenFalse] = expectArray(arg, 3, fn, here);
      if (typeof cond !== 'string') throw new TemplateError('Fn::If takes [conditionName, valueIfTrue, valueIfFalse]', here);
      return evaluateCondition(cond, ctx, here) ? resolveInner(whenTrue, ctx, `${here}[1]`) : resolveInner(whenFalse, ctx, `${here}[2]`);
    }
    case 'Fn::Equals':
    case 'Fn::Not':
    case 'Fn::And':
    case 'Fn::Or':
      return conditionValue(obj, ctx, path);
    case 'Fn::GetAZs': {
      const region = resolveInner(arg, ctx, here);
      if (region !== '' && region !== ctx.env.region) throw new TemplateError(`Fn::GetAZs of another region (${String(region)}) is not known here`, here);
      return [...ctx.availabilityZones];
    }
    case 'Fn::FindInMap': {
      const [map, top, second] = expectArray(arg, 3, fn, here).map((x, i) => scalar(resolveInner(x, ctx, here), `${here}[${i}]`));
      const v = ctx.template.Mappings?.[map]?.[top]?.[second];
      if (v === undefined) throw new TemplateError(`Fn::FindInMap: no ${map}.${top}.${second}`, here);
      return v;
    }
    case 'Fn::Base64':
      return Buffer.from(scalar(resolveInner(arg, ctx, here), here)).toString('base64');
    case 'Fn::ImportValue':
      throw new TemplateError('Fn::ImportValue is not supported in the rehearsal (it reads another stack)', here);
    default:
      throw new TemplateError(`unknown or unsupported intrinsic function ${fn}`, here);
  }
}

function expectArray(arg: unknown, length: number, fn: string, path: string): unknown[] {
  if (!Array.isArray(arg) || arg.length !== length) throw new TemplateError(`${fn} takes a list of ${length}`, path);
  return arg;
}

function scalar(v: unknown, path: string): string {
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  throw new TemplateError(`expected a string, got ${JSON.stringify(v)}`, path);
}

function ref(arg: unknown, ctx: ResolveContext, path: string): unknown {
  if (typeof arg !== 'string') throw new TemplateError('Ref takes a name', path);
  if (PSEUDO.has(arg)) return pseudo(arg, ctx);
  if (arg.startsWith('AWS::')) throw new TemplateError(`unknown pseudo parameter ${arg}`, path);
  const param = ctx.template.Parameters?.[arg];
  if (param) return parameterValue(arg, param, ctx, path);
  if (!ctx.template.Resources[arg]) throw new TemplateError(`Ref to ${arg}, which is neither a resource nor a parameter`, path);
  assertExists(arg, ctx, path);
  return withCycleGuard(`Ref:${arg}`, path, () => ctx.physicalIds.ref(arg, ctx));
}

function pseudo(name: string, ctx: ResolveContext): unknown {
  const e = ctx.env;
  switch (name) {
    case 'AWS::AccountId':
      return e.accountId;
    case 'AWS::Region':
      return e.region;
    case 'AWS::Partition':
      return e.partition;
    case 'AWS::URLSuffix':
      return e.urlSuffix;
    case 'AWS::StackName':
      return e.stackName;
    case 'AWS::StackId':
      return e.stackId;
    case 'AWS::NotificationARNs':
      return [];
    default:
      return NO_VALUE;
  }
}

function parameterValue(name: string, param: CfnParameter, ctx: ResolveContext, path: string): unknown {
  const given = ctx.parameters[name];
  // An SSM-typed parameter's Default is the parameter *name*; CloudFormation reads the value from SSM.
  if (given === undefined && param.Type.startsWith('AWS::SSM::Parameter::Value<')) {
    throw new TemplateError(`parameter ${name} is read from SSM (${String(param.Default)}) at deploy time; give its value`, path);
  }
  const raw = given ?? param.Default;
  if (raw === undefined) throw new TemplateError(`parameter ${name} has no value and no default`, path);
  const s = Array.isArray(raw) ? raw.join(',') : String(raw);
  if (param.Type === 'CommaDelimitedList' || param.Type.startsWith('List<') || param.Type.includes('::List<')) return s.split(',').map((x) => x.trim());
  return s;
}

function assertExists(logicalId: string, ctx: ResolveContext, path: string) {
  const cond = ctx.template.Resources[logicalId]?.Condition;
  if (cond !== undefined && !evaluateCondition(cond, ctx, path)) {
    throw new TemplateError(`${logicalId} is not created (its condition ${cond} is false)`, path);
  }
}

/** Whether a resource is created: it has no Condition, or its Condition is true. */
export function resourceExists(logicalId: string, ctx: ResolveContext): boolean {
  const r = ctx.template.Resources[logicalId];
  if (!r) return false;
  return r.Condition === undefined || evaluateCondition(r.Condition, ctx, `Resources.${logicalId}.Condition`);
}

const guard = new Set<string>();
function withCycleGuard<T>(key: string, path: string, f: () => T): T {
  if (guard.has(key)) throw new TemplateError(`circular reference through ${key}`, path);
  guard.add(key);
  try {
    return f();
  } finally {
    guard.delete(key);
  }
}

function getAtt(arg: unknown, ctx: ResolveContext, path: string): unknown {
  let logicalId: unknown;
  let attribute: unknown;
  if (typeof arg === 'string') {
    const dot = arg.indexOf('.');
    if (dot < 0) throw new TemplateError('Fn::GetAtt takes "Logical.Attribute" or [logical, attribute]', path);
    [logicalId, attribute] = [arg.slice(0, dot), arg.slice(dot + 1)];
  } else if (Array.isArray(arg) && arg.length === 2) {
    [logicalId, attribute] = [arg[0], resolveInner(arg[1], ctx, path)];
  }
  if (typeof logicalId !== 'string' || typeof attribute !== 'string') throw new TemplateError('Fn::GetAtt takes [logicalId, attribute]', path);
  if (!ctx.template.Resources[logicalId]) throw new TemplateError(`Fn::GetAtt of ${logicalId}, which is not a resource`, path);
  assertExists(logicalId, ctx, path);
  return withCycleGuard(`GetAtt:${logicalId}.${attribute}`, path, () => ctx.physicalIds.getAtt(logicalId as string, attribute as string, ctx));
}

function sub(arg: unknown, ctx: ResolveContext, path: string): string {
  let text: unknown;
  let vars: Record<string, unknown> = {};
  if (typeof arg === 'string') text = arg;
  else if (Array.isArray(arg) && arg.length === 2 && typeof arg[0] === 'string' && arg[1] && typeof arg[1] === 'object') {
    text = arg[0];
    vars = arg[1] as Record<string, unknown>;
  }
  if (typeof text !== 'string') throw new TemplateError('Fn::Sub takes a string or [string, {variables}]', path);
  return text.replace(/\$\{([^}]*)\}/g, (_m, inner: string) => {
    // `${!Literal}` writes `${Literal}` verbatim.
    if (inner.startsWith('!')) return '${' + inner.slice(1) + '}';
    const name = inner.trim();
    if (name in vars) return scalar(resolveInner(vars[name], ctx, `${path}.${name}`), `${path}.${name}`);
    if (PSEUDO.has(name) || ctx.template.Parameters?.[name] || ctx.template.Resources[name]) {
      const v = ref(name, ctx, path);
      return Array.isArray(v) ? v.join(',') : scalar(v, path);
    }
    const dot = name.indexOf('.');
    if (dot > 0 && ctx.template.Resources[name.slice(0, dot)]) return scalar(getAtt(name, ctx, path), path);
    throw new TemplateError(`Fn::Sub: \${${name}} names no variable, parameter or resource`, path);
  });
}

/** The value of the named condition of the template's `Conditions`. */
export function evaluateCondition(name: string, ctx: ResolveContext, path = ''): boolean {
  const def = ctx.template.Conditions?.[name];
  if (def === undefined) throw new TemplateError(`no condition named ${name}`, path);
  return withCycleGuard(`Condition:${name}`, path, () => conditionValue(def, ctx, `Conditions.${name}`));
}

function conditionValue(def: unknown, ctx: ResolveContext, path: string): boolean {
  if (typeof def === 'boolean') return def;
  if (def === 'true' || def === 'false') return def === 'true';
  if (!def || typeof def !== 'object' || Array.isArray(def)) throw new TemplateError(`not a condition: ${JSON.stringify(def)}`, path);
  const obj = def as Record<string, unknown>;
  const keys = Object.keys(obj);
  if (keys.length !== 1) throw new TemplateError(`not a condition: ${JSON.stringify(def)}`, path);
  const [k] = keys;
  const arg = obj[k];
  const here = `${path}.${k}`;
  switch (k) {
    case 'Condition':
      if (typeof arg !== 'string') throw new TemplateError('Condition takes a name', here);
      return evaluateCondition(arg, ctx, here);
    case 'Fn::Equals': {
      const [a, b] = expectArray(arg, 2, k, here).map((x) => resolveInner(x, ctx, here));
      return JSON.stringify(normalizeScalar(a)) === JSON.stringify(normalizeScalar(b));
    }
    case 'Fn::Not':
      return !conditionValue(expectArray(arg, 1, k, here)[0], ctx, here);
    case 'Fn::And':
    case 'Fn::Or': {
      if (!Array.isArray(arg) || arg.length < 2 || arg.length > 10) throw new TemplateError(`${k} takes 2 to 10 conditions`, here);
      const values = arg.map((c, i) => conditionValue(c, ctx, `${here}[${i}]`));
      return k === 'Fn::And' ? values.every(Boolean) : values.some(Boolean);
    }
    default: {
      const v = resolveInner(def, ctx, path);
      if (typeof v === 'boolean') return v;
      if (v === 'true' || v === 'false') return v === 'true';
      throw new TemplateError(`${k} does not give a condition value`, here);
    }
  }
}

const normalizeScalar = (v: unknown) => (typeof v === 'number' || typeof v === 'boolean' ? String(v) : v);

// ---------------------------------------------------------------------------------------------
// Physical ids
// ---------------------------------------------------------------------------------------------

/**
 * The answer of a CDK AwsCustomResource (`Custom::AWS`) the rehearsal knows, resolved here rather
 * than by running its provider: that function is CDK's, not Corral's, and would need the EC2 client
 * of the Lambda runtime's SDK and an EC2 stand-in to call. The one known: the proxy service's S3
 * prefix list lookup (EC2 DescribeManagedPrefixLists for `com.amazonaws.<region>.s3`), answered
 * with a `pl-` id stable per region, as EC2 would. Undefined for any other call or attribute.
 */
function awsCustomResourceAnswer(logicalId: string, attribute: string, ctx: ResolveContext): unknown {
  const create = ctx.template.Resources[logicalId]?.Properties?.Create;
  if (create === undefined) return undefined;
  const call = JSON.parse(resolveString(create, ctx, `Resources.${logicalId}.Properties.Create`)) as {
    service?: string;
    action?: string;
    parameters?: { Filters?: Array<{ Name?: string; Values?: string[] }> };
  };
  const s3List = `com.amazonaws.${ctx.env.region}.s3`;
  const isS3PrefixListLookup =
    call.service === 'EC2' &&
    /^describeManagedPrefixLists(Command)?$/i.test(call.action ?? '') &&
    JSON.stringify(call.parameters?.Filters) === JSON.stringify([{ Name: 'prefix-list-name', Values: [s3List] }]);
  if (!isS3PrefixListLookup || attribute !== 'PrefixLists.0.PrefixListId') return undefined;
  return `pl-${stableChars(s3List, 8, HEX)}`;
}

/** A fixed answer for one resource, replacing what the default strategy would invent. */
export interface PhysicalIdOverride {
  /** The physical name: drives Ref and every ARN derived from it (e.g. a table name). */
  readonly name?: string;
  /** The value of `Ref`, when it is not the name (e.g. a queue URL). */
  readonly ref?: string;
  /** Values of `Fn::GetAtt` attributes. */
  readonly attributes?: Readonly<Record<string, unknown>>;
}

/** Options of {@link DefaultPhysicalIds}. */
export interface DefaultPhysicalIdsOptions {
  /**
   * Queue URLs are `<base>/<name>`. A function of the environment so it can follow the region.
   * @default `https://sqs.<region>.<urlSuffix>/<account>`
   */
  readonly queueUrlBase?: string | ((env: StackEnvironment) => string);
  /** Per logical id. */
  readonly overrides?: Readonly<Record<string, PhysicalIdOverride>>;
}

/** Deterministic pseudo-random characters from a seed, standing in for CloudFormation's suffixes. */
function stableChars(seed: string, n: number, alphabet: string): string {
  let out = '';
  let counter = 0;
  while (out.length < n) {
    const h = createHash('sha256').update(`${seed}#${counter++}`).digest();
    for (const byte of h) {
      if (out.length >= n) break;
      out += alphabet[byte % alphabet.length];
    }
  }
  return out;
}
const UPPER_ALNUM = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789';
const MIXED_ALNUM = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
const LOWER_ALNUM = 'abcdefghijklmnopqrstuvwxyz0123456789';
const HEX = '0123456789abcdef';

function uuidFrom(seed: string): string {
  const h = stableChars(seed, 32, HEX);
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/**
 * A CloudFormation-generated name: `<stack>-<logicalId>-<suffix>`, with the stack and logical id
 * parts shortened (as CloudFormation does) so the whole fits `maxLength`.
 */
export function generatedName(stackName: string, logicalId: string, opts: { maxLength: number; suffixLength?: number; alphabet?: string; tail?: string }): string {
  const suffixLength = opts.suffixLength ?? 12;
  const suffix = stableChars(`${stackName}/${logicalId}`, suffixLength, opts.alphabet ?? MIXED_ALNUM);
  const tail = opts.tail ?? '';
  let budget = opts.maxLength - suffixLength - tail.length - 2;
  let stack = stackName;
  let logical = logicalId;
  if (stack.length + logical.length > budget) {
    // Keep as much of each as fits, the stack name first capped to half the budget.
    stack = stack.slice(0, Math.max(1, Math.min(stack.length, Math.floor(budget / 2))));
    budget -= stack.length;
    logical = logical.slice(0, Math.max(1, budget));
  }
  return `${stack}-${logical}-${suffix}${tail}`;
}

/**
 * Invents stable, realistic physical ids per resource type, as CloudFormation would for a stack
 * deployed in `ctx.env`: generated names where the template gives none, ARNs in each service's
 * format, `sg-`/`subnet-`/`vpc-` ids, API Gateway ids. Types it does not know get a generated name
 * for `Ref` and an ARN-shaped `Arn`; any other attribute of them is an error.
 */
export class DefaultPhysicalIds implements PhysicalIds {
  constructor(private readonly options: DefaultPhysicalIdsOptions = {}) {}

  private props(logicalId: string, ctx: ResolveContext): Record<string, unknown> {
    return ctx.template.Resources[logicalId]?.Properties ?? {};
  }

  /** A property resolved, or undefined when absent. */
  private prop(logicalId: string, name: string, ctx: ResolveContext): unknown {
    const v = this.props(logicalId, ctx)[name];
    return v === undefined ? undefined : resolve(v, ctx, `Resources.${logicalId}.Properties.${name}`);
  }

  private nameProp(logicalId: string, name: string, ctx: ResolveContext): string | undefined {
    const o = this.options.overrides?.[logicalId]?.name;
    if (o !== undefined) return o;
    const v = this.prop(logicalId, name, ctx);
    return v === undefined ? undefined : String(v);
  }

  private arn(ctx: ResolveContext, service: string, resource: string, opts: { region?: boolean; account?: boolean } = {}): string {
    const { partition, region, accountId } = ctx.env;
    return `arn:${partition}:${service}:${opts.region === false ? '' : region}:${opts.account === false ? '' : accountId}:${resource}`;
  }

  /** The physical name of a named resource type (tables, queues, functions, roles, ...). */
  name(logicalId: string, ctx: ResolveContext): string {
    const r = ctx.template.Resources[logicalId];
    if (!r) throw new TemplateError(`no resource ${logicalId}`, '');
    const stack = ctx.env.stackName;
    const gen = (maxLength: number, extra: Partial<Parameters<typeof generatedName>[2]> = {}) => generatedName(stack, logicalId, { maxLength, ...extra });
    switch (r.Type) {
      case 'AWS::DynamoDB::Table':
        return this.nameProp(logicalId, 'TableName', ctx) ?? gen(255, { suffixLength: 13, alphabet: UPPER_ALNUM });
      case 'AWS::SQS::Queue': {
        const fifo = isTrue(this.prop(logicalId, 'FifoQueue', ctx));
        return this.nameProp(logicalId, 'QueueName', ctx) ?? gen(80, { alphabet: MIXED_ALNUM, tail: fifo ? '.fifo' : '' });
      }
      case 'AWS::Lambda::Function':
        return this.nameProp(logicalId, 'FunctionName', ctx) ?? gen(64);
      case 'AWS::IAM::Role':
        return this.nameProp(logicalId, 'RoleName', ctx) ?? gen(64, { alphabet: UPPER_ALNUM });
      case 'AWS::ECS::Cluster':
        return this.nameProp(logicalId, 'ClusterName', ctx) ?? gen(255);
      case 'AWS::ECS::Service':
        return this.nameProp(logicalId, 'ServiceName', ctx) ?? gen(255);
      case 'AWS::ECS::TaskDefinition':
        // The family: CDK sets it; CloudFormation would use `<stack>-<logicalId>-<suffix>`.
        return this.nameProp(logicalId, 'Family', ctx) ?? gen(255);
      case 'AWS::Logs::LogGroup':
        return this.nameProp(logicalId, 'LogGroupName', ctx) ?? gen(512);
      case 'AWS::SNS::Topic':
        return this.nameProp(logicalId, 'TopicName', ctx) ?? gen(256, { alphabet: UPPER_ALNUM });
      case 'AWS::Events::Rule':
        return this.nameProp(logicalId, 'Name', ctx) ?? gen(64, { alphabet: UPPER_ALNUM });
      case 'AWS::SecretsManager::Secret':
        return this.nameProp(logicalId, 'Name', ctx) ?? `${logicalId}-${stableChars(`${stack}/${logicalId}`, 12, MIXED_ALNUM)}`;
      case 'AWS::SSM::Parameter':
        return this.nameProp(logicalId, 'Name', ctx) ?? `CFN-${logicalId}-${stableChars(`${stack}/${logicalId}`, 12, MIXED_ALNUM)}`;
      case 'AWS::S3::Bucket':
        return this.nameProp(logicalId, 'BucketName', ctx) ?? gen(63, { alphabet: LOWER_ALNUM }).toLowerCase();
      case 'AWS::ApiGateway::Stage':
        return this.nameProp(logicalId, 'StageName', ctx) ?? 'prod';
      case 'AWS::IAM::Policy':
        return this.nameProp(logicalId, 'PolicyName', ctx) ?? gen(128, { alphabet: UPPER_ALNUM });
      case 'AWS::CloudWatch::Dashboard':
        return this.nameProp(logicalId, 'DashboardName', ctx) ?? gen(255);
      case 'AWS::CloudWatch::Alarm':
        return this.nameProp(logicalId, 'AlarmName', ctx) ?? gen(255, { alphabet: UPPER_ALNUM });
      case 'AWS::Scheduler::ScheduleGroup':
        return this.nameProp(logicalId, 'Name', ctx) ?? gen(64);
      default:
        return this.options.overrides?.[logicalId]?.name ?? gen(255);
    }
  }

  /** A stable id with a type prefix, e.g. `sg-0a1b2c3d4e5f60718`. */
  private ec2Id(prefix: string, logicalId: string, ctx: ResolveContext) {
    return `${prefix}-0${stableChars(`${ctx.env.accountId}/${ctx.env.stackName}/${logicalId}`, 16, HEX)}`;
  }

  private apiId(logicalId: string, ctx: ResolveContext, n: number, salt = '') {
    return stableChars(`${ctx.env.stackName}/${logicalId}${salt}`, n, LOWER_ALNUM);
  }

  ref(logicalId: string, ctx: ResolveContext): string {
    const o = this.options.overrides?.[logicalId];
    if (o?.ref !== undefined) return o.ref;
    const r = ctx.template.Resources[logicalId];
    switch (r.Type) {
      case 'AWS::SQS::Queue': {
        const base = this.options.queueUrlBase;
        const b = base === undefined ? `https://sqs.${ctx.env.region}.${ctx.env.urlSuffix}/${ctx.env.accountId}` : typeof base === 'string' ? base : base(ctx.env);
        return `${b.replace(/\/+$/, '')}/${this.name(logicalId, ctx)}`;
      }
      case 'AWS::ECS::TaskDefinition':
      case 'AWS::SNS::Topic':
      case 'AWS::SecretsManager::Secret':
        return String(this.getAtt(logicalId, arnAttribute(r.Type), ctx));
      case 'AWS::EC2::SecurityGroup':
        return this.ec2Id('sg', logicalId, ctx);
      case 'AWS::EC2::Subnet':
        return this.ec2Id('subnet', logicalId, ctx);
      case 'AWS::EC2::VPC':
        return this.ec2Id('vpc', logicalId, ctx);
      case 'AWS::EC2::RouteTable':
        return this.ec2Id('rtb', logicalId, ctx);
      case 'AWS::EC2::InternetGateway':
        return this.ec2Id('igw', logicalId, ctx);
      case 'AWS::EC2::NatGateway':
        return this.ec2Id('nat', logicalId, ctx);
      case 'AWS::EC2::VPCEndpoint':
        return this.ec2Id('vpce', logicalId, ctx);
      case 'AWS::EC2::EIP':
        return `203.0.113.${(parseInt(stableChars(logicalId, 2, HEX), 16) % 250) + 1}`;
      case 'AWS::ElasticLoadBalancingV2::LoadBalancer': {
        const full = String(this.getAtt(logicalId, 'LoadBalancerFullName', ctx));
        return this.arn(ctx, 'elasticloadbalancing', `loadbalancer/${full}`);
      }
      case 'AWS::ElasticLoadBalancingV2::TargetGroup':
        return this.arn(ctx, 'elasticloadbalancing', String(this.getAtt(logicalId, 'TargetGroupFullName', ctx)));
      case 'AWS::ElasticLoadBalancingV2::Listener':
        return this.arn(ctx, 'elasticloadbalancing', `listener/${logicalId}/${stableChars(`${ctx.env.stackName}/${logicalId}`, 16, HEX)}`);
      case 'AWS::ECS::Service': {
        const cluster = String(resolve(this.props(logicalId, ctx).Cluster ?? 'default', ctx, `Resources.${logicalId}.Properties.Cluster`));
        return this.arn(ctx, 'ecs', `service/${cluster.replace(/^.*:cluster\//, '')}/${this.name(logicalId, ctx)}`);
      }
      case 'AWS::ApiGateway::VpcLink':
        return this.apiId(logicalId, ctx, 6);
      case 'AWS::ApiGateway::RestApi':
        return this.apiId(logicalId, ctx, 10);
      case 'AWS::ApiGateway::Resource':
      case 'AWS::ApiGateway::Deployment':
        return this.apiId(logicalId, ctx, 6);
      case 'AWS::KMS::Key':
        return uuidFrom(`${ctx.env.accountId}/${ctx.env.stackName}/${logicalId}`);
      case 'AWS::Lambda::EventSourceMapping':
        return uuidFrom(`${ctx.env.stackName}/${logicalId}`);
      default:
        return this.name(logicalId, ctx);
    }
  }

  getAtt(logicalId: string, attribute: string, ctx: ResolveContext): unknown {
    const o = this.options.overrides?.[logicalId];
    if (o?.attributes && attribute in o.attributes) return o.attributes[attribute];
    const r = ctx.template.Resources[logicalId];
    const fail = () => {
      throw new TemplateError(`${r.Type} ${logicalId} has no attribute ${attribute} (known to the rehearsal)`, '');
    };
    const name = () => this.name(logicalId, ctx);
    switch (r.Type) {
      case 'Custom::AWS':
        return awsCustomResourceAnswer(logicalId, attribute, ctx) ?? fail();
      case 'AWS::DynamoDB::Table': {
        const arn = this.arn(ctx, 'dynamodb', `table/${name()}`);
        if (attribute === 'Arn') return arn;
        if (attribute === 'StreamArn') {
          if (!this.prop(logicalId, 'StreamSpecification', ctx)) throw new TemplateError(`${logicalId} has no stream (no StreamSpecification)`, '');
          return `${arn}/stream/2024-01-01T00:00:00.000`;
        }
        return fail();
      }
      case 'AWS::SQS::Queue':
        if (attribute === 'Arn') return this.arn(ctx, 'sqs', name());
        if (attribute === 'QueueName') return name();
        if (attribute === 'QueueUrl') return this.ref(logicalId, ctx);
        return fail();
      case 'AWS::Lambda::Function':
        if (attribute === 'Arn') return this.arn(ctx, 'lambda', `function:${name()}`);
        return fail();
      case 'AWS::IAM::Role': {
        const p = String(this.prop(logicalId, 'Path', ctx) ?? '/');
        if (attribute === 'Arn') return this.arn(ctx, 'iam', `role${p}${name()}`, { region: false });
        if (attribute === 'RoleId') return `AROA${stableChars(`${ctx.env.accountId}/${ctx.env.stackName}/${logicalId}`, 17, UPPER_ALNUM)}`;
        return fail();
      }
      case 'AWS::ECS::Cluster':
        if (attribute === 'Arn') return this.arn(ctx, 'ecs', `cluster/${name()}`);
        return fail();
      case 'AWS::ECS::TaskDefinition':
        if (attribute === 'TaskDefinitionArn') return this.arn(ctx, 'ecs', `task-definition/${name()}:1`);
        return fail();
      case 'AWS::EC2::SecurityGroup':
        if (attribute === 'GroupId') return this.ref(logicalId, ctx);
        if (attribute === 'VpcId') return this.prop(logicalId, 'VpcId', ctx);
        return fail();
      case 'AWS::EC2::Subnet':
        if (attribute === 'SubnetId') return this.ref(logicalId, ctx);
        if (attribute === 'AvailabilityZone') return this.prop(logicalId, 'AvailabilityZone', ctx) ?? ctx.availabilityZones[0];
        if (attribute === 'VpcId') return this.prop(logicalId, 'VpcId', ctx);
        if (attribute === 'CidrBlock') return this.prop(logicalId, 'CidrBlock', ctx);
        return fail();
      case 'AWS::EC2::VPC':
        if (attribute === 'VpcId') return this.ref(logicalId, ctx);
        if (attribute === 'CidrBlock') return this.prop(logicalId, 'CidrBlock', ctx);
        if (attribute === 'DefaultSecurityGroup') return this.ec2Id('sg', `${logicalId}/default`, ctx);
        if (attribute === 'DefaultNetworkAcl') return this.ec2Id('acl', `${logicalId}/default`, ctx);
        return fail();
      case 'AWS::Logs::LogGroup':
        if (attribute === 'Arn') return this.arn(ctx, 'logs', `log-group:${name()}:*`);
        return fail();
      case 'AWS::SNS::Topic':
        if (attribute === 'TopicArn') return this.arn(ctx, 'sns', name());
        if (attribute === 'TopicName') return name();
        return fail();
      case 'AWS::ApiGateway::RestApi':
        if (attribute === 'RestApiId') return this.ref(logicalId, ctx);
        if (attribute === 'RootResourceId') return this.apiId(logicalId, ctx, 10, '/root');
        return fail();
      case 'AWS::ApiGateway::Resource':
        if (attribute === 'ResourceId') return this.ref(logicalId, ctx);
        return fail();
      case 'AWS::ApiGateway::Deployment':
        if (attribute === 'DeploymentId') return this.ref(logicalId, ctx);
        return fail();
      case 'AWS::Events::Rule':
        if (attribute === 'Arn') return this.arn(ctx, 'events', `rule/${name()}`);
        return fail();
      case 'AWS::EC2::EIP':
        if (attribute === 'AllocationId') return this.ec2Id('eipalloc', logicalId, ctx);
        if (attribute === 'PublicIp') return this.ref(logicalId, ctx);
        return fail();
      case 'AWS::ElasticLoadBalancingV2::LoadBalancer': {
        // `app/` or `net/<name>/<id>`, as ELB names them; the DNS name is the name and the id.
        const lbName = name().slice(0, 32).replace(/-+$/, '');
        const lbId = stableChars(`${ctx.env.accountId}/${ctx.env.stackName}/${logicalId}`, 16, HEX);
        const kind = this.prop(logicalId, 'Type', ctx) === 'network' ? 'net' : 'app';
        if (attribute === 'LoadBalancerFullName') return `${kind}/${lbName}/${lbId}`;
        if (attribute === 'LoadBalancerName') return lbName;
        if (attribute === 'DNSName') return `${lbName}-${lbId}.elb.${ctx.env.region}.${ctx.env.urlSuffix}`.toLowerCase();
        if (attribute === 'LoadBalancerArn') return this.ref(logicalId, ctx);
        return fail();
      }
      case 'AWS::ElasticLoadBalancingV2::TargetGroup': {
        const tgName = name().slice(0, 32).replace(/-+$/, '');
        const tgId = stableChars(`${ctx.env.accountId}/${ctx.env.stackName}/${logicalId}`, 16, HEX);
        if (attribute === 'TargetGroupFullName') return `targetgroup/${tgName}/${tgId}`;
        if (attribute === 'TargetGroupName') return tgName;
        if (attribute === 'TargetGroupArn') return this.ref(logicalId, ctx);
        return fail();
      }
      case 'AWS::ECS::Service':
        if (attribute === 'Name') return name();
        if (attribute === 'ServiceArn') return this.ref(logicalId, ctx);
        return fail();
      case 'AWS::CloudWatch::Alarm':
        if (attribute === 'Arn') return this.arn(ctx, 'cloudwatch', `alarm:${name()}`);
        return fail();
      case 'AWS::SecretsManager::Secret':
        if (attribute === 'Id') return this.arn(ctx, 'secretsmanager', `secret:${name()}-${stableChars(`${ctx.env.stackName}/${logicalId}/secret`, 6, MIXED_ALNUM)}`);
        return fail();
      case 'AWS::SSM::Parameter':
        if (attribute === 'Type') return this.prop(logicalId, 'Type', ctx);
        if (attribute === 'Value') return this.prop(logicalId, 'Value', ctx);
        return fail();
      case 'AWS::KMS::Key':
        if (attribute === 'Arn') return this.arn(ctx, 'kms', `key/${this.ref(logicalId, ctx)}`);
        if (attribute === 'KeyId') return this.ref(logicalId, ctx);
        return fail();
      case 'AWS::S3::Bucket': {
        const n = name();
        if (attribute === 'Arn') return `arn:${ctx.env.partition}:s3:::${n}`;
        if (attribute === 'DomainName') return `${n}.s3.${ctx.env.urlSuffix}`;
        if (attribute === 'RegionalDomainName') return `${n}.s3.${ctx.env.region}.${ctx.env.urlSuffix}`;
        if (attribute === 'WebsiteURL') return `http://${n}.s3-website-${ctx.env.region}.${ctx.env.urlSuffix}`;
        return fail();
      }
      default:
        if (attribute === 'Arn') {
          const service = r.Type.split('::')[1]?.toLowerCase() ?? 'unknown';
          return this.arn(ctx, service, `${r.Type.split('::')[2]?.toLowerCase() ?? 'resource'}/${this.ref(logicalId, ctx)}`);
        }
        return fail();
    }
  }
}

function arnAttribute(type: string): string {
  return type === 'AWS::ECS::TaskDefinition' ? 'TaskDefinitionArn' : type === 'AWS::SNS::Topic' ? 'TopicArn' : 'Id';
}

const isTrue = (v: unknown) => v === true || v === 'true';

// ---------------------------------------------------------------------------------------------
// Helpers: the parts of the template the rehearsal runs
// ---------------------------------------------------------------------------------------------

const asArray = <T>(v: T | T[] | undefined): T[] => (v === undefined ? [] : Array.isArray(v) ? v : [v]);

/** Logical ids of the created resources of a type, in template order. */
export function resourcesOfType(ctx: ResolveContext, type: string): string[] {
  return Object.entries(ctx.template.Resources)
    .filter(([id, r]) => r.Type === type && resourceExists(id, ctx))
    .map(([id]) => id);
}

/** The logical id a value refers to, when it is `{Ref: X}` or `{Fn::GetAtt: [X, ...]}` (unresolved). */
export function referencedLogicalId(value: unknown): string | undefined {
  if (!value || typeof value !== 'object' || Array.isArray(value)) return undefined;
  const v = value as Record<string, unknown>;
  if (typeof v.Ref === 'string' && !v.Ref.startsWith('AWS::')) return v.Ref;
  const g = v['Fn::GetAtt'];
  if (Array.isArray(g) && typeof g[0] === 'string') return g[0];
  if (typeof g === 'string' && g.includes('.')) return g.slice(0, g.indexOf('.'));
  return undefined;
}

function propsOf(ctx: ResolveContext, logicalId: string): { raw: Record<string, unknown>; get: (name: string) => unknown } {
  const raw = ctx.template.Resources[logicalId].Properties ?? {};
  return { raw, get: (name) => (raw[name] === undefined ? undefined : resolve(raw[name], ctx, `Resources.${logicalId}.Properties.${name}`)) };
}

function stringMap(v: unknown, path: string): Record<string, string> {
  if (v === undefined) return {};
  if (!v || typeof v !== 'object' || Array.isArray(v)) throw new TemplateError('expected a map of strings', path);
  const out: Record<string, string> = {};
  for (const [k, x] of Object.entries(v)) out[k] = scalar(x, `${path}.${k}`);
  return out;
}

const num = (v: unknown, dflt?: number): number | undefined => (v === undefined ? dflt : Number(v));

/** A Lambda function of the template, resolved. */
export interface FunctionInfo {
  readonly logicalId: string;
  readonly functionName: string;
  readonly arn: string;
  readonly description?: string;
  /** e.g. `index.handler` */
  readonly handler: string;
  /** e.g. `nodejs22.x` */
  readonly runtime: string;
  /** Seconds (Lambda's default 3 when the template gives none). */
  readonly timeout: number;
  /** MiB (default 128). */
  readonly memorySize: number;
  readonly reservedConcurrency?: number;
  readonly architecture: string;
  /** `Metadata['aws:asset:path']`: the bundled code, relative to the cloud assembly directory. */
  readonly assetPath?: string;
  /** Environment variables, every value a string. */
  readonly environment: Readonly<Record<string, string>>;
  /** The logical id of the execution role, when the role is in the template. */
  readonly roleLogicalId?: string;
  readonly roleArn: string;
  /** Present for functions attached to a VPC. */
  readonly vpc?: { readonly securityGroupIds: string[]; readonly securityGroupLogicalIds: string[]; readonly subnetIds: string[] };
  /** The log group the function writes to, when the template names one. */
  readonly logGroup?: string;
}

/** Every `AWS::Lambda::Function` of the template, resolved. */
export function functions(input: TemplateOrContext): FunctionInfo[] {
  const ctx = toContext(input);
  return resourcesOfType(ctx, 'AWS::Lambda::Function').map((id) => {
    const r = ctx.template.Resources[id];
    const p = propsOf(ctx, id);
    const env = p.get('Environment') as { Variables?: unknown } | undefined;
    const vpc = p.get('VpcConfig') as { SecurityGroupIds?: string[]; SubnetIds?: string[] } | undefined;
    const rawVpc = p.raw.VpcConfig as { SecurityGroupIds?: unknown[] } | undefined;
    const logging = p.get('LoggingConfig') as { LogGroup?: string } | undefined;
    const architectures = p.get('Architectures') as string[] | undefined;
    const asset = r.Metadata?.['aws:asset:path'];
    return {
      logicalId: id,
      functionName: ctx.physicalIds.ref(id, ctx),
      arn: String(ctx.physicalIds.getAtt(id, 'Arn', ctx)),
      description: p.get('Description') as string | undefined,
      handler: String(p.get('Handler') ?? ''),
      runtime: String(p.get('Runtime') ?? ''),
      timeout: num(p.get('Timeout'), 3)!,
      memorySize: num(p.get('MemorySize'), 128)!,
      reservedConcurrency: num(p.get('ReservedConcurrentExecutions')),
      architecture: architectures?.[0] ?? 'x86_64',
      assetPath: typeof asset === 'string' ? asset : undefined,
      environment: stringMap(env?.Variables, `Resources.${id}.Properties.Environment.Variables`),
      roleLogicalId: referencedLogicalId(p.raw.Role),
      roleArn: String(p.get('Role')),
      vpc: vpc
        ? {
            securityGroupIds: asArray(vpc.SecurityGroupIds).map(String),
            securityGroupLogicalIds: asArray(rawVpc?.SecurityGroupIds).map(referencedLogicalId).filter((x): x is string => !!x),
            subnetIds: asArray(vpc.SubnetIds).map(String),
          }
        : undefined,
      logGroup: logging?.LogGroup,
    };
  });
}

/** An event source mapping (e.g. SQS → function). */
export interface EventSourceMappingInfo {
  readonly logicalId: string;
  readonly functionLogicalId?: string;
  readonly functionName: string;
  readonly eventSourceArn?: string;
  /** The logical id of the source (queue, table) when it is in the template. */
  readonly sourceLogicalId?: string;
  /** Lambda's defaults: 10 for SQS. */
  readonly batchSize: number;
  readonly maximumBatchingWindowInSeconds: number;
  readonly functionResponseTypes: string[];
  readonly enabled: boolean;
  readonly maximumConcurrency?: number;
}

/** Every `AWS::Lambda::EventSourceMapping`, resolved. */
export function eventSourceMappings(input: TemplateOrContext): EventSourceMappingInfo[] {
  const ctx = toContext(input);
  return resourcesOfType(ctx, 'AWS::Lambda::EventSourceMapping').map((id) => {
    const p = propsOf(ctx, id);
    const scaling = p.get('ScalingConfig') as { MaximumConcurrency?: number } | undefined;
    return {
      logicalId: id,
      functionLogicalId: referencedLogicalId(p.raw.FunctionName),
      functionName: String(p.get('FunctionName')),
      eventSourceArn: p.get('EventSourceArn') as string | undefined,
      sourceLogicalId: referencedLogicalId(p.raw.EventSourceArn),
      batchSize: num(p.get('BatchSize'), 10)!,
      maximumBatchingWindowInSeconds: num(p.get('MaximumBatchingWindowInSeconds'), 0)!,
      functionResponseTypes: asArray(p.get('FunctionResponseTypes') as string[] | undefined),
      enabled: p.get('Enabled') === undefined ? true : isTrue(p.get('Enabled')),
      maximumConcurrency: num(scaling?.MaximumConcurrency),
    };
  });
}

/** One security group rule. Ports are inclusive; protocol `-1` means all (ports then absent). */
export interface SecurityGroupRule {
  readonly ipProtocol: string;
  readonly fromPort?: number;
  readonly toPort?: number;
  readonly cidrIp?: string;
  readonly cidrIpv6?: string;
  /** The peer group (source for ingress, destination for egress). */
  readonly peerGroupId?: string;
  readonly peerGroupLogicalId?: string;
  readonly description?: string;
  /** True for the allow-all egress AWS adds when the template specifies no egress rules. */
  readonly implicit?: boolean;
  /** Where the rule is written: the group's own property, or a separate resource. */
  readonly definedIn: string;
}

export interface SecurityGroupInfo {
  readonly logicalId: string;
  readonly groupId: string;
  readonly description: string;
  readonly vpcId?: string;
  readonly ingress: SecurityGroupRule[];
  readonly egress: SecurityGroupRule[];
}

function rule(raw: Record<string, unknown>, resolved: Record<string, unknown>, direction: 'ingress' | 'egress', definedIn: string): SecurityGroupRule {
  const peerKey = direction === 'ingress' ? 'SourceSecurityGroupId' : 'DestinationSecurityGroupId';
  const protocol = String(resolved.IpProtocol ?? '-1');
  const all = protocol === '-1' || protocol === 'all';
  return {
    ipProtocol: all ? '-1' : protocol.toLowerCase(),
    fromPort: all ? undefined : num(resolved.FromPort),
    toPort: all ? undefined : num(resolved.ToPort),
    cidrIp: resolved.CidrIp as string | undefined,
    cidrIpv6: resolved.CidrIpv6 as string | undefined,
    peerGroupId: resolved[peerKey] as string | undefined,
    peerGroupLogicalId: referencedLogicalId(raw[peerKey]),
    description: resolved.Description as string | undefined,
    definedIn,
  };
}

/**
 * Every security group with all its rules: inline `SecurityGroupIngress`/`SecurityGroupEgress` and
 * the separate `AWS::EC2::SecurityGroupIngress`/`Egress` resources that name it. As on AWS, a group
 * whose template gives no `SecurityGroupEgress` allows all outbound traffic (marked `implicit`).
 */
export function securityGroups(input: TemplateOrContext): SecurityGroupInfo[] {
  const ctx = toContext(input);
  const groups = resourcesOfType(ctx, 'AWS::EC2::SecurityGroup').map((id) => {
    const p = propsOf(ctx, id);
    const rawIn = asArray(p.raw.SecurityGroupIngress as Record<string, unknown>[] | undefined);
    const rawOut = asArray(p.raw.SecurityGroupEgress as Record<string, unknown>[] | undefined);
    const resIn = asArray(p.get('SecurityGroupIngress') as Record<string, unknown>[] | undefined);
    const resOut = asArray(p.get('SecurityGroupEgress') as Record<string, unknown>[] | undefined);
    const egress = resOut.map((r, i) => rule(rawOut[i] ?? {}, r, 'egress', id));
    if (p.raw.SecurityGroupEgress === undefined) egress.push({ ipProtocol: '-1', cidrIp: '0.0.0.0/0', implicit: true, definedIn: id });
    return {
      logicalId: id,
      groupId: ctx.physicalIds.ref(id, ctx),
      description: String(p.get('GroupDescription') ?? ''),
      vpcId: p.get('VpcId') as string | undefined,
      ingress: resIn.map((r, i) => rule(rawIn[i] ?? {}, r, 'ingress', id)),
      egress,
    };
  });
  const byId = new Map(groups.map((g) => [g.groupId, g]));
  for (const [type, direction] of [
    ['AWS::EC2::SecurityGroupIngress', 'ingress'],
    ['AWS::EC2::SecurityGroupEgress', 'egress'],
  ] as const) {
    for (const id of resourcesOfType(ctx, type)) {
      const raw = ctx.template.Resources[id].Properties ?? {};
      const resolved = resolve(raw, ctx, `Resources.${id}.Properties`) as Record<string, unknown>;
      const g = byId.get(String(resolved.GroupId));
      if (!g) throw new TemplateError(`${type} ${id} names group ${String(resolved.GroupId)}, which is not in the template`, `Resources.${id}`);
      g[direction].push(rule(raw, resolved, direction, id));
    }
  }
  return groups;
}

/** A REST API with its resource tree and methods. */
export interface RestApiInfo {
  readonly logicalId: string;
  readonly id: string;
  readonly name?: string;
  readonly rootResourceId: string;
  /** Every resource including the root (`path: '/'`). */
  readonly resources: Array<{ logicalId?: string; id: string; parentId?: string; pathPart: string; path: string }>;
  readonly methods: RestApiMethod[];
  readonly stages: Array<{ logicalId: string; stageName: string; deploymentId?: string; methodSettings: unknown[] }>;
  /** `BinaryMediaTypes`: the content types API Gateway passes as bytes (none: every body is text). */
  readonly binaryMediaTypes: string[];
}

export interface RestApiMethod {
  readonly logicalId: string;
  readonly resourceId: string;
  /** Full path, e.g. `/v1/sessions/{id}/events/stream`. */
  readonly path: string;
  /** `GET`, ..., or `ANY`. */
  readonly httpMethod: string;
  readonly authorizationType: string;
  readonly apiKeyRequired: boolean;
  readonly integration?: {
    readonly type: string;
    readonly uri?: string;
    readonly integrationHttpMethod?: string;
    /** `BUFFERED` (API Gateway's default) or `STREAM`. */
    readonly responseTransferMode: string;
    /** API Gateway's default is 29 000 ms. */
    readonly timeoutInMillis: number;
    /** The Lambda function the integration invokes, when it is one of the template's functions. */
    readonly functionLogicalId?: string;
    /** `INTERNET` (API Gateway's default) or `VPC_LINK`. */
    readonly connectionType: string;
    /** The VPC link's id, with `VPC_LINK`. */
    readonly connectionId?: string;
    /** `integration.request.<where>.<name>` → `method.request.…` or `context.…` (or a quoted literal). */
    readonly requestParameters: Record<string, string>;
    readonly functionArn?: string;
  };
}

/** Every `AWS::ApiGateway::RestApi` of the template, with resources, methods and stages. */
export function restApis(input: TemplateOrContext): RestApiInfo[] {
  const ctx = toContext(input);
  const fnByArn = new Map(resourcesOfType(ctx, 'AWS::Lambda::Function').map((id) => [String(ctx.physicalIds.getAtt(id, 'Arn', ctx)), id]));
  return resourcesOfType(ctx, 'AWS::ApiGateway::RestApi').map((apiId) => {
    const id = ctx.physicalIds.ref(apiId, ctx);
    const rootResourceId = String(ctx.physicalIds.getAtt(apiId, 'RootResourceId', ctx));
    const belongs = (rid: string) => String(resolve(ctx.template.Resources[rid].Properties?.RestApiId, ctx, `Resources.${rid}.Properties.RestApiId`)) === id;
    const raw = resourcesOfType(ctx, 'AWS::ApiGateway::Resource')
      .filter(belongs)
      .map((rid) => {
        const p = propsOf(ctx, rid);
        return { logicalId: rid, id: ctx.physicalIds.ref(rid, ctx), parentId: String(p.get('ParentId')), pathPart: String(p.get('PathPart')) };
      });
    const byId = new Map(raw.map((r) => [r.id, r]));
    const pathOf = (rid: string, seen = new Set<string>()): string => {
      if (rid === rootResourceId) return '/';
      const r = byId.get(rid);
      if (!r || seen.has(rid)) throw new TemplateError(`API resource ${rid} has no path to the root`, `Resources.${apiId}`);
      seen.add(rid);
      const parent = pathOf(r.parentId, seen);
      return `${parent === '/' ? '' : parent}/${r.pathPart}`;
    };
    const resources = [{ id: rootResourceId, pathPart: '', path: '/' }, ...raw.map((r) => ({ ...r, path: pathOf(r.id) }))];
    const methods: RestApiMethod[] = resourcesOfType(ctx, 'AWS::ApiGateway::Method')
      .filter(belongs)
      .map((mid) => {
        const p = propsOf(ctx, mid);
        const resourceId = String(p.get('ResourceId'));
        const integ = p.get('Integration') as Record<string, unknown> | undefined;
        const uri = integ?.Uri as string | undefined;
        const fnArn = uri?.match(/:lambda:path\/[^/]+\/functions\/(.+?)\/(?:invocations|response-streaming-invocations)$/)?.[1];
        return {
          logicalId: mid,
          resourceId,
          path: pathOf(resourceId),
          httpMethod: String(p.get('HttpMethod')),
          authorizationType: String(p.get('AuthorizationType') ?? 'NONE'),
          apiKeyRequired: isTrue(p.get('ApiKeyRequired')),
          integration: integ
            ? {
                type: String(integ.Type),
                uri,
                integrationHttpMethod: integ.IntegrationHttpMethod as string | undefined,
                responseTransferMode: String(integ.ResponseTransferMode ?? 'BUFFERED'),
                timeoutInMillis: num(integ.TimeoutInMillis, 29_000)!,
                functionArn: fnArn,
                functionLogicalId: fnArn ? fnByArn.get(fnArn) : undefined,
                connectionType: String(integ.ConnectionType ?? 'INTERNET'),
                connectionId: integ.ConnectionId === undefined ? undefined : String(integ.ConnectionId),
                requestParameters: stringMap(integ.RequestParameters ?? {}, `Resources.${mid}.Properties.Integration.RequestParameters`),
              }
            : undefined,
        };
      });
    const stages = resourcesOfType(ctx, 'AWS::ApiGateway::Stage')
      .filter(belongs)
      .map((sid) => {
        const p = propsOf(ctx, sid);
        return { logicalId: sid, stageName: String(p.get('StageName')), deploymentId: p.get('DeploymentId') as string | undefined, methodSettings: asArray(p.get('MethodSettings') as unknown[] | undefined) };
      });
    const apiProps = propsOf(ctx, apiId);
    const binaryMediaTypes = asArray(apiProps.get('BinaryMediaTypes') as unknown[] | undefined).map(String);
    return { logicalId: apiId, id, name: apiProps.get('Name') as string | undefined, rootResourceId, resources, methods, stages, binaryMediaTypes };
  });
}

/** The template's only REST API; throws when there is none or more than one. */
export function restApi(input: TemplateOrContext): RestApiInfo {
  const all = restApis(input);
  if (all.length !== 1) throw new TemplateError(`expected one AWS::ApiGateway::RestApi, found ${all.length}`, 'Resources');
  return all[0];
}

/** An ECS task definition, resolved. */
export interface TaskDefinitionInfo {
  readonly logicalId: string;
  /** `arn:…:task-definition/<family>:<revision>` */
  readonly arn: string;
  readonly family: string;
  readonly cpu?: string;
  readonly memory?: string;
  readonly networkMode?: string;
  readonly requiresCompatibilities: string[];
  readonly taskRoleArn?: string;
  readonly taskRoleLogicalId?: string;
  readonly executionRoleArn?: string;
  readonly executionRoleLogicalId?: string;
  readonly containers: Array<{
    readonly name: string;
    readonly image: string;
    readonly essential: boolean;
    readonly environment: Record<string, string>;
    readonly portMappings: Array<{ containerPort: number; hostPort?: number; protocol: string }>;
    readonly command?: string[];
    readonly entryPoint?: string[];
    readonly logConfiguration?: unknown;
  }>;
}

/** Every `AWS::ECS::TaskDefinition`, resolved. */
export function ecsTaskDefinitions(input: TemplateOrContext): TaskDefinitionInfo[] {
  const ctx = toContext(input);
  return resourcesOfType(ctx, 'AWS::ECS::TaskDefinition').map((id) => {
    const p = propsOf(ctx, id);
    const arn = ctx.physicalIds.ref(id, ctx);
    const containers = asArray(p.get('ContainerDefinitions') as Record<string, unknown>[] | undefined).map((c, i) => ({
      name: String(c.Name),
      image: String(c.Image),
      essential: c.Essential === undefined ? true : isTrue(c.Essential),
      environment: Object.fromEntries(
        asArray(c.Environment as Array<{ Name: string; Value: unknown }> | undefined).map((e) => [e.Name, scalar(e.Value, `Resources.${id}.Properties.ContainerDefinitions[${i}].Environment.${e.Name}`)]),
      ),
      portMappings: asArray(c.PortMappings as Array<Record<string, unknown>> | undefined).map((m) => ({
        containerPort: Number(m.ContainerPort),
        hostPort: num(m.HostPort),
        protocol: String(m.Protocol ?? 'tcp'),
      })),
      command: c.Command as string[] | undefined,
      entryPoint: c.EntryPoint as string[] | undefined,
      logConfiguration: c.LogConfiguration,
    }));
    return {
      logicalId: id,
      arn,
      family: arn.replace(/^.*:task-definition\//, '').replace(/:\d+$/, ''),
      cpu: p.get('Cpu') === undefined ? undefined : String(p.get('Cpu')),
      memory: p.get('Memory') === undefined ? undefined : String(p.get('Memory')),
      networkMode: p.get('NetworkMode') as string | undefined,
      requiresCompatibilities: asArray(p.get('RequiresCompatibilities') as string[] | undefined),
      taskRoleArn: p.get('TaskRoleArn') as string | undefined,
      taskRoleLogicalId: referencedLogicalId(p.raw.TaskRoleArn),
      executionRoleArn: p.get('ExecutionRoleArn') as string | undefined,
      executionRoleLogicalId: referencedLogicalId(p.raw.ExecutionRoleArn),
      containers,
    };
  });
}

/** An ECS service, resolved: what the service scheduler keeps running, and where it registers it. */
export interface EcsServiceInfo {
  readonly logicalId: string;
  readonly name: string;
  readonly clusterArn: string;
  readonly taskDefinitionArn: string;
  readonly desiredCount: number;
  readonly launchType?: string;
  readonly subnets: string[];
  readonly securityGroups: string[];
  readonly assignPublicIp: boolean;
  readonly loadBalancers: Array<{ targetGroupArn: string; containerName: string; containerPort: number }>;
}

/** Every `AWS::ECS::Service`, resolved. */
export function ecsServices(input: TemplateOrContext): EcsServiceInfo[] {
  const ctx = toContext(input);
  return resourcesOfType(ctx, 'AWS::ECS::Service').map((id) => {
    const p = propsOf(ctx, id);
    const vpc = (p.get('NetworkConfiguration') as { AwsvpcConfiguration?: { Subnets?: string[]; SecurityGroups?: string[]; AssignPublicIp?: string } } | undefined)?.AwsvpcConfiguration;
    const cluster = String(p.get('Cluster') ?? 'default');
    return {
      logicalId: id,
      name: String(ctx.physicalIds.getAtt(id, 'Name', ctx)),
      clusterArn: cluster.startsWith('arn:') ? cluster : `arn:${ctx.env.partition}:ecs:${ctx.env.region}:${ctx.env.accountId}:cluster/${cluster}`,
      taskDefinitionArn: String(p.get('TaskDefinition')),
      desiredCount: num(p.get('DesiredCount'), 1)!,
      launchType: p.get('LaunchType') as string | undefined,
      subnets: asArray(vpc?.Subnets).map(String),
      securityGroups: asArray(vpc?.SecurityGroups).map(String),
      assignPublicIp: vpc?.AssignPublicIp === 'ENABLED',
      loadBalancers: asArray(p.get('LoadBalancers') as Array<Record<string, unknown>> | undefined).map((l) => ({
        targetGroupArn: String(l.TargetGroupArn),
        containerName: String(l.ContainerName),
        containerPort: Number(l.ContainerPort),
      })),
    };
  });
}

/** An Elastic Load Balancing v2 load balancer, with its listeners and their target groups, resolved. */
export interface LoadBalancerInfo {
  readonly logicalId: string;
  readonly arn: string;
  readonly dnsName: string;
  readonly fullName: string;
  /** `network` or `application`. */
  readonly type: string;
  readonly internal: boolean;
  readonly securityGroups: string[];
  readonly subnets: string[];
  readonly listeners: Array<{ logicalId: string; port: number; protocol: string; targetGroupArn: string }>;
}

export interface TargetGroupInfo {
  readonly logicalId: string;
  readonly arn: string;
  readonly fullName: string;
  readonly port: number;
  readonly protocol: string;
  readonly targetType: string;
  readonly healthCheck: { protocol: string; path?: string; port?: string; intervalSeconds: number; healthyThreshold: number; unhealthyThreshold: number };
  readonly deregistrationDelaySeconds: number;
}

/** Every `AWS::ElasticLoadBalancingV2::LoadBalancer`, with the listeners that name it. */
export function loadBalancers(input: TemplateOrContext): LoadBalancerInfo[] {
  const ctx = toContext(input);
  const listeners = resourcesOfType(ctx, 'AWS::ElasticLoadBalancingV2::Listener').map((id) => {
    const p = propsOf(ctx, id);
    const forward = asArray(p.get('DefaultActions') as Array<{ Type: string; TargetGroupArn?: string }> | undefined).find((a) => a.Type === 'forward');
    return { logicalId: id, loadBalancerArn: String(p.get('LoadBalancerArn')), port: Number(p.get('Port')), protocol: String(p.get('Protocol') ?? 'TCP'), targetGroupArn: String(forward?.TargetGroupArn ?? '') };
  });
  return resourcesOfType(ctx, 'AWS::ElasticLoadBalancingV2::LoadBalancer').map((id) => {
    const p = propsOf(ctx, id);
    const arn = ctx.physicalIds.ref(id, ctx);
    return {
      logicalId: id,
      arn,
      dnsName: String(ctx.physicalIds.getAtt(id, 'DNSName', ctx)),
      fullName: String(ctx.physicalIds.getAtt(id, 'LoadBalancerFullName', ctx)),
      type: String(p.get('Type') ?? 'application'),
      internal: p.get('Scheme') === 'internal',
      securityGroups: asArray(p.get('SecurityGroups') as string[] | undefined).map(String),
      subnets: asArray(p.get('Subnets') as string[] | undefined).map(String),
      listeners: listeners.filter((l) => l.loadBalancerArn === arn).map(({ loadBalancerArn: _, ...l }) => l),
    };
  });
}

/** Every `AWS::ElasticLoadBalancingV2::TargetGroup`, with ELB's defaults filled in. */
export function targetGroups(input: TemplateOrContext): TargetGroupInfo[] {
  const ctx = toContext(input);
  return resourcesOfType(ctx, 'AWS::ElasticLoadBalancingV2::TargetGroup').map((id) => {
    const p = propsOf(ctx, id);
    const attrs = Object.fromEntries(asArray(p.get('TargetGroupAttributes') as Array<{ Key: string; Value: string }> | undefined).map((a) => [a.Key, String(a.Value)]));
    const protocol = String(p.get('Protocol') ?? 'HTTP');
    return {
      logicalId: id,
      arn: ctx.physicalIds.ref(id, ctx),
      fullName: String(ctx.physicalIds.getAtt(id, 'TargetGroupFullName', ctx)),
      port: Number(p.get('Port')),
      protocol,
      targetType: String(p.get('TargetType') ?? 'instance'),
      healthCheck: {
        protocol: String(p.get('HealthCheckProtocol') ?? (protocol === 'TCP' ? 'TCP' : protocol)),
        path: p.get('HealthCheckPath') as string | undefined,
        port: p.get('HealthCheckPort') as string | undefined,
        intervalSeconds: num(p.get('HealthCheckIntervalSeconds'), 30)!,
        healthyThreshold: num(p.get('HealthyThresholdCount'), 5)!,
        unhealthyThreshold: num(p.get('UnhealthyThresholdCount'), 2)!,
      },
      deregistrationDelaySeconds: num(attrs['deregistration_delay.timeout_seconds'], 300)!,
    };
  });
}

/** Every `AWS::ApiGateway::VpcLink` (REST APIs' VPC links to network load balancers). */
export function vpcLinks(input: TemplateOrContext): Array<{ logicalId: string; id: string; targetArns: string[] }> {
  const ctx = toContext(input);
  return resourcesOfType(ctx, 'AWS::ApiGateway::VpcLink').map((id) => ({
    logicalId: id,
    id: ctx.physicalIds.ref(id, ctx),
    targetArns: asArray(propsOf(ctx, id).get('TargetArns') as string[] | undefined).map(String),
  }));
}

/** A DynamoDB table's keys. */
export interface KeySchema {
  readonly partitionKey: string;
  readonly sortKey?: string;
}

export interface DynamoTableInfo {
  readonly logicalId: string;
  readonly tableName: string;
  readonly arn: string;
  readonly keySchema: KeySchema;
  /** Attribute name → `S` | `N` | `B`. */
  readonly attributeDefinitions: Record<string, string>;
  readonly globalSecondaryIndexes: Array<{ indexName: string; keySchema: KeySchema; projectionType: string }>;
  readonly localSecondaryIndexes: Array<{ indexName: string; keySchema: KeySchema; projectionType: string }>;
  /** The TTL attribute, when TTL is enabled. */
  readonly ttlAttribute?: string;
  readonly billingMode: string;
  readonly streamViewType?: string;
}

function keySchema(v: unknown, path: string): KeySchema {
  const list = asArray(v as Array<{ AttributeName: string; KeyType: string }> | undefined);
  const hash = list.find((k) => k.KeyType === 'HASH');
  if (!hash) throw new TemplateError('key schema without a HASH key', path);
  return { partitionKey: hash.AttributeName, sortKey: list.find((k) => k.KeyType === 'RANGE')?.AttributeName };
}

/** Every `AWS::DynamoDB::Table`, resolved. */
export function dynamoTables(input: TemplateOrContext): DynamoTableInfo[] {
  const ctx = toContext(input);
  return resourcesOfType(ctx, 'AWS::DynamoDB::Table').map((id) => {
    const p = propsOf(ctx, id);
    const path = `Resources.${id}.Properties`;
    const index = (x: Record<string, unknown>, i: number, kind: string) => ({
      indexName: String(x.IndexName),
      keySchema: keySchema(x.KeySchema, `${path}.${kind}[${i}]`),
      projectionType: String((x.Projection as { ProjectionType?: string } | undefined)?.ProjectionType ?? 'ALL'),
    });
    const ttl = p.get('TimeToLiveSpecification') as { AttributeName?: string; Enabled?: unknown } | undefined;
    const stream = p.get('StreamSpecification') as { StreamViewType?: string } | undefined;
    return {
      logicalId: id,
      tableName: ctx.physicalIds.ref(id, ctx),
      arn: String(ctx.physicalIds.getAtt(id, 'Arn', ctx)),
      keySchema: keySchema(p.get('KeySchema'), `${path}.KeySchema`),
      attributeDefinitions: Object.fromEntries(asArray(p.get('AttributeDefinitions') as Array<{ AttributeName: string; AttributeType: string }> | undefined).map((a) => [a.AttributeName, a.AttributeType])),
      globalSecondaryIndexes: asArray(p.get('GlobalSecondaryIndexes') as Record<string, unknown>[] | undefined).map((x, i) => index(x, i, 'GlobalSecondaryIndexes')),
      localSecondaryIndexes: asArray(p.get('LocalSecondaryIndexes') as Record<string, unknown>[] | undefined).map((x, i) => index(x, i, 'LocalSecondaryIndexes')),
      ttlAttribute: ttl && isTrue(ttl.Enabled) ? ttl.AttributeName : undefined,
      billingMode: String(p.get('BillingMode') ?? 'PROVISIONED'),
      streamViewType: stream?.StreamViewType,
    };
  });
}

/** An SQS queue, resolved, with SQS's defaults filled in. */
export interface SqsQueueInfo {
  readonly logicalId: string;
  readonly queueName: string;
  readonly url: string;
  readonly arn: string;
  readonly fifo: boolean;
  readonly contentBasedDeduplication: boolean;
  /** Seconds (default 30). */
  readonly visibilityTimeout: number;
  /** Seconds (default 345 600 = 4 days). */
  readonly messageRetentionPeriod: number;
  /** Seconds (default 0). */
  readonly delaySeconds: number;
  /** Seconds (default 0). */
  readonly receiveMessageWaitTimeSeconds: number;
  /** Bytes (default 262 144). */
  readonly maximumMessageSize: number;
  readonly redrivePolicy?: { deadLetterTargetArn: string; deadLetterLogicalId?: string; maxReceiveCount: number };
}

/** Every `AWS::SQS::Queue`, resolved. */
export function sqsQueues(input: TemplateOrContext): SqsQueueInfo[] {
  const ctx = toContext(input);
  return resourcesOfType(ctx, 'AWS::SQS::Queue').map((id) => {
    const p = propsOf(ctx, id);
    const redrive = p.get('RedrivePolicy') as { deadLetterTargetArn?: string; maxReceiveCount?: unknown } | string | undefined;
    const rp = typeof redrive === 'string' ? (JSON.parse(redrive) as { deadLetterTargetArn?: string; maxReceiveCount?: unknown }) : redrive;
    const rawRedrive = p.raw.RedrivePolicy as { deadLetterTargetArn?: unknown } | undefined;
    return {
      logicalId: id,
      queueName: String(ctx.physicalIds.getAtt(id, 'QueueName', ctx)),
      url: ctx.physicalIds.ref(id, ctx),
      arn: String(ctx.physicalIds.getAtt(id, 'Arn', ctx)),
      fifo: isTrue(p.get('FifoQueue')),
      contentBasedDeduplication: isTrue(p.get('ContentBasedDeduplication')),
      visibilityTimeout: num(p.get('VisibilityTimeout'), 30)!,
      messageRetentionPeriod: num(p.get('MessageRetentionPeriod'), 345_600)!,
      delaySeconds: num(p.get('DelaySeconds'), 0)!,
      receiveMessageWaitTimeSeconds: num(p.get('ReceiveMessageWaitTimeSeconds'), 0)!,
      maximumMessageSize: num(p.get('MaximumMessageSize'), 262_144)!,
      redrivePolicy: rp?.deadLetterTargetArn
        ? { deadLetterTargetArn: rp.deadLetterTargetArn, deadLetterLogicalId: referencedLogicalId(rawRedrive?.deadLetterTargetArn), maxReceiveCount: Number(rp.maxReceiveCount) }
        : undefined,
    };
  });
}
