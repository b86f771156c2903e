import type { Api } from "./index.js";
export * from "./index.js";
/** Fetches and compiles the wasm module once (`moduleOrPath`: its URL, bytes or a compiled module). */
export declare function load(moduleOrPath?: string | URL | BufferSource | WebAssembly.Module): Promise<Api>;
