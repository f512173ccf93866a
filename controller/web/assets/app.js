// Quarry dashboard. Plain JavaScript, no dependencies: the controller
// serves this file from its own binary.
"use strict";
(function () {
  const $ = (sel) => document.querySelector(sel);
  const state = { session: null, es: null, rigId: null, sort: { key: "name", dir: 1 }, offset: 0, limit: 100, overview: null, histTimer: null, histBusy: false,
    // filter narrows the rig table on the server; picked are the ticked
    // rows (id → name), kept across pages for the bulk actions.
    filter: { q: "", selector: "", status: "", algorithm: "" }, picked: new Map() };

  // ---------- helpers ----------
  function el(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "text") e.textContent = v; else if (k === "class") e.className = v; else e.setAttribute(k, v === true ? "" : v);
    }
    for (const k of kids) if (k !== null && k !== undefined) e.append(k instanceof Node ? k : document.createTextNode(String(k)));
    return e;
  }
  function svg(tag, attrs) {
    const e = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    return e;
  }
  const units = ["H/s", "kH/s", "MH/s", "GH/s", "TH/s", "PH/s", "EH/s"];
  function fmtHash(h) {
    if (h === undefined || h === null) return "–";
    let i = 0;
    while (Math.abs(h) >= 1000 && i < units.length - 1) { h /= 1000; i++; }
    return (h >= 100 || i === 0 ? h.toFixed(0) : h.toFixed(2)) + " " + units[i];
  }
  const fmtW = (w) => (w === undefined || w === null ? "–" : w >= 10000 ? (w / 1000).toFixed(1) + " kW" : Math.round(w) + " W");
  const fmtC = (c) => (c === undefined || c === null ? "–" : Math.round(c) + " °C");
  // Small amounts (a CPU rig makes cents a day) keep three significant digits.
  const fmtUSD = (v) => (v === undefined || v === null ? "–" : (v < 0 ? "−$" : "$") + (Math.abs(v) >= 1 || v === 0 || Math.abs(v) < 1e-9 ? Math.abs(v).toFixed(2) : Math.abs(v).toPrecision(3)));
  const fmtMHz = (v) => (v === undefined || v === null ? "–" : v + " MHz");
  function ago(ms) {
    if (!ms) return "never";
    const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
    if (s < 60) return s + " s ago";
    if (s < 3600) return Math.round(s / 60) + " min ago";
    if (s < 86400) return Math.round(s / 3600) + " h ago";
    return new Date(ms).toLocaleDateString();
  }

  async function api(path, opts) {
    opts = opts || {};
    const headers = { "Accept": "application/json" };
    if (opts.body !== undefined) headers["Content-Type"] = "application/json";
    if (opts.method && opts.method !== "GET" && state.session) headers["X-Quarry-CSRF"] = state.session.csrf;
    const resp = await fetch(path, { method: opts.method || "GET", headers, credentials: "same-origin", body: opts.body === undefined ? undefined : JSON.stringify(opts.body) });
    let data = null;
    try { data = await resp.json(); } catch (_) { /* empty body */ }
    if (resp.status === 401 && path !== "/api/login") { showLogin(); }
    // code is the gRPC code behind a bridged call's refusal: HTTP 404
    // alone cannot tell a missing service from a missing record.
    if (!resp.ok) { const err = new Error((data && data.error) || resp.statusText); err.status = resp.status; err.code = (data && data.code) || ""; throw err; }
    return data;
  }

  // ---------- sign-in ----------
  function showLogin() {
    state.session = null;
    closeStream();
    $("#login").hidden = false;
    $("#overview").hidden = true;
    $("#rigpage").hidden = true;
    $("#logout").hidden = true;
    $("#nav").hidden = true;
    for (const name of Object.keys(pages)) { const sec = document.getElementById("page-" + name); if (sec) sec.hidden = true; }
    $("#who").textContent = "";
    $("#token").focus();
  }
  function signedIn(s) {
    state.session = s;
    document.body.dataset.role = s.role;
    $("#login").hidden = true;
    $("#logout").hidden = false;
    $("#who").textContent = s.who + " · " + s.role;
    $("#nav").hidden = false;
    api("/api/rpc").then((m) => { methods = m.methods || {}; }).catch(() => { methods = {}; }).finally(route);
  }
  $("#login-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    $("#login-error").textContent = "";
    try {
      const s = await api("/api/login", { method: "POST", body: { token: $("#token").value } });
      $("#token").value = "";
      signedIn(s);
    } catch (e) { $("#login-error").textContent = e.message; }
  });
  $("#logout").addEventListener("click", async () => {
    try { await api("/api/logout", { method: "POST", body: {} }); } catch (_) { /* signed out anyway */ }
    showLogin();
  });

  // ---------- live stream ----------
  function closeStream() {
    if (state.es) { state.es.close(); state.es = null; }
    $("#live").classList.remove("on");
  }
  function openStream() {
    closeStream();
    const url = "/api/stream?" + overviewQuery() + (state.rigId ? "&rig=" + encodeURIComponent(state.rigId) : "");
    const es = new EventSource(url);
    state.es = es;
    const bump = () => { document.body.dataset.updates = String(Number(document.body.dataset.updates || 0) + 1); };
    es.addEventListener("open", () => $("#live").classList.add("on"));
    es.addEventListener("error", () => $("#live").classList.remove("on"));
    es.addEventListener("overview", (ev) => { bump(); if (!state.rigId) renderOverview(JSON.parse(ev.data)); });
    es.addEventListener("rig", (ev) => { bump(); if (state.rigId) { renderRig(JSON.parse(ev.data)); scheduleHistory(); } });
  }

  // ---------- pages ----------
  // Each page beyond the overview and the rig page lives in its own file
  // under /static/pages/ and registers itself here: a nav link, a
  // <section id="page-NAME"> it fills, and a function run when shown.
  // Pages call the admin services through rpc(); the server checks the
  // role of every call, can() only hides controls the user may not use.
  const pages = {};
  const roleRank = { viewer: 1, operator: 2, admin: 3 };
  let methods = {};
  function rpc(method, body) {
    return api("/api/rpc/quarry.v1." + method, { method: "POST", body: body || {} });
  }
  function can(method) {
    const need = methods["/quarry.v1." + method];
    return !!need && !!state.session && (roleRank[state.session.role] || 0) >= (roleRank[need] || 99);
  }
  function registerPage(name, title, show) {
    pages[name] = { title, show };
    const nav = $("#nav");
    if (nav && !nav.querySelector(`[data-page="${name}"]`)) nav.append(el("a", { href: "#/" + name, "data-page": name, text: title }));
  }
  // The rig table's search, filters and ticked rows, for the bulk actions
  // (rigbulk.js): it sets the hooks and changes the filter through these.
  const rigTableHooks = {};
  const rigTable = {
    hooks: rigTableHooks,
    picked: state.picked,
    filter: () => Object.assign({}, state.filter),
    setFilter(f) { Object.assign(state.filter, f); state.offset = 0; if (!state.rigId && state.session) reloadOverview(); },
    reload: () => loadOverview(),
    overview: () => state.overview,
  };
  // A scrolling table for management pages; fillTable replaces its rows,
  // or says in one row that there are none.
  function table(id, heads) {
    return el("div", { class: "scroll" }, el("table", { id }, el("thead", {}, el("tr", {}, ...heads.map((h) => el("th", { text: h })))), el("tbody")));
  }
  function fillTable(id, rows, cols, empty) {
    const tb = document.querySelector("#" + id + " tbody");
    if (!tb) return;
    tb.replaceChildren(...rows);
    if (!rows.length) tb.replaceChildren(el("tr", {}, el("td", { colspan: String(cols), class: "sub", text: empty })));
  }
  // when shows a protobuf nanosecond time (a decimal string) in local
  // time, "–" for none.
  const when = (ns) => (!ns || ns === "0" ? "–" : new Date(Number(BigInt(ns) / 1000000n)).toLocaleString());
  // result shows an action's outcome in the element with that id.
  function result(id, ok, text) {
    const r = document.getElementById(id);
    if (!r) return;
    r.className = ok ? "result-ok" : "result-bad";
    r.textContent = text;
  }
  window.Quarry = { el, api, rpc, can, registerPage, fmtHash, fmtW, fmtC, fmtUSD, ago, when, result, session: () => state.session, rigTable, table, fillTable };

  // ---------- routing ----------
  function route() {
    if (!state.session) return;
    const pm = location.hash.match(/^#\/([a-z-]+)(?:\/(.*))?$/);
    const page = pm && pages[pm[1]] ? pm[1] : null;
    for (const [name] of Object.entries(pages)) {
      const sec = document.getElementById("page-" + name);
      if (sec) sec.hidden = name !== page;
    }
    for (const a of document.querySelectorAll("#nav a")) a.classList.toggle("current", a.dataset.page === (page || ""));
    if (page) {
      closeStream();
      state.rigId = null;
      $("#overview").hidden = true;
      $("#rigpage").hidden = true;
      Promise.resolve(pages[page].show(pm[2] ? decodeURIComponent(pm[2]) : "")).catch((e) => console.error(e));
      return;
    }
    const m = location.hash.match(/^#\/rig\/(.+)$/);
    state.rigId = m ? decodeURIComponent(m[1]) : null;
    $("#overview").hidden = !!state.rigId;
    $("#rigpage").hidden = !state.rigId;
    if (state.rigId) {
      $("#action-result").textContent = "";
      api("/api/rigs/" + encodeURIComponent(state.rigId)).then(renderRig).catch((e) => { $("#rig-name").textContent = e.message; });
      loadHistory();
    } else {
      loadOverview();
    }
    openStream();
  }
  window.addEventListener("hashchange", route);

  // ---------- overview ----------
  // The server sorts and pages the rig table, so a fleet of any size
  // sends one page; the query names the page and its order.
  function overviewQuery() {
    let q = "sort=" + encodeURIComponent(state.sort.key) + "&dir=" + (state.sort.dir === 1 ? "asc" : "desc") +
      "&offset=" + state.offset + "&limit=" + state.limit;
    for (const [k, v] of Object.entries(state.filter)) if (v) q += "&" + k + "=" + encodeURIComponent(v);
    return q;
  }
  function loadOverview() {
    return api("/api/overview?" + overviewQuery()).then(renderOverview).catch((e) => { if (rigTableHooks.error) rigTableHooks.error(e); });
  }
  // reloadOverview fetches the page now shown and follows it live.
  function reloadOverview() {
    loadOverview();
    openStream();
  }
  // alertItem is one alert: its rig (when it concerns one), the message,
  // when it fired, and where its latest message went.
  function alertItem(a) {
    const li = el("li", { class: a.severity, "data-rule": a.rule || "" },
      a.rig ? el("a", { href: "#/rig/" + encodeURIComponent(a.rig), text: a.rig_name || a.rig }) : null,
      (a.rig ? " — " : "") + a.message);
    if (a.since_ms) li.append(el("span", { class: "since", text: " · fired " + ago(a.since_ms) }));
    if (a.deliveries && a.deliveries.length) {
      li.append(el("div", { class: "delivery" }, ...a.deliveries.map((d) => el("span", {
        class: d.state === "delivered" ? "result-ok" : d.state === "pending" ? "" : "result-bad",
        text: d.channel + ": " + d.kind + " " + d.state + (d.state === "failing" ? " (" + d.attempts + " attempts: " + d.error + ")" : "") + " ",
      }))));
    }
    return li;
  }
  $("#notify-test").addEventListener("click", async () => {
    const btn = $("#notify-test"), out = $("#notify-test-result");
    btn.disabled = true;
    out.className = "";
    out.textContent = "sending…";
    try {
      const r = await rpc("NotifyService/TestNotification", {});
      out.replaceChildren(...(r.results || []).map((c) => el("span", { class: c.ok ? "result-ok" : "result-bad", text: c.channel + ": " + (c.ok ? "ok" : "failed: " + c.error) + " " })));
    } catch (e) {
      out.className = "result-bad";
      out.textContent = e.message;
    } finally {
      btn.disabled = false;
    }
  });
  function renderOverview(ov) {
    state.overview = ov;
    $("#ov-online").textContent = ov.online;
    $("#ov-total").textContent = ov.total;
    $("#ov-offline").textContent = ov.offline;
    const hr = $("#ov-hashrate");
    hr.replaceChildren(...(ov.hashrate.length ? ov.hashrate.map((a) => el("div", {}, fmtHash(a.hashrate), el("span", { text: " " + a.algorithm }))) : [el("div", { text: "–" })]));
    $("#ov-power").textContent = fmtW(ov.power_w);
    const hasProfit = ov.profit_usd_per_day !== undefined;
    $("#ov-profit-tile").hidden = !hasProfit;
    if (hasProfit) $("#ov-profit").textContent = fmtUSD(ov.profit_usd_per_day);
    const offline = !!ov.market && ov.market.startsWith("offline");
    $("#ov-market").hidden = !offline;
    $("#ov-market").textContent = offline ? "market " + ov.market : "";
    // Admins may send a test message to the notification channels, so
    // the card shows for them even with nothing firing.
    const canTest = can("NotifyService/TestNotification");
    $("#notify-test-bar").hidden = !canTest;
    $("#ov-alerts-card").hidden = ov.alert_count === 0 && !canTest;
    $("#ov-alert-count").textContent = "(" + ov.alert_count + (ov.alert_count > ov.alerts.length ? ", first " + ov.alerts.length + " shown" : "") + ")";
    $("#ov-alerts").replaceChildren(...ov.alerts.map(alertItem));
    document.querySelectorAll(".col-profit").forEach((c) => { c.hidden = !hasProfit; });
    renderRigTable();
    if (ov.billing) loadBilling(); else $("#billing-card").hidden = true;
  }
  function renderRigTable() {
    const ov = state.overview;
    if (!ov) return;
    const { key, dir } = state.sort;
    const rows = ov.rigs;
    const shown = ov.matched !== undefined ? ov.matched : ov.total;
    const first = shown === 0 ? 0 : ov.offset + 1;
    $("#rig-range").textContent = first + "–" + (ov.offset + rows.length) + " of " + shown + (shown !== ov.total ? " matching" : "");
    $("#rig-prev").disabled = ov.offset === 0;
    $("#rig-next").disabled = ov.offset + rows.length >= shown;
    $("#rig-pager").hidden = shown <= ov.limit && ov.offset === 0 && shown === ov.total;
    const pick = !!rigTableHooks.pickable && rigTableHooks.pickable();
    $("#rig-pick-all-box").hidden = !pick;
    const hasProfit = ov.profit_usd_per_day !== undefined;
    $("#rig-table tbody").replaceChildren(...rows.map((r) => {
      const hot = r.max_temp_c !== undefined && r.max_temp_c >= 85;
      return el("tr", { "data-rig": r.id },
        el("td", { class: pick ? "col-pick" : null },
          pick ? el("input", { type: "checkbox", "aria-label": "select " + (r.name || r.id), "data-name": r.name || r.id, checked: state.picked.has(r.id) }) : null,
          el("a", { href: "#/rig/" + encodeURIComponent(r.id), text: r.name || r.id })),
        el("td", {}, el("span", { class: "badge " + (r.online ? "online" : "offline"), text: r.online ? "online" : "offline" }), r.alerts ? " ⚠ " + r.alerts : ""),
        el("td", { class: "num", text: r.hashrate ? fmtHash(r.hashrate) : "–" }),
        el("td", { text: r.algorithms || "–" }),
        el("td", { class: "num", text: r.gpus }),
        el("td", { class: "num" + (hot ? " hot" : ""), text: fmtC(r.max_temp_c) }),
        el("td", { class: "num", text: r.online ? fmtW(r.power_w) : "–" }),
        hasProfit ? el("td", { class: "num col-profit", text: fmtUSD(r.profit_usd_per_day) }) : null,
        el("td", { class: "num", text: ago(r.last_seen_ms) }));
    }));
    document.querySelectorAll("#rig-table th").forEach((th) => {
      th.classList.toggle("asc", th.dataset.key === key && dir === 1);
      th.classList.toggle("desc", th.dataset.key === key && dir === -1);
    });
    if (rigTableHooks.rendered) rigTableHooks.rendered(ov);
  }
  document.querySelectorAll("#rig-table th").forEach((th) => th.addEventListener("click", () => {
    const k = th.dataset.key;
    if (!k) return;
    state.sort = { key: k, dir: state.sort.key === k ? -state.sort.dir : (k === "name" || k === "algorithms" ? 1 : -1) };
    state.offset = 0;
    reloadOverview();
  }));
  $("#rig-prev").addEventListener("click", () => { state.offset = Math.max(0, state.offset - state.limit); reloadOverview(); });
  $("#rig-next").addEventListener("click", () => { state.offset += state.limit; reloadOverview(); });
  async function loadBilling() {
    try {
      const b = await api("/api/billing");
      $("#billing-card").hidden = !b.available || b.customers.length === 0;
      $("#billing-table tbody").replaceChildren(...b.customers.map((c) => el("tr", {},
        el("td", { text: c.customer }), el("td", { text: c.plan }), el("td", { class: "num", text: c.active_rigs }),
        el("td", { class: "num", text: c.month_to_date_kwh.toFixed(1) }), el("td", { class: "num", text: fmtUSD(c.estimate_usd) }),
        el("td", { class: "num", text: c.pending_records }), el("td", { class: "num", text: c.dead_letters }), el("td", { text: c.action || "" }))));
    } catch (_) { $("#billing-card").hidden = true; }
  }

  // ---------- rig page ----------
  function renderRig(r) {
    $("#rig-name").textContent = r.name || r.id;
    $("#rig-meta").replaceChildren(el("span", { class: "badge " + (r.online ? "online" : "offline"), text: r.online ? "online" : "offline" }),
      " " + [r.hostname, r.id, r.version && "agent " + r.version, "last report " + ago(r.last_seen_ms)].filter(Boolean).join(" · "));
    $("#rig-actions").hidden = !(state.session && state.session.can_act);
    $("#rig-alerts").replaceChildren(...r.alerts.map((a) => alertItem(Object.assign({}, a, { rig: "" }))));
    const tiles = [];
    const total = r.miners.reduce((s, m) => s + (m.hashrate || 0), 0);
    tiles.push(["Hashrate", r.miners.some((m) => m.hashrate !== undefined) ? fmtHash(total) : "–"]);
    if (r.power_w !== undefined) tiles.push(["Power", fmtW(r.power_w)]);
    if (r.host) tiles.push(["CPU", r.host.cpu_percent.toFixed(0) + " %"]);
    if (r.profit) tiles.push(["Profit / day", fmtUSD(r.profit.usd_per_day)]);
    $("#rig-tiles").replaceChildren(...tiles.map(([l, v]) => el("div", { class: "tile" }, el("div", { class: "label", text: l }), el("div", { class: "value", text: v }))));

    $("#no-gpus").hidden = r.gpus.length > 0;
    $("#gpu-table").hidden = r.gpus.length === 0;
    $("#gpu-table tbody").replaceChildren(...r.gpus.map((g) => el("tr", { "data-gpu": g.index },
      el("td", { text: g.index }),
      el("td", { text: (g.name || g.vendor || "GPU") + (g.lost ? " (lost)" : "") }),
      el("td", { class: "num", text: g.hashrate !== undefined ? fmtHash(g.hashrate) : "–" }),
      el("td", { class: "num" + (g.temp_c >= 85 ? " hot" : ""), text: fmtC(g.temp_c) }),
      el("td", { class: "num", text: fmtC(g.mem_temp_c) }),
      el("td", { class: "num", text: g.fan_percent && g.fan_percent.length ? g.fan_percent.map((f) => Math.round(f) + " %").join(" / ") : "–" }),
      el("td", { class: "num", text: fmtW(g.power_w) + (g.power_limit_w ? " / " + fmtW(g.power_limit_w) : "") }),
      el("td", { class: "num", text: fmtMHz(g.core_mhz) }),
      el("td", { class: "num", text: fmtMHz(g.mem_mhz) }),
      el("td", { class: "num", text: g.hashrate !== undefined ? g.accepted + " / " + g.rejected : "–" }))));

    $("#miners-card").hidden = r.miners.length === 0;
    $("#miner-table tbody").replaceChildren(...r.miners.map((m) => el("tr", {},
      el("td", { text: m.miner + (m.version ? " " + m.version : "") }), el("td", { text: m.coin }), el("td", { text: m.algorithm }),
      el("td", { class: "num", text: m.hashrate !== undefined ? fmtHash(m.hashrate) : "— (" + m.state + ")" }), el("td", { class: "num", text: m.accepted }), el("td", { class: "num", text: m.rejected }),
      el("td", { text: m.state + (m.error ? ": " + m.error : "") }), el("td", { text: m.pool || "" }))));

    $("#profit-card").hidden = !r.profit;
    if (r.profit) {
      const p = r.profit;
      $("#rig-profit").replaceChildren(el("p", {}, el("strong", { text: fmtUSD(p.usd_per_day) + " / day" }),
        p.coin ? " mining " + p.coin + (p.algorithm ? " (" + p.algorithm + ")" : "") : "",
        p.revenue_usd_per_day ? " · revenue " + fmtUSD(p.revenue_usd_per_day) : "",
        p.power_cost_usd_per_day ? " · power " + fmtUSD(p.power_cost_usd_per_day) : ""));
    }
    const figs = r.figures || [];
    $("#figures-card").hidden = figs.length === 0;
    $("#figure-table tbody").replaceChildren(...figs.map((f) => el("tr", {},
      el("td", { text: f.algorithm }), el("td", { class: "num", text: fmtHash(f.hashrate) }), el("td", { class: "num", text: fmtW(f.power_w) }),
      el("td", { text: f.source }), el("td", { class: "num", text: f.samples }), el("td", { text: new Date(f.updated_ms).toLocaleString() }))));
    const sw = r.switches || [];
    $("#switches-card").hidden = sw.length === 0;
    $("#switch-table tbody").replaceChildren(...sw.map((s) => el("tr", {},
      el("td", { text: new Date(s.time).toLocaleString() }), el("td", { text: s.from }), el("td", { text: s.to }), el("td", { text: s.reason }))));
    $("#events-card").hidden = r.events.length === 0;
    $("#events").replaceChildren(...r.events.map((e) => el("li", {},
      el("span", { class: "kind", text: e.kind }), e.message, " ", el("span", { class: "sub", text: new Date(e.time_ms).toLocaleString() }))));
  }
  document.querySelectorAll("#rig-actions button").forEach((b) => b.addEventListener("click", async () => {
    const action = b.dataset.action;
    const out = $("#action-result");
    b.disabled = true;
    try {
      const res = await api("/api/rigs/" + encodeURIComponent(state.rigId) + "/actions/" + action, { method: "POST", body: {} });
      out.textContent = action + ": queued as " + res.command_id;
      pollCommand(res.command_id, action);
    } catch (e) { out.textContent = action + " refused: " + e.message; }
    b.disabled = false;
  }));
  async function pollCommand(id, action) {
    for (let i = 0; i < 20; i++) {
      await new Promise((r) => setTimeout(r, 1000));
      try {
        const c = await api("/api/commands/" + encodeURIComponent(id));
        if (c.status !== "PENDING" && c.status !== "SENT") {
          $("#action-result").textContent = action + ": " + c.status.toLowerCase() + (c.output ? " — " + c.output : "") + (c.error ? " — " + c.error : "");
          return;
        }
      } catch (_) { return; }
    }
  }

  // ---------- charts ----------
  function scheduleHistory() {
    if (state.histTimer) return;
    state.histTimer = setTimeout(() => { state.histTimer = null; loadHistory(); }, 500);
  }
  async function loadHistory() {
    if (!state.rigId || state.histBusy) return;
    state.histBusy = true;
    try {
      const h = await api("/api/rigs/" + encodeURIComponent(state.rigId) + "/history");
      drawChart($("#chart-hashrate"), h.points, "hashrate", "", fmtHash);
      const hasPower = h.points.some((p) => p.power_w !== undefined);
      $("#power-card").hidden = !hasPower;
      if (hasPower) drawChart($("#chart-power"), h.points, "power_w", "power", fmtW);
    } catch (_) { /* the stream retries */ }
    state.histBusy = false;
  }
  function drawChart(host, points, key, cls, fmt) {
    const pts = points.filter((p) => p[key] !== undefined && p[key] !== null);
    if (pts.length < 2) { host.replaceChildren(el("p", { class: "empty", text: "Not enough data yet." })); return; }
    const W = 600, H = 200, L = 84, R = 8, T = 10, B = 22;
    const t0 = pts[0].t, t1 = pts[pts.length - 1].t;
    let vmax = Math.max(...pts.map((p) => p[key]));
    if (vmax <= 0) vmax = 1;
    vmax *= 1.1;
    const x = (t) => L + (t1 === t0 ? 0 : (t - t0) / (t1 - t0)) * (W - L - R);
    const y = (v) => T + (1 - v / vmax) * (H - T - B);
    const s = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": key + " over time", "data-points": String(pts.length) });
    for (const f of [0, 0.5, 1]) {
      const v = vmax * f;
      s.append(svg("line", { class: "axis", x1: L, x2: W - R, y1: y(v), y2: y(v) }));
      const lbl = svg("text", { class: "lbl", x: L - 6, y: y(v) + 4, "text-anchor": "end" });
      lbl.textContent = fmt(v);
      s.append(lbl);
    }
    for (const [t, anchor] of [[t0, "start"], [t1, "end"]]) {
      const lbl = svg("text", { class: "lbl", x: x(t), y: H - 6, "text-anchor": anchor });
      lbl.textContent = new Date(t).toLocaleTimeString();
      s.append(lbl);
    }
    // A point without a reading breaks the line: unknown is a gap, not 0.
    const runs = [];
    let run = [];
    for (const p of points) {
      if (p[key] === undefined || p[key] === null) { if (run.length) runs.push(run); run = []; } else run.push(p);
    }
    if (run.length) runs.push(run);
    for (const r of runs) {
      const d = r.map((p, i) => (i ? "L" : "M") + x(p.t).toFixed(1) + " " + y(p[key]).toFixed(1)).join(" ");
      const a = x(r[0].t).toFixed(1), b = x(r[r.length - 1].t).toFixed(1);
      s.append(svg("path", { class: "area " + cls, d: d + ` L${b} ${y(0)} L${a} ${y(0)} Z` }));
      s.append(svg("path", { class: "line " + cls, d }));
    }
    host.replaceChildren(s);
  }

  // ---------- start ----------
  document.addEventListener("visibilitychange", () => { if (!document.hidden && state.session && !state.es) openStream(); });
  api("/api/session").then(signedIn).catch(() => showLogin());
})();
