// Hotline's admin page (/admin): forms over the admin REST API (/api/…, see
// /api/openapi.json). No framework, no CDN, no inline script (the page's CSP forbids it).
// The API validates everything; the page shows its 422s next to the field they name.

const TOKEN_KEY = "hotline.admin.token";
const $ = (sel, root = document) => root.querySelector(sel);

/** A DOM element: `el("td", {class: "num"}, "3")`. */
function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(e.dataset, v);
    else e.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined) e.append(c);
  return e;
}

let token = sessionStorage.getItem(TOKEN_KEY);

/** One API call: `{status, body}`; a 401 sends the admin back to the login form. */
async function api(method, path, body, contentType = "application/json") {
  const headers = { Authorization: `Bearer ${token}` };
  let payload;
  if (body !== undefined) {
    headers["Content-Type"] = contentType;
    payload = contentType === "application/json" ? JSON.stringify(body) : body;
  }
  const r = await fetch(path, { method, headers, body: payload });
  let data = null;
  try { data = await r.json(); } catch { data = null; }
  if (r.status === 401 && path !== "/api/login") showLogin("Your session expired; log in again.");
  return { status: r.status, body: data };
}

function showLogin(message = "") {
  sessionStorage.removeItem(TOKEN_KEY);
  token = null;
  $("#page").hidden = true;
  $("#tabs").hidden = true;
  $("#login").hidden = false;
  $("#login-error").textContent = message;
}

async function login(ev) {
  ev.preventDefault();
  const user = $("#user").value;
  const password = $("#password").value;
  const r = await fetch("/api/login", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ user, password }),
  });
  const body = await r.json().catch(() => ({}));
  if (r.status !== 200) {
    $("#login-error").textContent = r.status === 401 ? "Wrong user or password." : (body.message || `Login failed (${r.status}).`);
    return;
  }
  if (body.role !== "admin") {
    $("#login-error").textContent = `User ${user} has role ${body.role}; this page needs an admin.`;
    return;
  }
  token = body.token;
  sessionStorage.setItem(TOKEN_KEY, token);
  $("#who").textContent = user;
  start();
}

// ---------------------------------------------------------------------------------------
// Resource forms. A field is {name, label, type, options?, hint?}; types: text, number,
// select, bool (default / true / false), list (comma separated), map (k=v, …), json.
// An empty field is left out of the entry (the server's default applies); fields the form
// does not show are kept as they were.

const STRATEGIES = ["longest-idle", "most-skilled", "round-robin", "fewest-calls", "least-talk-time", "ring-all", "random", "linear"];

