// Shared by the desk flows: Debian's chromium through playwright-core with a fresh
// profile and fake media devices, the step protocol with the Rust test (stdout
// `step <name> <json>`, stdin `go`), screenshots, and CTI socket tracking.

import fs from "node:fs";
import path from "node:path";
import os from "node:os";
import readline from "node:readline";
import { chromium } from "playwright-core";

export const STEP_MS = 20000;

export const env = (k, d) => {
  const v = process.env[k] ?? d;
  if (v === undefined) throw new Error(`${k} is not set`);
  return v;
};

/** Prints a step for the Rust side. */
export const step = (name, data = {}) => console.log(`step ${name} ${JSON.stringify(data)}`);

const lines = readline.createInterface({ input: process.stdin });
const buffered = [];
const waiting = [];
lines.on("line", (l) => {
  const w = waiting.shift();
  if (w) w(l.trim());
  else buffered.push(l.trim());
});
/** Waits for the Rust side to say `go` (it has done its part). */
export const go = () =>
  buffered.length ? Promise.resolve(buffered.shift()) : new Promise((resolve) => waiting.push(resolve));

/**
 * Runs `flow(desk)` in a fresh browser; exits non-zero (with a `failure` screenshot) on
 * any error. `desk` has page, shot(name), text(sel), waitAttr(sel, attr, value),
 * sockets (CTI sockets with pings/pongs/closed), pings(n) and errors (page errors and
 * failed responses).
 */
export async function run(name, flow) {
  const chromiumPath = env("CHROMIUM", "/usr/bin/chromium");
  if (!fs.existsSync(chromiumPath)) {
    // Loud, never a skip: CI must have a browser (run-tests.sh installs it).
    console.error(`chromium not found at ${chromiumPath}: apt-get install chromium`);
    process.exit(2);
  }
  const shots = env("SHOTS_DIR");
  fs.mkdirSync(shots, { recursive: true });
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), "hotline-desk-chromium-"));
  // A fresh profile each run (playwright passes it as --user-data-dir).
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: chromiumPath,
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
  const page = context.pages()[0] ?? (await context.newPage());
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  page.on("console", (m) => m.type() === "error" && errors.push(m.text()));
  page.on("response", (r) => r.status() >= 400 && errors.push(`${r.status()} ${r.url()}`));

  const sockets = [];
  const pingWaiters = [];
  page.on("websocket", (ws) => {
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
  });

  const desk = {
    page,
    errors,
    sockets,
    shot: (n) => page.screenshot({ path: path.join(shots, `${name}-${n}.png`), fullPage: true }),
    text: async (sel) => (await page.locator(sel).first().textContent())?.trim() ?? "",
    waitAttr: (sel, attr, value) => page.waitForSelector(`${sel}[${attr}="${value}"]`, { timeout: STEP_MS }),
    /** Resolves once the newest CTI socket has seen `n` server pings. */
    pings: (n) =>
      new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`fewer than ${n} pings`)), STEP_MS);
        const check = () => {
          if ((sockets.at(-1)?.pings ?? 0) >= n) {
            clearTimeout(timer);
            resolve();
          } else pingWaiters.push(check);
        };
        check();
      }),
  };
  try {
    await flow(desk);
  } catch (e) {
    await desk.shot("failure").catch(() => {});
    console.error(`desk flow ${name} failed: ${e.stack ?? e}`);
    process.exitCode = 1;
  } finally {
    await context.close();
    lines.close();
    fs.rmSync(profile, { recursive: true, force: true });
  }
}

/** Signs in on the page and goes ready (agents with a desk login start logged out). */
export async function signInReady(desk) {
  const { page, waitAttr } = desk;
  await page.goto(env("DESK_URL"));
  await page.getByLabel("User name").fill(env("DESK_USER"));
  await page.getByLabel("Password", { exact: true }).fill(env("DESK_PASSWORD"));
  await page.getByRole("button", { name: "Sign in" }).click();
  await waitAttr("#agent-state", "data-state", "logged_out");
  await waitAttr("#conn", "data-conn", "online");
  await page.getByRole("button", { name: "Ready", exact: true }).click();
  await waitAttr("#agent-state", "data-state", "ready");
}

/** Hangs up from the page and waits for wrap-up. */
export async function hangUp(desk) {
  const { page, waitAttr } = desk;
  await page.getByRole("button", { name: "Hang up" }).click();
  await waitAttr("#call-status", "data-call", "ended");
  await page.waitForSelector("#wrapup:not([hidden])", { timeout: STEP_MS });
  await waitAttr("#agent-state", "data-state", "wrap_up");
}

/** Fills and saves the wrap-up; waits until the agent is in state `then` (ready). */
export async function saveWrapup(desk, { code, notes, ticket, then = "ready" }) {
  const { page, waitAttr } = desk;
  await page.getByLabel("Disposition").selectOption(code);
  await page.getByLabel("Notes", { exact: true }).fill(notes);
  if (ticket) {
    await page.getByLabel("Create a ticket").check();
    await page.getByLabel("Subject").fill(ticket.subject);
    await page.getByLabel("Priority").selectOption(ticket.priority);
  }
  await page.getByRole("button", { name: "Save and finish wrap-up" }).click();
  await page.waitForSelector("#wrapup", { state: "hidden", timeout: STEP_MS });
  await waitAttr("#agent-state", "data-state", then);
}

/**
 * Counts the page's audio RTP over every RTCPeerConnection it makes (JsSIP's), from page
 * load on (again after a reload): `window.__hotlineRtp()` → {received, sent, states}.
 */
export async function trackRtp(page) {
  await page.addInitScript(() => {
    const Native = window.RTCPeerConnection;
    const pcs = [];
    window.RTCPeerConnection = class extends Native {
      constructor(...args) {
        super(...args);
        pcs.push(this);
      }
    };
    window.__hotlineRtp = async () => {
      const out = { received: 0, sent: 0, states: [] };
      for (const pc of pcs) {
        out.states.push(pc.connectionState);
        (await pc.getStats()).forEach((s) => {
          if (s.kind !== "audio") return;
          if (s.type === "inbound-rtp") out.received += s.packetsReceived ?? 0;
          if (s.type === "outbound-rtp") out.sent += s.packetsSent ?? 0;
        });
      }
      return out;
    };
  });
}

/** Polls `__hotlineRtp` until both ways are `min` packets past `base` (bounded). */
export async function mediaBothWays(page, min, base = { received: 0, sent: 0 }) {
  const deadline = Date.now() + STEP_MS;
  for (;;) {
    const s = await page.evaluate(() => window.__hotlineRtp());
    if (s.received - base.received >= min && s.sent - base.sent >= min) return s;
    if (Date.now() > deadline) {
      throw new Error(`no media both ways: getStats ${JSON.stringify(s)} from ${JSON.stringify(base)}`);
    }
    await page.waitForTimeout(250);
  }
}

/** Waits until the page's phone says it is registered. */
export async function phoneRegistered(page) {
  await page.waitForFunction(
    () => document.getElementById("phone-status").textContent.startsWith("Phone registered"),
    null,
    { timeout: STEP_MS },
  );
}
