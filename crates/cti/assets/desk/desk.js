// The agent desktop: login, agent state, screen pop, call controls, wrap-up, search.
// State shown is always the server's: agent states are applied by version (older ones are
// ignored) and a reconnect re-reads state and call from the resume reply.

import { Cti, CtiError } from "./cti.js";
import { Phone } from "./phone.js";

// Not-ready reasons, dispositions and the in-page phone's settings come from the server
// (the login/resume reply, from the configuration the admin API edits): nothing here is
// a copy that could drift. With none configured, one generic entry keeps the forms usable.
const NO_REASONS = ["other"];
const NO_DISPOSITIONS = ["done"];
const TIER_LABEL = { vip: "VIP", key_account: "Key account", public: "Public" };
const STATE_LABEL = {
  logged_out: "Logged out",
  ready: "Ready",
  reserved: "Ringing",
  on_call: "On a call",
  wrap_up: "Wrap-up",
  not_ready: "Not ready",
};
const TOKEN_KEY = "hotline.desk.token";
const PHONE_KEY = "hotline.desk.phone";
const TARGETS_KEY = "hotline.desk.targets";

const $ = (id) => document.getElementById(id);

/** Builds an element: el("p", {class: "x"}, "text", child…); text is never parsed as HTML. */
function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") e.className = v;
    else if (k === "dataset") Object.assign(e.dataset, v);
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function announce(text, region = "announce") {
  const a = $(region);
  a.textContent = "";
  // A fresh text node is announced even when the same words repeat.
  requestAnimationFrame(() => (a.textContent = text));
}

function fullName(c) {
  if (!c) return "Unknown caller";
  const name = [c.title, c.first_name, c.surname].filter((s) => s && String(s).trim()).join(" ");
  return name || (c.numbers && c.numbers[0]) || "(no name)";
}

function when(ms) {
  if (typeof ms !== "number") return "";
  return new Date(ms).toLocaleString();
}

function errText(e) {
  if (e instanceof CtiError) {
    if (e.code === "not_supported" || e.code === "unknown_type") return "not available on this server yet";
    if (e.code === "disconnected") return "not connected; reconnecting";
    return `${e.code}: ${e.message}`;
  }
  return String(e);
}

/** Everything the page knows, from the server. */
const desk = {
  user: null,
  role: null,
  agent: null,
  stateVersion: -1,
  state: null,
  call: null, // { offer, answered, ended, held, muted }
  wrapStartedAt: null,
  wrapTimer: null,
  chosenCustomer: null,
  searchAllowed: true,
};