const RESOURCES = {
  numbers: {
    title: "Numbers", key: "number",
    fields: [
      { name: "queue", label: "Queue" },
      { name: "menu", label: "IVR menu" },
      { name: "extension", label: "Extension" },
      { name: "hours", label: "Business hours" },
      { name: "closed", label: "When closed", type: "json", hint: '{"say": "We are closed"} or {"queue": "…"}' },
    ],
  },
  menus: {
    title: "IVR menus", key: "name",
    fields: [
      { name: "say", label: "Prompt text (spoken)" },
      { name: "prompt", label: "Prompt file", hint: "path of an uploaded prompt" },
      { name: "timeout_secs", label: "Timeout (s)", type: "number" },
      { name: "retries", label: "Retries", type: "number" },
      { name: "choices", label: "Choices", type: "json", wide: true, hint: '{"1": {"queue": "sales"}, "2": {"menu": "billing"}}' },
      { name: "default", label: "Default", type: "json", hint: '{"queue": "support"}' },
    ],
  },
  queues: {
    title: "Queues", key: "name", whatif: true,
    fields: [
      { name: "strategy", label: "Strategy", type: "select", options: STRATEGIES },
      { name: "ring_timeout_secs", label: "Ring timeout (s)", type: "number" },
      { name: "ring_all_limit", label: "Ring-all limit", type: "number" },
      { name: "max_wait_secs", label: "Max wait (s)", type: "number" },
      { name: "max_len", label: "Max waiting calls", type: "number" },
      { name: "wrapup_secs", label: "Wrap-up (s)", type: "number" },
      { name: "announce_secs", label: "Announce every (s)", type: "number", hint: "position / expected wait; 0 = never" },
      { name: "sl_secs", label: "Service level within (s)", type: "number" },
      { name: "sl_target_pct", label: "Service level target (%)", type: "number" },
      { name: "expected_aht_secs", label: "Expected handle time (s)", type: "number" },
      { name: "weight", label: "Weight", type: "number" },
      { name: "join_when_empty", label: "Join when no agent", type: "bool" },
      { name: "leave_when_empty", label: "Leave when no agent", type: "bool" },
      { name: "not_ready_on_no_answer", label: "Not ready on no answer", type: "bool" },
      { name: "sites", label: "Sites", type: "list" },
      { name: "skills", label: "Required skills", type: "json", hint: '[{"skill": "lang-de", "min": 5}]' },
      { name: "fallback", label: "Fallback", type: "json", hint: '"hangup", {"queue": "…"}, {"number": "…"}, {"voicemail": "…"}' },
      { name: "overflow", label: "Overflow steps", type: "json", wide: true, hint: '[{"after_secs": 30, "add_queues": ["sales"]}]' },
    ],
  },
  "queue-options": {
    title: "Queue options", key: "name",
    fields: [
      { name: "leave_key", label: "Leave key" },
      { name: "whisper", label: "Whisper prompt file" },
      { name: "whisper_say", label: "Whisper text" },
      { name: "callback_key", label: "Callback key" },
      { name: "callback_min_ewt_secs", label: "Offer callback above wait (s)", type: "number" },
    ],
  },
  agents: {
    title: "Agents", key: "id",
    fields: [
      { name: "site", label: "Site" },
      { name: "skills", label: "Skills", type: "map", hint: "skill=proficiency 1-10, e.g. lang-de=8, billing=5" },
      { name: "queues", label: "Queues", type: "map", hint: "queue=penalty, e.g. support=0, sales=1" },
    ],
  },
  hours: {
    title: "Business hours and holidays", key: "name",
    fields: [
      { name: "timezone", label: "Time zone" },
      { name: "open", label: "Opening ranges", type: "json", wide: true, hint: '[{"days": "mon-fri", "from": "08:00", "to": "18:00"}]' },
      { name: "holidays", label: "Holidays", type: "list", hint: "2026-12-25, 2027-01-01" },
    ],
  },
};

/** The text an input shows for a value. */
function show(f, v) {
  if (v === undefined || v === null) return "";
  switch (f.type) {
    case "json": return JSON.stringify(v);
    case "list": return Array.isArray(v) ? v.join(", ") : String(v);
    case "map": return Object.entries(v).map(([k, x]) => `${k}=${x}`).join(", ");
    case "bool": return v ? "true" : "false";
    default: return String(v);
  }
}

/** An input's value for the entry; `undefined` = leave the field out; throws on bad syntax. */
function parse(f, text) {
  const t = text.trim();
  if (t === "") return undefined;
  switch (f.type) {
    case "number": {
      const n = Number(t);
      if (!Number.isFinite(n)) throw new Error("not a number");
      return n;
    }
    case "bool": return t === "true";
    case "list": return t.split(",").map((s) => s.trim()).filter(Boolean);
    case "map": {
      const out = {};
      for (const part of t.split(",").map((s) => s.trim()).filter(Boolean)) {
        const [k, v] = part.split("=").map((s) => s.trim());
        const n = Number(v);
        if (!k || v === undefined || !Number.isInteger(n)) throw new Error(`"${part}": write name=number`);
        out[k] = n;
      }
      return out;
    }
    case "json":
      try { return JSON.parse(t); } catch (e) { throw new Error(`not JSON: ${e.message}`); }
    default: return t;
  }
}

function input(f, value) {
  const id = `f-${f.name}`;
  let control;
  if (f.type === "select" || f.type === "bool") {
    const opts = f.type === "bool" ? ["true", "false"] : f.options;
    control = el("select", { id, name: f.name },
      el("option", { value: "" }, "(default)"),
      opts.map((o) => el("option", { value: o }, o)));
  } else if (f.type === "json") {
    control = el("textarea", { id, name: f.name, rows: 2, spellcheck: "false" });
  } else {
    control = el("input", { id, name: f.name, type: f.type === "number" ? "number" : "text", step: f.type === "number" ? "any" : undefined });
  }
  control.value = show(f, value);
  return el("label", { class: f.wide ? "field wide" : "field", dataset: { field: f.name } },
    f.label, control,
    f.hint ? el("span", { class: "hint" }, f.hint) : null,
    el("span", { class: "error", role: "alert", dataset: { errorFor: f.name } }));
}

