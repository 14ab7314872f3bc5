/**
 * IAM policy evaluation for the deploy rehearsal: which of a function's AWS calls its role, as the
 * template defines it, would be allowed.
 *
 * The logic is IAM's for a principal and a resource in the same account (all of Corral is one
 * account): an explicit Deny in any applicable policy wins; otherwise an Allow in an identity
 * policy, or in a resource policy whose Principal matches the caller, allows; otherwise the request
 * is implicitly denied. Permission boundaries, SCPs and session policies do not exist in the
 * template and are not modelled.
 */
import { resolve, resourcesOfType, referencedLogicalId, toContext, type TemplateOrContext } from './template.js';

// ---------------------------------------------------------------------------------------------
// Policy shapes
// ---------------------------------------------------------------------------------------------

export type OneOrMany<T> = T | T[];

/** A principal as written in a resource policy. */
export type PolicyPrincipal = '*' | { AWS?: OneOrMany<string>; Service?: OneOrMany<string>; Federated?: OneOrMany<string>; CanonicalUser?: OneOrMany<string> };

/** One statement of a (resolved) policy document. */
export interface PolicyStatement {
  readonly Sid?: string;
  readonly Effect: 'Allow' | 'Deny';
  readonly Action?: OneOrMany<string>;
  readonly NotAction?: OneOrMany<string>;
  readonly Resource?: OneOrMany<string>;
  readonly NotResource?: OneOrMany<string>;
  readonly Principal?: PolicyPrincipal;
  readonly NotPrincipal?: PolicyPrincipal;
  /** operator → condition key → value(s) */
  readonly Condition?: Record<string, Record<string, OneOrMany<string | number | boolean>>>;
}

export interface PolicyDocument {
  readonly Version?: string;
  readonly Statement: OneOrMany<PolicyStatement>;
}

/** A statement with where it came from, for messages. */
export interface SourcedStatement {
  readonly statement: PolicyStatement;
  /** e.g. `AWS::IAM::Policy HarnessStepFunctionServiceRoleDefaultPolicy57D362AB`, `managed AWSLambdaBasicExecutionRole` */
  readonly source: string;
}

/** A condition context value: IAM compares strings; lists are multivalued keys. */
export type ContextValue = string | number | boolean | ReadonlyArray<string | number | boolean>;

/** One authorization check, as IAM sees it. */
export interface AuthorizationRequest {
  /**
   * Who calls: an assumed-role session (`arn:aws:sts::<acct>:assumed-role/<role>/<session>`),
   * a role or user ARN, or a service principal (`apigateway.amazonaws.com`).
   */
  readonly principalArn: string;
  /** `service:Action`, e.g. `dynamodb:UpdateItem` */
  readonly action: string;
  /** The resource ARN (or `*` for actions without resource types). */
  readonly resource: string;
  /** Condition keys present in the request (key names are case-insensitive, as in IAM). */
  readonly context?: Readonly<Record<string, ContextValue | undefined>>;
}

export type DecisionKind = 'allow' | 'explicit-deny' | 'implicit-deny';

/** IAM's answer and the statement that decided it. */
export interface Decision {
  readonly decision: DecisionKind;
  readonly allowed: boolean;
  /** The statement that allowed or explicitly denied; absent for an implicit deny. */
  readonly decidedBy?: SourcedStatement & { readonly policyType: 'identity' | 'resource' };
  /** Whether a resource policy was part of the evaluation (it changes AWS's denial message). */
  readonly resourcePolicyEvaluated: boolean;
}

const asArray = <T>(v: OneOrMany<T> | undefined): T[] => (v === undefined ? [] : Array.isArray(v) ? [...v] : [v as T]);

const toSourced = (s: PolicyStatement | SourcedStatement, fallback: string): SourcedStatement =>
  'statement' in s && 'source' in s ? (s as SourcedStatement) : { statement: s as PolicyStatement, source: fallback };

/** The statements of a policy document. */
export function statementsOf(doc: PolicyDocument, source: string): SourcedStatement[] {
  return asArray(doc.Statement).map((statement) => ({ statement, source }));
}

