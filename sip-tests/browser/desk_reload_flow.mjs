// A reload mid-call with the in-page phone: the agent answers in the page over WebRTC,
// media flows both ways, then the page is reloaded. The desk resumes its session and shows
// the call, the phone registers again by itself, Hotline calls it back into the call
// (X-Hotline-Rejoin) and the page answers; media flows both ways again on the new
// connection. Then the agent hangs up and saves the wrap-up (see lib.mjs for the protocol
// with sip-tests/tests/desk_browser.rs).
// Env as lib.mjs, plus MIN_PACKETS.

import {
  env, go, hangUp, mediaBothWays, phoneRegistered, run, saveWrapup, signInReady, step, trackRtp,
} from "./lib.mjs";

const MIN_PACKETS = Number(env("MIN_PACKETS", "50"));

await run("reload", async (desk) => {
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

  // Reload: the page's WebRTC session and SIP connection go with it.
  await page.reload();
  await waitAttr("#call-status", "data-call", "answered");
  const popName = await text("#pop-name");
  await phoneRegistered(page);
  const after = await mediaBothWays(page, MIN_PACKETS);
  await shot("01-rejoined");
  step("rejoined", {
    ...after,
    name: popName,
    call: await page.locator("#call-status").getAttribute("data-call"),
    notice: await text("#call-notice"),
  });

  await hangUp(desk);
  step("ended", {});
  await go();
  await saveWrapup(desk, { code: "resolved", notes: "Reloaded mid-call" });
  await shot("02-saved");
  step("saved", { errors: desk.errors });
});