function clearErrors(form) {
  for (const e of form.querySelectorAll(".error")) e.textContent = "";
  for (const e of form.querySelectorAll("[aria-invalid]")) e.removeAttribute("aria-invalid");
}

/** Shows an API refusal next to its field (or at the form's foot when it names none). */
function showFault(form, body, fallbackField) {
  const field = (body && body.field) || fallbackField;
  const message = (body && body.message) || "refused";
  const slot = field && form.querySelector(`[data-error-for="${CSS.escape(field)}"]`);
  if (slot) {
    slot.textContent = message;
    const c = form.querySelector(`[name="${CSS.escape(field)}"]`);
    if (c) { c.setAttribute("aria-invalid", "true"); c.focus(); }
  } else {
    $("#form-error", form).textContent = body && body.line ? `${message} (line ${body.line})` : message;
  }
}

/** The entry the form describes: the original with the shown fields replaced. */
function entryOf(spec, form, original) {
  const entry = { ...(original || {}) };
  delete entry[spec.key];
  for (const f of spec.fields) {
    const c = form.elements[f.name];
    let v;
    try { v = parse(f, c.value); } catch (e) { throw Object.assign(e, { field: f.name }); }
    if (v === undefined) delete entry[f.name];
    else entry[f.name] = v;
  }
  return entry;
}

async function resourceView(name, select) {
  const spec = RESOURCES[name];
  const r = await api("GET", `/api/${name}`);
  const entries = Array.isArray(r.body) ? r.body : [];
  const view = $("#view");
  const list = el("ul", { class: "entries", id: "entries" },
    entries.map((e) => el("li", {}, el("button", {
      type: "button", dataset: { id: e[spec.key] },
      onclick: () => edit(e[spec.key]),
    }, e[spec.key]))));
  const side = el("div", { class: "panel", id: "side" });
  const editor = el("div", { class: "panel", id: "editor-panel" });
  view.replaceChildren(el("div", { class: "split" },
    el("div", { class: "panel" }, el("h2", {}, spec.title), list,
      el("p", {}, el("button", { type: "button", class: "secondary", id: "new-entry", onclick: () => edit(null) }, "New…"))),
    editor, side));
  side.hidden = !spec.whatif;

  function edit(id) {
    for (const b of list.querySelectorAll("button")) b.setAttribute("aria-current", String(b.dataset.id === id));
    const original = entries.find((e) => e[spec.key] === id) || null;
    const form = el("form", { class: "editor", id: "editor", novalidate: true, dataset: { resource: name, id: id || "" } },
      id ? null : input({ name: spec.key, label: spec.key[0].toUpperCase() + spec.key.slice(1), wide: true }, ""),
      spec.fields.map((f) => input(f, original ? original[f.name] : undefined)),
      el("div", { class: "actions" },
        el("button", { type: "submit", id: "save" }, "Save"),
        id ? el("button", { type: "button", class: "secondary", id: "delete", onclick: () => remove(id) }, "Delete") : null,
        el("span", { class: "ok", id: "saved", role: "status" })),
      el("p", { class: "error wide", id: "form-error", role: "alert" }));
    editor.replaceChildren(el("h2", {}, id ? `${spec.title}: ${id}` : `New entry`), form);
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      clearErrors(form);
      const key = id || form.elements[spec.key].value.trim();
      if (!key) { showFault(form, { message: `give the ${spec.key}` }, spec.key); return; }
      let entry;
      try { entry = entryOf(spec, form, original); } catch (e) { showFault(form, { message: e.message }, e.field); return; }
      const r = await api("PUT", `/api/${name}/${encodeURIComponent(key)}`, entry);
      if (r.status === 200 || r.status === 201) {
        const applied = (r.body.applied || []).join("; ");
        await resourceView(name, key);
        $("#saved").textContent = r.body.unchanged ? "Nothing changed." : `Saved as version ${r.body.version}.${applied ? ` Applied: ${applied}` : ""}`;
      } else {
        showFault(form, r.body);
      }
    });
    if (spec.whatif && id) {
      let timer = null;
      const pending = () => { clearTimeout(timer); timer = setTimeout(() => whatif(form, spec, name, id, original), 300); };
      form.addEventListener("input", pending);
      form.addEventListener("change", pending);
      side.replaceChildren(el("h2", {}, "What-if"), el("p", { class: "hint", id: "whatif-status" }, "Change a field to see the simulated effect before you save."));
    }
  }

  async function remove(id) {
    const r = await api("DELETE", `/api/${name}/${encodeURIComponent(id)}`);
    if (r.status === 200) await resourceView(name);
    else showFault($("#editor"), r.body);
  }

  if (select !== undefined) edit(select);
}

