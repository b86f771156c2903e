// Per-object time of the JavaScript package in Node, for BENCHMARKS.md (run by benches/
// admission_hosts.rs): reviewAdmission of one AdmissionRequest (JSON in, verdict out) and check of
// a manifest stream (YAML in, located findings out), each the mean of many calls after a warm-up.
// Usage: node bench.mjs REQUEST.json MANIFESTS.yaml OBJECTS [N]
import { readFileSync } from "node:fs";
import { RuleSet } from "./index.js";

const [requestPath, manifestsPath, objectCount, count = "20000"] = process.argv.slice(2);
const request = JSON.parse(readFileSync(requestPath, "utf8"));
const manifests = readFileSync(manifestsPath, "utf8");
const rules = new RuleSet();
const n = Number(count);

function time(label, per, f) {
  for (let i = 0; i < Math.min(n, 2000); i++) f();
  const start = process.hrtime.bigint();
  for (let i = 0; i < n; i++) f();
  const ns = Number(process.hrtime.bigint() - start) / n / per;
  console.log(`bench ${label} ${ns.toFixed(0)}`);
}

if (!rules.reviewAdmission({ request }).response.allowed) throw new Error("the benchmark object must be compliant");
time("review_admission_ns", 1, () => rules.reviewAdmission({ request }));
const objects = Number(objectCount);
time("check_ns_per_object", objects, () => rules.check(manifests));
