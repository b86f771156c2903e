// The shared corpus through the package, against the native CLI's own answers. The cases and
// the CLI's output come from tests/js_package.rs (`cargo test -p meshguard-tests --test
// js_package`), which runs `meshguard check --format json` on each case and then this file.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { RuleSet } from "../index.js";

const fixture = process.env.MESHGUARD_JS_FIXTURE;
// Without the CLI's answers there is nothing to compare with: skipped (reported as such), and the
// Rust harness, which always gives them, fails on any skip.
const skip = !fixture && "MESHGUARD_JS_FIXTURE not set: run `cargo test -p meshguard-tests --test js_package`";

const { cases = [], admission = [] } = fixture ? JSON.parse(readFileSync(fixture, "utf8")) : {};

for (const c of cases) {
  test(`check: ${c.name}`, () => {
    const rules = c.rules === null ? new RuleSet() : new RuleSet(c.rules);
    const got = rules.check(c.manifests, { namespace: c.namespace });
    const want = c.cli.findings.map(({ file, ...rest }) => rest);
    assert.deepEqual(got, want);
    for (const [i, r] of c.requests.entries()) {
      const d = rules.decide(r.request, { now: r.at_ms });
      const e = r.expect;
      assert.equal(d.allowed ? "allow" : "deny", e.decision, `request ${i}`);
      if (e.rule) assert.equal(d.rule, e.rule, `request ${i}`);
      if (e.status) assert.equal(d.status, e.status, `request ${i}`);
      if (e.grpc_status) assert.equal(d.grpcStatus, e.grpc_status, `request ${i}`);
      assert.deepEqual(d.warn, e.warn, `request ${i}: warn`);
    }
  });
}

test("admission: every corpus object decides as policy-core natively", { skip }, () => {
  assert.ok(admission.length > 0);
  const failures = [];
  for (const a of admission) {
    const rules = a.rules === null ? new RuleSet() : new RuleSet(a.rules);
    const cluster = a.cluster.length ? a.cluster : undefined;
    const { response } = rules.reviewAdmission({ request: a.request }, { cluster });
    const ids = (key) => [...new Set((response.auditAnnotations?.[key] ?? "").split(",").filter(Boolean))].sort();
    const got = JSON.stringify([response.allowed, ids("meshguard.dev/deny"), ids("meshguard.dev/warn")]);
    const want = JSON.stringify([a.allowed, a.deny, a.warn]);
    if (got !== want) failures.push(`${a.name}: want ${want} got ${got}`);
  }
  assert.deepEqual(failures, []);
});