const pct = (x) => (x === null || x === undefined || Number.isNaN(x) ? "–" : `${(x * 100).toFixed(1)} %`);
const secs = (x) => (x === null || x === undefined || Number.isNaN(x) ? "–" : `${x.toFixed(1)} s`);

/** Simulates the pending queue edit against the current routing (nothing is saved). */
async function whatif(form, spec, name, id, original) {
  // The admin may have saved or moved on since the edit: nothing to show then.
  if (!form.isConnected) return;
  const side = $("#side");
  clearErrors(form);
  let entry;
  try { entry = entryOf(spec, form, original); } catch (e) { showFault(form, { message: e.message }, e.field); return; }
  const status = $("#whatif-status");
  if (status) status.textContent = "Simulating…";
  const r = await api("POST", "/api/whatif", { changes: [{ resource: name, id, entry }] });
  if (!form.isConnected) return;
  if (r.status !== 200) {
    showFault(form, r.body);
    side.replaceChildren(el("h2", {}, "What-if"), el("p", { class: "error", id: "whatif-status", dataset: { state: "invalid" } }, "The change is invalid: see the field."));
    return;
  }
  const cur = (r.body.current || []).find((q) => q.queue === id) || {};
  const prop = (r.body.proposed || []).find((q) => q.queue === id) || {};
  const cmp = (a, b, higherIsBetter) => (a === b || a == null || b == null ? "" : (b > a) === higherIsBetter ? "better" : "worse");
  side.replaceChildren(
    el("h2", {}, `What-if: ${id}`),
    el("table", { id: "whatif", dataset: { queue: id } },
      el("thead", {}, el("tr", {}, el("th", {}), el("th", { class: "num" }, "Current"), el("th", { class: "num" }, "Proposed"))),
      el("tbody", {},
        el("tr", {}, el("th", {}, `Service level (${prop.sl_secs ?? cur.sl_secs ?? "?"} s)`),
          el("td", { class: "num", dataset: { side: "current", f: "service_level" } }, pct(cur.service_level)),
          el("td", { class: `num ${cmp(cur.service_level, prop.service_level, true)}`, dataset: { side: "proposed", f: "service_level" } }, pct(prop.service_level))),
        el("tr", {}, el("th", {}, "Average wait"),
          el("td", { class: "num", dataset: { side: "current", f: "asa_secs" } }, secs(cur.asa_secs)),
          el("td", { class: `num ${cmp(cur.asa_secs, prop.asa_secs, false)}`, dataset: { side: "proposed", f: "asa_secs" } }, secs(prop.asa_secs))),
        el("tr", {}, el("th", {}, "Abandoned"),
          el("td", { class: "num" }, pct(cur.abandon_rate)),
          el("td", { class: "num" }, pct(prop.abandon_rate))))),
    el("p", { class: cur.rate_source === "default" ? "note" : "hint", id: "whatif-rate", dataset: { source: cur.rate_source || "" } },
      rateText(cur)),
    el("p", { class: "hint", id: "whatif-status", dataset: { state: "done" } }, `${r.body.hours} simulated hours; not saved.`));
}

function rateText(q) {
  const rate = `${(q.calls_per_hour ?? 0).toFixed(1)} calls/hour`;
  switch (q.rate_source) {
    case "last_hour": return `Arrival rate ${rate}: calls to this queue in the last hour (${q.recent_calls}).`;
    case "last_day": return `Arrival rate ${rate}: calls to this queue in the last 24 hours (${q.recent_calls}), per hour.`;
    case "request": return `Arrival rate ${rate} (given).`;
    default: return `No recent calls to this queue: assuming the configured default of ${rate} ([admin] whatif_calls_per_hour).`;
  }
}

// ---------------------------------------------------------------------------------------
// The route tree: number → hours → menu → queues → overflow → fallback.

