// Node entry: the wasm module is read and compiled synchronously at import.
import { createRequire } from "node:module";
import { makeApi } from "./api.js";

const wasm = createRequire(import.meta.url)("./pkg/node/meshguard_js.js");
export const { RuleSet, checks, defaultRules, version } = makeApi(wasm);
