// The report page: the figures of /api/reports as a chart and a table, and the CSV export
// of the same query.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  let cti = null;

  function params() {
    return { from: $("from").value.trim(), to: $("to").value.trim(), sl_secs: $("sl").value.trim(), tz: $("tz").value.trim() };
  }

  function cell(text) {
    const td = document.createElement("td");
    td.textContent = text;
    return td;
  }

  function show(r) {
    const body = $("table").querySelector("tbody");
    const line = (row, cls) => {
      const tr = document.createElement("tr");
      if (cls) tr.className = cls;
      tr.dataset.key = row.key;
      tr.append(cell(row.key), cell(row.offered), cell(row.answered), cell(row.abandoned), cell(row.short_abandoned),
        cell(row.fallback), cell(Hotline.pct(row.service_level)), cell(Hotline.pct(row.abandon_rate)),
        cell(Hotline.secs(row.asa_secs)), cell(Hotline.secs(row.aht_secs)), cell(Hotline.pct(row.occupancy)), cell(row.transfers));
      return tr;
    };
    body.replaceChildren(...r.rows.map((row) => line(row)), line(r.total, "total"));
    const labels = r.rows.map((row) => (r.by === "hour" ? row.key.slice(5, 13).replace("T", " ") : row.key));
    Hotline.bars($("chart"), labels, [
      { name: "offered", color: "#38bdf8", values: r.rows.map((x) => x.offered) },
      { name: "answered", color: "#22c55e", values: r.rows.map((x) => x.answered) },
      { name: "abandoned", color: "#f97316", values: r.rows.map((x) => x.abandoned) },
    ], r.by === "agent" ? {} : { line: { name: "service level", color: "#e2e8f0", values: r.rows.map((x) => x.service_level) } });
  }

  async function run() {
    $("query-error").textContent = "";
    try {
      show(await Hotline.report(cti.token, $("by").value, params()));
    } catch (e) {
      if (e.status === 401) { Hotline.forgetToken(); location.reload(); return; }
      $("query-error").textContent = e.message;
    }
  }

  async function start(user, password) {
    cti = await Hotline.connect(user, password, null, () => $("status").textContent = "disconnected");
    $("login").hidden = true;
    $("page").hidden = false;
    $("status").textContent = cti.user;
    $("status").className = "status good";
    await run();
  }

  $("login").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try { await start($("user").value, $("password").value); } catch (e) {
      $("login-error").textContent = e.code === "auth_failed" ? "Wrong user or password." : e.message;
    }
  });
  $("query").addEventListener("submit", (ev) => { ev.preventDefault(); run(); });
  $("csv").addEventListener("click", async () => {
    try { await Hotline.downloadCsv(cti.token, $("by").value, params()); } catch (e) { $("query-error").textContent = e.message; }
  });
  if (Hotline.savedToken()) start().catch(() => {});
})();
