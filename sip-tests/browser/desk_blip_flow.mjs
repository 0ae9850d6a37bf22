// A network blip with the in-page phone: the agent answers in the page over WebRTC, media
// flows both ways; then the test cuts the page's CTI WebSocket and its SIP WebSocket at
// once and restores them (within [cti] phone_rejoin_secs). The page reconnects both by
// itself; the call is still the desk's, the phone re-registers and Hotline bridges it
// again; media flows both ways past what it had before. Then the agent hangs up and saves
// the wrap-up (see lib.mjs for the protocol with sip-tests/tests/desk_browser.rs).
// Env as lib.mjs, plus MIN_PACKETS.

import {
  env, go, hangUp, mediaBothWays, phoneRegistered, run, saveWrapup, signInReady, step, trackRtp,
} from "./lib.mjs";

const MIN_PACKETS = Number(env("MIN_PACKETS", "50"));

await run("blip", async (desk) => {
  const { page, shot, text, waitAttr } = desk;
  await trackRtp(page);
  await signInReady(desk);
  await phoneRegistered(page);
  step("registered", { status: await text("#phone-status") });

  await page.waitForSelector("#btn-answer:not([disabled])", { timeout: 45000 });
  await page.getByRole("button", { name: "Answer" }).click();
  await waitAttr("#call-status", "data-call", "answered");
  const before = await mediaBothWays(page, MIN_PACKETS);
  step("answered", before);

  // The test cuts both sockets, sees the phone lost and back, then says go.
  await go();
  await waitAttr("#conn", "data-conn", "online");
  await phoneRegistered(page);
  await waitAttr("#call-status", "data-call", "answered");
  const after = await mediaBothWays(page, MIN_PACKETS, before);
  await shot("01-back");
  step("back", {
    ...after,
    before,
    sockets: desk.sockets.length,
    call: await page.locator("#call-status").getAttribute("data-call"),
    name: await text("#pop-name"),
  });

  await hangUp(desk);
  step("ended", {});
  await go();
  await saveWrapup(desk, { code: "resolved", notes: "Blip mid-call" });
  await shot("02-saved");
  step("saved", { errors: desk.errors });
});
