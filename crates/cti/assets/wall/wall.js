// The wallboard: live queue figures from the CTI socket (`queue.stats` every few seconds,
// agent states as they change) and today's figures from the report API (refreshed when a
// call ends), coloured by the thresholds of [cti.wall].
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const STATES = ["ready", "reserved", "on_call", "wrap_up", "not_ready", "logged_out"];
  const LABELS = { ready: "ready", reserved: "ringing", on_call: "on call", wrap_up: "wrap-up", not_ready: "not ready", logged_out: "logged out" };
  let cti = null;
  let limits = null;
  const live = new Map();      // queue → latest queue.stats entry
  const today = new Map();     // queue → today's report row
  const agents = new Map();    // agent → {state, version}
  const samples = [];          // [{t, waiting}] of the session, for the live chart
  const calls = new Map();     // call_id → {caller, customer} from call.offered
  let supervising = null;      // {agent, mode} this page listens in on (supervise.*)
  let dayReport = null;
  let poll = null;
  let reportTimer = null;

  function setStatus(text, cls) {
    const s = $("status");
    s.textContent = text;
    s.className = `status ${cls || ""}`;
  }

  function card(queue) {
    let el = document.querySelector(`[data-queue="${CSS.escape(queue)}"]`);
    if (!el) {
      el = $("queue-card").content.firstElementChild.cloneNode(true);
      el.dataset.queue = queue;
      el.querySelector(".name").textContent = queue;
      const cards = [...$("queues").children];
      const after = cards.find((c) => c.dataset.queue > queue);
      $("queues").insertBefore(el, after || null);
    }
    return el;
  }

  function put(el, field, text, lvl) {
    const b = el.querySelector(`[data-f="${field}"]`);
    b.textContent = text;
    if (lvl !== undefined) b.parentElement.dataset.level = lvl;
  }

  function render(queue) {
    const s = live.get(queue);
    const r = today.get(queue);
    const el = card(queue);
    if (s) {
      put(el, "waiting", String(s.waiting), Hotline.level(s.waiting, limits.waiting_warn, limits.waiting_alarm, true));
      put(el, "longest", Hotline.secs(s.waiting ? s.longest_wait_secs : null), Hotline.level(s.longest_wait_secs, limits.wait_warn_secs, limits.wait_alarm_secs, true));
      put(el, "ready", String(s.agents_ready));
      put(el, "busy", String(s.agents_busy));
      put(el, "not_ready", String(s.agents_not_ready));
    }
    // Today's figures come from the CDRs; before the first report the ACD's own figures.
    const sl = r ? r.service_level : s ? s.service_level : null;
    const ab = r ? r.abandon_rate : s && s.offered ? s.abandoned / s.offered : null;
    put(el, "sl", Hotline.pct(sl), Hotline.level(sl, limits.service_level_warn, limits.service_level_alarm, false));
    put(el, "abandon", Hotline.pct(ab), Hotline.level(ab, limits.abandon_warn, limits.abandon_alarm, true));
    put(el, "offered", String(r ? r.offered : s ? s.offered : 0));
    put(el, "answered", String(r ? r.answered : s ? s.answered : 0));
    const worst = [...el.querySelectorAll(".fig")].map((f) => f.dataset.level || "ok");
    el.dataset.level = worst.includes("alarm") ? "alarm" : worst.includes("warn") ? "warn" : "ok";
  }

  function onStats(queues) {
    let waiting = 0;
    for (const q of queues) {
      live.set(q.queue, q);
      waiting += q.waiting;
      render(q.queue);
    }
    samples.push({ t: Date.now(), waiting });
    while (samples.length > 720) samples.shift(); // an hour at one sample per 5 s
    drawWait();
  }

  function renderAgents() {
    const counts = Object.fromEntries(STATES.map((s) => [s, 0]));
    for (const a of agents.values()) counts[a.state] = (counts[a.state] || 0) + 1;
    $("agents").replaceChildren(...STATES.map((s) => {
      const li = document.createElement("li");
      li.className = `state-${s}`;
      li.dataset.state = s;
      li.innerHTML = `<b></b><span></span>`;
      li.querySelector("b").textContent = counts[s];
      li.querySelector("span").textContent = LABELS[s];
      return li;
    }));
  }

  function onAgent(a, fromSnapshot) {
    const old = agents.get(a.agent);
    if (old && old.version >= a.version) return; // stale: versions only grow
    // `since` is when the agent entered the state (server clock). Without it (an older
    // server), a state seen in the snapshot started before the page did ("≥"), a change
    // seen live started now.
    const changed = !old || old.state !== a.state;
    if (a.since) agents.set(a.agent, { ...a, atLeast: false });
    else agents.set(a.agent, { ...a, since: changed ? Date.now() : old.since, atLeast: changed ? !!fromSnapshot : old.atLeast });
    if (supervising && supervising.agent === a.agent && a.state !== "on_call") supervising = null;
    renderAgents();
    renderFloor();
  }

  function customerName(pop) {
    const id = pop && pop.identification;
    if (!id) return null;
    const c = id.customer;
    if (c) return [c.title, c.first_name, c.surname].filter(Boolean).join(" ") + (c.company ? `, ${c.company}` : "");
    if (id.customers) return `${id.customers.length} candidates`;
    return id.kind === "withheld" ? "withheld" : null;
  }

  function renderFloor() {
    const body = $("floor").querySelector("tbody");
    const rows = [...agents.values()].sort((a, b) => a.agent.localeCompare(b.agent)).map((a) => {
      const tr = document.createElement("tr");
      tr.dataset.agent = a.agent;
      tr.dataset.state = a.state;
      const call = a.call_id ? calls.get(a.call_id) : null;
      const td = (text, cls) => { const c = document.createElement("td"); c.textContent = text; if (cls) c.className = cls; return c; };
      const age = Math.max(0, Math.round((Date.now() - a.since) / 1000));
      const state = LABELS[a.state] + (a.reason ? ` (${a.reason})` : "") + (a.pending_not_ready ? ` → not ready (${a.pending_not_ready})` : "");
      const actions = document.createElement("td");
      actions.className = "actions";
      if (a.state !== "logged_out") {
        for (const [action, label] of [["not_ready", "Not ready"], ["logout", "Log out"]]) {
          if (action === "not_ready" && a.state === "not_ready") continue;
          const b = document.createElement("button");
          b.type = "button";
          b.textContent = label;
          b.dataset.action = action;
          b.addEventListener("click", () => forceState(a.agent, action));
          actions.append(b);
        }
      }
      if (a.state === "on_call") {
        // Listen in: the supervisor's phone rings, then hears the call in the mode chosen.
        const mine = supervising && supervising.agent === a.agent;
        const modes = [["monitor", "Monitor"], ["whisper", "Whisper"], ["barge", "Barge"]];
        for (const [mode, label] of mine ? [...modes, ["stop", "Stop"]] : modes) {
          if (mine && supervising.mode === mode) continue;
          const b = document.createElement("button");
          b.type = "button";
          b.textContent = label;
          b.dataset.supervise = mode;
          b.addEventListener("click", () => supervise(a.agent, mode));
          actions.append(b);
        }
      }
      tr.append(td(a.agent), td(state, `state-${a.state}`), td((a.atLeast ? "≥ " : "") + Hotline.secs(age), "age"),
        td(a.call_id ? (call ? call.caller : a.call_id) : "–", "call"), td(call && call.customer ? call.customer : "–", "customer"), actions);
      return tr;
    });
    body.replaceChildren(...rows);
  }

  async function supervise(agent, mode) {
    $("floor-error").textContent = "";
    try {
      const mine = supervising && supervising.agent === agent;
      if (mode === "stop") {
        await cti.request("supervise.stop");
        supervising = null;
      } else if (mine) {
        await cti.request("supervise.mode", { mode });
        supervising = { agent, mode };
      } else {
        await cti.request("supervise.start", { agent, mode });
        supervising = { agent, mode };
      }
    } catch (e) {
      $("floor-error").textContent = `${agent}: ${e.message}`;
    }
    renderFloor();
  }

  async function forceState(agent, action) {
    $("floor-error").textContent = "";
    try {
      const r = await fetch(`/api/floor/${encodeURIComponent(agent)}/${action}`, {
        method: "POST",
        headers: { Authorization: `Bearer ${cti.token}`, "Content-Type": "application/json" },
        body: action === "not_ready" ? JSON.stringify({ reason: "supervisor" }) : "",
      });
      const body = await r.json().catch(() => ({}));
      if (!r.ok) throw new Error(body.message || `HTTP ${r.status}`);
      onAgent(body);
    } catch (e) {
      $("floor-error").textContent = `${agent}: ${e.message}`;
    }
  }

  function drawDay() {
    if (!dayReport) return;
    const hours = [...Array(24).keys()].map((h) => `${String(h).padStart(2, "0")}`);
    const rows = new Map(dayReport.rows.map((r) => [r.key.slice(11, 13), r]));
    const v = (f) => hours.map((h) => (rows.get(h) ? rows.get(h)[f] : 0));
    $("day-chart").dataset.offered = String(dayReport.total.offered); // what the chart shows
    Hotline.bars($("day-chart"), hours, [
      { name: "offered", color: "#38bdf8", values: v("offered") },
      { name: "answered", color: "#22c55e", values: v("answered") },
      { name: "abandoned", color: "#f97316", values: v("abandoned") },
    ], { line: { name: "service level", color: "#e2e8f0", values: hours.map((h) => (rows.get(h) ? rows.get(h).service_level : null)) } });
  }

  function drawWait() {
    const last = samples.slice(-60);
    Hotline.bars($("wait-chart"), last.map((s) => new Date(s.t).toISOString().slice(14, 19)), [
      { name: "waiting", color: "#a78bfa", values: last.map((s) => s.waiting) },
    ]);
  }

  async function refreshReports() {
    if (!cti) return;
    try {
      // No `from`: the server's "today" (midnight in [cti.wall] timezone, else UTC).
      const [byQueue, byHour] = await Promise.all([
        Hotline.report(cti.token, "queue", {}),
        Hotline.report(cti.token, "hour", {}),
      ]);
      today.clear();
      for (const r of byQueue.rows) today.set(r.key, r);
      for (const q of new Set([...live.keys(), ...today.keys()])) render(q);
      dayReport = byHour;
      drawDay();
    } catch (e) {
      // No CDR store (memory) or a store hiccup: the live figures still run.
      console.warn("reports:", e.message);
    }
  }

  function scheduleReports() {
    // The call's record is committed around the time call.ended arrives: ask soon, and
    // once more a little later.
    clearTimeout(reportTimer);
    reportTimer = setTimeout(() => { refreshReports(); reportTimer = setTimeout(refreshReports, 4000); }, 1000);
  }

  function onEvent(type, data) {
    if (type === "queue.stats") onStats(data.queues || []);
    else if (type === "agent.state") onAgent(data);
    else if (type === "call.offered") {
      calls.set(data.call_id, { caller: data.caller, customer: customerName(data.pop) });
      while (calls.size > 2000) calls.delete(calls.keys().next().value);
    }
    else if (type === "call.ended") scheduleReports();
    if (type.startsWith("call.") || type === "agent.state") soonStats();
  }

  // A burst of events (a busy floor) makes one request, not one per event.
  let statsTimer = null;
  function soonStats() {
    if (statsTimer) return;
    statsTimer = setTimeout(() => { statsTimer = null; askStats(); }, 300);
  }

  async function askStats() {
    if (!cti) return;
    try { onStats((await cti.request("queue.stats")).queues || []); } catch { /* closed */ }
  }

  async function start(user, password) {
    limits = await (await fetch("/wall/config.json")).json();
    cti = await Hotline.connect(user, password, onEvent, () => {
      setStatus("disconnected", "bad");
      clearInterval(poll);
      cti = null;
      setTimeout(() => start().catch(() => showLogin()), 2000);
    });
    $("login").hidden = true;
    $("board").hidden = false;
    setStatus(`live · ${cti.user}`, "good");
    const snap = await cti.request("agents.snapshot");
    for (const a of snap.agents || []) onAgent(a, true);
    renderAgents();
    await askStats();
    clearInterval(poll);
    // Waiting calls change without an event to supervisors (a call entering a queue);
    // the switch pushes queue.stats every 5 s, and asking every 2 s keeps the wall current.
    poll = setInterval(askStats, 2000);
    await refreshReports();
    setInterval(refreshReports, 60000);
    setInterval(renderFloor, 1000); // time in state
  }

  function showLogin(message) {
    $("login").hidden = false;
    $("board").hidden = true;
    $("login-error").textContent = message || "";
  }

  $("login").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    $("login-error").textContent = "";
    try {
      await start($("user").value, $("password").value);
    } catch (e) {
      showLogin(e.code === "auth_failed" ? "Wrong user or password." : e.message);
    }
  });

  window.addEventListener("resize", () => { drawDay(); drawWait(); });

  if (Hotline.savedToken()) start().catch(() => showLogin());
})();
