// A VIP caller's call on the desk page, step by step (see lib.mjs for the protocol with
// sip-tests/tests/desk_browser.rs, which runs the SIP side and checks the store).
// Env: DESK_URL, DESK_USER, DESK_PASSWORD, SHOTS_DIR, CHROMIUM (default /usr/bin/chromium).

import { STEP_MS, go, hangUp, run, saveWrapup, signInReady, step } from "./lib.mjs";

await run("vip", async (desk) => {
  const { page, shot, text, waitAttr, sockets } = desk;

  // 1. Sign in; the agent starts logged out; Ready makes the state ready.
  await signInReady(desk);
  await shot("01-ready");
  step("ready", { state: await text("#agent-state") });

  // 2. The caller dials the queue: the screen pop.
  await page.waitForSelector("#pop-name", { timeout: STEP_MS });
  await shot("02-pop");
  step("pop", {
    name: await text("#pop-name"),
    tier: await text("#pop .tier"),
    greeting: await text("#pop-greeting"),
    offer: await text("#pop-offer"),
    tickets: await text("#pop-tickets"),
    interactions: await page.locator("#pop-interactions tbody tr").count(),
    announced: await text("#offer-announce"),
  });

  // 3. The agent's device answers: the page shows the call as connected.
  await waitAttr("#call-status", "data-call", "answered");
  await waitAttr("#agent-state", "data-state", "on_call");
  await shot("03-answered");
  step("answered", { status: await text("#call-status") });

  // 4. Hold: held by the server, or a clear notice while desk hold is not supported.
  await page.getByRole("button", { name: "Hold", exact: true }).click();
  const held = await Promise.race([
    page.waitForSelector('#call-status[data-call="held"]', { timeout: STEP_MS }).then(() => "held"),
    page
      .waitForFunction(() => document.getElementById("call-notice").textContent.startsWith("Hold:"), null, {
        timeout: STEP_MS,
      })
      .then(() => "notice"),
  ]);
  const holdNotice = await text("#call-notice");
  if (held === "held") {
    await page.getByRole("button", { name: "Resume" }).click();
    await waitAttr("#call-status", "data-call", "answered");
  }
  step("hold", { result: held, notice: holdNotice });

  // 5. Heartbeats: the server pings every second and closes a socket silent for three;
  // the page answers, so its one socket stays open.
  await desk.pings(5);
  step("heartbeat", { sockets: sockets.length, ...sockets.at(-1) });

  // 6. A network blip: the Rust side cuts the connection; the page says it is
  // reconnecting, and once the network is back it resumes and shows the call again.
  await go();
  const beforeBlip = desk.errors.length;
  await page.waitForSelector('#conn[data-conn="reconnecting"]', { timeout: STEP_MS });
  await shot("04-reconnecting");
  step("offline", { conn: await text("#conn") });
  await go();
  await waitAttr("#conn", "data-conn", "online");
  await waitAttr("#call-status", "data-call", "answered");
  await page.waitForSelector("#pop-name", { timeout: STEP_MS });
  await shot("05-reconnected");
  // Attempts while the network was down fail, and chromium logs each: expected.
  const during = desk.errors.splice(beforeBlip);
  desk.errors.push(...during.filter((e) => !/^WebSocket connection to '.*\/cti' failed/.test(e)));
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
  await hangUp(desk);
  await shot("07-wrapup");
  step("ended", { timer: await text("#wrap-timer") });
  await go(); // the SIP side saw its BYEs

  // 9. Disposition and notes, saved: the agent is ready again.
  await saveWrapup(desk, { code: "resolved", notes: "Address changed from the desk" });
  await shot("08-saved");
  step("saved", { errors: desk.errors });
});
