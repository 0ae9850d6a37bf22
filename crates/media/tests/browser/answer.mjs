// Headless Chromium playing a browser agent for Hotline's WebRTC gateway test.
// Line-delimited JSON on stdin/stdout:
//   in  {"offer": "<sdp>"}                      -> out {"answer": "<sdp>"}
//   in  {"waitStats": {"inbound": N, "outbound": N, "timeoutMs": T, "rtcp": false}}
//                                               -> out {"stats": {...}} once both counters pass N
//                                                  (and, with rtcp, once the gateway's sender
//                                                  and receiver reports arrived), or at the
//                                                  timeout with what there is
//   in  {"dtmf": "5"}                           -> out {"dtmf": true} (RFC 4733 via RTCDTMFSender)
//   in  {"reoffer": {"direction": "sendonly", "iceRestart": false}}
//                                               -> out {"offer": "<sdp>"} (renegotiation, as a
//                                                  softphone's hold/resume re-INVITE carries)
//   in  {"call": true}                          -> out {"offer": "<sdp>"} (a new connection
//                                                  offering, as a browser calling out does)
//   in  {"answer": "<sdp>"}                     -> out {"accepted": true, "state": ...}
//   in  {"quit": true}                          -> closes the browser and exits
import { chromium } from 'playwright-core';
import http from 'node:http';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';

const out = (o) => process.stdout.write(JSON.stringify(o) + '\n');

// getUserMedia needs a secure context: a page on http://127.0.0.1 is one.
const server = http.createServer((_, res) => {
  res.writeHead(200, { 'content-type': 'text/html' });
  res.end('<!doctype html><title>hotline webrtc test</title><audio id="remote" autoplay></audio>');
});
await new Promise((r) => server.listen(0, '127.0.0.1', r));
const url = `http://127.0.0.1:${server.address().port}/`;

const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'hotline-chromium-'));
// A fresh profile per run (launchPersistentContext is how Playwright takes one).
const context = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream',
    // Loopback only: let Chromium use 127.0.0.1 and show real host candidates.
    '--allow-loopback-in-peer-connection',
    '--disable-features=WebRtcHideLocalIpsWithMdns',
  ],
});
const page = context.pages()[0] || await context.newPage();
await page.goto(url);

async function answer(offer) {
  return page.evaluate(async (sdp) => {
    const pc = new RTCPeerConnection();
    window.pc = pc;
    pc.ontrack = (e) => { document.getElementById('remote').srcObject = e.streams[0] || new MediaStream([e.track]); };
    const mic = await navigator.mediaDevices.getUserMedia({ audio: true });
    await pc.setRemoteDescription({ type: 'offer', sdp });
    for (const t of mic.getAudioTracks()) pc.addTrack(t, mic);
    const a = await pc.createAnswer();
    await pc.setLocalDescription(a);
    if (pc.iceGatheringState !== 'complete') {
      await new Promise((r) => {
        pc.onicegatheringstatechange = () => { if (pc.iceGatheringState === 'complete') r(); };
      });
    }
    return pc.localDescription.sdp;
  }, offer);
}

async function reoffer({ direction, iceRestart }) {
  return page.evaluate(async ({ direction, iceRestart }) => {
    const pc = window.pc;
    for (const t of pc.getTransceivers()) t.direction = direction;
    const o = await pc.createOffer({ iceRestart: !!iceRestart });
    await pc.setLocalDescription(o);
    // Non-trickle, as SIP carries it: wait for the (new) candidates.
    if (pc.iceGatheringState !== 'complete') {
      await new Promise((r) => {
        pc.onicegatheringstatechange = () => { if (pc.iceGatheringState === 'complete') r(); };
      });
    }
    return pc.localDescription.sdp;
  }, { direction, iceRestart });
}

async function call() {
  return page.evaluate(async () => {
    const pc = new RTCPeerConnection();
    window.pc = pc;
    pc.ontrack = (e) => { document.getElementById('remote').srcObject = e.streams[0] || new MediaStream([e.track]); };
    const mic = await navigator.mediaDevices.getUserMedia({ audio: true });
    for (const t of mic.getAudioTracks()) pc.addTrack(t, mic);
    await pc.setLocalDescription(await pc.createOffer());
    if (pc.iceGatheringState !== 'complete') {
      await new Promise((r) => {
        pc.onicegatheringstatechange = () => { if (pc.iceGatheringState === 'complete') r(); };
      });
    }
    return pc.localDescription.sdp;
  });
}

async function accept(sdp) {
  return page.evaluate(async (sdp) => {
    await window.pc.setRemoteDescription({ type: 'answer', sdp });
    return { accepted: true, state: window.pc.connectionState };
  }, sdp);
}

async function waitStats({ inbound, outbound, timeoutMs, rtcp }) {
  return page.evaluate(async ({ inbound, outbound, timeoutMs, rtcp }) => {
    const until = Date.now() + timeoutMs;
    for (;;) {
      const s = {
        inbound: 0, outbound: 0, state: window.pc.connectionState, codec: null,
        srtpCipher: null, remoteSenderReports: 0, remoteReceiverReports: 0,
      };
      (await window.pc.getStats()).forEach((r) => {
        if (r.type === 'inbound-rtp' && r.kind === 'audio') s.inbound = r.packetsReceived;
        if (r.type === 'outbound-rtp' && r.kind === 'audio') s.outbound = r.packetsSent;
        if (r.type === 'codec' && !s.codec) s.codec = r.mimeType;
        if (r.type === 'transport') s.srtpCipher = r.srtpCipher ?? null;
        // From the gateway's RTCP: its SR (about what it sends) and RR blocks (about
        // what it hears from the page).
        if (r.type === 'remote-outbound-rtp') s.remoteSenderReports = r.reportsSent ?? 1;
        if (r.type === 'remote-inbound-rtp') s.remoteReceiverReports = 1;
      });
      const reported = !rtcp || (s.remoteSenderReports > 0 && s.remoteReceiverReports > 0);
      if ((s.inbound >= inbound && s.outbound >= outbound && reported) || Date.now() > until) return s;
      // getStats has no change event: look again a little later.
      await new Promise((r) => setTimeout(r, 100));
    }
  }, { inbound, outbound, timeoutMs, rtcp: !!rtcp });
}

const rl = readline.createInterface({ input: process.stdin });
for await (const line of rl) {
  if (!line.trim()) continue;
  let msg;
  try { msg = JSON.parse(line); } catch (e) { out({ error: `bad JSON: ${e.message}` }); continue; }
  try {
    if (msg.offer) out({ answer: await answer(msg.offer) });
    else if (msg.waitStats) out({ stats: await waitStats(msg.waitStats) });
    else if (msg.dtmf) out({ dtmf: await page.evaluate((t) => {
      const s = window.pc.getSenders().find((x) => x.dtmf);
      if (!s || !s.dtmf.canInsertDTMF) return false;
      s.dtmf.insertDTMF(t, 200, 100);
      return true;
    }, msg.dtmf) });
    else if (msg.reoffer) out({ offer: await reoffer(msg.reoffer) });
    else if (msg.call) out({ offer: await call() });
    else if (msg.answer) out(await accept(msg.answer));
    else if (msg.quit) break;
    else out({ error: 'unknown command' });
  } catch (e) {
    out({ error: String(e && e.stack || e) });
  }
}
await context.close();
server.close();
fs.rmSync(profile, { recursive: true, force: true });
process.exit(0);
