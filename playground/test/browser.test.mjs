// The playground in a real browser: Debian's Chromium (headless), driven by playwright-core
// (which downloads no browser), the page served from localhost. Types a bad port name, sees the
// finding on its line, fixes it, sees it vanish; checks inline RuleSet errors, the HTTP tab and
// the share link; saves screenshots to test-artifacts/.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { chromium } from "playwright-core";
import { serve } from "../serve.mjs";

const executablePath = process.env.MESHGUARD_CHROMIUM ?? "/usr/bin/chromium";
const artifacts = new URL("../../test-artifacts/", import.meta.url);
mkdirSync(artifacts, { recursive: true });

const GOOD = `apiVersion: v1
kind: Service
metadata:
  name: orders
  namespace: shop
spec:
  ports:
  - name: http-api
    port: 80
`;

let server, browser, page, base;

before(async () => {
  server = await serve(0);
  base = `http://127.0.0.1:${server.address().port}/playground/`;
  browser = await chromium.launch({
    executablePath,
    // This machine's network is closed: keep Chromium from reaching out at all.
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
      "--disable-component-update", "--disable-sync"],
  });
  page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  await page.goto(base);
  await page.waitForSelector("body[data-ready=true]", { timeout: 30_000 }).catch((e) => {
    throw new Error(`${e.message}; page errors: ${errors.join("; ")}`);
  });
});

after(async () => {
  await browser?.close();
  server?.close();
});

const findings = () => page.locator("#findings li");

test("the page starts with the default rules and the example's findings", async () => {
  assert.match(await page.inputValue("#rules"), /kind: RuleSet/);
  assert.ok((await findings().count()) >= 2, "the sample has findings");
  assert.match(await findings().first().innerText(), /istio-port-name/);
  await page.screenshot({ path: new URL("playground-start.png", artifacts).pathname });
});

test("the Fix view shows the diff meshguard fix would apply, and applying it clears those findings", async () => {
  const diff = await page.locator("#fix-diff").innerText();
  assert.match(diff, /^- {3}- name: web$/m, diff);
  assert.match(diff, /^\+ {3}- name: http-web$/m, diff);
  assert.match(await page.locator("#fix-count").innerText(), /\(\d+ fixed, \d+ left\)/);
  const before = await findings().count();
  await page.screenshot({ path: new URL("playground-fix.png", artifacts).pathname });
  await page.click("#apply-fix");
  assert.match(await page.inputValue("#manifests"), /- name: http-web\n/);
  const after = await findings().count();
  assert.ok(after < before, `${before} findings before, ${after} after`);
  assert.doesNotMatch((await findings().allInnerTexts()).join("\n"), /istio-port-name/);
  assert.equal(await page.locator("#fix-diff").innerText(), "nothing to fix");
  assert.ok(await page.locator("#apply-fix").isDisabled());
});

test("typing a bad port name shows the finding on its line; fixing it makes it vanish", async () => {
  await page.fill("#manifests", GOOD);
  await page.waitForFunction(() => document.querySelectorAll("#findings li").length === 0);
  // Type over `http-api` as a user would: select the line's value and type a bad name.
  await page.click("#manifests");
  const text = await page.inputValue("#manifests");
  const at = text.indexOf("http-api");
  await page.evaluate(([s, e]) => document.getElementById("manifests").setSelectionRange(s, e), [at, at + "http-api".length]);
  await page.keyboard.type("api");
  await page.waitForFunction(() => document.querySelectorAll("#findings li").length === 1);
  const finding = await findings().first().innerText();
  assert.match(finding, /deny istio-port-name/);
  assert.match(finding, /line 8:/);
  assert.equal(await page.locator("#manifests-gutter .hit").innerText(), "8", "line 8 is highlighted");
  await page.screenshot({ path: new URL("playground.png", artifacts).pathname });

  const now = await page.inputValue("#manifests");
  const bad = now.indexOf("name: api") + "name: ".length;
  await page.evaluate(([s, e]) => document.getElementById("manifests").setSelectionRange(s, e), [bad, bad + 3]);
  await page.keyboard.type("http-api");
  await page.waitForFunction(() => document.querySelectorAll("#findings li").length === 0);
  assert.equal(await page.locator("#manifests-gutter .hit").count(), 0);
});

test("an invalid RuleSet shows inline, never a blank page", async () => {
  const rules = await page.inputValue("#rules");
  await page.fill("#rules", rules.replace("check: istio-port-name", "check: istio-port-nmae"));
  const error = page.locator("#rules-error");
  await error.waitFor({ state: "visible" });
  assert.match(await error.innerText(), /line \d+: rule `istio-port-name`: .*check.*istio-port-nmae/s);
  assert.equal(await page.locator("#rules-gutter .hit").count(), 1, "the rule's line is marked");
  assert.ok(await page.locator("#manifests").isVisible(), "the rest of the page stays");
  await page.click("#reset-rules");
  await error.waitFor({ state: "hidden" });
});

test("the HTTP tab decides a request with the RuleSet's header rules", async () => {
  await page.click("#tab-http");
  await page.fill("#http-headers", `x-big: ${"x".repeat(20000)}`);
  await page.waitForFunction(() => document.getElementById("decision").textContent.includes('"allowed": false'));
  assert.match(await page.innerText("#decision"), /http-header-limits/);
  await page.fill("#http-headers", "x-tenant: shop");
  await page.waitForFunction(() => document.getElementById("decision").textContent.includes('"allowed": true'));
  await page.click("#tab-manifests");
});

test("a share link restores both texts", async () => {
  await page.fill("#manifests", GOOD.replace("http-api", "web"));
  await page.click("#share");
  const link = page.url();
  assert.match(link, /#rules=.+&manifests=.+/);
  const other = await browser.newPage();
  await other.goto(link);
  await other.waitForSelector("body[data-ready=true]");
  assert.equal(await other.inputValue("#manifests"), GOOD.replace("http-api", "web"));
  assert.equal(await other.locator("#findings li").count(), 1);
  await other.close();
});
