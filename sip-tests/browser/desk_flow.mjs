// One agent's call on the desk page in Debian's chromium, step by step. Driven by
// sip-tests/tests/desk_browser.rs, which runs the SIP side (SIPp caller and device) and
// checks the store. Line protocol on stdout: `step <name> <json>`; the Rust test waits for
// each step before it acts, and answers `go` on stdin where a step needs the SIP side.
//
// Usage: node desk_flow.mjs   (env: DESK_URL, DESK_USER, DESK_PASSWORD, SHOTS_DIR,
//                              CHROMIUM = /usr/bin/chromium)

import fs from "node:fs";
import path from "node:path";
import os from "node:os";
import readline from "node:readline";
import { chromium } from "playwright-core";

const env = (k, d) => {
  const v = process.env[k] ?? d;
  if (v === undefined) throw new Error(`${k} is not set`);
  return v;
};
const URL_ = env("DESK_URL");
const USER = env("DESK_USER");
const PASSWORD = env("DESK_PASSWORD");
const SHOTS = env("SHOTS_DIR");
const CHROMIUM = env("CHROMIUM", "/usr/bin/chromium");
const STEP_MS = 20000;

if (!fs.existsSync(CHROMIUM)) {
  // Loud, never a skip: CI must have a browser (run-tests.sh installs it).
  console.error(`chromium not found at ${CHROMIUM}: apt-get install chromium`);
  process.exit(2);
}
fs.mkdirSync(SHOTS, { recursive: true });

const step = (name, data = {}) => console.log(`step ${name} ${JSON.stringify(data)}`);
const lines = readline.createInterface({ input: process.stdin });
const waiting = [];
lines.on("line", (l) => waiting.shift()?.(l.trim()));
/** Waits for the Rust side to say `go` (it has done its part). */
const go = () => new Promise((resolve) => waiting.push(resolve));

const profile = fs.mkdtempSync(path.join(os.tmpdir(), "hotline-desk-chromium-"));
// A fresh profile each run (playwright passes it as --user-data-dir).
const context = await chromium.launchPersistentContext(profile, {
  executablePath: CHROMIUM,
  headless: true,
  viewport: { width: 1280, height: 900 },
  args: [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
  ],
});

let page;
const shot = (name) => page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: true });
const text = async (sel) => (await page.locator(sel).first().textContent())?.trim() ?? "";
const waitAttr = (sel, attr, value) =>
  page.waitForSelector(`${sel}[${attr}="${value}"]`, { timeout: STEP_MS });

/** Every CTI socket the page opens, with the heartbeats it saw and answered. */
const sockets = [];
const pingWaiters = [];
function trackSocket(ws) {
  if (!ws.url().endsWith("/cti")) return;
  const s = { pings: 0, pongs: 0, closed: false };
  sockets.push(s);
  ws.on("framereceived", (f) => {
    if (typeof f.payload === "string" && /"type":"ping"/.test(f.payload)) s.pings += 1;
    for (const w of pingWaiters.splice(0)) w();
  });
  ws.on("framesent", (f) => {
    if (typeof f.payload === "string" && /"type":"pong"/.test(f.payload)) s.pongs += 1;
  });
  ws.on("close", () => (s.closed = true));
}
/** Resolves once the newest socket has seen `n` server pings. */
function pings(n) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`fewer than ${n} pings`)), STEP_MS);
    const check = () => {
      if ((sockets.at(-1)?.pings ?? 0) >= n) {
        clearTimeout(timer);
        resolve();
      } else pingWaiters.push(check);
    };
    check();
  });
}

