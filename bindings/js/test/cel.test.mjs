// The CEL conformance cases (tests/cel-conformance, from upstream suites) through the package,
// against policy-core's native answers. tests/cel_hosts.rs (`cargo test -p meshguard-tests --test
// cel_hosts`) turns the cases' expressions into `check: cel` rules, decides one AdmissionReview
// natively per batch of rules, and runs this file on them.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { RuleSet } from "../index.js";

const fixture = process.env.MESHGUARD_JS_CEL_FIXTURE;
const skip = !fixture && "MESHGUARD_JS_CEL_FIXTURE not set: run `cargo test -p meshguard-tests --test cel_hosts`";
const { request = null, batches = [] } = fixture ? JSON.parse(readFileSync(fixture, "utf8")) : {};

test("CEL conformance expressions decide as policy-core natively", { skip }, () => {
  assert.ok(batches.length > 0);
  for (const [i, b] of batches.entries()) {
    const rules = new RuleSet(JSON.stringify(b.rules));
    try {
      assert.deepEqual(rules.reviewAdmission({ request }), b.native, `batch ${i}`);
    } finally {
      rules.free();
    }
  }
});