// ---------------------------------------------------------------------------------------------
// Matching
// ---------------------------------------------------------------------------------------------

const globCache = new Map<string, RegExp>();
/** IAM's wildcards: `*` any run of characters, `?` one character; everything else literal. */
function glob(pattern: string, ignoreCase: boolean): RegExp {
  const key = `${ignoreCase ? 'i' : 's'}${pattern}`;
  let re = globCache.get(key);
  if (!re) {
    const body = pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
    re = new RegExp(`^${body}$`, ignoreCase ? 'is' : 's');
    globCache.set(key, re);
  }
  return re;
}

/** Does an Action pattern match an action? Case-insensitive, as in IAM. */
export function actionMatches(pattern: string, action: string): boolean {
  return pattern === '*' || glob(pattern, true).test(action);
}

/**
 * Does a Resource pattern (or ArnLike value) match an ARN? Case-sensitive. For ARNs the first five
 * colon-separated parts are matched one by one (a wildcard there does not reach into the next part)
 * and the resource part, which may itself hold colons, as a whole.
 */
export function arnMatches(pattern: string, arn: string): boolean {
  if (pattern === '*') return true;
  const p = splitArn(pattern);
  const a = splitArn(arn);
  if (!p || !a) return glob(pattern, false).test(arn);
  return p.every((part, i) => glob(part, false).test(a[i]));
}

function splitArn(s: string): string[] | undefined {
  const parts = s.split(':');
  if (parts.length < 6 || parts[0] !== 'arn') return undefined;
  return [...parts.slice(0, 5), parts.slice(5).join(':')];
}

function lookup(context: AuthorizationRequest['context'], key: string): string[] | undefined {
  if (!context) return undefined;
  const lower = key.toLowerCase();
  for (const [k, v] of Object.entries(context)) {
    if (k.toLowerCase() !== lower || v === undefined) continue;
    return (Array.isArray(v) ? v : [v]).map(String);
  }
  return undefined;
}

/** An unknown condition operator: IAM would reject the policy, so the rehearsal fails loudly. */
export class PolicyError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PolicyError';
  }
}

type Matcher = (requestValue: string, policyValue: string) => boolean;

const numberOf = (s: string) => (s.trim() === '' ? NaN : Number(s));
const dateOf = (s: string) => (/^\d+$/.test(s) ? Number(s) * 1000 : Date.parse(s));

/** Positive operators and how one request value matches one policy value. */
const POSITIVE: Record<string, Matcher> = {
  stringequals: (r, p) => r === p,
  stringequalsignorecase: (r, p) => r.toLowerCase() === p.toLowerCase(),
  stringlike: (r, p) => glob(p, false).test(r),
  arnequals: (r, p) => arnMatches(p, r),
  arnlike: (r, p) => arnMatches(p, r),
  bool: (r, p) => r.toLowerCase() === p.toLowerCase(),
  binaryequals: (r, p) => r === p,
  numericequals: (r, p) => numberOf(r) === numberOf(p),
  numericlessthan: (r, p) => numberOf(r) < numberOf(p),
  numericlessthanequals: (r, p) => numberOf(r) <= numberOf(p),
  numericgreaterthan: (r, p) => numberOf(r) > numberOf(p),
  numericgreaterthanequals: (r, p) => numberOf(r) >= numberOf(p),
  dateequals: (r, p) => dateOf(r) === dateOf(p),
  datelessthan: (r, p) => dateOf(r) < dateOf(p),
  datelessthanequals: (r, p) => dateOf(r) <= dateOf(p),
  dategreaterthan: (r, p) => dateOf(r) > dateOf(p),
  dategreaterthanequals: (r, p) => dateOf(r) >= dateOf(p),
};

/** Negated operators: the request value matches none of the policy values of the positive form. */
const NEGATED: Record<string, string> = {
  stringnotequals: 'stringequals',
  stringnotequalsignorecase: 'stringequalsignorecase',
  stringnotlike: 'stringlike',
  arnnotequals: 'arnequals',
  arnnotlike: 'arnlike',
  numericnotequals: 'numericequals',
  datenotequals: 'dateequals',
};

