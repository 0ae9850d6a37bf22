// Answering in the page: the desk's JsSIP phone registers over Hotline's SIP-over-WebSocket
// listener, the queue call rings next to its pop, the agent clicks Answer and talks over
// WebRTC (Hotline's gateway: ICE, DTLS-SRTP) with chromium's fake microphone. The page's
// RTCPeerConnection.getStats() must show packets both ways, again after a hold and resume
// from the page; then the agent hangs up from the page and saves the wrap-up (see lib.mjs for the protocol with
// sip-tests/tests/desk_browser.rs).
// Env as lib.mjs, plus MIN_PACKETS.

import { STEP_MS, env, go, hangUp, run, saveWrapup, signInReady, step } from "./lib.mjs";

const MIN_PACKETS = Number(env("MIN_PACKETS", "50"));

/**
 * Polls the page's RTP counters until both ways are `min` packets past `base` (bounded).
 */
async function mediaBothWays(page, min, base = { received: 0, sent: 0 }) {
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

await run("webrtc", async (desk) => {
  const { page, shot, text, waitAttr } = desk;
  // Keeps every RTCPeerConnection the page makes (JsSIP's session.connection) for getStats.
  await page.addInitScript(() => {
    const Native = window.RTCPeerConnection;
    const pcs = [];
    // The page's JsSIP session (for a phone-side hold: JsSIP's own re-INVITE), caught
    // as the vendored script defines window.JsSIP.
    let jssip;
    Object.defineProperty(window, "JsSIP", {
      configurable: true,
      get: () => jssip,
      set: (v) => {
        jssip = v;
        const start = v.UA.prototype.start;
        v.UA.prototype.start = function (...args) {
          this.on("newRTCSession", (e) => {
            window.__jssipSession = e.session;
          });
          return start.apply(this, args);
        };
      },
    });
    window.RTCPeerConnection = class extends Native {
      constructor(...args) {
        super(...args);
        pcs.push(this);
      }
    };
    /** The page's audio RTP counters, summed over its peer connections. */
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
  await signInReady(desk);
  // The phone's settings come with the login reply: it registers by itself.
  await page.waitForFunction(
    () => document.getElementById("phone-status").textContent.startsWith("Phone registered"),
    null,
    { timeout: STEP_MS },
  );
  step("registered", { status: await text("#phone-status") });

  // The queue call rings in the page next to its pop; the agent answers in the page.
  await page.waitForSelector("#pop-name", { timeout: STEP_MS });
  await page.waitForSelector("#btn-answer:not([disabled])", { timeout: STEP_MS });
  await waitAttr("#call-status", "data-call", "ringing");
  step("ringing", { name: await text("#pop-name") });
  await page.getByRole("button", { name: "Answer" }).click();
  await waitAttr("#call-status", "data-call", "answered");
  // The page shows "answered" once JsSIP has sent its 200 OK; the agent's state follows
  // over CTI after Hotline's ACK. Wait for it (bounded); the test asserts what it is.
  await waitAttr("#agent-state", "data-state", "on_call").catch(() => {});
  step("answered", { state: await page.locator("#agent-state").getAttribute("data-state") });

  // Media both ways, as the browser counts it.
  const media = await mediaBothWays(page, MIN_PACKETS);
  await shot("01-talking");
  step("media", media);

  // Hold and resume from the page (server-side hold: the caller hears music); after the
  // resume, media flows both ways again.
  await page.getByRole("button", { name: "Hold" }).click();
  await waitAttr("#call-status", "data-call", "held");
  const atHold = await page.evaluate(() => window.__hotlineRtp());
  step("held", { status: await text("#call-status"), stats: atHold });
  await page.getByRole("button", { name: "Resume" }).click();
  await waitAttr("#call-status", "data-call", "answered");
  const atResume = await page.evaluate(() => window.__hotlineRtp());
  const after = await mediaBothWays(page, MIN_PACKETS, atResume);
  step("resumed", {
    status: await text("#call-status"),
    received: after.received - atResume.received,
    sent: after.sent - atResume.sent,
    stats: after,
  });

  // Hold and resume with JsSIP itself (its re-INVITE with a sendonly re-offer, as a
  // softphone's hold button): Hotline answers in WebRTC terms, so JsSIP keeps the call
  // (it ends a call whose re-answer it cannot apply), the server reports the hold to the
  // desk, and after unhold media flows both ways again.
  const reinvite = async (on, want) => {
    await page.evaluate((on) => {
      const s = window.__jssipSession;
      return on ? s.hold() : s.unhold();
    }, on);
    await page.waitForFunction(
      (want) => {
        const s = window.__jssipSession;
        const pc = s && s.connection;
        return !!pc && s.isEstablished() && pc.signalingState === "stable" &&
          !!pc.remoteDescription && pc.remoteDescription.sdp.includes(want);
      },
      want,
      { timeout: STEP_MS },
    );
    return page.evaluate(() => {
      const pc = window.__jssipSession.connection;
      return { connection: pc.connectionState, remote: pc.remoteDescription.sdp };
    });
  };
  const phoneHold = await reinvite(true, "a=recvonly");
  await waitAttr("#call-status", "data-call", "held");
  step("phone_held", { status: await text("#call-status"), connection: phoneHold.connection });
  const phoneResume = await reinvite(false, "a=sendrecv");
  await waitAttr("#call-status", "data-call", "answered");
  const atPhoneResume = await page.evaluate(() => window.__hotlineRtp());
  const afterPhone = await mediaBothWays(page, MIN_PACKETS, atPhoneResume);
  step("phone_resumed", {
    status: await text("#call-status"),
    connection: phoneResume.connection,
    received: afterPhone.received - atPhoneResume.received,
    sent: afterPhone.sent - atPhoneResume.sent,
  });

  // Hang up from the page: wrap-up opens; the Rust side checks the SIP side, then says go.
  await hangUp(desk);
  await shot("02-wrapup");
  step("ended", {});
  await go();
  await saveWrapup(desk, { code: "resolved", notes: "Answered in the browser" });
  await shot("03-saved");
  step("saved", { errors: desk.errors });
});