function treeNode(n) {
  const kids = [];
  const label = (() => {
    switch (n.kind) {
      case "hours": return `hours ${n.name}${n.timezone ? ` (${n.timezone})` : ""}`;
      case "menu": return `menu ${n.name}${n.cycle ? " (see above)" : ""}`;
      case "queue": return `queue ${n.name}${n.strategy ? ` · ${n.strategy}` : ""}${n.cycle ? " (see above)" : ""}`;
      case "extension": return `extension ${n.name}`;
      case "say": return `say “${n.text}”, hang up`;
      case "prompt": return `play ${n.path}, hang up`;
      case "closed-message": return "spoken closed message, hang up";
      case "number": return `transfer to ${n.name}`;
      case "voicemail": return `voicemail ${n.name}`;
      default: return n.kind;
    }
  })();
  const edge = (text, child) => child && kids.push(el("li", {}, el("span", { class: "edge" }, text), treeNode(child)));
  if (n.open) edge("open →", n.open);
  if (n.closed) edge("closed →", n.closed);
  for (const [k, c] of Object.entries(n.choices || {})) edge(`key ${k} →`, c);
  if (n.default) edge("no choice →", n.default);
  for (const s of n.overflow || []) {
    const what = [
      s.add_queues && s.add_queues.length ? `agents of ${s.add_queues.join(", ")}` : "",
      s.min_proficiency ? `min proficiency ${s.min_proficiency}` : "",
      s.add_sites && s.add_sites.length ? `sites ${s.add_sites.join(", ")}` : "",
      s.any_site ? "any site" : "",
    ].filter(Boolean).join(", ");
    kids.push(el("li", { dataset: { overflow: s.after_secs } }, el("span", { class: "edge" }, `after ${s.after_secs} s →`), el("span", { class: "node", dataset: { kind: "overflow" } }, `overflow: ${what || "widen"}`)));
  }
  if (n.fallback) edge("fallback →", n.fallback);
  return el("span", {}, el("span", { class: "node", dataset: { kind: n.kind, name: n.name || "" } }, label), kids.length ? el("ul", {}, kids) : null);
}

async function routesView() {
  const r = await api("GET", "/api/routes");
  const rows = Array.isArray(r.body) ? r.body : [];
  $("#view").replaceChildren(el("div", { class: "panel" },
    el("h2", {}, "Route of each number"),
    rows.length ? null : el("p", { class: "hint" }, "No numbers yet."),
    el("ul", { class: "tree", id: "route-tree" }, rows.map((n) =>
      el("li", { dataset: { number: n.number } }, el("span", { class: "node", dataset: { kind: "number" } }, `number ${n.number}`),
        el("ul", {}, el("li", {}, treeNode(n.route))))))));
}

// ---------------------------------------------------------------------------------------
// Skills, prompts, word lists.

async function skillsView() {
  const [s, a] = await Promise.all([api("GET", "/api/skills"), api("GET", "/api/agents")]);
  const skills = Array.isArray(s.body) ? s.body : [];
  const agents = Array.isArray(a.body) ? a.body : [];
  const form = el("form", { class: "editor", id: "skill-form", novalidate: true },
    el("label", { class: "field", dataset: { field: "agent" } }, "Agent",
      el("select", { name: "agent" }, agents.map((x) => el("option", { value: x.id }, x.id))),
      el("span", { class: "error", dataset: { errorFor: "agent" } })),
    el("label", { class: "field", dataset: { field: "skill" } }, "Skill", el("input", { name: "skill" }),
      el("span", { class: "error", dataset: { errorFor: "skill" } })),
    el("label", { class: "field", dataset: { field: "skills" } }, "Proficiency (1-10, empty removes)",
      el("input", { name: "skills", type: "number", min: 1, max: 10 }),
      el("span", { class: "error", dataset: { errorFor: "skills" } })),
    el("div", { class: "actions" }, el("button", { type: "submit" }, "Set skill"), el("span", { class: "ok", id: "saved" })),
    el("p", { class: "error wide", id: "form-error" }));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    clearErrors(form);
    const id = form.elements.agent.value;
    const skill = form.elements.skill.value.trim();
    if (!skill) { showFault(form, { message: "name the skill" }, "skill"); return; }
    const agent = agents.find((x) => x.id === id) || {};
    const next = { ...(agent.skills || {}) };
    const p = form.elements.skills.value.trim();
    if (p === "") delete next[skill]; else next[skill] = Number(p);
    const r = await api("PUT", `/api/agents/${encodeURIComponent(id)}/skills`, next);
    if (r.status === 200) { await skillsView(); $("#saved").textContent = `Saved as version ${r.body.version}.`; }
    else showFault(form, r.body);
  });
  $("#view").replaceChildren(el("div", { class: "split" },
    el("div", { class: "panel" }, el("h2", {}, "Set an agent's skill"), form),
    el("div", { class: "panel" }, el("h2", {}, "Skills in use"),
      el("table", { id: "skills" },
        el("thead", {}, el("tr", {}, el("th", {}, "Skill"), el("th", {}, "Queues (minimum)"), el("th", {}, "Agents (proficiency)"))),
        el("tbody", {}, skills.map((k) => el("tr", { dataset: { skill: k.skill } },
          el("td", {}, k.skill),
          el("td", {}, Object.entries(k.queues).map(([q, m]) => `${q} (${m})`).join(", ")),
          el("td", {}, Object.entries(k.agents).map(([q, m]) => `${q} (${m})`).join(", "))))))),
    el("div")));
}

