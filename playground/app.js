// The playground: meshguard's JavaScript package in the page, re-checking on every keystroke.
// Served as static files; the wasm module is fetched once and everything runs in the tab.
import { load } from "../bindings/js/web.js";

// Adapted from examples/manifests/payments: a Service whose port names hide their protocol, and
// a Deployment that gets a sidecar (here by its own label, since no Namespace object is in the
// page) without waiting for it or draining.
const SAMPLE = `apiVersion: v1
kind: Service
metadata:
  name: ledger
  namespace: payments
spec:
  selector:
    app: ledger
  ports:
  - name: web
    port: 80
    targetPort: 8080
  - port: 50051
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: ledger
  namespace: payments
spec:
  replicas: 2
  selector:
    matchLabels:
      app: ledger
  template:
    metadata:
      labels:
        app: ledger
        version: v1
        sidecar.istio.io/inject: "true"
    spec:
      containers:
      - name: ledger
        image: registry.example.com/payments/ledger:1.9.0
        ports:
        - name: http
          containerPort: 8080
`;

const $ = (id) => document.getElementById(id);
const api = await load();

// Share links carry both texts in the URL fragment (never sent to a server), UTF-8 in base64url.
function encode(text) {
  const bytes = new TextEncoder().encode(text);
  let binary = "";
  for (const b of bytes) binary += String.fromCharCode(b);
  return btoa(binary).replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "");
}
function decode(text) {
  const binary = atob(text.replaceAll("-", "+").replaceAll("_", "/"));
  return new TextDecoder().decode(Uint8Array.from(binary, (c) => c.charCodeAt(0)));
}
function fromFragment() {
  const params = new URLSearchParams(location.hash.slice(1));
  const read = (key) => {
    try {
      return params.has(key) ? decode(params.get(key)) : null;
    } catch {
      return null;
    }
  };
  return { rules: read("rules"), manifests: read("manifests") };
}

function gutter(el, text, marks) {
  const lines = text.split("\n").length;
  const spans = [];
  for (let i = 1; i <= lines; i++) {
    const mark = marks.get(i);
    spans.push(`<span${mark ? ` class="${mark}"` : ""} data-line="${i}">${i}</span>`);
  }
  el.innerHTML = spans.join("");
}

function showError(el, message) {
  el.hidden = !message;
  el.textContent = message ?? "";
}

let ruleSet = null;
let ruleSetText = null;

function compileRules() {
  const text = $("rules").value;
  if (text === ruleSetText) return ruleSet;
  ruleSetText = text;
  ruleSet?.free();
  ruleSet = null;
  try {
    ruleSet = new api.RuleSet(text);
    showError($("rules-error"), null);
  } catch (e) {
    showError($("rules-error"), `RuleSet: ${e.message}`);
  }
  const line = /^line (\d+)/.exec($("rules-error").textContent.replace("RuleSet: ", ""));
  gutter($("rules-gutter"), text, new Map(line ? [[Number(line[1]), "hit"]] : []));
  return ruleSet;
}

function checkManifests() {
  const text = $("manifests").value;
  const list = $("findings");
  list.replaceChildren();
  const rules = compileRules();
  let findings = [];
  if (rules) {
    try {
      findings = rules.check(text);
      showError($("manifests-error"), null);
    } catch (e) {
      showError($("manifests-error"), `Manifests: ${e.message}`);
    }
  }
  const marks = new Map();
  for (const f of findings) {
    if (marks.get(f.line) !== "hit") marks.set(f.line, f.action === "deny" ? "hit" : "warn");
    const li = document.createElement("li");
    li.className = f.action;
    li.dataset.line = f.line;
    li.innerHTML = `<b></b> <span class="where"></span> <span class="msg"></span>`;
    li.querySelector("b").textContent = `${f.action} ${f.rule}`;
    li.querySelector(".where").textContent = `line ${f.line}:${f.column} ${f.kind}/${f.name} ${f.path}`;
    li.querySelector(".msg").textContent = `— ${f.message}`;
    li.addEventListener("click", () => selectLine($("manifests"), f.line));
    list.append(li);
  }
  $("count").textContent = rules ? `(${findings.length})` : "";
  gutter($("manifests-gutter"), text, marks);
  showFix(rules, text);
}

