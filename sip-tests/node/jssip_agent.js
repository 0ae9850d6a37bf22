// A browser softphone's SIP stack (JsSIP) run by node over a real WebSocket (the `ws`
// package): registers with digest auth, waits for one incoming call, lets it ring, rejects
// it with 486 Busy Here, unregisters and exits. Node has no WebRTC, so the call is never
// answered here; answering with media is the browser tests' job.
//
// Environment: WS_URL (ws://127.0.0.1:PORT), SIP_URI (sip:carol@hotline.test), SIP_PASSWORD.
// Prints one JSON object per line: {"event": "registered" | "incoming" | "rejected" |
// "unregistered" | "error", ...}. Exits 0 after unregistering, 2 on a failure or timeout.
'use strict';

const WebSocket = require('ws');
// JsSIP's WebSocketInterface uses the browser's global WebSocket; `ws` has the same API.
globalThis.WebSocket = WebSocket;
// JsSIP answers 488 to INVITEs when `window.RTCPeerConnection` is missing. The stub is
// never constructed: the call is rejected before any media would be set up.
globalThis.window = globalThis;
globalThis.RTCPeerConnection = class NoWebRTCInNode {
  constructor() {
    throw new Error('no WebRTC in node');
  }
};
const JsSIP = require('jssip');

function emit(event, extra) {
  process.stdout.write(JSON.stringify({ event, ...extra }) + '\n');
}

function fail(why) {
  emit('error', { why: String(why) });
  process.exit(2);
}

const url = process.env.WS_URL;
const uri = process.env.SIP_URI;
const password = process.env.SIP_PASSWORD;
if (!url || !uri || !password) fail('WS_URL, SIP_URI and SIP_PASSWORD are required');

setTimeout(() => fail('timed out'), 30000).unref();

const ua = new JsSIP.UA({
  sockets: [new JsSIP.WebSocketInterface(url)],
  uri,
  password,
  register: true,
  register_expires: 300,
  session_timers: false,
  user_agent: 'JsSIP (Hotline transport test)',
});

ua.on('registered', (e) => {
  emit('registered', { contact: ua.contact.toString(), status: e.response.status_code });
});
ua.on('registrationFailed', (e) => fail(`registration failed: ${e.cause}`));
ua.on('unregistered', () => {
  emit('unregistered');
  ua.stop();
  setTimeout(() => process.exit(0), 100);
});
ua.on('newRTCSession', ({ originator, session, request }) => {
  if (originator !== 'remote') return;
  emit('incoming', {
    from: session.remote_identity.uri.toString(),
    via: request.getHeader('Via'),
    // Must never arrive relayed from another phone: the desk page answers it by itself.
    rejoin: request.getHeader('X-Hotline-Rejoin') ?? null,
  });
  session.on('failed', (e) => {
    emit('rejected', { cause: e.cause });
    ua.unregister();
  });
  // Refuse once it rang: 'progress' fires after JsSIP has sent 180 Ringing.
  session.on('progress', () => session.terminate({ status_code: 486, reason_phrase: 'Busy Here' }));
});
ua.start();
