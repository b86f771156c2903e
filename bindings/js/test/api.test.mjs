// The package's API on its own: construction errors, findings, HTTP decisions, admission.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { RuleSet, checks, defaultRules, version } from "../index.js";

const badService = `apiVersion: v1
kind: Service
metadata:
  name: api
  namespace: shop
spec:
  ports:
  - name: web
    port: 80
`;

test("the built-in rule set finds a bad port name at its line and column", () => {
  const findings = new RuleSet().check(badService);
  assert.equal(findings.length, 1);
  const [f] = findings;
  assert.deepEqual(
    { rule: f.rule, action: f.action, line: f.line, column: f.column, path: f.path, kind: f.kind, namespace: f.namespace, name: f.name },
    { rule: "istio-port-name", action: "deny", line: 8, column: 5, path: "spec.ports[0].name", kind: "Service", namespace: "shop", name: "api" },
  );
  assert.match(f.message, /does not start with a protocol/);
  assert.deepEqual(new RuleSet().check(badService.replace("name: web", "name: http-web")), []);
});

test("fix writes the one right fix into the text and says what it left", () => {
  const commented = badService.replace("  - name: web\n", "  # the public port\n  - name: web # rename me\n");
  const fixed = new RuleSet().fix(commented);
  assert.equal(fixed.text, commented.replace("name: web #", "name: http-web #"));
  assert.deepEqual(fixed.applied.map((a) => [a.rule, a.patch]), [
    ["istio-port-name", [{ op: "replace", path: "/spec/ports/0/name", value: "http-web" }]],
  ]);
  assert.deepEqual(new RuleSet().check(fixed.text), []);
  const unsure = new RuleSet().fix(badService.replace("port: 80", "port: 7000"));
  assert.equal(unsure.applied.length, 0, "port 7000's protocol is a guess");
  assert.equal(unsure.left[0].rule, "istio-port-name");
  assert.match(unsure.left[0].why, /only when the protocol is certain/);
});

test("an invalid RuleSet throws an Error naming line, rule and field", () => {
  const text = "apiVersion: meshguard.dev/v1alpha1\nkind: RuleSet\nmetadata: {name: t}\nspec:\n  rules:\n  - {id: ports, check: istio-port-name, params: {protocol: [http]}}\n";
  assert.throws(() => new RuleSet(text), (e) => e instanceof Error && /^line 6: rule `ports`: spec\.rules\[0\]\.params\.protocol: unknown field `protocol`/.test(e.message));
  assert.throws(() => new RuleSet("a: ["), /^Error: line 2/);
});

test("manifests that do not parse throw with their line; a byte-order mark hides nothing", () => {
  assert.throws(() => new RuleSet().check("kind: [\n"), /line 2, column 1/);
  assert.equal(new RuleSet().check("\ufeff" + badService)[0].rule, "istio-port-name");
});

test("objects without a namespace go to the one given", () => {
  const [f] = new RuleSet().check(badService.replace("  namespace: shop\n", ""), { namespace: "payments" });
  assert.equal(f.namespace, "payments");
});

test("HTTP requests are decided as in Envoy, with rate-limit state kept in the RuleSet", () => {
  const rules = new RuleSet(`apiVersion: meshguard.dev/v1alpha1
kind: RuleSet
metadata: {name: http}
spec:
  rules:
  - id: tenant
    check: http-require-header
    params: {header: x-tenant}
  - id: limit
    check: http-local-rate-limit
    params: {tokenBucket: {maxTokens: 2, tokensPerFill: 1, fillInterval: 1s}}
`);
  const ok = { method: "GET", path: "/", authority: "api", headers: { "x-tenant": "shop" } };
  assert.equal(rules.decide({ ...ok, headers: {} }, { now: 0 }).rule, "tenant");
  assert.equal(rules.decide(ok, { now: 0 }).allowed, true);
  assert.equal(rules.decide(ok, { now: 0 }).allowed, true);
  const limited = rules.decide(ok, { now: 0 });
  assert.deepEqual([limited.allowed, limited.rule, limited.status], [false, "limit", 429]);
  assert.equal(rules.decide(ok, { now: 1500 }).allowed, true, "the bucket refills with the clock");
});

test("admission reviews get the AdmissionResponse the admission hosts send", () => {
  const review = { apiVersion: "admission.k8s.io/v1", kind: "AdmissionReview",
    request: { uid: "u1", operation: "CREATE", namespace: "shop",
      object: { apiVersion: "v1", kind: "Service", metadata: { name: "api" }, spec: { ports: [{ name: "web", port: 80 }] } } } };
  const { response, findings } = new RuleSet().reviewAdmission(review);
  assert.equal(response.uid, "u1");
  assert.equal(response.allowed, false);
  assert.equal(response.status.code, 403);
  assert.equal(response.auditAnnotations["meshguard.dev/deny"], "istio-port-name");
  assert.equal(findings[0].path, "spec.ports[0].name");
});

test("the registry, the default rules and the version", () => {
  const ids = checks().map((c) => c.id);
  assert.ok(ids.includes("istio-port-name") && ids.includes("http-local-rate-limit") && ids.includes("cel"));
  assert.ok(checks().every((c) => c.summary.length > 0), "docs are included");
  const rules = new RuleSet(defaultRules()).rules();
  assert.deepEqual(rules.map((r) => r.id), new RuleSet().rules().map((r) => r.id));
  const pkg = JSON.parse(readFileSync(new URL("../package.json", import.meta.url)));
  assert.equal(version, pkg.version, "package.json carries the crate's version");
});
