// Drives Hotline's wallboard and report page in Debian's chromium (playwright-core), in
// step with sip-tests/tests/wallboard.rs over stdin/stdout lines:
//   → READY        the supervisor is logged in and the wall shows queue QUEUE idle
//   → UP           a call waits: the wall's waiting count went to 1   (screenshot)
//   → DOWN         the call was answered: waiting back to 0, an agent on call with the
//                  Monitor/Whisper/Barge buttons (Monitor refused: no phone) (screenshot)
//   ← CALL_DONE    (stdin) the call ended and its CDR is written
//   → FORCED       the supervisor logged AGENT out from the floor view (screenshot)
//   → REPORTS_OK   the report page shows the call and exports it as CSV (screenshot)
// Environment: URL (http://127.0.0.1:port), USER, PASSWORD, QUEUE, AGENT, CALLER,
// OUT (screenshot dir).
import { chromium } from "playwright-core";
import { mkdtempSync, rmSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";

const { URL: base, USER: user, PASSWORD: password, QUEUE: queue, AGENT: agent, CALLER: caller, OUT: out } = process.env;
const say = (line) => process.stdout.write(`${line}\n`);
const lines = createInterface({ input: process.stdin });
const nextLine = () => new Promise((resolve) => lines.once("line", resolve));

const profile = mkdtempSync(join(tmpdir(), "hotline-wall-"));
// A fresh profile directory per run (playwright passes it as --user-data-dir).
const context = await chromium.launchPersistentContext(profile, {
  executablePath: "/usr/bin/chromium",
  headless: true,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  viewport: { width: 1400, height: 820 },
  acceptDownloads: true,
});
let failed = false;
try {
  const page = await context.newPage();
  page.on("console", (m) => { if (m.type() === "error") process.stderr.write(`console: ${m.text()}\n`); });
  page.on("pageerror", (e) => { process.stderr.write(`page error: ${e.message}\n`); failed = true; });

  await page.goto(`${base}/wall`);
  // A wrong password is refused on the page.
  await page.fill("#user", user);
  await page.fill("#password", "wrong");
  await page.click("#login-button");
  await page.waitForFunction(() => document.querySelector("#login-error").textContent.includes("Wrong"), null, { timeout: 15000 });
  await page.fill("#password", password);
  await page.click("#login-button");
  const waiting = `[data-queue="${queue}"] [data-f="waiting"]`;
  const count = async (sel, want, timeout) => page.waitForFunction(
    ([s, w]) => { const e = document.querySelector(s); return e && e.textContent.trim() === w; },
    [sel, want], { timeout });
  await count(waiting, "0", 15000);
  say("READY");

  await count(waiting, "1", 30000);
  await page.screenshot({ path: join(out, "wall-waiting.png") });
  say("UP");

  await count(waiting, "0", 30000);
  await count('[data-state="on_call"] b', "1", 15000);
  // The floor view: the agent on the call, with the caller.
  const floorRow = `#floor tr[data-agent="${agent}"]`;
  await page.waitForSelector(`${floorRow}[data-state="on_call"]`, { timeout: 15000 });
  const callCell = await page.textContent(`${floorRow} td.call`);
  if (!callCell.includes(caller)) throw new Error(`floor call cell ${JSON.stringify(callCell)}`);
  // Time in state comes from the server's `since` (no "≥" guess), and an agent on a call
  // has Monitor / Whisper / Barge. The supervisor has no registered phone here: Monitor
  // asks the switch, which refuses, and the page shows why.
  const age = await page.textContent(`${floorRow} td.age`);
  if (age.includes("≥")) throw new Error(`time in state is a guess: ${JSON.stringify(age)}`);
  for (const mode of ["monitor", "whisper", "barge"]) {
    await page.waitForSelector(`${floorRow} button[data-supervise="${mode}"]`, { timeout: 15000 });
  }
  await page.click(`${floorRow} button[data-supervise="monitor"]`);
  await page.waitForFunction(() => document.querySelector("#floor-error").textContent.includes("no registered phone"), null, { timeout: 15000 });
  await page.screenshot({ path: join(out, "wall-answered.png") });
  say("DOWN");

  if ((await nextLine()) !== "CALL_DONE") throw new Error("expected CALL_DONE");
  // Force the agent out from the floor view.
  await page.waitForSelector(`${floorRow} button[data-action="logout"]`, { timeout: 15000 });
  // Today's chart comes from the CDRs (the report API) once the call is recorded.
  await page.waitForFunction(() => document.querySelector("#day-chart").dataset.offered === "1", null, { timeout: 15000 });
  await page.click(`${floorRow} button[data-action="logout"]`);
  await page.waitForSelector(`${floorRow}[data-state="logged_out"]`, { timeout: 15000 });
  await count('[data-state="logged_out"] b', "1", 15000);
  await page.screenshot({ path: join(out, "wall-floor.png"), fullPage: true });
  say("FORCED");
  // The report page resumes the supervisor's session (token kept in sessionStorage).
  await page.goto(`${base}/reports`);
  await page.waitForSelector("#page:not([hidden])", { timeout: 15000 });
  await page.selectOption("#by", "queue");
  await page.click('#query button[type="submit"]');
  const row = `#table tr[data-key="${queue}"] td:nth-child(2)`;
  await count(row, "1", 15000);
  await page.screenshot({ path: join(out, "reports.png") });
  const [download] = await Promise.all([page.waitForEvent("download", { timeout: 15000 }), page.click("#csv")]);
  const csv = readFileSync(await download.path(), "utf8");
  if (!csv.startsWith("key,offered,answered") || !csv.includes(`\n${queue},1,1,`)) {
    throw new Error(`unexpected CSV:\n${csv}`);
  }
  // A bad parameter is shown, not swallowed.
  await page.fill("#from", "yesterday");
  await page.click('#query button[type="submit"]');
  await page.waitForFunction(() => document.querySelector("#query-error").textContent.includes("from"), null, { timeout: 15000 });
  if (failed) throw new Error("the page threw");
  say("REPORTS_OK");
} catch (e) {
  process.stderr.write(`${e.stack || e}\n`);
  process.exitCode = 1;
} finally {
  lines.close();
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