const cti = new Cti(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/cti`, {
  onStatus: showConn,
  onEvent,
  onSession,
  onSessionLost: (code) => {
    sessionStorage.removeItem(TOKEN_KEY);
    showLogin(code === "token_expired" ? "Your session expired; sign in again." : "Please sign in again.");
  },
});

const phone = new Phone($("remote-audio"), {
  onStatus: (text) => ($("phone-status").textContent = text),
  onSessionChange: (s) => {
    if (s === "ringing") announce("The phone is ringing");
    renderCall();
  },
});

// ---------------------------------------------------------------- connection and login

function showConn(status) {
  const c = $("conn");
  c.dataset.conn = status;
  c.textContent = {
    connecting: "Connecting…",
    online: "Connected",
    offline: "Connection lost",
    reconnecting: "Reconnecting…",
  }[status] ?? status;
}

function showLogin(message = "") {
  $("desk").hidden = true;
  $("login").hidden = false;
  $("who").hidden = true;
  $("signout").hidden = true;
  $("login-error").textContent = message;
  $("login-user").focus();
}

function onSession(r) {
  sessionStorage.setItem(TOKEN_KEY, r.token);
  desk.user = r.user;
  desk.role = r.role;
  desk.agent = r.agent ?? null;
  $("login").hidden = true;
  $("desk").hidden = false;
  $("who").hidden = false;
  $("who").textContent = `${r.user} (${r.role})`;
  $("signout").hidden = false;
  $("state-card").hidden = !desk.agent;
  // The resume reply is authoritative: take its state even if its version is lower (a
  // restarted server counts again from the start).
  desk.stateVersion = -1;
  if (r.agent_state) applyState(r.agent_state);
  fillChoices($("nr-reason"), r.not_ready_reasons?.length ? r.not_ready_reasons : NO_REASONS);
  fillChoices($("wrap-code"), r.dispositions?.length ? r.dispositions : NO_DISPOSITIONS);
  restoreCall(r.call);
  // The server's phone settings: the page's phone registers by itself (again after a
  // reload); one already connected (a CTI reconnect) keeps its registration and call.
  if (r.phone && !phone.connected) {
    phone.connect({ wsUrl: r.phone.ws_url, domain: r.phone.domain, user: r.phone.user, password: r.phone.password })
      .catch((e) => ($("phone-status").textContent = `Phone: ${e.message}`));
  }
}

/** Replaces a select's options with `words`, keeping the current choice when it is still offered. */
function fillChoices(select, words) {
  const keep = select.value;
  select.replaceChildren(...words.map((w) => el("option", { value: w }, w.replaceAll("_", " "))));
  if (words.includes(keep)) select.value = keep;
}

$("login-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const user = $("login-user").value.trim();
  const password = $("login-password").value;
  $("login-error").textContent = "";
  $("login-submit").disabled = true;
  try {
    await cti.ensureOpen();
    await cti.login(user, password);
    $("login-password").value = "";
  } catch (e) {
    $("login-error").textContent =
      e.code === "auth_failed" ? "Wrong user name or password." : `Sign-in failed (${errText(e)}).`;
  } finally {
    $("login-submit").disabled = false;
  }
});

$("signout").addEventListener("click", async () => {
  sessionStorage.removeItem(TOKEN_KEY);
  await cti.logout();
  phone.disconnect();
  desk.call = null;
  renderCall();
  renderPop();
  showLogin("Signed out.");
  showConn("offline");
});

// ---------------------------------------------------------------- agent state

function applyState(s) {
  if (!s || (desk.agent && s.agent !== desk.agent)) return;
  if (typeof s.version === "number" && s.version <= desk.stateVersion) return;
  desk.stateVersion = s.version ?? desk.stateVersion;
  desk.state = s;
  const st = $("agent-state");
  st.dataset.state = s.state;
  st.textContent = STATE_LABEL[s.state] ?? s.state;
  const extra = [];
  if (s.state === "not_ready" && s.reason) extra.push(`(${s.reason})`);
  if (s.pending_not_ready) extra.push(`then not ready: ${s.pending_not_ready}`);
  $("agent-state-extra").textContent = extra.join(" ");
  // Ready logs in, ends wrap-up or not-ready, or cancels a pending not-ready.
  $("btn-ready").disabled = !(
    ["logged_out", "not_ready", "wrap_up"].includes(s.state) || s.pending_not_ready
  );
  $("btn-logout").disabled = s.state === "logged_out";
  $("btn-nr-after").setAttribute("aria-pressed", s.pending_not_ready ? "true" : "false");
  if (s.state === "wrap_up") startWrapup(s.call_id);
  const c = desk.call;
  if (c) {
    if ((s.state === "reserved" || s.state === "on_call") && s.call_id === c.offer.call_id) c.reserved = true;
    // Reserved for this call (or ended), then free again without an answer: the offer
    // went away (not answered in time, declined, or the caller hung up).
    if (!c.answered && (c.reserved || c.ended) && ["ready", "not_ready", "logged_out"].includes(s.state)) {
      desk.call = null;
      renderCall();
      renderPop();
      notice("The call was not answered; it went back to the queue.");
      announce("Offer withdrawn");
    }
  }
  // When the server ends wrap-up (its timer), the form stays until the agent saves it or
  // the next call is offered: typed notes are never thrown away.
}

async function stateCommand(type, fields) {
  try {
    applyState(await cti.request(type, fields));
  } catch (e) {
    announce(`Could not change state: ${errText(e)}`);
    $("agent-state-extra").textContent = `Could not change state: ${errText(e)}`;
  }
}

$("btn-ready").addEventListener("click", () => stateCommand("agent.ready"));
$("btn-not-ready").addEventListener("click", () =>
  stateCommand("agent.not_ready", { reason: $("nr-reason").value }),
);
$("btn-nr-after").addEventListener("click", () =>
  stateCommand("agent.not_ready_after_call", { reason: $("nr-reason").value }),
);
$("btn-logout").addEventListener("click", () => stateCommand("agent.logout"));

// ---------------------------------------------------------------- events

function onEvent(type, d) {
  switch (type) {
    case "agent.state":
      applyState(d);
      break;
    case "call.offered":
      if (desk.agent && d.agent !== desk.agent) break; // a supervisor's view of another desk
      desk.call = {
        offer: d,
        answered: false,
        ended: null,
        held: false,
        muted: false,
        consulting: null,
        // The ACD may publish the reservation before the pop arrives.
        reserved: !!desk.state && desk.state.state === "reserved" && desk.state.call_id === d.call_id,
      };
      rememberTarget(d.queue);
      desk.chosenCustomer = null;
      stopWrapup();
      renderCall();
      renderPop();
      announceOffer(d);
      break;
    case "call.answered":
      if (desk.call && desk.call.offer.call_id === d.call_id) {
        desk.call.answered = true;
        renderCall();
        announce("Call connected");
      }
      break;
    case "call.held":
    case "call.resumed":
      if (desk.call && desk.call.offer.call_id === d.call_id) {
        desk.call.held = type === "call.held";
        renderCall();
        announce(desk.call.held ? "Caller on hold" : "Call resumed");
      }
      break;
    case "call.transferred":
      // The call left this agent: it is over for this desk (wrap-up follows).
      if (desk.call && desk.call.offer.call_id === d.call_id && (!desk.agent || d.agent === desk.agent)) {
        desk.call.ended = d;
        desk.call.consulting = null;
        renderCall();
        notice(`Transferred to ${d.to}`);
        announce(`Call transferred to ${d.to}`);
      }
      break;
    case "call.ended":
      if (desk.call && desk.call.offer.call_id === d.call_id) {
        desk.call.ended = d;
        renderCall();
        announce("Call ended");
      }
      break;
    case "wrapup.started":
      if (desk.call && desk.call.offer.call_id === d.call_id) startWrapup(d.call_id);
      break;
    default:
      break;
  }
}

function announceOffer(d) {
  const id = d.pop && d.pop.identification;
  let who = "an unknown caller";
  if (id && (id.kind === "known" || id.kind === "provisional")) {
    who = fullName(id.customer);
    if (id.customer && id.customer.tier) who += `, ${TIER_LABEL[id.customer.tier] ?? id.customer.tier}`;
  } else if (id && id.kind === "candidates") {
    who = `${id.customers.length} possible customers`;
  }
  announce(`Incoming call in ${d.queue} from ${who}`, "offer-announce");
}

/** The resume reply's call: the offer, whether it was answered, its end once it ended. */
function restoreCall(c) {
  if (!c || !c.offer) {
    if (desk.call && !desk.call.ended) {
      desk.call = null;
      renderCall();
      renderPop();
    }
    return;
  }
  const same = desk.call && desk.call.offer.call_id === c.offer.call_id;
  desk.call = {
    offer: c.offer,
    answered: !!c.answered,
    ended: c.ended ?? null,
    held: same ? desk.call.held : false,
    muted: same ? desk.call.muted : false,
    consulting: same ? desk.call.consulting : null,
    reserved:
      !!desk.state && ["reserved", "on_call"].includes(desk.state.state) && desk.state.call_id === c.offer.call_id,
  };
  renderCall();
  if (!same) renderPop();
  if (c.ended && desk.state && desk.state.state === "wrap_up") startWrapup(c.offer.call_id);
}

// ---------------------------------------------------------------- the call

function notice(text) {
  $("call-notice").textContent = text;
}

function renderCall() {
  const c = desk.call;
  const status = $("call-status");
  let state = "idle";
  let text = "No call";
  if (c) {
    if (c.ended) {
      state = "ended";
      text = c.ended.to ? `Transferred to ${c.ended.to}` : "Call ended";
    } else if (c.answered) {
      state = c.held ? "held" : "answered";
      text = c.held ? "On hold" : "Connected";
    } else {
      state = "ringing";
      text = "Ringing";
    }
  }
  status.dataset.call = state;
  status.textContent = text;
  $("call-meta").textContent = c
    ? `Queue ${c.offer.queue} · ${c.offer.pop?.number ?? c.offer.caller}`
    : "";
  const live = c && !c.ended;
  $("btn-answer").disabled = !(live && !c.answered && phone.ringing);
  $("btn-answer").title = phone.connected ? "" : "Answer on your phone (no phone in this browser)";
  $("btn-hangup").disabled = !live;
  $("btn-hold").disabled = !(live && c.answered);
  $("btn-hold").setAttribute("aria-pressed", c && c.held ? "true" : "false");
  $("btn-hold").textContent = c && c.held ? "Resume" : "Hold";
  $("btn-mute").disabled = !(live && c.answered && phone.connected);
  $("btn-mute").setAttribute("aria-pressed", c && c.muted ? "true" : "false");
  $("btn-mute").textContent = c && c.muted ? "Unmute" : "Mute";
  for (const b of document.querySelectorAll("#dtmf-pad button, #xfer-form button")) {
    b.disabled = !(live && c.answered);
  }
  $("consult-row").hidden = !(live && c.consulting);
  $("consult-text").textContent = live && c.consulting ? `Talking to ${c.consulting}; the caller is on hold.` : "";
  document.body.dataset.call = state;
}

/** A call command; on `not_supported`, the phone in the browser does it if it can. */
async function callCommand(type, fields, fallback, label) {
  const c = desk.call;
  if (!c) return false;
  try {
    await cti.request(type, { call_id: c.offer.call_id, ...fields });
    return true;
  } catch (e) {
    if (e.code === "not_supported" && fallback && fallback()) {
      notice(`${label}: done from the phone in this browser`);
      return true;
    }
    notice(`${label}: ${errText(e)}`);
    announce(`${label} failed: ${errText(e)}`);
    return false;
  }
}

$("btn-answer").addEventListener("click", () => {
  if (!phone.answer()) notice("Answer on your phone");
});

$("btn-hangup").addEventListener("click", async () => {
  if (desk.call && !desk.call.answered && phone.ringing) {
    // Still ringing in the browser: hanging up means the caller stays in the queue.
    phone.hangup();
    return;
  }
  await callCommand("call.hangup", {}, () => phone.hangup(), "Hang up");
});

$("btn-hold").addEventListener("click", async () => {
  const c = desk.call;
  if (!c) return;
  const on = !c.held;
  const ok = await callCommand(on ? "call.hold" : "call.resume", {}, () => phone.hold(on), on ? "Hold" : "Resume");
  // Without a server event (phone-side hold), the page tracks the phone's hold itself.
  if (ok && desk.call === c && phone.connected) {
    c.held = on;
    renderCall();
  }
});

$("btn-mute").addEventListener("click", () => {
  const c = desk.call;
  if (!c) return;
  if (phone.mute(!c.muted)) {
    c.muted = !c.muted;
    renderCall();
    announce(c.muted ? "Microphone muted" : "Microphone on");
  }
});

for (const k of ["1", "2", "3", "4", "5", "6", "7", "8", "9", "*", "0", "#"]) {
  $("dtmf-pad").append(
    el("button", {
      type: "button",
      "aria-label": `Key ${k}`,
      onclick: () => callCommand("call.dtmf", { digits: k }, () => phone.dtmf(k), `Key ${k}`),
    }, k),
  );
}
// Digits typed while the keypad is open go to the call too.
$("dtmf-pad").addEventListener("keydown", (ev) => {
  if (/^[0-9*#]$/.test(ev.key)) {
    ev.preventDefault();
    callCommand("call.dtmf", { digits: ev.key }, () => phone.dtmf(ev.key), `Key ${ev.key}`);
  }
});

/** Transfer targets offered in the list: queues seen in offers, targets used before. */
function rememberTarget(t) {
  if (!t) return;
  let list = [];
  try {
    list = JSON.parse(localStorage.getItem(TARGETS_KEY) || "[]");
  } catch {
    list = [];
  }
  list = [t, ...list.filter((x) => x !== t)].slice(0, 20);
  localStorage.setItem(TARGETS_KEY, JSON.stringify(list));
  renderTargets(list);
}

function renderTargets(list) {
  $("xfer-targets").replaceChildren(...list.map((t) => el("option", { value: t })));
}

try {
  renderTargets(JSON.parse(localStorage.getItem(TARGETS_KEY) || "[]"));
} catch {
  // a damaged list is rebuilt on the next offer
}

$("xfer-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const to = $("xfer-to").value.trim();
  if (!to) return;
  if (await callCommand("call.transfer", { to, attended: false }, () => phone.refer(to), "Blind transfer")) {
    rememberTarget(to);
    notice(`Transferring to ${to}…`);
  }
});
$("btn-attended").addEventListener("click", async () => {
  const to = $("xfer-to").value.trim();
  if (!to) return $("xfer-to").focus();
  if (await callCommand("call.transfer", { to, attended: true }, null, "Attended transfer")) {
    rememberTarget(to);
    if (desk.call) desk.call.consulting = to;
    renderCall();
    notice(`Consulting ${to}…`);
  }
});
$("btn-xfer-complete").addEventListener("click", async () => {
  if (await callCommand("call.transfer.complete", {}, null, "Complete transfer")) notice("Transfer completed");
});
$("btn-xfer-cancel").addEventListener("click", async () => {
  if (await callCommand("call.transfer.cancel", {}, null, "Cancel transfer")) {
    if (desk.call) desk.call.consulting = null;
    renderCall();
    notice("Back with the caller");
  }
});
$("btn-conf").addEventListener("click", async () => {
  const to = $("xfer-to").value.trim();
  if (!to) return $("xfer-to").focus();
  if (await callCommand("call.conference", { to }, null, "Conference")) notice(`Adding ${to}…`);
});

// ---------------------------------------------------------------- screen pop

function tierBadge(tier) {
  if (!tier) return null;
  return el("span", { class: `tier tier-${tier}`, dataset: { tier } }, TIER_LABEL[tier] ?? tier);
}

function renderPop() {
  const body = $("pop-body");
  body.replaceChildren();
  const c = desk.call;
  if (!c) {
    body.append(el("p", { class: "muted" }, "The caller's record appears here when a call is offered."));
    return;
  }
  const o = c.offer;
  if (!o.pop) {
    body.append(el("p", { class: "error" }, `Customer lookup unavailable${o.pop_error ? ` (${o.pop_error})` : ""}.`));
    body.append(el("p", {}, `Caller: ${o.caller}`));
    return;
  }
  const id = o.pop.identification || {};
  if (id.kind === "candidates") {
    renderCandidates(body, id.customers || []);
  } else if (id.kind === "withheld") {
    body.append(el("p", {}, "The caller withheld their number."));
  } else if (id.kind === "unusable") {
    body.append(el("p", {}, `The caller id is not a number: ${id.raw ?? o.caller}`));
  }
  const view = desk.chosenCustomer || o.pop.view;
  if (view) renderView(body, view, id.kind === "provisional" && !desk.chosenCustomer);
}

function renderCandidates(body, list) {
  body.append(el("p", {}, `${list.length} customers share this number. Who is calling?`));
  const ul = el("ul", { class: "list", id: "candidates" });
  for (const cand of list) {
    ul.append(
      el("li", {},
        el("span", { class: "name" }, fullName(cand)), " ",
        tierBadge(cand.tier),
        cand.company ? el("span", { class: "muted" }, ` ${cand.company}`) : null, " ",
        el("button", {
          type: "button",
          onclick: async (ev) => {
            ev.target.disabled = true;
            try {
              desk.chosenCustomer = await cti.request("customer.choose", {
                call_id: desk.call.offer.call_id,
                customer_id: cand.id,
              });
              renderPop();
              announce(`${fullName(desk.chosenCustomer.customer)} chosen`);
            } catch (e) {
              ev.target.disabled = false;
              announce(`Could not choose: ${errText(e)}`);
            }
          },
        }, `This is ${fullName(cand)}`),
      ),
    );
  }
  body.append(ul);
}

function renderView(body, v, provisional) {
  const cu = v.customer || {};
  const head = el("div", { class: "pop-head" },
    el("p", { id: "pop-name", class: "pop-name" }, fullName(cu)),
    tierBadge(cu.tier),
    provisional || cu.provisional ? el("span", { class: "badge" }, "New caller") : null,
  );
  body.append(head);
  if (v.greeting) body.append(el("p", { id: "pop-greeting", class: "greeting" }, v.greeting));
  if (v.offer && v.offer.text) {
    body.append(el("p", { id: "pop-offer", class: "offer" }, el("strong", {}, "Offer: "), v.offer.text));
  }
  const facts = el("dl", { class: "facts" });
  const fact = (k, val) => val && facts.append(el("dt", {}, k), el("dd", {}, val));
  fact("Company", cu.company);
  fact("Language", cu.language);
  fact("Segment", cu.segment);
  fact("Account manager", cu.account_manager);
  fact("Numbers", (cu.numbers || []).join(", "));
  fact("Notes", cu.notes);
  body.append(facts);
  if (provisional || cu.provisional) body.append(customerForm(cu));

  body.append(el("h3", {}, "Open tickets"));
  const tickets = v.open_tickets || [];
  body.append(
    tickets.length
      ? el("ul", { class: "list", id: "pop-tickets" },
          tickets.map((t) => el("li", {}, el("strong", {}, t.reference ?? `T-${t.id}`), ` ${t.subject} `,
            el("span", { class: "muted" }, `(${t.status}${t.priority ? `, ${t.priority}` : ""})`))))
      : el("p", { class: "muted" }, "None"),
  );
  body.append(el("h3", {}, "Last interactions"));
  const ints = v.interactions || [];
  if (!ints.length) {
    body.append(el("p", { class: "muted" }, "None"));
  } else {
    body.append(
      el("table", { id: "pop-interactions" },
        el("thead", {}, el("tr", {}, ["When", "Channel", "Agent", "Disposition", "Notes"].map((h) => el("th", { scope: "col" }, h)))),
        el("tbody", {}, ints.map((i) =>
          el("tr", {},
            el("td", {}, when(i.started_at)),
            el("td", {}, `${i.channel ?? ""} ${i.direction ?? ""}`),
            el("td", {}, i.agent ?? ""),
            el("td", {}, i.disposition ?? ""),
            el("td", {}, i.notes ?? ""),
          ))),
      ),
    );
  }
}

/** Completing a provisional customer (`customer.update` replaces the editable fields). */
function customerForm(cu) {
  const f = el("form", { id: "customer-form", class: "sub" });
  const field = (name, label, value) => {
    const id = `cust-${name}`;
    f.append(el("label", { for: id }, label), el("input", { id, name, value: value ?? "", maxlength: 200 }));
  };
  f.append(el("h3", {}, "Complete the customer"));
  field("title", "Title", cu.title);
  field("first_name", "First name", cu.first_name);
  field("surname", "Surname", cu.surname);
  field("company", "Company", cu.company);
  field("language", "Language", cu.language);
  const tier = el("select", { id: "cust-tier", name: "tier" },
    Object.entries(TIER_LABEL).map(([k, l]) => el("option", { value: k, selected: (cu.tier ?? "public") === k }, l)));
  f.append(el("label", { for: "cust-tier" }, "Tier"), tier);
  const msg = el("p", { role: "status", class: "notice" });
  f.append(el("button", { type: "submit" }, "Save customer"), msg);
  f.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const val = (n) => {
      const s = f.elements[n].value.trim();
      return s === "" ? null : s;
    };
    const surname = val("surname");
    if (!surname) {
      msg.textContent = "A surname is needed.";
      return;
    }
    const data = {
      title: val("title"),
      first_name: val("first_name"),
      surname,
      company: val("company"),
      language: val("language"),
      tier: f.elements.tier.value,
      segment: cu.segment ?? null,
      account_manager: cu.account_manager ?? null,
      notes: cu.notes ?? null,
      custom_fields: cu.custom_fields ?? {},
    };
    try {
      await cti.request("customer.update", { customer_id: cu.id, data });
      desk.chosenCustomer = await cti.request("customer.get", { customer_id: cu.id });
      renderPop();
      announce("Customer saved");
    } catch (e) {
      msg.textContent = `Not saved: ${errText(e)}`;
    }
  });
  return f;
}

// ---------------------------------------------------------------- wrap-up

function currentCustomerId() {
  const c = desk.call;
  if (!c) return null;
  if (desk.chosenCustomer && desk.chosenCustomer.customer) return desk.chosenCustomer.customer.id;
  return c.offer.pop?.view?.customer?.id ?? null;
}

function startWrapup(callId) {
  const c = desk.call;
  if (!c || c.offer.call_id !== callId) return;
  if (!$("wrapup").hidden) return;
  $("wrapup").hidden = false;
  $("wrap-error").textContent = "";
  $("wrap-ticket").disabled = currentCustomerId() === null;
  desk.wrapStartedAt = Date.now();
  const tick = () => {
    const s = Math.floor((Date.now() - desk.wrapStartedAt) / 1000);
    $("wrap-timer").textContent = `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
  };
  tick();
  clearInterval(desk.wrapTimer);
  desk.wrapTimer = setInterval(tick, 1000);
  $("wrap-code").focus();
}