async function promptsView() {
  const r = await api("GET", "/api/prompts");
  const prompts = Array.isArray(r.body) ? r.body : [];
  const form = el("form", { class: "editor", id: "prompt-form", novalidate: true },
    el("label", { class: "field", dataset: { field: "name" } }, "Name", el("input", { name: "name" }),
      el("span", { class: "error", dataset: { errorFor: "name" } })),
    el("label", { class: "field", dataset: { field: "file" } }, "WAV file (8 kHz µ-law, A-law or 16-bit PCM)",
      el("input", { name: "file", type: "file", accept: ".wav,audio/wav" }),
      el("span", { class: "error", dataset: { errorFor: "file" } })),
    el("div", { class: "actions" }, el("button", { type: "submit" }, "Upload"), el("span", { class: "ok", id: "saved" })),
    el("p", { class: "error wide", id: "form-error" }));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    clearErrors(form);
    const file = form.elements.file.files[0];
    if (!file) { showFault(form, { message: "choose a WAV file" }, "file"); return; }
    const r = await api("PUT", `/api/prompts/${encodeURIComponent(form.elements.name.value.trim())}`, await file.arrayBuffer(), "audio/wav");
    if (r.status === 200 || r.status === 201) { await promptsView(); $("#saved").textContent = `Stored as ${r.body.path} (version ${r.body.version}).`; }
    else showFault(form, r.body, r.body && r.body.field ? undefined : "file");
  });
  $("#view").replaceChildren(el("div", { class: "split" },
    el("div", { class: "panel" }, el("h2", {}, "Upload a prompt"), form,
      el("p", { class: "hint" }, "Uploads are versioned: rolling back a version restores the recording it had.")),
    el("div", { class: "panel" }, el("h2", {}, "Prompts"),
      el("table", { id: "prompts" },
        el("thead", {}, el("tr", {}, el("th", {}, "Name"), el("th", {}, "Path"), el("th", {}, "Encoding"), el("th", { class: "num" }, "Seconds"))),
        el("tbody", {}, prompts.map((p) => el("tr", {}, el("td", {}, p.name), el("td", {}, p.path), el("td", {}, p.encoding), el("td", { class: "num" }, p.seconds.toFixed(1))))))),
    el("div")));
}

async function listsView() {
  const lists = [["dispositions", "Dispositions"], ["not-ready-reasons", "Not-ready reasons"]];
  const got = await Promise.all(lists.map(([p]) => api("GET", `/api/${p}`)));
  $("#view").replaceChildren(el("div", { class: "split" }, lists.map(([path, title], i) => {
    const form = el("form", { class: "editor", id: `${path}-form`, novalidate: true },
      el("label", { class: "field wide", dataset: { field: path } }, `${title} (one per line)`,
        el("textarea", { name: path, rows: 8 }),
        el("span", { class: "error", dataset: { errorFor: path } })),
      el("div", { class: "actions" }, el("button", { type: "submit" }, "Save"), el("span", { class: "ok" })),
      el("p", { class: "error wide", id: "form-error" }));
    form.elements[path].value = (got[i].body || []).join("\n");
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      clearErrors(form);
      const words = form.elements[path].value.split("\n").map((s) => s.trim()).filter(Boolean);
      const r = await api("PUT", `/api/${path}`, words);
      if (r.status === 200) $(".ok", form).textContent = `Saved as version ${r.body.version}.`;
      else showFault(form, r.body, path);
    });
    return el("div", { class: "panel" }, el("h2", {}, title), form);
  })));
}