try {
  page = context.pages()[0] ?? (await context.newPage());
  page.on("websocket", trackSocket);
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  page.on("console", (m) => m.type() === "error" && errors.push(m.text()));
  page.on("response", (r) => r.status() >= 400 && errors.push(`${r.status()} ${r.url()}`));

  // 1. Sign in; the agent starts logged out; Ready makes the state ready.
  await page.goto(URL_);
  await page.getByLabel("User name").fill(USER);
  await page.getByLabel("Password", { exact: true }).fill(PASSWORD);
  await page.getByRole("button", { name: "Sign in" }).click();
  await waitAttr("#agent-state", "data-state", "logged_out");
  await waitAttr("#conn", "data-conn", "online");
  await page.getByRole("button", { name: "Ready", exact: true }).click();
  await waitAttr("#agent-state", "data-state", "ready");
  await shot("01-ready");
  step("ready", { state: await text("#agent-state") });

  // 2. The caller dials the queue: the screen pop.
  await page.waitForSelector("#pop-name", { timeout: STEP_MS });
  const pop = {
    name: await text("#pop-name"),
    tier: await text("#pop .tier"),
    greeting: await text("#pop-greeting"),
    announced: await text("#offer-announce"),
    queue: await text("#call-meta"),
  };
  await shot("02-pop");
  step("pop", pop);

  // 3. The agent's device answers: the page shows the call as connected.
  await waitAttr("#call-status", "data-call", "answered");
  await waitAttr("#agent-state", "data-state", "on_call");
  await shot("03-answered");
  step("answered", { status: await text("#call-status") });

  // 4. Hold: held by the server, or a clear notice while desk hold is not supported.
  await page.getByRole("button", { name: "Hold", exact: true }).click();
  const held = await Promise.race([
    page.waitForSelector('#call-status[data-call="held"]', { timeout: STEP_MS }).then(() => "held"),
    page.waitForFunction(() => document.getElementById("call-notice").textContent.startsWith("Hold:"),
      null, { timeout: STEP_MS }).then(() => "notice"),
  ]);
  const holdNotice = await text("#call-notice");
  if (held === "held") {
    await page.getByRole("button", { name: "Resume" }).click();
    await waitAttr("#call-status", "data-call", "answered");
  }
  step("hold", { result: held, notice: holdNotice });

  // 5. Heartbeats: the server pings every second and closes a socket silent for three;
  // the page answers, so its one socket stays open.
  await pings(5);
  step("heartbeat", { sockets: sockets.length, ...sockets.at(-1) });

  // 6. A network blip: the Rust side cuts the connection; the page says it is
  // reconnecting, and once the network is back it resumes and shows the call again.
  await go();
  await page.waitForSelector('#conn[data-conn="reconnecting"]', { timeout: STEP_MS });
  await shot("04-reconnecting");
  step("offline", { conn: await text("#conn") });
  await go();
  await waitAttr("#conn", "data-conn", "online");
  await waitAttr("#call-status", "data-call", "answered");
  await page.waitForSelector("#pop-name", { timeout: STEP_MS });
  await shot("05-reconnected");
  step("reconnected", {
    sockets: sockets.length,
    name: await text("#pop-name"),
    state: await page.locator("#agent-state").getAttribute("data-state"),
  });

  // 7. Reload mid-call: the desk resumes its session and shows the call again.
  await page.reload();
  await waitAttr("#conn", "data-conn", "online");
  await waitAttr("#call-status", "data-call", "answered");
  await page.waitForSelector("#pop-name", { timeout: STEP_MS });
  await shot("06-reloaded");
  step("resumed", {
    name: await text("#pop-name"),
    tier: await text("#pop .tier"),
    state: await page.locator("#agent-state").getAttribute("data-state"),
  });

  // 8. Hang up from the page: wrap-up opens.
  await page.getByRole("button", { name: "Hang up" }).click();
  await waitAttr("#call-status", "data-call", "ended");
  await page.waitForSelector("#wrapup:not([hidden])", { timeout: STEP_MS });
  await waitAttr("#agent-state", "data-state", "wrap_up");
  await shot("07-wrapup");
  step("ended", { timer: await text("#wrap-timer") });
  await go(); // the SIP side saw its BYEs

  // 9. Disposition and notes, saved: the agent is ready again.
  await page.getByLabel("Disposition").selectOption("resolved");
  await page.getByLabel("Notes", { exact: true }).fill("Address changed from the desk");
  await page.getByRole("button", { name: "Save and finish wrap-up" }).click();
  await page.waitForSelector("#wrapup", { state: "hidden", timeout: STEP_MS });
  await waitAttr("#agent-state", "data-state", "ready");
  await shot("08-saved");
  step("saved", { errors });
} catch (e) {
  if (page) await shot("failure").catch(() => {});
  console.error(`desk flow failed: ${e.stack ?? e}`);
  process.exitCode = 1;
} finally {
  await context.close();
  lines.close();
  fs.rmSync(profile, { recursive: true, force: true });
}