function stopWrapup() {
  clearInterval(desk.wrapTimer);
  desk.wrapTimer = null;
  $("wrapup").hidden = true;
  $("wrap-notes").value = "";
  $("wrap-ticket").checked = false;
  $("wrap-ticket-subject").value = "";
  ticketToggle();
}

/** Wrap-up is over (saved, or ended by the server): the call leaves the desk. */
function finishCall() {
  stopWrapup();
  desk.call = null;
  desk.chosenCustomer = null;
  renderCall();
  renderPop();
  notice("");
}

const ticketToggle = () => {
  const on = $("wrap-ticket").checked;
  $("wrap-ticket-subject").disabled = !on;
  $("wrap-ticket-priority").disabled = !on;
  $("wrap-ticket-subject").required = on;
};
$("wrap-ticket").addEventListener("change", ticketToggle);
ticketToggle();

$("wrap-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const c = desk.call;
  if (!c) return;
  $("wrap-error").textContent = "";
  $("wrap-save").disabled = true;
  try {
    const customer = currentCustomerId();
    if ($("wrap-ticket").checked && customer !== null) {
      const subject = $("wrap-ticket-subject").value.trim();
      if (!subject) throw new Error("the ticket needs a subject");
      await cti.request("ticket.create", {
        ticket: {
          customer_id: customer,
          subject,
          priority: $("wrap-ticket-priority").value,
          assignee: null,
          due_at: null,
          reference: null,
        },
      });
      $("wrap-ticket").checked = false;
      ticketToggle();
    }
    const notes = $("wrap-notes").value;
    await cti.request("call.disposition", {
      call_id: c.offer.call_id,
      code: $("wrap-code").value,
      notes: notes.trim() === "" ? null : notes,
    });
    announce("Wrap-up saved");
    finishCall();
  } catch (e) {
    $("wrap-error").textContent = `Not saved: ${errText(e)}`;
  } finally {
    $("wrap-save").disabled = false;
  }
});

