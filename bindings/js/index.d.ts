export type Action = "deny" | "warn" | "audit";

/** A finding as `meshguard check --format json` prints it (without `file`). */
export interface Finding {
  rule: string;
  action: Action;
  message: string;
  /** 1-based line and column of the field at fault. */
  line: number;
  column: number;
  kind: string;
  namespace: string;
  name: string;
  /** Field path, e.g. `spec.ports[0].name`. */
  path: string;
}

export interface HttpRequest {
  method: string;
  path: string;
  authority?: string;
  /** A map, or `[name, value]` pairs when a name repeats. */
  headers?: Record<string, string> | [string, string][];
}

export interface HttpDecision {
  allowed: boolean;
  /** Set when denied: the rule, its message, the HTTP status and the gRPC status sent instead. */
  rule?: string;
  message?: string;
  status?: number;
  grpcStatus?: number;
  /** Ids of `warn` rules that fired. */
  warn: string[];
}

export interface AdmissionResponse {
  uid: string;
  allowed: boolean;
  status?: { code: number; message: string };
  warnings?: string[];
  auditAnnotations?: Record<string, string>;
}

export interface AdmissionDecision {
  response: AdmissionResponse;
  findings: { rule: string; action: Action; message: string; kind: string; namespace: string; name: string; path: string }[];
}

export interface RuleInfo {
  id: string;
  check: string;
  action: Action;
  description: string;
}

export interface CheckDoc {
  id: string;
  target: "kubernetes" | "http";
  summary: string;
  params: { name: string; type: string; default: string; description: string }[];
  exampleParams: string;
  passingExample: string;
  failingExample: string;
}

/** One RFC 6902 operation of a fix. */
export interface PatchOperation {
  op: "add" | "replace" | "remove";
  path: string;
  value?: unknown;
}

/** What `fix` did to one text. */
export interface FixResult {
  text: string;
  applied: { rule: string; kind: string; namespace: string; name: string; path: string; description: string; patch: PatchOperation[] }[];
  left: { rule: string; kind: string; namespace: string; name: string; path: string; message: string; why: string }[];
}

export declare class RuleSet {
  /** A RuleSet in YAML or JSON text, or as an object; omitted: the built-in rule set.
   * Throws an Error naming the line, the rule and the field at fault. */
  constructor(source?: string | object);
  check(manifests: string, options?: { namespace?: string }): Finding[];
  fix(manifests: string, options?: { namespace?: string }): FixResult;
  decide(request: HttpRequest | string, options?: { now?: number }): HttpDecision;
  reviewAdmission(review: object | string, options?: { cluster?: object[] }): AdmissionDecision;
  rules(): RuleInfo[];
  free(): void;
}

export declare function checks(): CheckDoc[];
export declare function defaultRules(): string;
export declare const version: string;

/** Browser entry (`meshguard/web`): compiles the module once, then the same API. */
export interface Api {
  RuleSet: typeof RuleSet;
  checks: typeof checks;
  defaultRules: typeof defaultRules;
  version: string;
}
