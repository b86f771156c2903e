// meshguard's OPA-ABI module in OPA's JavaScript SDK, in place of a Rego bundle.
//   npm install @open-policy-agent/opa-wasm
//   node examples/opa/evaluate.mjs dist/meshguard-opa.wasm
import { readFileSync } from "node:fs";
import { loadPolicy } from "@open-policy-agent/opa-wasm";

const policy = await loadPolicy(readFileSync(process.argv[2] ?? "dist/meshguard-opa.wasm"));
// Optional: the RuleSet as data (input.parameters wins; neither means the built-in rule set).
// policy.setData(ruleSetAsJson);

const review = {
  operation: "CREATE",
  namespace: "shop",
  object: {
    apiVersion: "v1", kind: "Service", metadata: { name: "api" },
    spec: { ports: [{ name: "web", port: 80 }] },
  },
};
// Gatekeeper's shape: {review, parameters}; entrypoint 0 is meshguard/violation.
const [{ result: violations }] = policy.evaluate({ review, parameters: {} }, "meshguard/violation");
for (const v of violations) console.log(`${v.details.rule} ${v.details.path}: ${v.msg}`);
console.log("allowed:", policy.evaluate({ review }, "meshguard/allow")[0].result);
