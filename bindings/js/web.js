// Browser entry (also Deno and bundlers): `const { RuleSet } = await load();` fetches and
// compiles the wasm module once; `load(url)` takes its address when it is served elsewhere.
import init, * as wasm from "./pkg/web/meshguard_js.js";
import { makeApi } from "./api.js";

let api;
export async function load(moduleOrPath) {
  if (!api) {
    await init(moduleOrPath === undefined ? undefined : { module_or_path: moduleOrPath });
    api = makeApi(wasm);
  }
  return api;
}