// ---------------------------------------------------------------- search

$("search-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const out = $("search-results");
  out.replaceChildren();
  try {
    const r = await cti.request("customer.search", { query: $("search-q").value.trim(), limit: 20 });
    if (!r.customers.length) out.append(el("li", { class: "muted" }, "No customer found"));
    for (const cu of r.customers) {
      out.append(el("li", {}, el("span", { class: "name" }, fullName(cu)), " ", tierBadge(cu.tier),
        cu.company ? el("span", { class: "muted" }, ` ${cu.company}`) : null));
    }
  } catch (e) {
    if (e.code === "forbidden") {
      out.append(el("li", { class: "muted" }, "Your role may not search customers."));
    } else {
      out.append(el("li", { class: "error" }, `Search failed: ${errText(e)}`));
    }
  }
});

// ---------------------------------------------------------------- phone settings

function loadPhoneSettings() {
  try {
    const s = JSON.parse(localStorage.getItem(PHONE_KEY) || "{}");
    $("phone-ws").value = s.wsUrl ?? "";
    $("phone-domain").value = s.domain ?? "";
    $("phone-user").value = s.user ?? "";
  } catch {
    // ignore a damaged entry
  }
}

$("phone-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const wsUrl = $("phone-ws").value.trim();
  const domain = $("phone-domain").value.trim();
  const user = $("phone-user").value.trim();
  const password = $("phone-password").value;
  if (!/^wss?:\/\//.test(wsUrl) || !user) {
    $("phone-status").textContent = "Enter a ws:// or wss:// URL and a SIP user.";
    return;
  }
  localStorage.setItem(PHONE_KEY, JSON.stringify({ wsUrl, domain, user }));
  try {
    await phone.connect({ wsUrl, domain, user, password });
  } catch (e) {
    $("phone-status").textContent = `Phone: ${e.message}`;
  }
});
$("phone-disconnect").addEventListener("click", () => phone.disconnect());

// ---------------------------------------------------------------- start

async function start() {
  loadPhoneSettings();
  renderCall();
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (!token) {
    showLogin();
    cti.ensureOpen().catch(() => {});
    return;
  }
  cti.token = token;
  try {
    await cti.open();
  } catch {
    return; // reconnect with backoff resumes the session
  }
  try {
    await cti.resume(token);
  } catch (e) {
    if (e.code === "token_invalid" || e.code === "token_expired") {
      sessionStorage.removeItem(TOKEN_KEY);
      cti.token = null;
      showLogin("Please sign in again.");
    }
  }
}

start();
