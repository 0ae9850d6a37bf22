// The CTI WebSocket client (docs/cti-protocol.md): requests with ids answered by one reply
// or error frame, events, heartbeats, and reconnect with exponential backoff + resume.

/** An error frame from the server (or a local failure with code "disconnected"). */
export class CtiError extends Error {
  constructor(code, message) {
    super(message || code);
    this.code = code;
  }
}

const BACKOFF_MIN_MS = 500;
const BACKOFF_MAX_MS = 30000;
const REQUEST_TIMEOUT_MS = 15000;

export class Cti {
  /**
   * @param {string} url ws(s)://host/cti
   * @param {object} handlers onEvent(type, data), onSession(reply) after every login or
   *   resume, onStatus(status: "connecting"|"online"|"offline"|"reconnecting"),
   *   onSessionLost(code) when the token no longer works.
   */
  constructor(url, handlers) {
    this.url = url;
    this.h = handlers;
    this.ws = null;
    this.nextId = 1;
    this.pending = new Map();
    this.token = null;
    this.attempt = 0;
    this.retryTimer = null;
    this.silenceTimer = null;
    this.heartbeatSecs = 15;
    this.stopped = true;
  }

  /** Opens the socket; resolves once it is open. */
  open() {
    this.stopped = false;
    clearTimeout(this.retryTimer);
    this.h.onStatus(this.attempt === 0 ? "connecting" : "reconnecting");
    this.opening = new Promise((resolve, reject) => {
      let ws;
      try {
        ws = new WebSocket(this.url);
      } catch (e) {
        this.scheduleReconnect();
        reject(new CtiError("disconnected", String(e)));
        return;
      }
      this.ws = ws;
      let opened = false;
      ws.onopen = () => {
        opened = true;
        this.armSilence();
        resolve();
      };
      ws.onmessage = (m) => this.onFrame(m.data);
      ws.onclose = () => {
        if (this.ws !== ws) return;
        this.ws = null;
        clearTimeout(this.silenceTimer);
        for (const [, p] of this.pending) p.reject(new CtiError("disconnected", "connection lost"));
        this.pending.clear();
        if (!opened) reject(new CtiError("disconnected", "cannot reach the server"));
        // While reconnecting the status stays "reconnecting" (no flicker per attempt).
        if (this.stopped) this.h.onStatus("offline");
        else this.scheduleReconnect();
      };
    });
    return this.opening;
  }

  /** Resolves once a socket is open, reusing one that is open or opening. */
  ensureOpen() {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) return Promise.resolve();
    if (this.ws && this.ws.readyState === WebSocket.CONNECTING && this.opening) return this.opening;
    return this.open();
  }

  /** Any frame is a sign of life; three silent heartbeat intervals mean a dead socket. */
  armSilence() {
    clearTimeout(this.silenceTimer);
    this.silenceTimer = setTimeout(() => {
      if (this.ws) this.ws.close();
    }, this.heartbeatSecs * 3000 + 1000);
  }

  scheduleReconnect() {
    clearTimeout(this.retryTimer);
    const base = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** this.attempt);
    const delay = base / 2 + Math.random() * (base / 2);
    this.attempt += 1;
    this.h.onStatus("reconnecting");
    this.retryTimer = setTimeout(() => this.reconnect(), delay);
  }

  async reconnect() {
    if (this.stopped) return;
    try {
      await this.open();
    } catch {
      return; // onclose scheduled the next attempt
    }
    if (!this.token) {
      this.attempt = 0;
      this.h.onStatus("online");
      return;
    }
    try {
      await this.resume(this.token);
    } catch (e) {
      if (e.code === "token_invalid" || e.code === "token_expired") {
        this.token = null;
        this.h.onSessionLost(e.code);
      }
    }
  }

  onFrame(text) {
    this.armSilence();
    let f;
    try {
      f = JSON.parse(text);
    } catch {
      return;
    }
    if (!f || typeof f !== "object") return;
    if (f.type === "ping") {
      this.sendRaw({ v: 1, type: "pong" });
      return;
    }
    if (f.type === "reply" || (f.type === "error" && f.id != null && this.pending.has(String(f.id)))) {
      const p = this.pending.get(String(f.id));
      if (!p) return;
      this.pending.delete(String(f.id));
      clearTimeout(p.timer);
      if (f.type === "reply") p.resolve(f.data ?? {});
      else p.reject(new CtiError(f.code, f.message));
      return;
    }
    if (f.type === "error") {
      if (f.code === "token_expired") this.h.onSessionLost(f.code);
      return;
    }
    if (f.type === "pong") return;
    this.h.onEvent(f.type, f.data ?? {});
  }

  sendRaw(obj) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) {
      this.ws.send(JSON.stringify(obj));
      return true;
    }
    return false;
  }

  /** Sends a request; resolves with the reply's data, rejects with a CtiError. */
  request(type, fields = {}) {
    const id = `r${this.nextId++}`;
    return new Promise((resolve, reject) => {
      if (!this.sendRaw({ v: 1, id, type, ...fields })) {
        reject(new CtiError("disconnected", "not connected; reconnecting"));
        return;
      }
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new CtiError("timeout", "the server did not answer"));
      }, REQUEST_TIMEOUT_MS);
      this.pending.set(id, { resolve, reject, timer });
    });
  }

  async login(user, password) {
    const r = await this.request("auth.login", { user, password });
    this.session(r);
    return r;
  }

  async resume(token) {
    const r = await this.request("auth.resume", { token });
    this.session(r);
    return r;
  }

  session(r) {
    this.token = r.token ?? this.token;
    if (r.heartbeat_secs > 0) this.heartbeatSecs = r.heartbeat_secs;
    this.attempt = 0;
    this.armSilence();
    this.h.onStatus("online");
    this.h.onSession(r);
  }

  /** Ends the session on the server and stops reconnecting. */
  async logout() {
    try {
      await this.request("auth.logout");
    } catch {
      // gone already: the token is dropped locally either way
    }
    this.close();
  }

  close() {
    this.stopped = true;
    this.token = null;
    this.opening = null;
    clearTimeout(this.retryTimer);
    clearTimeout(this.silenceTimer);
    if (this.ws) this.ws.close();
  }
}
