// Shared by the wallboard (/wall) and the report page (/reports): the CTI WebSocket login,
// the report API and small canvas charts. No framework, no CDN: everything is served by
// Hotline itself.
"use strict";

const Hotline = (() => {
  const TOKEN_KEY = "hotline.supervisor.token";

  /** A CTI session over /cti: requests with ids, events to `onEvent`, pings answered. */
  class Cti {
    constructor(onEvent, onClose) {
      this.onEvent = onEvent;
      this.onClose = onClose;
      this.next = 0;
      this.pending = new Map();
      this.token = null;
      this.user = null;
    }

    open() {
      const proto = location.protocol === "https:" ? "wss:" : "ws:";
      this.ws = new WebSocket(`${proto}//${location.host}/cti`);
      return new Promise((resolve, reject) => {
        this.ws.onopen = () => resolve();
        this.ws.onerror = () => reject(new Error("cannot reach the CTI server"));
        this.ws.onclose = () => {
          for (const p of this.pending.values()) p.reject(new Error("connection closed"));
          this.pending.clear();
          if (this.onClose) this.onClose();
        };
        this.ws.onmessage = (m) => this.frame(m.data);
      });
    }

    frame(text) {
      let f;
      try { f = JSON.parse(text); } catch { return; }
      if (f.type === "ping") { this.ws.send(JSON.stringify({ v: 1, type: "pong" })); return; }
      if ((f.type === "reply" || f.type === "error") && this.pending.has(f.id)) {
        const p = this.pending.get(f.id);
        this.pending.delete(f.id);
        if (f.type === "reply") p.resolve(f.data);
        else p.reject(Object.assign(new Error(f.message || f.code), { code: f.code }));
        return;
      }
      if (this.onEvent) this.onEvent(f.type, f.data || {});
    }

    request(type, fields = {}) {
      const id = `w${++this.next}`;
      return new Promise((resolve, reject) => {
        this.pending.set(id, { resolve, reject });
        this.ws.send(JSON.stringify({ v: 1, id, type, ...fields }));
      });
    }

    async login(user, password) {
      const r = await this.request("auth.login", { user, password });
      return this.accept(r);
    }

    async resume(token) {
      const r = await this.request("auth.resume", { token });
      return this.accept(r);
    }

    accept(r) {
      if (r.role !== "supervisor" && r.role !== "admin") {
        throw Object.assign(new Error("the wallboard needs a supervisor or admin login"), { code: "forbidden" });
      }
      this.token = r.token;
      this.user = r.user;
      try { sessionStorage.setItem(TOKEN_KEY, r.token); } catch { /* private mode */ }
      return r;
    }
  }

  function savedToken() {
    try { return sessionStorage.getItem(TOKEN_KEY); } catch { return null; }
  }

  function forgetToken() {
    try { sessionStorage.removeItem(TOKEN_KEY); } catch { /* ignore */ }
  }

  /** Connects and logs in (or resumes a saved session when no password is given). */
  async function connect(user, password, onEvent, onClose) {
    const cti = new Cti(onEvent, onClose);
    await cti.open();
    if (password === undefined) {
      const t = savedToken();
      if (!t) throw new Error("not logged in");
      try { await cti.resume(t); } catch (e) { forgetToken(); throw e; }
    } else {
      await cti.login(user, password);
    }
    return cti;
  }

  function reportUrl(by, params) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== "") q.set(k, v);
    return `/api/reports/${by}?${q}`;
  }

  /** GET /api/reports/{by}: the report, or an Error with the server's message. */
  async function report(token, by, params) {
    const r = await fetch(reportUrl(by, params), { headers: { Authorization: `Bearer ${token}` } });
    const body = await r.json().catch(() => ({}));
    if (!r.ok) throw Object.assign(new Error(body.message || `HTTP ${r.status}`), { code: body.error, status: r.status });
    return body;
  }

  /** The CSV export of the same report, fetched with the token and saved as a file. */
  async function downloadCsv(token, by, params) {
    const r = await fetch(reportUrl(by, { ...params, format: "csv" }), { headers: { Authorization: `Bearer ${token}` } });
    if (!r.ok) {
      const body = await r.json().catch(() => ({}));
      throw new Error(body.message || `HTTP ${r.status}`);
    }
    const blob = await r.blob();
    const a = document.createElement("a");
    a.href = URL.createObjectURL(blob);
    a.download = `report-${by}.csv`;
    document.body.appendChild(a);
    a.click();
    setTimeout(() => { URL.revokeObjectURL(a.href); a.remove(); }, 1000);
  }

  function pct(v) { return v === null || v === undefined ? "–" : `${Math.round(v * 100)}%`; }

  function secs(v) {
    if (v === null || v === undefined) return "–";
    const s = Math.round(v);
    return s < 60 ? `${s}s` : `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
  }

  /** `ok` / `warn` / `alarm` for a value against thresholds (`higherIsWorse`). */
  function level(v, warn, alarm, higherIsWorse) {
    if (v === null || v === undefined) return "ok";
    if (higherIsWorse) return v >= alarm ? "alarm" : v >= warn ? "warn" : "ok";
    return v < alarm ? "alarm" : v < warn ? "warn" : "ok";
  }

  /** Grouped bars: `labels` along x, one bar per series and label. */
  function bars(canvas, labels, series, opts = {}) {
    const ctx = canvas.getContext("2d");
    const w = canvas.width = canvas.clientWidth * devicePixelRatio;
    const h = canvas.height = canvas.clientHeight * devicePixelRatio;
    ctx.scale(devicePixelRatio, devicePixelRatio);
    const W = w / devicePixelRatio, H = h / devicePixelRatio;
    const pad = { l: 36, r: 8, t: 18, b: 22 };
    ctx.clearRect(0, 0, W, H);
    ctx.font = "11px system-ui, sans-serif";
    // Whole-number gridlines: counts of calls.
    const top = Math.max(1, ...series.flatMap((s) => s.values.map((v) => v || 0)));
    const step = Math.max(1, Math.ceil(top / 4));
    const max = step * Math.ceil(top / step);
    const plotW = W - pad.l - pad.r, plotH = H - pad.t - pad.b;
    ctx.strokeStyle = "#33415566";
    ctx.fillStyle = "#94a3b8";
    for (let v = 0; v <= max; v += step) {
      const y = pad.t + plotH - (plotH * v) / max;
      ctx.beginPath(); ctx.moveTo(pad.l, y); ctx.lineTo(W - pad.r, y); ctx.stroke();
      ctx.fillText(String(v), 4, y + 4);
    }
    const n = Math.max(1, labels.length);
    const widest = Math.max(1, ...labels.map((l) => ctx.measureText(l).width + 6));
    const labelEvery = Math.max(1, Math.ceil(n / Math.max(1, Math.floor(plotW / widest))));
    const group = plotW / n;
    const bw = Math.min(48, Math.max(2, (group * 0.8) / Math.max(1, series.length)));
    labels.forEach((label, i) => {
      series.forEach((s, j) => {
        const v = s.values[i] || 0;
        const bh = (plotH * v) / max;
        ctx.fillStyle = s.color;
        ctx.fillRect(pad.l + i * group + group * 0.1 + j * bw, pad.t + plotH - bh, bw - 1, bh);
      });
      if (i % labelEvery === 0) {
        ctx.fillStyle = "#94a3b8";
        ctx.fillText(label, pad.l + i * group + 2, H - 6);
      }
    });
    let x = pad.l;
    for (const s of series) {
      ctx.fillStyle = s.color; ctx.fillRect(x, 4, 10, 10);
      ctx.fillStyle = "#cbd5e1"; ctx.fillText(s.name, x + 14, 13);
      x += ctx.measureText(s.name).width + 30;
    }
    if (opts.line) {
      // A second axis (0..1) for a ratio such as the service level.
      ctx.strokeStyle = opts.line.color; ctx.lineWidth = 2; ctx.beginPath();
      opts.line.values.forEach((v, i) => {
        if (v === null || v === undefined) return;
        const px = pad.l + i * group + group / 2, py = pad.t + plotH - plotH * v;
        if (i === 0 || opts.line.values[i - 1] === null) ctx.moveTo(px, py); else ctx.lineTo(px, py);
        ctx.fillStyle = opts.line.color; ctx.fillRect(px - 2, py - 2, 4, 4);
      });
      ctx.stroke(); ctx.lineWidth = 1;
      ctx.fillStyle = opts.line.color; ctx.fillRect(x, 4, 10, 10);
      ctx.fillStyle = "#cbd5e1"; ctx.fillText(opts.line.name, x + 14, 13);
    }
  }

  return { connect, forgetToken, savedToken, report, downloadCsv, pct, secs, level, bars };
})();