// A line diff of `before` and `after` (longest common subsequence, small inputs only), shown as
// hunks with two lines of context: the same lines `meshguard fix` would print in its diff.
function lineDiff(before, after) {
  const a = before.split("\n");
  const b = after.split("\n");
  if (a.length * b.length > 4_000_000) return "(too large to show here: use meshguard fix)";
  const lcs = Array.from({ length: a.length + 1 }, () => new Uint32Array(b.length + 1));
  for (let i = a.length - 1; i >= 0; i--)
    for (let j = b.length - 1; j >= 0; j--)
      lcs[i][j] = a[i] === b[j] ? lcs[i + 1][j + 1] + 1 : Math.max(lcs[i + 1][j], lcs[i][j + 1]);
  const rows = [];
  let i = 0;
  let j = 0;
  while (i < a.length || j < b.length) {
    if (i < a.length && j < b.length && a[i] === b[j]) rows.push({ t: " ", s: a[i++], n: i }) && j++;
    else if (j < b.length && (i === a.length || lcs[i][j + 1] >= lcs[i + 1][j])) rows.push({ t: "+", s: b[j++], n: i });
    else rows.push({ t: "-", s: a[i++], n: i });
  }
  const near = rows.map((_, k) => rows.slice(Math.max(0, k - 2), k + 3).some((r) => r.t !== " "));
  const out = [];
  rows.forEach((r, k) => {
    if (!near[k]) {
      if (out.at(-1) !== "…") out.push("…");
      return;
    }
    out.push(`${r.t} ${r.s}`);
  });
  return out.join("\n");
}

let fixedText = null;

function showFix(rules, text) {
  fixedText = null;
  let fixed = null;
  if (rules) {
    try {
      fixed = rules.fix(text);
    } catch {
      // The findings pane already shows why the manifests do not parse.
    }
  }
  const applied = fixed?.applied.length ?? 0;
  $("fix-count").textContent = fixed ? `(${applied} fixed, ${fixed.left.length} left)` : "";
  $("apply-fix").disabled = !applied;
  $("fix-diff").textContent = applied ? lineDiff(text, fixed.text) : fixed ? "nothing to fix" : "";
  if (applied) fixedText = fixed.text;
}

function selectLine(textarea, line) {
  const lines = textarea.value.split("\n");
  const start = lines.slice(0, line - 1).reduce((n, l) => n + l.length + 1, 0);
  textarea.focus();
  textarea.setSelectionRange(start, start + (lines[line - 1] ?? "").length);
  textarea.scrollTop = (line - 3) * 18;
}

function decideHttp() {
  const rules = compileRules();
  if (!rules) {
    $("decision").textContent = "fix the RuleSet first";
    return;
  }
  const headers = [];
  for (const line of $("http-headers").value.split("\n")) {
    const at = line.indexOf(":");
    if (at > 0) headers.push([line.slice(0, at).trim().toLowerCase(), line.slice(at + 1).trim()]);
  }
  const request = { method: $("http-method").value, path: $("http-path").value, authority: $("http-authority").value, headers };
  try {
    $("decision").textContent = JSON.stringify(rules.decide(request), null, 2);
  } catch (e) {
    $("decision").textContent = `error: ${e.message}`;
  }
}

function refresh() {
  checkManifests();
  if (!$("panel-http").hidden) decideHttp();
}

for (const id of ["rules", "manifests"]) {
  $(id).addEventListener("input", refresh);
  $(id).addEventListener("scroll", () => ($(`${id}-gutter`).scrollTop = $(id).scrollTop));
}
for (const id of ["http-method", "http-path", "http-authority", "http-headers"]) $(id).addEventListener("input", decideHttp);
for (const [tab, panel] of [["tab-manifests", "panel-manifests"], ["tab-http", "panel-http"]]) {
  $(tab).addEventListener("click", () => {
    for (const [t, p] of [["tab-manifests", "panel-manifests"], ["tab-http", "panel-http"]]) {
      $(t).setAttribute("aria-selected", String(t === tab));
      $(p).hidden = p !== panel;
    }
    refresh();
  });
}
$("apply-fix").addEventListener("click", () => {
  if (fixedText === null) return;
  $("manifests").value = fixedText;
  refresh();
});
$("reset-rules").addEventListener("click", () => {
  $("rules").value = api.defaultRules();
  refresh();
});
$("share").addEventListener("click", async () => {
  const link = `${location.origin}${location.pathname}#rules=${encode($("rules").value)}&manifests=${encode($("manifests").value)}`;
  history.replaceState(null, "", link);
  try {
    await navigator.clipboard.writeText(link);
    $("shared").textContent = "link copied";
  } catch {
    $("shared").textContent = "link in the address bar";
  }
});

const shared = fromFragment();
$("rules").value = shared.rules ?? api.defaultRules();
$("manifests").value = shared.manifests ?? SAMPLE;
refresh();
document.body.dataset.ready = "true";
