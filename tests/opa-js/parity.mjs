// Evaluates meshguard's OPA-ABI module with OPA's JavaScript SDK (@open-policy-agent/opa-wasm)
// over admission cases whose expected answers policy-core computed natively; exits 1 on any
// difference. Usage: node parity.mjs MODULE.wasm CASES.json [--bench N]
import { readFileSync } from "node:fs";
import { loadPolicy } from "@open-policy-agent/opa-wasm";

const [modulePath, casesPath, flag, count] = process.argv.slice(2);
const policy = await loadPolicy(readFileSync(modulePath));
const cases = JSON.parse(readFileSync(casesPath, "utf8"));

const sorted = (xs) => [...new Set(xs)].sort();
let failures = 0;
for (const c of cases) {
  // A case admitted into a cluster carries the host's data: Gatekeeper's inventory of it.
  policy.setData(c.data ?? {});
  const input = { review: c.request, parameters: c.rules ?? {} };
  const violations = policy.evaluate(input, "meshguard/violation")[0].result;
  const allowed = policy.evaluate(input, "meshguard/allow")[0].result;
  const findings = policy.evaluate(input, "meshguard/findings")[0].result;
  const got = {
    allowed,
    deny: sorted(violations.map((v) => v.details.rule)),
    warn: sorted(findings.filter((f) => f.action === "warn").map((f) => f.rule)),
  };
  const want = { allowed: c.allowed, deny: c.deny, warn: c.warn };
  if (JSON.stringify(got) !== JSON.stringify(want)) {
    failures++;
    console.log(`MISMATCH ${c.name}: want ${JSON.stringify(want)} got ${JSON.stringify(got)}`);
  }
}

// The RuleSet may also come from data instead of input.parameters.
policy.setData({});
const withData = cases.find((c) => c.rules && !c.data);
if (withData) {
  policy.setData(withData.rules);
  const viaData = policy.evaluate({ review: withData.request }, "meshguard/allow")[0].result;
  if (viaData !== withData.allowed) {
    failures++;
    console.log(`MISMATCH ${withData.name} with the RuleSet in data: allowed=${viaData}`);
  }
  policy.setData({});
}

if (flag === "--bench") {
  const input = { review: cases[0].request, parameters: {} };
  const n = Number(count);
  for (let i = 0; i < 200; i++) policy.evaluate(input, "meshguard/violation");
  const start = process.hrtime.bigint();
  for (let i = 0; i < n; i++) policy.evaluate(input, "meshguard/violation");
  const ns = Number(process.hrtime.bigint() - start) / n;
  console.log(`bench ns_per_eval ${ns.toFixed(0)}`);
}
console.log(`${cases.length - failures} passed, ${failures} failed`);
process.exit(failures ? 1 : 0);
