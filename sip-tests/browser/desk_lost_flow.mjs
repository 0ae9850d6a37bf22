// The in-page phone that never comes back: the agent answers in the page over WebRTC,
// media flows; then the test cuts the page's SIP WebSocket for good (the CTI socket stays).
// After [cti] phone_rejoin_secs the call goes back to the queue for another agent, and
// this agent's part of it ends as any call does: the page shows the call ended and opens
// the wrap-up, the agent in wrap-up with "then not ready: phone_lost". Saving the wrap-up
// makes the agent not ready (phone_lost), never ready: the phone is gone.
// Env as lib.mjs, plus MIN_PACKETS.

import {
  env, go, mediaBothWays, phoneRegistered, run, saveWrapup, signInReady, step, trackRtp,
} from "./lib.mjs";

const MIN_PACKETS = Number(env("MIN_PACKETS", "50"));

await run("lost", async (desk) => {
  const { page, shot, text, waitAttr } = desk;
  const state = () => page.locator("#agent-state").getAttribute("data-state");
  await trackRtp(page);
  await signInReady(desk);
  await phoneRegistered(page);
  step("registered", { status: await text("#phone-status") });

  await page.waitForSelector("#btn-answer:not([disabled])", { timeout: 45000 });
  await page.getByRole("button", { name: "Answer" }).click();
  await waitAttr("#call-status", "data-call", "answered");
  step("answered", await mediaBothWays(page, MIN_PACKETS));

  // The phone's socket is cut now; the grace runs out on the server: the call ends here.
  await waitAttr("#call-status", "data-call", "ended");
  await page.waitForSelector("#wrapup:not([hidden])", { timeout: 45000 });
  await waitAttr("#agent-state", "data-state", "wrap_up");
  await shot("01-wrapup");
  step("ended", {
    state: await state(),
    extra: await text("#agent-state-extra"),
    notice: await text("#call-notice"),
  });

  await go();
  await saveWrapup(desk, { code: "follow_up", notes: "Phone lost mid-call", then: "not_ready" });
  await shot("02-not-ready");
  step("not_ready", {
    state: await state(),
    reason: await text("#agent-state-extra"),
    errors: desk.errors,
  });
});