// ---------------------------------------------------------------------------------------
// Version history: who, when, what; a readable diff; rollback.

function diffView(text) {
  return el("pre", { class: "diff", id: "diff" }, (text || "").split("\n").map((l) => {
    const cls = l.startsWith("@@") ? "hunk" : l.startsWith("+") && !l.startsWith("+++") ? "add" : l.startsWith("-") && !l.startsWith("---") ? "del" : null;
    return el("span", { class: cls }, `${l}\n`);
  }));
}

async function historyView(select) {
  const r = await api("GET", "/api/versions");
  const versions = (r.body && r.body.versions) || [];
  const current = r.body && r.body.current;
  const detail = el("div", { class: "panel", id: "version-detail" }, el("p", { class: "hint" }, "Pick a version to see what it changed."));
  const list = el("table", { id: "versions" },
    el("thead", {}, el("tr", {}, el("th", { class: "num" }, "#"), el("th", {}, "When"), el("th", {}, "Who"), el("th", {}, "What"))),
    el("tbody", {}, versions.slice().reverse().map((v) => el("tr", { dataset: { version: v.version } },
      el("td", { class: "num" }, el("button", { type: "button", class: "secondary", onclick: () => show(v.version) }, String(v.version))),
      el("td", {}, new Date(v.at_ms).toLocaleString()),
      el("td", {}, v.who),
      el("td", {}, `${v.action}${v.version === current ? " (current)" : ""}`)))));
  $("#view").replaceChildren(el("div", { class: "split history" },
    el("div", { class: "panel" }, el("h2", {}, "Versions"), list), detail, el("div")));

  async function show(n) {
    const v = await api("GET", `/api/versions/${n}`);
    if (v.status !== 200) { detail.replaceChildren(el("p", { class: "error" }, (v.body && v.body.message) || "not found")); return; }
    const status = el("span", { class: "ok", id: "rollback-status", role: "status" });
    detail.replaceChildren(
      el("h2", {}, `Version ${n}: ${v.body.action}`),
      el("p", { class: "hint" }, `${v.body.who}, ${new Date(v.body.at_ms).toLocaleString()}. Secrets are shown redacted.`),
      diffView(v.body.diff),
      el("p", {}, n === current ? el("span", { class: "hint" }, "This is the running version.") :
        el("button", {
          type: "button", id: "rollback", dataset: { version: n },
          onclick: async () => {
            const rb = await api("POST", `/api/versions/${n}/rollback`);
            if (rb.status === 200) { await historyView(); $("#view").prepend(el("p", { class: "ok", id: "rollback-done", dataset: { version: rb.body.version } }, `Rolled back to version ${n}: now version ${rb.body.version}.`)); }
            else status.textContent = (rb.body && rb.body.message) || "refused";
          },
        }, `Roll back to version ${n}`), status));
  }
  if (select !== undefined) await show(select);
}

// ---------------------------------------------------------------------------------------

const VIEWS = {
  routes: routesView,
  skills: skillsView,
  prompts: promptsView,
  lists: listsView,
  history: historyView,
};

async function open(tab) {
  for (const b of document.querySelectorAll("#tabs button")) b.setAttribute("aria-current", b.dataset.tab === tab ? "page" : "false");
  $("#view").dataset.tab = tab;
  if (RESOURCES[tab]) await resourceView(tab);
  else await VIEWS[tab]();
  $("#view").dataset.ready = tab;
}

function start() {
  $("#login").hidden = true;
  $("#page").hidden = false;
  $("#tabs").hidden = false;
  const tab = location.hash.slice(1);
  open(RESOURCES[tab] || VIEWS[tab] ? tab : "routes");
}

document.addEventListener("DOMContentLoaded", async () => {
  $("#login").addEventListener("submit", login);
  for (const b of document.querySelectorAll("#tabs button")) {
    b.addEventListener("click", () => { location.hash = b.dataset.tab; open(b.dataset.tab); });
  }
  if (token) {
    // A kept session: check it is still good before showing the page.
    const r = await api("GET", "/api/versions");
    if (r.status === 200) start();
  } else {
    showLogin();
  }
});
