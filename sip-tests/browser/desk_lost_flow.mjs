// The in-page phone that never comes back: the agent answers in the page over WebRTC,
// media flows; then the test cuts the page's SIP WebSocket for good (the CTI socket stays).
// After [cti] phone_rejoin_secs the call leaves this desk (it goes back to the queue for
// another agent) and the agent is not ready with the reason phone_lost, as the page shows.
// Env as lib.mjs, plus MIN_PACKETS.

import { env, mediaBothWays, phoneRegistered, run, signInReady, step, trackRtp } from "./lib.mjs";

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

  // The phone's socket is cut now; the grace runs out on the server.
  // Not ready now, or (when the ACD put the agent in wrap-up first) not ready after it.
  await page.waitForFunction(
    () =>
      document.getElementById("agent-state").dataset.state === "not_ready" ||
      document.getElementById("agent-state-extra").textContent.includes("phone_lost"),
    null,
    { timeout: 45000 },
  );
  await shot("01-not-ready");
  step("not_ready", {
    state: await state(),
    reason: await text("#agent-state-extra"),
    notice: await text("#call-notice"),
    errors: desk.errors,
  });
});