/**
 * One operator block (`"StringEquals": {...}`) against the request context. Keys are ANDed, the
 * values of one key ORed. A key missing from the request makes a positive operator false and a
 * negated one true (IAM's documented rule); `...IfExists` makes it true; `Null` tests presence;
 * `ForAllValues:` is true for a missing or empty key, `ForAnyValue:` false.
 */
export function conditionBlockMatches(operator: string, block: Record<string, OneOrMany<string | number | boolean>>, context: AuthorizationRequest['context']): boolean {
  let op = operator;
  let set: 'all' | 'any' | undefined;
  const prefix = op.match(/^(ForAllValues|ForAnyValue):/i);
  if (prefix) {
    set = prefix[1].toLowerCase() === 'forallvalues' ? 'all' : 'any';
    op = op.slice(prefix[0].length);
  }
  let ifExists = false;
  if (/IfExists$/i.test(op)) {
    ifExists = true;
    op = op.slice(0, -'IfExists'.length);
  }
  const name = op.toLowerCase();

  for (const [key, raw] of Object.entries(block)) {
    const policyValues = asArray(raw).map(String);
    const values = lookup(context, key);
    if (name === 'null') {
      // Null: "true" means the key must be absent, "false" that it must be present.
      const absent = values === undefined || values.length === 0;
      if (!policyValues.some((p) => (p.toLowerCase() === 'true') === absent)) return false;
      continue;
    }
    const negatedOf = NEGATED[name];
    const positive = POSITIVE[negatedOf ?? name];
    if (!positive) throw new PolicyError(`condition operator ${operator} is not supported by the rehearsal's IAM evaluation`);
    const one = (v: string) => {
      const any = policyValues.some((p) => positive(v, p));
      return negatedOf ? !any : any;
    };
    let ok: boolean;
    if (values === undefined || values.length === 0) {
      if (set === 'all') ok = true;
      else if (set === 'any') ok = false;
      else ok = ifExists || !!negatedOf;
    } else if (set === 'all') ok = values.every(one);
    else if (set === 'any') ok = values.some(one);
    // A single-valued operator over a multivalued key: positive operators need some value to
    // match, negated ones that no value matches the positive form.
    else ok = negatedOf ? values.every(one) : values.some(one);
    if (!ok) return false;
  }
  return true;
}

/** Does a statement's Condition hold for the request? */
export function conditionsMatch(statement: PolicyStatement, context: AuthorizationRequest['context']): boolean {
  return Object.entries(statement.Condition ?? {}).every(([op, block]) => conditionBlockMatches(op, block, context));
}

/** Does a statement apply to the action and resource (ignoring Principal and Condition)? */
export function statementCovers(statement: PolicyStatement, action: string, resource: string): boolean {
  const actionOk =
    statement.Action !== undefined
      ? asArray(statement.Action).some((p) => actionMatches(p, action))
      : statement.NotAction !== undefined
        ? !asArray(statement.NotAction).some((p) => actionMatches(p, action))
        : false;
  if (!actionOk) return false;
  if (statement.Resource !== undefined) return asArray(statement.Resource).some((p) => arnMatches(p, resource));
  if (statement.NotResource !== undefined) return !asArray(statement.NotResource).some((p) => arnMatches(p, resource));
  // A resource policy statement may leave Resource out: it means the resource the policy is on.
  return statement.Principal !== undefined || statement.NotPrincipal !== undefined;
}

