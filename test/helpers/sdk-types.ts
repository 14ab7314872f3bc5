import { createRequire } from 'node:module';
import path from 'node:path';
import type * as TS from 'typescript5';

/**
 * The official SDK's type declarations (`@anthropic-ai/sdk/resources/beta/**.d.ts`) read with the
 * TypeScript compiler API, so that tests hold Corral to the SDK's own contract rather than to a
 * copy of it: the request fields a method can send (`paramKeys`) and the shape its answer must
 * have (`conforms`). A new SDK release that adds a field changes what these return, and the
 * tests built on them fail until Corral implements or refuses it.
 *
 * TypeScript 7 (the project's compiler) has no compiler API yet; `typescript5` is TypeScript 5.9
 * under another name, a dev dependency used only here.
 */

const require = createRequire(import.meta.url);
const ts = require('typescript5') as typeof TS;

const SDK_BETA = path.resolve(path.dirname(require.resolve('@anthropic-ai/sdk')), 'resources/beta');

/** An SDK resource: its `.d.ts` (under `resources/beta/`) and the class declared in it. */
export interface SdkResource {
  file: string;
  className: string;
}

/** The request and response types of one method of an SDK resource class. */
export interface SdkMethod {
  name: string;
  /** The `*Params` parameter's type, if the method takes one. */
  params?: TS.Type;
  /**
   * What the method resolves to: `X` of `APIPromise<X>`, the item of `PagePromise<Page, X>`, one
   * event of `APIPromise<Stream<X>>`.
   */
  result: TS.Type;
  /** For a list, the page (`PageCursor<X>` and the like), whose body fields `pageFields` gives. */
  page?: TS.Type;
  /** True for `PagePromise` (a list: `result` is one item of its `data`). */
  paged: boolean;
  /** An HTTP call (`APIPromise`, `PagePromise`), not a client-side helper such as `toolRunner`. */
  api: boolean;
  /** The method returns a stream (`Stream<X>`) or raw bytes rather than JSON. */
  streamed: boolean;
}

/** One step from a params object to a field: a property (`[]` for an array's element), and the union member taken. */
export interface PathStep {
  prop: string;
  type: TS.Type;
  choice?: TS.Type;
}

/** A request field or choice the SDK can send (see `SdkTypes.paramKeys`). */
export interface ParamKey {
  key: string;
  path: PathStep[];
  type: TS.Type;
}

/** Fields sent as HTTP headers, not in the body or query (`betas`, `workspace_id`). */
export const HEADER_PARAMS = new Set(['betas', 'workspace_id']);

export class SdkTypes {
  readonly program: TS.Program;
  readonly checker: TS.TypeChecker;

  constructor(files: string[]) {
    this.program = ts.createProgram(
      files.map((f) => path.join(SDK_BETA, f)),
      { target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.NodeNext, moduleResolution: ts.ModuleResolutionKind.NodeNext, strict: true, noEmit: true, skipLibCheck: true },
    );
    this.checker = this.program.getTypeChecker();
  }

  private classDecl(r: SdkResource): TS.ClassDeclaration {
    const sf = this.program.getSourceFile(path.join(SDK_BETA, r.file));
    if (!sf) throw new Error(`SDK file not found: ${r.file}`);
    const decl = sf.statements.find((s): s is TS.ClassDeclaration => ts.isClassDeclaration(s) && s.name?.text === r.className);
    if (!decl) throw new Error(`class ${r.className} not found in ${r.file}`);
    return decl;
  }

  /** Every public method of the resource class, with its request and response types. */
  methods(r: SdkResource): SdkMethod[] {
    const out: SdkMethod[] = [];
    for (const m of this.classDecl(r).members) {
      if (!ts.isMethodDeclaration(m) || !m.name || !ts.isIdentifier(m.name)) continue;
      const sig = this.checker.getSignatureFromDeclaration(m)!;
      const paramDecl = m.parameters.find((p) => p.type && /Params\b/.test(p.type.getText()));
      const params = paramDecl ? this.checker.getNonNullableType(this.checker.getTypeAtLocation(paramDecl.type!)) : undefined;
      const ret = this.checker.getReturnTypeOfSignature(sig);
      const retText = m.type?.getText() ?? '';
      const args = (ret as TS.TypeReference).aliasTypeArguments ?? this.checker.getTypeArguments(ret as TS.TypeReference);
      const paged = retText.startsWith('PagePromise');
      const streamed = /Stream<|APIPromise<Response>/.test(retText);
      const stream = /Stream</.test(retText) ? this.checker.getTypeArguments(args[0] as TS.TypeReference)[0] : undefined;
      const result = paged ? args[1] : (stream ?? args[0] ?? ret);
      out.push({ name: m.name.text, params, result, ...(paged ? { page: args[0] } : {}), api: /^(API|Page)Promise</.test(retText), paged, streamed });
    }
    return out;
  }

  name(t: TS.Type): string {
    const sym = t.aliasSymbol ?? t.getSymbol();
    return sym && !sym.getName().startsWith('__') ? sym.getName() : this.checker.typeToString(t);
  }

