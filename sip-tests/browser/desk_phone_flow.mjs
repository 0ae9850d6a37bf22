// The phone in the browser: the desk registers JsSIP over Hotline's SIP-over-WebSocket
// listener as bob's device; the queue call rings in the page (Answer becomes available);
// the agent declines it from the page and the offer leaves the desk (see lib.mjs for the
// protocol with sip-tests/tests/desk_browser.rs). Answering in the page over WebRTC is
// desk_webrtc_flow.mjs.
// Env as lib.mjs.

import { STEP_MS, run, signInReady, step } from "./lib.mjs";

await run("phone", async (desk) => {
  const { page, shot, text, waitAttr } = desk;
  await signInReady(desk);
  // The phone's settings come with the login reply: it registers by itself.
  await page.waitForFunction(
    () => document.getElementById("phone-status").textContent.startsWith("Phone registered"),
    null,
    { timeout: STEP_MS },
  );
  await shot("01-registered");
  step("registered", { status: await text("#phone-status") });

  // The queue call: the pop, and the phone rings in the page.
  await page.waitForSelector("#pop-name", { timeout: STEP_MS });
  await page.waitForSelector("#btn-answer:not([disabled])", { timeout: STEP_MS });
  await waitAttr("#call-status", "data-call", "ringing");
  await shot("02-ringing");
  step("ringing", { name: await text("#pop-name"), status: await text("#call-status") });

  // Declined from the page: the offer goes back to the queue and leaves the desk.
  await page.getByRole("button", { name: "Hang up" }).click();
  await waitAttr("#call-status", "data-call", "idle");
  await shot("03-declined");
  step("declined", {
    notice: await text("#call-notice"),
    state: await page.locator("#agent-state").getAttribute("data-state"),
    errors: desk.errors,
  });
});
