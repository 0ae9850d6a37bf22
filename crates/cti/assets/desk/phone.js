// The in-browser phone: JsSIP (vendored, unmodified) registering over SIP-over-WebSocket
// as the agent's device. Hotline offers the queue call to it like to any registered
// phone; the desk answers, holds, mutes and sends DTMF on this session. JsSIP reconnects
// its WebSocket and re-registers by itself after a network blip; an established call's
// media keeps flowing meanwhile.

const JSSIP_URL = "/desk/vendor/jssip-3.12.0.min.js";

let loading = null;

/** Loads JsSIP once (a classic script: it defines window.JsSIP). */
function loadJsSip() {
  if (window.JsSIP) return Promise.resolve(window.JsSIP);
  if (!loading) {
    loading = new Promise((resolve, reject) => {
      const s = document.createElement("script");
      s.src = JSSIP_URL;
      s.onload = () => (window.JsSIP ? resolve(window.JsSIP) : reject(new Error("JsSIP did not load")));
      s.onerror = () => {
        loading = null;
        reject(new Error("JsSIP could not be loaded"));
      };
      document.head.append(s);
    });
  }
  return loading;
}

export class Phone {
  /**
   * @param {HTMLAudioElement} audio where the remote party is played
   * @param {object} h onStatus(text, registered), onRinging(), onSessionChange(state)
   *   with state one of "ringing" | "answered" | "ended"
   */
  constructor(audio, h) {
    this.audio = audio;
    this.h = h;
    this.ua = null;
    this.session = null;
  }

  get connected() {
    return this.ua !== null;
  }

  get ringing() {
    return this.session !== null && this.session.isInProgress() && this.session.direction === "incoming";
  }

  async connect({ wsUrl, domain, user, password }) {
    this.disconnect();
    const JsSIP = await loadJsSip();
    const host = domain || new URL(wsUrl).hostname;
    const socket = new JsSIP.WebSocketInterface(wsUrl);
    const ua = new JsSIP.UA({
      sockets: [socket],
      uri: `sip:${user}@${host}`,
      authorization_user: user,
      password,
      register: true,
      session_timers: false,
      connection_recovery_min_interval: 1,
      connection_recovery_max_interval: 30,
    });
    ua.on("connecting", () => this.h.onStatus("Phone connecting…", false));
    ua.on("disconnected", () => this.h.onStatus("Phone disconnected; reconnecting…", false));
    ua.on("registered", () => this.h.onStatus(`Phone registered as ${user}`, true));
    ua.on("unregistered", () => this.h.onStatus("Phone not registered", false));
    ua.on("registrationFailed", (e) => this.h.onStatus(`Phone registration failed: ${e.cause}`, false));
    ua.on("newRTCSession", (e) => {
      if (e.originator !== "remote") return;
      if (this.session) {
        // One call at a time: the desk works the offered call.
        e.session.terminate({ status_code: 486 });
        return;
      }
      this.track(e.session);
      // Hotline calling the reloaded page back into the call it was on: answer at once
      // when the desk agrees it is that call.
      const rejoin = e.request.getHeader("X-Hotline-Rejoin");
      if (rejoin && this.h.isRejoin?.(rejoin)) this.answer();
    });
    this.ua = ua;
    ua.start();
  }

  track(session) {
    this.session = session;
    const attach = () => {
      const pc = session.connection;
      if (!pc) return;
      pc.addEventListener("track", (ev) => {
        if (ev.streams && ev.streams[0]) this.audio.srcObject = ev.streams[0];
      });
    };
    if (session.connection) attach();
    else session.on("peerconnection", attach);
    const end = () => {
      if (this.session === session) this.session = null;
      this.h.onSessionChange("ended");
    };
    session.on("accepted", () => this.h.onSessionChange("answered"));
    session.on("ended", end);
    session.on("failed", end);
    this.h.onSessionChange("ringing");
  }

  answer() {
    if (!this.ringing) return false;
    this.session.answer({ mediaConstraints: { audio: true, video: false } });
    return true;
  }

  hangup() {
    if (!this.session) return false;
    this.session.terminate();
    return true;
  }

  /** Phone-side hold (re-INVITE sendonly), which Hotline answers with music for the caller. */
  hold(on) {
    if (!this.session || !this.session.isEstablished()) return false;
    return on ? this.session.hold() : this.session.unhold();
  }

  mute(on) {
    if (!this.session || !this.session.isEstablished()) return false;
    if (on) this.session.mute({ audio: true });
    else this.session.unmute({ audio: true });
    return true;
  }

  dtmf(tones) {
    if (!this.session || !this.session.isEstablished()) return false;
    this.session.sendDTMF(tones, { transportType: "RFC2833" });
    return true;
  }

  /** Blind transfer from the phone (REFER), which Hotline carries out. */
  refer(target) {
    if (!this.session || !this.session.isEstablished() || !this.ua) return false;
    const host = this.ua.configuration.uri.host;
    this.session.refer(target.includes("@") ? `sip:${target}` : `sip:${target}@${host}`);
    return true;
  }

  disconnect() {
    if (this.ua) {
      this.ua.stop();
      this.ua = null;
    }
    this.session = null;
    this.h.onStatus("External phone (calls ring on your registered device)", false);
  }
}