/** The role ARN's account and name for a session or role principal. */
function principalParts(arn: string): { account?: string; roleName?: string; service?: string } {
  if (!arn.startsWith('arn:')) return { service: arn };
  const parts = arn.split(':');
  const account = parts[4];
  const res = parts.slice(5).join(':');
  const assumed = res.match(/^assumed-role\/([^/]+)\//);
  if (assumed) return { account, roleName: assumed[1] };
  const role = res.match(/^role\/(?:.*\/)?([^/]+)$/);
  if (role) return { account, roleName: role[1] };
  return { account };
}

/**
 * Does a resource policy Principal name the caller? A role ARN names its sessions too. An account
 * (`123456789012` or `arn:…:root`) names every principal of the account, but for an Allow it only
 * delegates to the account's IAM policies and grants nothing by itself (IAM's same-account rule),
 * so it counts only for Deny.
 */
export function principalMatches(principal: PolicyPrincipal | undefined, callerArn: string, effect: 'Allow' | 'Deny'): boolean {
  if (principal === undefined) return false;
  if (principal === '*') return true;
  // `{"AWS": "*"}` is the same as `"*"`: everyone, services included.
  if (asArray(principal.AWS).includes('*')) return true;
  const caller = principalParts(callerArn);
  if (caller.service) return asArray(principal.Service).some((s) => s === caller.service);
  for (const p of asArray(principal.AWS)) {
    if (p === '*' || p === callerArn) return true;
    const isAccount = /^\d{12}$/.test(p) || /^arn:[^:]+:iam::\d{12}:root$/.test(p);
    if (isAccount) {
      if (effect === 'Deny' && (p === caller.account || p.split(':')[4] === caller.account)) return true;
      continue;
    }
    const named = principalParts(p);
    if (named.roleName && named.roleName === caller.roleName && named.account === caller.account) return true;
  }
  return false;
}

/**
 * IAM's decision for one request. `identity` are the caller's identity-based statements (none for
 * a service principal); `resourcePolicy` the statements of the resource's policy, if it has one.
 */
export function evaluate(request: AuthorizationRequest, identity: ReadonlyArray<PolicyStatement | SourcedStatement>, resourcePolicy?: ReadonlyArray<PolicyStatement | SourcedStatement>): Decision {
  const ids = identity.map((s) => toSourced(s, 'identity policy'));
  const res = (resourcePolicy ?? []).map((s) => toSourced(s, 'resource policy'));
  const applies = (s: SourcedStatement, kind: 'identity' | 'resource') => {
    const st = s.statement;
    if (!statementCovers(st, request.action, request.resource)) return false;
    if (kind === 'resource') {
      if (st.Principal !== undefined && !principalMatches(st.Principal, request.principalArn, st.Effect)) return false;
      if (st.NotPrincipal !== undefined && principalMatches(st.NotPrincipal, request.principalArn, 'Deny')) return false;
      if (st.Principal === undefined && st.NotPrincipal === undefined) return false;
    }
    return conditionsMatch(st, request.context);
  };
  const candidates = [...ids.map((s) => ({ s, kind: 'identity' as const })), ...res.map((s) => ({ s, kind: 'resource' as const }))];
  const resourcePolicyEvaluated = resourcePolicy !== undefined;
  for (const { s, kind } of candidates) {
    if (s.statement.Effect === 'Deny' && applies(s, kind)) {
      return { decision: 'explicit-deny', allowed: false, decidedBy: { ...s, policyType: kind }, resourcePolicyEvaluated };
    }
  }
  for (const { s, kind } of candidates) {
    if (s.statement.Effect === 'Allow' && applies(s, kind)) {
      return { decision: 'allow', allowed: true, decidedBy: { ...s, policyType: kind }, resourcePolicyEvaluated };
    }
  }
  return { decision: 'implicit-deny', allowed: false, resourcePolicyEvaluated };
}

/**
 * KMS's decision for a request on a key: the key policy is the root of the key's access. Allowed
 * when the key policy allows the caller itself, or when it allows the caller's account (which
 * delegates to IAM) and an identity policy allows the request; an explicit deny in either wins.
 * Without a key policy statement for the caller or its account, IAM policies grant nothing.
 */
export function evaluateKeyPolicy(request: AuthorizationRequest, identity: ReadonlyArray<PolicyStatement | SourcedStatement>, keyPolicy: ReadonlyArray<PolicyStatement | SourcedStatement>): Decision {
  const both = evaluate(request, identity, keyPolicy);
  if (both.decision === 'explicit-deny') return both;
  const direct = evaluate(request, [], keyPolicy);
  if (direct.allowed) return direct;
  const account = request.principalArn.split(':')[4];
  const delegates = keyPolicy
    .map((s) => toSourced(s, 'resource policy'))
    .some(({ statement: st }) => {
      if (st.Effect !== 'Allow' || st.Principal === undefined || st.Principal === '*') return false;
      if (!statementCovers(st, request.action, request.resource)) return false;
      const names = asArray(st.Principal.AWS).some((p) => p === account || new RegExp(`^arn:[^:]+:iam::${account}:root$`).test(p));
      return names && conditionsMatch(st, request.context);
    });
  if (!delegates) return { decision: 'implicit-deny', allowed: false, resourcePolicyEvaluated: true };
  const viaIam = evaluate(request, identity);
  return { ...viaIam, resourcePolicyEvaluated: true };
}

/**
 * The message AWS gives for a denied request, e.g. `User: arn:aws:sts::123:assumed-role/R/fn is not
 * authorized to perform: dynamodb:UpdateItem on resource: arn:aws:dynamodb:…:table/T because no
 * identity-based policy allows the dynamodb:UpdateItem action`. Services put it in their own error
 * shape (DynamoDB `AccessDeniedException`, SQS `AccessDenied`, ...).
 */
export function accessDeniedMessage(request: AuthorizationRequest, decision: Decision): string {
  const head = `User: ${request.principalArn} is not authorized to perform: ${request.action}${request.resource && request.resource !== '*' ? ` on resource: ${request.resource}` : ''}`;
  if (decision.decision === 'explicit-deny') {
    return `${head} with an explicit deny in a${decision.decidedBy?.policyType === 'resource' ? ' resource-based' : 'n identity-based'} policy`;
  }
  if (decision.decision === 'allow') throw new Error('accessDeniedMessage of an allowed request');
  return `${head} because no ${decision.resourcePolicyEvaluated && principalParts(request.principalArn).service ? 'resource-based' : 'identity-based'} policy allows the ${request.action} action`;
}

// ---------------------------------------------------------------------------------------------
// AWS managed policies the template may attach
// ---------------------------------------------------------------------------------------------

/**
 * The AWS managed policies the rehearsal knows, with their documented statements (the default
 * version as published in the AWS Managed Policy Reference).
 */
export const MANAGED_POLICIES: Readonly<Record<string, PolicyDocument>> = {
  'service-role/AWSLambdaBasicExecutionRole': {
    Version: '2012-10-17',
    Statement: [{ Effect: 'Allow', Action: ['logs:CreateLogGroup', 'logs:CreateLogStream', 'logs:PutLogEvents'], Resource: '*' }],
  },
  'service-role/AWSLambdaVPCAccessExecutionRole': {
    Version: '2012-10-17',
    Statement: [
      {
        Sid: 'AWSLambdaVPCAccessExecutionPermissions',
        Effect: 'Allow',
        Action: [
          'logs:CreateLogGroup',
          'logs:CreateLogStream',
          'logs:PutLogEvents',
          'ec2:CreateNetworkInterface',
          'ec2:DescribeNetworkInterfaces',
          'ec2:DescribeSubnets',
          'ec2:DeleteNetworkInterface',
          'ec2:AssignPrivateIpAddresses',
          'ec2:UnassignPrivateIpAddresses',
        ],
        Resource: '*',
      },
    ],
  },
  'service-role/AmazonAPIGatewayPushToCloudWatchLogs': {
    Version: '2012-10-17',
    Statement: [
      {
        Effect: 'Allow',
        Action: ['logs:CreateLogGroup', 'logs:CreateLogStream', 'logs:DescribeLogGroups', 'logs:DescribeLogStreams', 'logs:PutLogEvents', 'logs:GetLogEvents', 'logs:FilterLogEvents'],
        Resource: '*',
      },
    ],
  },
  'service-role/AmazonECSTaskExecutionRolePolicy': {
    Version: '2012-10-17',
    Statement: [
      {
        Effect: 'Allow',
        Action: ['ecr:GetAuthorizationToken', 'ecr:BatchCheckLayerAvailability', 'ecr:GetDownloadUrlForLayer', 'ecr:BatchGetImage', 'logs:CreateLogStream', 'logs:PutLogEvents'],
        Resource: '*',
      },
    ],
  },
  AWSXRayDaemonWriteAccess: {
    Version: '2012-10-17',
    Statement: [
      {
        Effect: 'Allow',
        Action: ['xray:PutTraceSegments', 'xray:PutTelemetryRecords', 'xray:GetSamplingRules', 'xray:GetSamplingTargets', 'xray:GetSamplingStatisticSummaries'],
        Resource: ['*'],
      },
    ],
  },
};

/** The document of an AWS managed policy by ARN; an unknown one is an error naming it. */
export function managedPolicy(arn: string): PolicyDocument {
  const m = arn.match(/^arn:[^:]+:iam::aws:policy\/(.+)$/);
  if (!m) throw new PolicyError(`managed policy ${arn} is not an AWS managed policy; customer managed policies are not supported by the rehearsal`);
  const doc = MANAGED_POLICIES[m[1]];
  if (!doc) throw new PolicyError(`AWS managed policy ${m[1]} (${arn}) is not known to the rehearsal; add its documented statements to MANAGED_POLICIES`);
  return doc;
}

// ---------------------------------------------------------------------------------------------
// Roles and resource policies of the template
// ---------------------------------------------------------------------------------------------

/** A role of the template with its identity policies. */
export interface RoleInfo {
  readonly logicalId: string;
  readonly roleName: string;
  readonly arn: string;
  readonly assumeRolePolicy?: PolicyDocument;
  readonly managedPolicyArns: string[];
  /** Every statement of every identity policy of the role. */
  readonly statements: SourcedStatement[];
}

/** The role, resolved, with all its identity policies: inline, attached `AWS::IAM::Policy`, managed. */
export function role(input: TemplateOrContext, roleLogicalId: string): RoleInfo {
  const ctx = toContext(input);
  const r = ctx.template.Resources[roleLogicalId];
  if (!r || r.Type !== 'AWS::IAM::Role') throw new PolicyError(`${roleLogicalId} is not an AWS::IAM::Role of the template`);
  const path = `Resources.${roleLogicalId}.Properties`;
  const props = (resolve(r.Properties ?? {}, ctx, path) ?? {}) as {
    AssumeRolePolicyDocument?: PolicyDocument;
    ManagedPolicyArns?: string[];
    Policies?: Array<{ PolicyName: string; PolicyDocument: PolicyDocument }>;
  };
  const statements: SourcedStatement[] = [];
  for (const p of props.Policies ?? []) statements.push(...statementsOf(p.PolicyDocument, `inline policy ${p.PolicyName} of ${roleLogicalId}`));
  for (const id of resourcesOfType(ctx, 'AWS::IAM::Policy')) {
    const raw = ctx.template.Resources[id].Properties ?? {};
    const roles = asArray(raw.Roles as unknown[] | undefined);
    // Roles lists role *names*: match by reference, or by resolved name when written literally.
    const name = ctx.physicalIds.ref(roleLogicalId, ctx);
    const attached = roles.some((x) => referencedLogicalId(x) === roleLogicalId || resolve(x, ctx, `Resources.${id}.Properties.Roles`) === name);
    if (!attached) continue;
    const doc = resolve(raw.PolicyDocument, ctx, `Resources.${id}.Properties.PolicyDocument`) as PolicyDocument;
    statements.push(...statementsOf(doc, `AWS::IAM::Policy ${id}`));
  }
  const managedPolicyArns = (props.ManagedPolicyArns ?? []).map(String);
  for (const arn of managedPolicyArns) statements.push(...statementsOf(managedPolicy(arn), `managed policy ${arn.replace(/^.*:policy\//, '')}`));
  return {
    logicalId: roleLogicalId,
    roleName: ctx.physicalIds.ref(roleLogicalId, ctx),
    arn: String(ctx.physicalIds.getAtt(roleLogicalId, 'Arn', ctx)),
    assumeRolePolicy: props.AssumeRolePolicyDocument,
    managedPolicyArns,
    statements,
  };
}

/** Every role of the template. */
export function roles(input: TemplateOrContext): RoleInfo[] {
  const ctx = toContext(input);
  return resourcesOfType(ctx, 'AWS::IAM::Role').map((id) => role(ctx, id));
}

/** The session ARN a Lambda function's calls carry: the role assumed with the function name. */
export function assumedRoleArn(roleArn: string, sessionName: string): string {
  const m = roleArn.match(/^arn:([^:]+):iam::(\d{12}):role\/(?:.*\/)?([^/]+)$/);
  if (!m) throw new PolicyError(`not a role ARN: ${roleArn}`);
  return `arn:${m[1]}:sts::${m[2]}:assumed-role/${m[3]}/${sessionName}`;
}

/**
 * The global condition keys IAM adds to every request of a role session (the caller adds
 * `aws:SecureTransport`, which depends on the connection).
 */
export function principalContext(roleArn: string, roleId?: string, sessionName?: string): Record<string, string> {
  const account = roleArn.split(':')[4];
  return {
    'aws:PrincipalArn': roleArn,
    'aws:PrincipalAccount': account,
    'aws:PrincipalType': 'AssumedRole',
    ...(roleId && sessionName ? { 'aws:userid': `${roleId}:${sessionName}` } : {}),
  };
}

/** A resource policy of the template, keyed by the resource it protects. */
export interface ResourcePolicy {
  /** ARN of the protected resource. */
  readonly resourceArn: string;
  readonly statements: SourcedStatement[];
  /** A KMS key's policy, which IAM evaluates differently (see {@link evaluateKeyPolicy}). */
  readonly keyPolicy?: boolean;
}

/**
 * Resource policies of the template: `AWS::SQS::QueuePolicy` (per queue ARN; queues are listed by
 * URL), `AWS::S3::BucketPolicy` (per bucket ARN) and `AWS::Lambda::Permission` (per function ARN, rendered the way Lambda renders its policy:
 * `Principal`, `lambda:InvokeFunction`, `ArnLike AWS:SourceArn`, `StringEquals AWS:SourceAccount`).
 */
export function resourcePolicies(input: TemplateOrContext): Map<string, ResourcePolicy> {
  const ctx = toContext(input);
  const out = new Map<string, ResourcePolicy>();
  const add = (arn: string, statements: SourcedStatement[], keyPolicy?: boolean) => {
    const existing = out.get(arn);
    if (existing) existing.statements.push(...statements);
    else out.set(arn, { resourceArn: arn, statements: [...statements], ...(keyPolicy ? { keyPolicy } : {}) });
  };
  for (const id of resourcesOfType(ctx, 'AWS::KMS::Key')) {
    const p = resolve(ctx.template.Resources[id].Properties ?? {}, ctx, `Resources.${id}.Properties`) as { KeyPolicy?: PolicyDocument };
    // A key created without a policy gets KMS's default one: the account, through IAM.
    const doc: PolicyDocument = p.KeyPolicy ?? {
      Version: '2012-10-17',
      Statement: [{ Effect: 'Allow', Principal: { AWS: `arn:aws:iam::${ctx.env.accountId}:root` }, Action: 'kms:*', Resource: '*' }],
    };
    add(String(ctx.physicalIds.getAtt(id, 'Arn', ctx)), statementsOf(doc, `AWS::KMS::Key ${id} KeyPolicy`), true);
  }
  const queueArnByUrl = new Map(resourcesOfType(ctx, 'AWS::SQS::Queue').map((id) => [ctx.physicalIds.ref(id, ctx), String(ctx.physicalIds.getAtt(id, 'Arn', ctx))]));
  for (const id of resourcesOfType(ctx, 'AWS::SQS::QueuePolicy')) {
    const p = resolve(ctx.template.Resources[id].Properties ?? {}, ctx, `Resources.${id}.Properties`) as { PolicyDocument: PolicyDocument; Queues: string[] };
    for (const url of p.Queues ?? []) {
      const arn = queueArnByUrl.get(url);
      if (!arn) throw new PolicyError(`AWS::SQS::QueuePolicy ${id} names queue ${url}, which is not in the template`);
      add(arn, statementsOf(p.PolicyDocument, `AWS::SQS::QueuePolicy ${id}`));
    }
  }
  // Bucket policies govern the bucket and its objects (`resourcePolicyFor` maps an object's ARN to its bucket's).
  const bucketArnByName = new Map(resourcesOfType(ctx, 'AWS::S3::Bucket').map((id) => [ctx.physicalIds.ref(id, ctx), String(ctx.physicalIds.getAtt(id, 'Arn', ctx))]));
  for (const id of resourcesOfType(ctx, 'AWS::S3::BucketPolicy')) {
    const p = resolve(ctx.template.Resources[id].Properties ?? {}, ctx, `Resources.${id}.Properties`) as { PolicyDocument: PolicyDocument; Bucket: string };
    const arn = bucketArnByName.get(p.Bucket);
    if (!arn) throw new PolicyError(`AWS::S3::BucketPolicy ${id} names bucket ${p.Bucket}, which is not in the template`);
    add(arn, statementsOf(p.PolicyDocument, `AWS::S3::BucketPolicy ${id}`));
  }
  const fnArnByName = new Map<string, string>();
  for (const id of resourcesOfType(ctx, 'AWS::Lambda::Function')) {
    const arn = String(ctx.physicalIds.getAtt(id, 'Arn', ctx));
    fnArnByName.set(ctx.physicalIds.ref(id, ctx), arn);
    fnArnByName.set(arn, arn);
  }
  for (const id of resourcesOfType(ctx, 'AWS::Lambda::Permission')) {
    const p = resolve(ctx.template.Resources[id].Properties ?? {}, ctx, `Resources.${id}.Properties`) as {
      Action: string;
      FunctionName: string;
      Principal: string;
      SourceArn?: string;
      SourceAccount?: string;
      PrincipalOrgID?: string;
    };
    const arn = fnArnByName.get(p.FunctionName) ?? p.FunctionName;
    const principal: PolicyPrincipal = p.Principal === '*' ? '*' : p.Principal.includes('.') ? { Service: p.Principal } : { AWS: p.Principal };
    const condition: NonNullable<PolicyStatement['Condition']> = {};
    if (p.SourceArn) condition.ArnLike = { 'AWS:SourceArn': p.SourceArn };
    if (p.SourceAccount) condition.StringEquals = { 'AWS:SourceAccount': p.SourceAccount };
    if (p.PrincipalOrgID) condition.StringEquals = { ...(condition.StringEquals ?? {}), 'aws:PrincipalOrgID': p.PrincipalOrgID };
    const statement: PolicyStatement = {
      Sid: id,
      Effect: 'Allow',
      Principal: principal,
      Action: p.Action,
      Resource: arn,
      ...(Object.keys(condition).length ? { Condition: condition } : {}),
    };
    add(arn, [{ statement, source: `AWS::Lambda::Permission ${id}` }]);
  }
  return out;
}

/** The resource policy that governs an ARN (a queue, or a function and its qualified forms). */
export function resourcePolicyFor(policies: Map<string, ResourcePolicy>, resourceArn: string): ResourcePolicy | undefined {
  const direct = policies.get(resourceArn);
  if (direct) return direct;
  // A qualified Lambda ARN (`function:name:alias`) is governed by the function's policy.
  const fn = resourceArn.match(/^(arn:[^:]+:lambda:[^:]+:\d{12}:function:[^:]+):[^:]+$/);
  if (fn) return policies.get(fn[1]);
  // An object (`arn:aws:s3:::bucket/key`) is governed by its bucket's policy.
  const object = resourceArn.match(/^(arn:[^:]+:s3:::[^/]+)\/.+$/);
  return object ? policies.get(object[1]) : undefined;
}