  /** The members of a union (null and undefined left out); a lone type is a union of one. */
  variants(t: TS.Type): TS.Type[] {
    const parts = t.isUnion() ? t.types : [t];
    return parts.filter((p) => !(p.flags & (ts.TypeFlags.Null | ts.TypeFlags.Undefined)));
  }

  isObject(t: TS.Type): boolean {
    return !!(t.flags & ts.TypeFlags.Object) && !this.checker.isArrayType(t);
  }

  /**
   * A union of string literals that also takes any string (`'claude-opus-5-5' | (string & {})`):
   * the literals are suggestions; the field is a string.
   */
  private openString(parts: TS.Type[]): boolean {
    return parts.some((p) => p.flags & ts.TypeFlags.Intersection || p.flags & ts.TypeFlags.String);
  }

  /**
   * What a field can carry, one entry per choice the API must honour or refuse: each object type
   * of a union by its name, each literal by its value; an open string or a number is one choice.
   */
  choices(t: TS.Type): Array<{ label: string; type: TS.Type }> {
    let parts = this.variants(t);
    if (parts.some((p) => p.flags & ts.TypeFlags.BooleanLiteral)) {
      parts = parts.filter((p) => !(p.flags & ts.TypeFlags.BooleanLiteral));
      parts.push(this.checker.getBooleanType());
    }
    const open = this.openString(parts);
    const out: Array<{ label: string; type: TS.Type }> = [];
    for (const p of parts) {
      if (p.isStringLiteral()) {
        if (!open) out.push({ label: JSON.stringify(p.value), type: p });
      } else if (p.flags & ts.TypeFlags.Intersection || (open && p.flags & ts.TypeFlags.String)) continue;
      else if (this.isObject(p)) out.push({ label: this.name(p), type: p });
      else if (this.checker.isArrayType(p)) out.push({ label: 'array', type: p });
      else out.push({ label: this.checker.typeToString(p), type: p });
    }
    if (open) out.unshift({ label: 'string', type: this.checker.getStringType() });
    return out;
  }

  properties(t: TS.Type): Array<{ name: string; type: TS.Type; optional: boolean }> {
    return this.checker.getPropertiesOfType(t).map((s) => ({
      name: s.getName(),
      type: this.checker.getTypeOfSymbol(s),
      optional: !!(s.flags & ts.SymbolFlags.Optional),
    }));
  }

  /**
   * The fields a page class reads from the response body (`data`, `next_page`, `prev_page`, ...):
   * its public properties that are not methods.
   */
  pageFields(page: TS.Type): Array<{ name: string; type: TS.Type }> {
    return this.checker.getPropertiesOfType(page).flatMap((s) => {
      const decl = s.valueDeclaration;
      if (!decl || !ts.isPropertyDeclaration(decl)) return [];
      if (ts.getCombinedModifierFlags(decl) & (ts.ModifierFlags.Private | ts.ModifierFlags.Protected)) return [];
      const type = this.checker.getTypeOfSymbol(s);
      return type.getCallSignatures().length ? [] : [{ name: s.getName(), type }];
    });
  }

  /** The doc comment of a property (`Path param: ...`, `Body param: ...`). */
  doc(t: TS.Type, prop: string): string {
    const sym = this.checker.getPropertyOfType(t, prop);
    return sym ? ts.displayPartsToString(sym.getDocumentationComment(this.checker)) : '';
  }

  elementType(t: TS.Type): TS.Type | undefined {
    return this.checker.isArrayType(t) ? this.checker.getTypeArguments(t as TS.TypeReference)[0] : undefined;
  }

  /**
   * Every request field a params type reaches, as `Owner.field` (the interface that declares it)
   * and, where the field takes one of several kinds of value, `Owner.field=Choice` for each
   * (`BetaManagedAgentsBashToolConfigParams.permission_policy=BetaManagedAgentsAutoPolicy`,
   * `BetaManagedAgentsMemoryStoreResourceParam.access="read_only"`), each with the path that
   * reaches it from the params. Each interface is walked once, wherever it is first met; a field
   * whose type is one literal (a discriminator such as `type: 'bash'`) is no choice and is left
   * out, as are header params. Below a key that `stop` accepts (a refused field), nothing is
   * walked: the refusal covers it.
   */
  paramKeys(params: TS.Type, opts: { seen?: Set<string>; stop?: (key: string) => boolean } = {}): ParamKey[] {
    const seen = opts.seen ?? new Set<string>();
    const stop = opts.stop ?? (() => false);
    const keys: ParamKey[] = [];
    const walkObject = (t: TS.Type, path: PathStep[]) => {
      const owner = this.name(t);
      if (seen.has(owner)) return;
      seen.add(owner);
      for (const p of this.properties(t)) {
        if (/Params$/.test(owner) && (HEADER_PARAMS.has(p.name) || /^Path param/.test(this.doc(t, p.name)))) continue;
        const choices = this.choices(p.type);
        if (choices.length === 1 && choices[0].type.isLiteral()) continue;
        const key = `${owner}.${p.name}`;
        const here = [...path, { prop: p.name, type: p.type }];
        keys.push({ key, path: here, type: p.type });
        if (stop(key)) continue;
        for (const c of choices) {
          const ck = `${key}=${c.label}`;
          const at = [...here.slice(0, -1), { prop: p.name, type: p.type, choice: c.type }];
          if (choices.length > 1) {
            keys.push({ key: ck, path: at, type: c.type });
            if (stop(ck)) continue;
          }
          walk(c.type, at, key);
        }
      }
    };
    const walk = (t: TS.Type, path: PathStep[], key: string) => {
      const el = this.elementType(t);
      if (el) {
        const choices = this.choices(el);
        for (const c of choices) {
          const ck = `${key}[]=${c.label}`;
          const at = [...path, { prop: '[]', type: el, choice: c.type }];
          if (choices.length > 1) {
            keys.push({ key: ck, path: at, type: c.type });
            if (stop(ck)) continue;
          }
          walk(c.type, at, `${key}[]`);
        }
        return;
      }
      if (this.isObject(t) && this.properties(t).length && !this.checker.getIndexInfosOfType(t).length) walkObject(t, path);
    };
    walkObject(params, []);
    return keys;
  }

