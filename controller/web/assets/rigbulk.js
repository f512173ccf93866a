// The overview's rig table: search and filters (run by the server, so a
// fleet of any size sends one page) and bulk actions on the ticked rows
// (apply a flight sheet, restart the miner, pause, resume, labels), each
// rig's result shown as it comes. The server checks every call's role.
"use strict";
(function () {
  const Q = window.Quarry;
  const el = Q.el;
  const T = Q.rigTable;
  const tools = document.getElementById("rig-tools");
  const bulk = document.getElementById("rig-bulk");
  const pollers = [];

  // ---------- search and filters ----------
  const q = el("input", { type: "search", id: "rig-q", placeholder: "Search name or id", "aria-label": "search rigs", autocomplete: "off" });
  const sel = el("input", { type: "text", id: "rig-selector", placeholder: "tag=site=eu,gpu=RTX 3070", "aria-label": "selector", autocomplete: "off", spellcheck: "false" });
  const status = el("select", { id: "rig-status", "aria-label": "status" },
    el("option", { value: "", text: "Any status" }), el("option", { value: "online", text: "Online" }),
    el("option", { value: "offline", text: "Offline" }), el("option", { value: "alerts", text: "With alerts" }));
  const algo = el("input", { type: "text", id: "rig-algorithm", list: "rig-algos", placeholder: "Algorithm", "aria-label": "algorithm", autocomplete: "off" });
  const filterErr = el("p", { id: "rig-filter-error", class: "error", role: "alert" });
  tools.append(el("div", { class: "toolbar filters" }, q, sel, status, algo), el("datalist", { id: "rig-algos" }), filterErr);
  let timer = null;
  const apply = () => {
    filterErr.textContent = "";
    T.setFilter({ q: q.value.trim(), selector: sel.value.trim(), status: status.value, algorithm: algo.value.trim() });
  };
  for (const x of [q, sel, algo]) x.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(apply, 300); });
  status.addEventListener("change", apply);
  T.hooks.error = (e) => { filterErr.textContent = e.message; };

  // ---------- ticking ----------
  const canAny = () => ["FleetService/SendCommand", "MinerService/ApplyFlightSheet", "FleetService/SetRigLabels"].some((m) => Q.can(m));
  T.hooks.pickable = canAny;
  const count = el("span", { id: "rig-picked", class: "sub" });
  function updateCount() {
    const n = T.picked.size;
    count.textContent = n + (n === 1 ? " rig selected" : " rigs selected");
    const wasHidden = bar.hidden;
    bar.hidden = n === 0 || !canAny();
    if (wasHidden && !bar.hidden) loadSheets(); // sheets stored since
  }
  document.getElementById("rig-pick-all").addEventListener("change", (ev) => {
    for (const x of document.querySelectorAll("#rig-table tbody .col-pick input")) { x.checked = ev.target.checked; pick(x); }
    updateCount();
  });
  document.getElementById("rig-table").addEventListener("change", (ev) => {
    if (ev.target.closest && ev.target.closest("td.col-pick")) { pick(ev.target); updateCount(); }
  });
  function pick(cb) {
    const id = cb.closest("tr").dataset.rig;
    if (cb.checked) T.picked.set(id, cb.dataset.name); else T.picked.delete(id);
  }
  T.hooks.rendered = (ov) => {
    const all = document.getElementById("rig-pick-all");
    const boxes = [...document.querySelectorAll("#rig-table tbody .col-pick input")];
    all.checked = boxes.length > 0 && boxes.every((b) => b.checked);
    document.getElementById("rig-algos").replaceChildren(...(ov.hashrate || []).map((a) => el("option", { value: a.algorithm })));
    updateCount();
  };

  // ---------- bulk actions ----------
  const sheet = el("select", { id: "bulk-sheet", "aria-label": "flight sheet" });
  const labels = el("input", { type: "text", id: "bulk-labels", placeholder: "site=eu, -old", "aria-label": "labels to set (key=value) or remove (-key)", autocomplete: "off", spellcheck: "false" });
  const results = el("table", { id: "bulk-results", hidden: true },
    el("thead", {}, el("tr", {}, ...["Rig", "Action", "Result"].map((h) => el("th", { text: h })))), el("tbody"));
  const bar = el("div", { class: "card bulk", hidden: true },
    el("div", { class: "toolbar" }, count, el("button", { type: "button", class: "link", id: "bulk-none", text: "Clear selection" })),
    el("div", { class: "toolbar" },
      el("span", { class: "bulk-group", "data-needs": "MinerService/ApplyFlightSheet" }, sheet, el("button", { type: "button", id: "bulk-apply", text: "Apply sheet" })),
      el("span", { class: "bulk-group", "data-needs": "FleetService/SendCommand" },
        el("button", { type: "button", "data-kind": "COMMAND_KIND_RESTART_MINER", text: "Restart miner" }),
        el("button", { type: "button", "data-kind": "COMMAND_KIND_PAUSE", text: "Pause" }),
        el("button", { type: "button", "data-kind": "COMMAND_KIND_RESUME", text: "Resume" })),
      el("span", { class: "bulk-group", "data-needs": "FleetService/SetRigLabels" }, labels, el("button", { type: "button", id: "bulk-labels-go", text: "Set labels" }))),
    el("p", { id: "bulk-error", class: "error", role: "alert" }),
    el("div", { class: "scroll" }, results));
  bulk.append(bar);
  const errOut = bar.querySelector("#bulk-error");

  async function loadSheets() {
    if (!Q.can("MinerService/ListFlightSheets")) return;
    try {
      const r = await Q.rpc("MinerService/ListFlightSheets");
      const names = (r.sheets || []).map((s) => s.name).sort();
      sheet.replaceChildren(...(names.length ? names.map((n) => el("option", { value: n, text: n })) : [el("option", { value: "", text: "no flight sheets" })]));
    } catch (_) { /* the list stays as it was */ }
  }
  bar.querySelector("#bulk-none").addEventListener("click", () => {
    T.picked.clear();
    for (const x of document.querySelectorAll("#rig-table .col-pick input")) x.checked = false;
    updateCount();
  });

  function row(rigName, action) {
    const res = el("td", { class: "res", text: "sending" });
    const tr = el("tr", {}, el("td", { text: rigName }), el("td", { text: action }), res);
    results.querySelector("tbody").append(tr);
    return res;
  }
  function stop() { while (pollers.length) clearTimeout(pollers.pop()); }
  // follow shows a queued command's outcome once the rig answers.
  function follow(res, id, prefix) {
    const started = Date.now();
    const step = async () => {
      try {
        const c = await Q.rpc("FleetService/GetCommand", { command_id: id });
        const s = String(c.record.status).replace("COMMAND_STATUS_", "").toLowerCase();
        const done = ["succeeded", "failed", "expired"].includes(s);
        res.className = "res " + (s === "succeeded" ? "result-ok" : done ? "result-bad" : "");
        res.textContent = prefix + s + (c.record.error ? ": " + c.record.error : "");
        if (done) return;
      } catch (e) { res.textContent = e.message; return; }
      if (Date.now() - started < 5 * 60 * 1000) pollers.push(setTimeout(step, 1000));
    };
    step();
  }
  async function each(action, call) {
    errOut.textContent = "";
    stop();
    results.querySelector("tbody").replaceChildren();
    results.hidden = false;
    const rigs = [...T.picked];
    if (!rigs.length) { errOut.textContent = "Select rigs first."; return; }
    for (const b of bar.querySelectorAll("button")) b.disabled = true;
    try {
      for (const [id, name] of rigs) {
        const res = row(name, action);
        try { await call(id, res); } catch (e) { res.className = "res result-bad"; res.textContent = "refused: " + e.message; }
      }
    } finally { for (const b of bar.querySelectorAll("button")) b.disabled = false; }
  }
  bar.querySelector("#bulk-apply").addEventListener("click", () => {
    const name = sheet.value;
    if (!name) { errOut.textContent = "Store a flight sheet first."; return; }
    each("apply " + name, async (id, res) => {
      const r = await Q.rpc("MinerService/ApplyFlightSheet", { name, selector: id });
      for (const x of r.rigs) follow(res, x.command_id, "");
    });
  });
  for (const b of bar.querySelectorAll("button[data-kind]")) {
    b.addEventListener("click", () => each(b.textContent.toLowerCase(), async (id, res) => {
      const r = await Q.rpc("FleetService/SendCommand", { rig: id, kind: b.dataset.kind });
      follow(res, r.command_id, "");
    }));
  }
  // parseLabels reads "key=value" to set and "-key" to remove.
  function parseLabels(text) {
    const set = {}, remove = [];
    for (const part of text.split(",").map((s) => s.trim()).filter(Boolean)) {
      if (part.startsWith("-")) { remove.push(part.slice(1).trim()); continue; }
      const i = part.indexOf("=");
      if (i <= 0) throw new Error("“" + part + "”: write key=value to set a label or -key to remove one");
      set[part.slice(0, i).trim()] = part.slice(i + 1).trim();
    }
    if (!Object.keys(set).length && !remove.length) throw new Error("write key=value to set a label or -key to remove one");
    return { set, remove };
  }
  bar.querySelector("#bulk-labels-go").addEventListener("click", () => {
    let ch;
    try { ch = parseLabels(labels.value); } catch (e) { errOut.textContent = e.message; return; }
    each("labels " + labels.value.trim(), async (id, res) => {
      const r = await Q.rpc("FleetService/SetRigLabels", { rig: id, set: ch.set, remove: ch.remove });
      const l = r.rig.labels || {};
      res.className = "res result-ok";
      res.textContent = "labels now " + (Object.keys(l).sort().map((k) => (l[k] ? k + "=" + l[k] : k)).join(", ") || "none");
    }).then(() => T.reload());
  });

  // Show only the groups the user's role may use, once the session and
  // its methods are known (the overview renders after that).
  const prevRendered = T.hooks.rendered;
  let shownFor = null;
  T.hooks.rendered = (ov) => {
    const s = Q.session();
    if (s && shownFor !== s.who) {
      shownFor = s.who;
      T.picked.clear();
      for (const g of bar.querySelectorAll(".bulk-group")) g.hidden = !Q.can(g.dataset.needs);
      loadSheets();
    }
    prevRendered(ov);
  };
})();
