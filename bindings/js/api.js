// The package's JavaScript API over the wasm-bindgen exports, shared by the Node entry (index.js)
// and the browser entry (web.js). policy-core answers in JSON; this turns it into objects.

export function makeApi(wasm) {
  const text = (value) => (typeof value === "string" ? value : JSON.stringify(value));

  class RuleSet {
    #inner;

    /** `source`: a RuleSet in YAML or JSON text, or an object; omitted: the built-in rule set.
     * Throws an Error naming the line, the rule and the field at fault. */
    constructor(source) {
      this.#inner = source === undefined ? wasm.WasmRuleSet.builtIn() : new wasm.WasmRuleSet(text(source));
    }

    /** Findings for a YAML or JSON stream of manifests, as `meshguard check --format json`
     * prints them (without `file`): rule, action, message, line, column, kind, namespace,
     * name, path. Throws on a stream that does not parse, naming its line and column. */
    check(manifests, { namespace = "default" } = {}) {
      return JSON.parse(this.#inner.checkJson(manifests, namespace)).findings;
    }

    /** `meshguard fix` over a YAML stream: `{text, applied, left}`. `text` has every finding's
     * one right fix written into it, every untouched byte kept; `applied` lists the RFC 6902
     * patches written per object, `left` the findings without a fix (or whose fix could not be
     * written safely) with `why`. Throws on a stream that does not parse. */
    fix(manifests, { namespace = "default" } = {}) {
      return JSON.parse(this.#inner.fixJson(manifests, namespace));
    }

    /** One HTTP request `{method, path, authority, headers}` as the Envoy filter decides it:
     * `{allowed, rule?, message?, status?, grpcStatus?, warn}`. Rate-limit state lives in this
     * RuleSet; `now` (ms) defaults to the clock. */
    decide(request, { now = Date.now() } = {}) {
      return JSON.parse(this.#inner.decideJson(text(request), now));
    }

    /** An AdmissionReview, AdmissionRequest or bare object as the admission hosts decide it:
     * `{response: AdmissionResponse, findings}`. `cluster`: objects already in the cluster, so
     * cross-object rules decide as in CI (without it they are named in the response's
     * `meshguard.dev/without-context` annotation). */
    reviewAdmission(review, { cluster } = {}) {
      return JSON.parse(this.#inner.reviewAdmissionJson(text(review), cluster ? JSON.stringify(cluster) : ""));
    }

    /** The rules in force: `[{id, check, action, description}]`. */
    rules() {
      return JSON.parse(this.#inner.rulesJson());
    }

    /** Releases the compiled rule set's wasm memory now instead of at garbage collection. */
    free() {
      this.#inner.free();
    }
  }

  return {
    RuleSet,
    /** The check registry with its docs (summary, params, examples). */
    checks: () => JSON.parse(wasm.checksJson()),
    /** The built-in rule set as YAML text. */
    defaultRules: () => wasm.defaultRules(),
    version: wasm.version(),
  };
}
