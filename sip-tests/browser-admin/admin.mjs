// Drives Hotline's admin page (/admin) in Debian's chromium (playwright-core), in step
// with sip-tests/tests/admin_browser.rs over stdin/stdout lines:
//   → SAVED        logged in, route tree shown, queue support's fallback edited with the
//                  what-if shown (default rate), saved as a version   (screenshots)
//   ← CALL_DONE    (stdin) a SIPp call followed the new rule; its CDR is written
//   → BAD_REFUSED  a negative ring timeout is refused beside its field   (screenshot)
//   → RATE_OK      the what-if of sales uses the last hour's calls      (screenshot)
//   → ROLLED_BACK  history shows the version's diff; rolled back to version 1 (screenshot)
// Environment: URL (http://127.0.0.1:port), USER, PASSWORD, OUT (screenshot dir).
import { chromium } from "playwright-core";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";

const { URL: base, USER: user, PASSWORD: password, OUT: out } = process.env;
const say = (line) => process.stdout.write(`${line}\n`);
const lines = createInterface({ input: process.stdin });
const nextLine = () => new Promise((resolve) => lines.once("line", resolve));
const T = { timeout: 15000 };

const profile = mkdtempSync(join(tmpdir(), "hotline-admin-"));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: "/usr/bin/chromium",
  headless: true,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  viewport: { width: 1400, height: 900 },
});
let failed = false;
try {
  const page = await context.newPage();
  page.on("console", (m) => { if (m.type() === "error") { process.stderr.write(`console: ${m.text()}\n`); } });
  page.on("pageerror", (e) => { process.stderr.write(`page error: ${e.message}\n`); failed = true; });
  // A CSP violation would show as a console error and a securitypolicyviolation event.
  await page.addInitScript(() => {
    document.addEventListener("securitypolicyviolation", (e) => { window.__csp = `${e.violatedDirective} ${e.blockedURI}`; });
  });

  await page.goto(`${base}/admin`);
  await page.fill("#user", user);
  await page.fill("#password", "wrong");
  await page.click("#login-button");
  await page.waitForFunction(() => document.querySelector("#login-error").textContent.includes("Wrong"), null, T);
  await page.fill("#password", password);
  await page.click("#login-button");

  // The route tree: 4801 → queue support → fallback hangup.
  await page.waitForSelector('#route-tree li[data-number="4801"] .node[data-kind="queue"][data-name="support"]', T);
  const before = await page.textContent('#route-tree li[data-number="4801"]');
  if (!before.includes("fallback →") || !before.includes("hang")) throw new Error(`route tree: ${before}`);
  await page.screenshot({ path: join(out, "routes.png"), fullPage: true });

  // Edit support: fallback to sales. The what-if appears before saving.
  await page.click('#tabs button[data-tab="queues"]');
  await page.click('#entries button[data-id="support"]');
  await page.waitForSelector("#editor #f-fallback", T);
  await page.fill("#f-fallback", '{"queue": "sales"}');
  await page.waitForSelector('#whatif td[data-side="proposed"][data-f="service_level"]', T);
  const rate = await page.getAttribute("#whatif-rate", "data-source");
  if (rate !== "default") throw new Error(`what-if rate source ${rate}`);
  const note = await page.textContent("#whatif-rate");
  if (!note.includes("configured default")) throw new Error(`what-if note: ${note}`);
  const sl = await page.textContent('#whatif td[data-side="current"][data-f="service_level"]');
  if (!/%$/.test(sl.trim())) throw new Error(`what-if service level ${sl}`);
  await page.screenshot({ path: join(out, "whatif.png"), fullPage: true });
  await page.click("#save");
  await page.waitForFunction(() => document.querySelector("#saved")?.textContent.includes("Saved as version 2"), null, T);
  say("SAVED");

  if ((await nextLine()) !== "CALL_DONE") throw new Error("expected CALL_DONE");
  // The route tree follows the saved change.
  await page.click('#tabs button[data-tab="routes"]');
  await page.waitForSelector('#route-tree li[data-number="4801"] .node[data-kind="queue"][data-name="sales"]', T);

  // A bad value: refused, shown beside its field, nothing saved.
  await page.click('#tabs button[data-tab="queues"]');
  await page.click('#entries button[data-id="support"]');
  await page.waitForSelector("#editor #f-ring_timeout_secs", T);
  await page.fill("#f-ring_timeout_secs", "-5");
  await page.click("#save");
  await page.waitForFunction(() => document.querySelector('[data-error-for="ring_timeout_secs"]').textContent.length > 0, null, T);
  const invalid = await page.getAttribute("#f-ring_timeout_secs", "aria-invalid");
  if (invalid !== "true") throw new Error("the field is not marked invalid");
  const saved = await page.textContent("#saved");
  if (saved !== "") throw new Error(`a refused value says ${saved}`);
  await page.screenshot({ path: join(out, "field-error.png"), fullPage: true });
  say("BAD_REFUSED");

  // The what-if of sales now uses the call of the last hour.
  await page.click('#entries button[data-id="sales"]');
  await page.waitForSelector("#editor #f-wrapup_secs", T);
  await page.fill("#f-wrapup_secs", "30");
  await page.waitForSelector('#whatif[data-queue="sales"]', T);
  await page.waitForFunction(() => document.querySelector("#whatif-rate")?.dataset.source === "last_hour", null, T);
  const recent = await page.textContent("#whatif-rate");
  if (!recent.includes("1.0 calls/hour")) throw new Error(`recent rate: ${recent}`);
  await page.screenshot({ path: join(out, "whatif-recent.png"), fullPage: true });
  say("RATE_OK");

  // History: version 2's diff, then roll back to version 1.
  await page.click('#tabs button[data-tab="history"]');
  await page.click('#versions tr[data-version="2"] button');
  await page.waitForSelector("#diff", T);
  const diff = await page.textContent("#diff");
  for (const want of ['-fallback = "hangup"', '+fallback = { queue = "sales" }']) {
    if (!diff.includes(want)) throw new Error(`diff lacks ${want}: ${diff}`);
  }
  if (diff.includes("$argon2")) throw new Error("the diff shows a password hash");
  await page.screenshot({ path: join(out, "history.png"), fullPage: true });
  await page.click('#versions tr[data-version="1"] button');
  await page.waitForSelector('#rollback[data-version="1"]', T);
  await page.click("#rollback");
  await page.waitForSelector('#rollback-done[data-version="3"]', T);
  await page.waitForSelector('#versions tr[data-version="3"]', T);
  const csp = await page.evaluate(() => window.__csp || "");
  if (csp) throw new Error(`CSP violation: ${csp}`);
  say("ROLLED_BACK");
} catch (e) {
  process.stderr.write(`admin.mjs: ${e.stack || e}\n`);
  failed = true;
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
  lines.close();
}
process.exit(failed ? 1 : 0);