  /**
   * Where `value` departs from type `t`: a required field missing, a field of the wrong type, a
   * literal of another value. Empty when it conforms. Fields the type does not declare are allowed
   * (the SDK ignores them); null passes only where the type says `| null`.
   */
  conforms(value: unknown, t: TS.Type, at = '$', depth = 0): string[] {
    if (depth > 40) return [];
    const c = this.checker;
    if (t.flags & (ts.TypeFlags.Any | ts.TypeFlags.Unknown)) return [];
    if (t.isUnion()) {
      const problems: string[][] = [];
      for (const part of t.types) {
        const p = this.conforms(value, part, at, depth + 1);
        if (!p.length) return [];
        problems.push(p);
      }
      // Report against the member whose discriminator matches, else the closest member.
      const discriminated = t.types.findIndex((part) => {
        const typeProp = this.isObject(part) ? c.getPropertyOfType(part, 'type') : undefined;
        const lit = typeProp && c.getTypeOfSymbol(typeProp);
        return !!lit?.isStringLiteral() && (value as { type?: unknown })?.type === lit.value;
      });
      if (discriminated >= 0) return problems[discriminated];
      return problems.reduce((a, b) => (b.length < a.length ? b : a));
    }
    if (t.flags & ts.TypeFlags.Null) return value === null ? [] : [`${at}: expected null, got ${describe(value)}`];
    if (t.flags & ts.TypeFlags.Undefined) return value === undefined ? [] : [`${at}: expected undefined`];
    if (value === undefined) return [`${at}: missing`];
    if (t.isStringLiteral()) return value === t.value ? [] : [`${at}: expected ${JSON.stringify(t.value)}, got ${describe(value)}`];
    if (t.isNumberLiteral()) return value === t.value ? [] : [`${at}: expected ${t.value}, got ${describe(value)}`];
    if (t.flags & ts.TypeFlags.BooleanLiteral) {
      const want = c.typeToString(t) === 'true';
      return value === want ? [] : [`${at}: expected ${want}, got ${describe(value)}`];
    }
    if (t.flags & ts.TypeFlags.StringLike) return typeof value === 'string' ? [] : [`${at}: expected a string, got ${describe(value)}`];
    if (t.flags & ts.TypeFlags.NumberLike) return typeof value === 'number' ? [] : [`${at}: expected a number, got ${describe(value)}`];
    if (t.flags & ts.TypeFlags.BooleanLike) return typeof value === 'boolean' ? [] : [`${at}: expected a boolean, got ${describe(value)}`];
    if (t.flags & ts.TypeFlags.Intersection) {
      return (t as TS.IntersectionType).types.flatMap((part) => (this.isObject(part) && !this.properties(part).length ? [] : this.conforms(value, part, at, depth + 1)));
    }
    const el = this.elementType(t);
    if (el) {
      if (!Array.isArray(value)) return [`${at}: expected an array, got ${describe(value)}`];
      return value.flatMap((v, i) => this.conforms(v, el, `${at}[${i}]`, depth + 1));
    }
    if (t.flags & ts.TypeFlags.Object) {
      if (value === null || typeof value !== 'object' || Array.isArray(value)) return [`${at}: expected an object (${this.name(t)}), got ${describe(value)}`];
      const rec = value as Record<string, unknown>;
      const out: string[] = [];
      for (const p of this.properties(t)) {
        if (p.optional && rec[p.name] === undefined) continue;
        out.push(...this.conforms(rec[p.name], p.type, `${at}.${p.name}`, depth + 1));
      }
      for (const info of c.getIndexInfosOfType(t)) {
        for (const [k, v] of Object.entries(rec)) out.push(...this.conforms(v, info.type, `${at}.${k}`, depth + 1));
      }
      return out;
    }
    return [];
  }
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'string') return `"${v.length > 40 ? `${v.slice(0, 40)}…` : v}"`;
  return typeof v === 'object' ? 'an object' : String(v);
}
