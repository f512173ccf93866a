// Profit page: each rig's ranked options and why the switcher chose what
// it did, its switch history, the market's health, and the profit
// settings (options, sites and tariffs, pins and exclusions, policy) with
// their versions. Viewers read; operators edit and restore. The server
// checks every call's role and refuses a change made from a version that
// is no longer current; the page then says so and reloads.
"use strict";
(function () {
  const Q = window.Quarry;
  const el = Q.el;
  const $ = (id) => document.getElementById(id);
  const sec = () => $("page-profit");
  const st = { gen: 0, rig: "", rows: [], current: null, model: null, versions: [], sheets: [] };
  const dayNames = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

  // ---------- formatting ----------
  // protobuf JSON writes 64-bit integers and non-finite doubles as strings.
  const num = (v) => (v === undefined || v === null || v === "" ? NaN : Number(v));
  const usd = (v) => (Number.isFinite(num(v)) ? Q.fmtUSD(num(v)) : "–");
  const when = Q.when;
  // A fraction typed or shown as a percentage, without float drift.
  const clean = (v) => Number(Number(v).toPrecision(12));
  const pct = (f) => String(clean(num(f) * 100));
  function age(s) {
    if (!Number.isFinite(s)) return "unknown";
    if (s < 90) return Math.round(s) + " s";
    if (s < 5400) return Math.round(s / 60) + " min";
    if (s < 172800) return (s / 3600).toFixed(1) + " h";
    return Math.round(s / 86400) + " days";
  }
  function dur(s) {
    s = num(s);
    if (!Number.isFinite(s)) return "–";
    if (s < 120) return Math.round(s) + " s";
    if (s < 7200) return Math.round(s / 60) + " min";
    return (s / 3600).toFixed(1) + " h";
  }
  const result = Q.result;
  const table = Q.table, fill = Q.fillTable;
  const kv = (pairs) => el("dl", { class: "kv" }, ...pairs.filter(Boolean).flatMap(([k, v, attrs]) => [el("dt", { text: k }), el("dd", Object.assign({ text: v }, attrs || {}))]));
  const badge = (ok, text) => el("span", { class: "badge " + (ok ? "online" : "offline"), text });

  // ---------- market ----------
  function marketCard() {
    return el("div", { class: "card", id: "profit-market" }, el("h2", { text: "Market" }), el("div", { id: "profit-market-body" }, el("p", { class: "sub", text: "Loading…" })));
  }
  async function loadMarket(list) {
    let m;
    try { m = await Q.rpc("ProfitService/MarketStatus"); } catch (e) { $("profit-market-body").replaceChildren(el("p", { class: "result-bad", text: e.message })); return; }
    const fetched = m.fetched_unix_nano && m.fetched_unix_nano !== "0";
    let state, good;
    if (m.offline) { state = "offline: fixed snapshot, never stale"; good = true; }
    else if (!fetched) { state = "unknown: no market data yet"; good = false; }
    else if (m.ok) { state = "fresh"; good = true; }
    else { state = "stale" + (m.reason ? ": " + m.reason : ""); good = false; }
    const paused = list && list.paused;
    const body = [
      kv([
        ["Source", m.origin || "unknown", { "data-k": "source" }],
        ["Age", fetched ? age(num(m.age_seconds)) : "unknown", { "data-k": "age" }],
        ["Fetched", fetched ? when(m.fetched_unix_nano) : "unknown"],
        ["Coins", fetched ? String((m.coins || []).length) : "unknown"],
        ["Switching", paused ? "paused: " + (list.pause_reason || "no reason given") : list ? (list.dry_run ? "dry run: nothing is sent" : "active") : "unknown", { "data-k": "switching" }],
      ]),
      el("p", { "data-k": "state" }, badge(good, good ? "ok" : "not ok"), " " + state),
    ];
    if (m.last_error) body.push(el("p", { class: "result-bad wrap", text: "Last error: " + m.last_error }));
    if ((m.sources || []).length) {
      body.push(el("div", { class: "scroll" }, el("table", { id: "profit-sources" },
        el("thead", {}, el("tr", {}, ...["Source", "State", "Coins", "Took", "Error"].map((h) => el("th", { text: h })))),
        el("tbody", {}, ...m.sources.map((s) => el("tr", {}, el("td", { text: s.name }), el("td", {}, badge(s.ok, s.ok ? "ok" : "failing")),
          el("td", { class: "num", text: s.coins }), el("td", { class: "num", text: Number.isFinite(num(s.seconds)) ? num(s.seconds).toFixed(2) + " s" : "unknown" }),
          el("td", { class: "wrap", text: s.error || "" })))))));
    }
    const notes = [].concat((m.dropped || []).map((d) => "dropped " + d), (m.held || []).map((h) => "held " + h));
    if (notes.length) body.push(el("ul", { class: "events" }, ...notes.map((n) => el("li", { class: "sub", text: n }))));
    $("profit-market-body").replaceChildren(...body);
  }

  // ---------- rigs and decisions ----------
  function rigsCard() {
    return el("div", { class: "card", id: "profit-rigs" }, el("h2", { text: "Rigs" }),
      table("profit-rig-table", ["Rig", "Mining", "Best", "$/day now", "$/day best", "Gap", "Action"]));
  }
  function fillRigs(list) {
    st.rows = list.rows || [];
    fill("profit-rig-table", st.rows.map((r) => el("tr", { "data-rig": r.rig_id, class: r.rig_id === st.rig ? "picked" : null },
      el("td", {}, el("a", { href: "#/profit/" + encodeURIComponent(r.rig_id), text: r.rig_name || r.rig_id })),
      el("td", { text: r.current || "–" }), el("td", { text: r.best || "–" }),
      el("td", { class: "num", text: usd(r.current_usd_day) }), el("td", { class: "num", text: usd(r.best_usd_day) }),
      el("td", { class: "num", text: Number.isFinite(num(r.gap_pct)) ? num(r.gap_pct).toFixed(1) + " %" : "–" }),
      el("td", { text: r.action + (r.dry_run ? " (dry run)" : "") }))), 7, list.options ? "No rigs yet." : "No options configured: add one under Settings.");
    const pick = $("profit-rig");
    // Rebuilt only when the rigs change, so an open picker stays open.
    const key = st.rows.map((r) => r.rig_id + "=" + r.rig_name).join("\n");
    if (pick && pick.dataset.rigs !== key) {
      pick.dataset.rigs = key;
      pick.replaceChildren(...st.rows.map((r) => el("option", { value: r.rig_id, text: r.rig_name || r.rig_id })));
      if (!st.rows.length) pick.replaceChildren(el("option", { value: "", text: "no rigs" }));
    }
    if (pick && pick.value !== st.rig) pick.value = st.rig;
  }
  function explainCard() {
    const pick = el("select", { id: "profit-rig", "aria-label": "rig" });
    pick.addEventListener("change", () => { if (pick.value) location.hash = "#/profit/" + encodeURIComponent(pick.value); });
    return el("div", { class: "card", id: "profit-explain" },
      el("div", { class: "toolbar" }, el("h2", { text: "Decision" }), el("label", { for: "profit-rig", class: "sub", text: "for rig" }), pick),
      el("div", { id: "profit-explain-body" }, el("p", { class: "sub", text: "Loading…" })));
  }
  async function loadExplain() {
    const body = $("profit-explain-body");
    if (!st.rig) { body.replaceChildren(el("p", { class: "sub", text: "No rig has a decision yet." })); return; }
    let x;
    try { x = await Q.rpc("ProfitService/ExplainProfit", { rig: st.rig }); } catch (e) { body.replaceChildren(el("p", { class: "result-bad", text: e.message })); return; }
    const r = x.row || {};
    const opts = (x.options || []).slice().sort((a, b) => {
      const pa = num(a.profit_usd_day), pb = num(b.profit_usd_day);
      const ra = a.allowed && !a.unpriced && !a.no_hashrate && Number.isFinite(pa), rb = b.allowed && !b.unpriced && !b.no_hashrate && Number.isFinite(pb);
      if (ra !== rb) return ra ? -1 : 1;
      return (Number.isFinite(pb) ? pb : -Infinity) - (Number.isFinite(pa) ? pa : -Infinity);
    });
    const po = x.policy || {};
    body.replaceChildren(
      el("p", { id: "profit-reason", class: "reason" }, el("strong", { text: r.action || "–" }),
        " " + String(r.reason || "").replace(new RegExp("^" + (r.action || "").replace(/[^a-z-]/g, "") + ": "), "")),
      kv([
        ["Mining", r.current || "–"], ["Best", r.best || "–"],
        ["Site", x.site || "–"], ["Electricity", Number.isFinite(num(x.electricity_usd_kwh)) ? "$" + clean(num(x.electricity_usd_kwh)) + "/kWh" : "unknown", { id: "profit-price" }],
        ["Gain", usd(x.gain_usd_day) + "/day"], ["Switch cost", usd(x.switch_cost_usd)], ["Dwell", dur(x.dwell_seconds)],
        x.pinned ? ["Pinned to", x.pinned] : null,
        (x.exclusions || []).length ? ["Excluded", x.exclusions.join(", ")] : null,
        ["Thresholds", pct(po.relative_threshold) + " % and " + usd(po.absolute_threshold_usd_day) + "/day, dwell " + dur(po.min_dwell_seconds)],
        ["Decided", when(r.decided_unix_nano) + (r.command_id ? " · command " + r.command_id : "")],
        x.paused ? ["Paused", x.pause_reason || "yes"] : null,
      ]),
      el("h2", { text: "Ranked options" }),
      el("div", { class: "scroll" }, el("table", { id: "profit-options" },
        el("thead", {}, el("tr", {}, ...["#", "Option", "Algorithm", "Revenue", "Power", "Profit / day", "Note"].map((h) => el("th", { text: h })))),
        el("tbody", {}, ...opts.map((o, i) => {
          const notes = [];
          if (o.name === r.current) notes.push("current");
          if (o.name === r.best) notes.push("best");
          if (!o.allowed) notes.push("blocked: " + (o.blocked || "by a rule"));
          if (o.unpriced) notes.push("unpriced: " + o.unpriced);
          if (o.no_hashrate) notes.push("no hash rate for " + o.algorithm);
          return el("tr", { "data-option": o.name, class: o.name === r.current ? "picked" : null },
            el("td", { class: "num", text: i + 1 }), el("td", { text: o.name }), el("td", { text: o.algorithm }),
            el("td", { class: "num", text: usd(o.revenue_usd_day) }), el("td", { class: "num", text: usd(o.power_usd_day) }),
            el("td", { class: "num", text: usd(o.profit_usd_day) }), el("td", { class: "wrap", text: notes.join("; ") }));
        })))),
      (x.perf || []).length ? el("p", { class: "sub", text: "Figures: " + x.perf.map((p) => p.algorithm + " " + Q.fmtHash(num(p.hashrate)) + " at " + Q.fmtW(num(p.power_w)) + " (" + p.source + (p.borrowed_from ? " from " + p.borrowed_from : "") + ")").join("; ") }) : null);
  }
  function switchesCard() {
    return el("div", { class: "card", id: "profit-switches" }, el("h2", { text: "Switch history" }),
      table("profit-switch-table", ["When", "Action", "From", "To", "$/day", "Reason"]));
  }
  async function loadSwitches() {
    if (!st.rig) { fill("profit-switch-table", [], 6, "No switches."); return; }
    const r = await Q.rpc("ProfitService/ListSwitches", { rig: st.rig, limit: 50 });
    fill("profit-switch-table", (r.switches || []).slice().reverse().map((s) => el("tr", { "data-action": s.action },
      el("td", { text: when(s.time_unix_nano) }), el("td", { text: s.action + (s.dry_run ? " (dry run)" : "") }),
      el("td", { text: s.from || "–" }), el("td", { text: s.to || "–" }),
      el("td", { class: "num", text: usd(s.from_usd_day) + " → " + usd(s.to_usd_day) }),
      el("td", { class: "wrap", text: s.reason + (s.error ? " — not sent: " + s.error : "") }))), 6, "This rig has not been switched yet.");
  }

  // ---------- settings: the form's model ----------
  // The form edits a model of strings; save() turns it back into the
  // settings message, checking numbers at their fields first. What the
  // form does not show (rig profiles) is carried over unchanged.
  const list = (l) => (l || []).join(", ");
  const split = (s) => String(s || "").split(/[\s,]+/).filter(Boolean);
  const rulesModel = (r) => ({ pin: (r && r.pin) || "", coins: list(r && r.exclude_coins), pools: list(r && r.exclude_pools), algorithms: list(r && r.exclude_algorithms) });
  const daysText = (d) => (d || []).map((n) => dayNames[n] || String(n)).join(",");
  function toModel(s) {
    const p = s.policy || {};
    return {
      options: (s.options || []).map((o) => ({ flight_sheet: o.flight_sheet, coin: o.coin, algorithm: o.algorithm, pool: o.pool, pool_fee: pct(o.pool_fee),
        miner_fee: o.miner_fee === undefined || o.miner_fee === null ? "" : pct(o.miner_fee) })),
      default_site: s.default_site || "",
      sites: (s.sites || []).map((x) => ({ name: x.name, default_usd_kwh: String(num(x.default_usd_kwh)), timezone: x.timezone || "",
        rules: (x.rules || []).map((r) => ({ days: daysText(r.days), from: String(r.from_hour), to: String(r.to_hour), price: String(num(r.price_usd_kwh)) })) })),
      rules: rulesModel(s.rules),
      rigs: (s.rigs || []).map((r) => Object.assign({ rig: r.rig, site: r.site || "", profile: r.profile || [] }, rulesModel(r.rules))),
      policy: { relative: pct(p.relative_threshold), absolute: String(num(p.absolute_threshold_usd_day)), min_dwell: String(num(p.min_dwell_seconds)),
        downtime: String(num(p.switch_downtime_seconds)), curtail: String(num(p.curtail_below_usd_day)), smoothing: String(num(p.smoothing)) },
    };
  }
  // fromModel returns the settings message and the complaints, each
  // [field id, message].
  function fromModel(m) {
    const errs = [];
    const number = (id, text, opts) => {
      const t = String(text).trim();
      const v = Number(t);
      if (t === "" || !Number.isFinite(v)) { errs.push([id, "a number"]); return 0; }
      if (opts && opts.min !== undefined && v < opts.min) { errs.push([id, "at least " + opts.min]); return v; }
      if (opts && opts.max !== undefined && v > opts.max) { errs.push([id, "at most " + opts.max]); return v; }
      return v;
    };
    const rules = (r) => ({ pin: r.pin.trim(), exclude_coins: split(r.coins), exclude_pools: split(r.pools), exclude_algorithms: split(r.algorithms) });
    const out = { default_site: m.default_site, rules: rules(m.rules), options: [], sites: [], rigs: [] };
    m.options.forEach((o, i) => {
      const id = "profit-opt-" + i;
      if (!o.flight_sheet.trim()) errs.push([id + "-flight_sheet", "the stored flight sheet this option mines with"]);
      const po = { flight_sheet: o.flight_sheet.trim(), coin: o.coin.trim(), algorithm: o.algorithm.trim(), pool: o.pool.trim(),
        pool_fee: clean(number(id + "-pool_fee", o.pool_fee, { min: 0, max: 100 }) / 100) };
      if (String(o.miner_fee).trim() !== "") po.miner_fee = clean(number(id + "-miner_fee", o.miner_fee, { min: 0, max: 100 }) / 100);
      out.options.push(po);
    });
    const names = new Set();
    m.sites.forEach((s, i) => {
      const id = "profit-site-" + i;
      const name = s.name.trim();
      if (!name) errs.push([id + "-name", "a name"]);
      else if (names.has(name)) errs.push([id + "-name", "another site has this name"]);
      names.add(name);
      out.sites.push({ name, default_usd_kwh: number(id + "-default_usd_kwh", s.default_usd_kwh, { min: 0 }), timezone: s.timezone.trim(),
        rules: s.rules.map((r, j) => {
          const rid = id + "-rule-" + j;
          const days = split(r.days).map((d) => {
            const n = dayNames.indexOf(d.toLowerCase().slice(0, 3));
            if (n < 0) errs.push([rid + "-days", "days as sun, mon, … sat"]);
            return n;
          });
          const from = number(rid + "-from", r.from, { min: 0, max: 23 }), to = number(rid + "-to", r.to, { min: 0, max: 24 });
          if (Number.isFinite(from) && !Number.isInteger(from)) errs.push([rid + "-from", "a whole hour"]);
          if (Number.isFinite(to) && !Number.isInteger(to)) errs.push([rid + "-to", "a whole hour"]);
          return { days, from_hour: from, to_hour: to, price_usd_kwh: number(rid + "-price", r.price, { min: 0 }) };
        }) });
    });
    if (!m.default_site) errs.push(["profit-default-site", "pick the site rigs use unless told otherwise"]);
    m.rigs.forEach((r, i) => {
      if (!r.rig.trim()) errs.push(["profit-rig-" + i + "-rig", "the rig's name or id"]);
      out.rigs.push({ rig: r.rig.trim(), site: r.site, rules: rules(r), profile: r.profile });
    });
    const p = m.policy;
    out.policy = {
      relative_threshold: clean(number("profit-policy-relative", p.relative, { min: 0 }) / 100),
      absolute_threshold_usd_day: number("profit-policy-absolute", p.absolute, { min: 0 }),
      min_dwell_seconds: number("profit-policy-min_dwell", p.min_dwell, { min: 0 }),
      switch_downtime_seconds: number("profit-policy-downtime", p.downtime, { min: 0, max: 86400 }),
      curtail_below_usd_day: number("profit-policy-curtail", p.curtail),
      smoothing: number("profit-policy-smoothing", p.smoothing, { min: 0, max: 1 }),
    };
    return { settings: out, errs };
  }

  // ---------- settings: errors at their fields ----------
  function clearErrors() {
    const card = $("profit-settings");
    if (!card) return;
    for (const b of card.querySelectorAll(".invalid")) b.classList.remove("invalid");
    for (const e of card.querySelectorAll(".field-error")) e.textContent = "";
    result("profit-settings-result", true, "");
  }
  // showAt puts msg under the field or section with that id, or returns
  // false when the form has no such place.
  function showAt(id, msg) {
    const box = document.querySelector(`#profit-settings [data-field="${CSS.escape(id)}"]`);
    const e = box && box.querySelector(":scope > .field-error");
    if (!e) return false;
    box.classList.add("invalid");
    e.textContent = (e.textContent ? e.textContent + "; " : "") + msg;
    return true;
  }
  // placeOf maps one line of the server's validation message to the place
  // in the form it is about.
  function placeOf(line) {
    const m = st.model;
    const site = (name) => m.sites.findIndex((s) => s.name.trim() === name);
    let x;
    if ((x = line.match(/^profit\.options: (\d+)\b/)) || (x = line.match(/^option (\d+)\b/))) return "profit-opt-" + x[1];
    if ((x = line.match(/^profit\.sites: (.+?)\.timezone: /)) && site(x[1]) >= 0) return "profit-site-" + site(x[1]) + "-timezone";
    if ((x = line.match(/^profit\.sites: (.+?): tariff rule (\d+):/)) && site(x[1]) >= 0) return "profit-site-" + site(x[1]) + "-rule-" + x[2];
    if ((x = line.match(/^profit\.sites: (.+?): /)) && site(x[1]) >= 0) return "profit-site-" + site(x[1]);
    if ((x = line.match(/^site "(.+?)"/)) && site(x[1]) >= 0) return "profit-site-" + site(x[1]);
    if (/^profit\.default_site/.test(line)) return "profit-default-site";
    if ((x = line.match(/^profit\.rigs\.(.+?)\.(site|profile): /))) {
      const i = m.rigs.findIndex((r) => r.rig.trim() === x[1]);
      if (i >= 0) return "profit-rig-" + i + (x[2] === "site" ? "-site" : "");
    }
    if ((x = line.match(/^rig "(.+?)"/))) {
      const i = m.rigs.findIndex((r) => r.rig.trim() === x[1]);
      if (i >= 0) return "profit-rig-" + i;
    }
    if (/^(profit\.)?policy/.test(line)) return "profit-policy";
    if (/^profit\.sites/.test(line)) return "profit-sites";
    return "";
  }
  function showServerErrors(message) {
    const rest = [];
    for (let line of String(message).split("\n")) {
      line = line.replace(/^invalid profit settings: /, "");
      if (!line.trim()) continue;
      const at = placeOf(line);
      if (!at || !showAt(at, line)) rest.push(line);
    }
    result("profit-settings-result", false, rest.length ? rest.join("\n") : "Not saved: see the fields marked above.");
  }

  // ---------- settings: the form ----------
  function input(id, value, set, attrs) {
    const i = el("input", Object.assign({ type: "text", id, spellcheck: "false", autocomplete: "off" }, attrs || {}));
    i.value = value;
    i.addEventListener("input", () => set(i.value));
    return i;
  }
  function field(id, label, control, cls) {
    if (!control.id) control.id = id;
    return el("div", { class: "field" + (cls ? " " + cls : ""), "data-field": id }, el("label", { for: control.id, text: label }), control, el("div", { class: "field-error", role: "alert" }));
  }
  function small(text, act, attrs) {
    const b = el("button", Object.assign({ type: "button", class: "small", text }, attrs || {}));
    b.addEventListener("click", act);
    return b;
  }
  // group is a block of fields with its own error line, for complaints
  // about the block as a whole.
  const group = (id, title, ...kids) => el("div", { class: "group", "data-field": id, id }, title ? el("h3", { text: title }) : null, el("div", { class: "field-error", role: "alert" }), ...kids);
  const rerender = () => renderForm();

  function optionsBlock(m) {
    return group("profit-options-edit", "Options",
      ...m.options.map((o, i) => {
        const id = "profit-opt-" + i;
        const set = (k) => (v) => { o[k] = v; };
        return group(id, "", el("div", { class: "form" },
          field(id + "-flight_sheet", "Flight sheet", input(id + "-flight_sheet", o.flight_sheet, set("flight_sheet"), { list: "profit-sheets", maxlength: "128" })),
          field(id + "-coin", "Coin (default: the sheet's)", input(id + "-coin", o.coin, set("coin"), { maxlength: "128" })),
          field(id + "-algorithm", "Algorithm (default: the sheet's)", input(id + "-algorithm", o.algorithm, set("algorithm"), { maxlength: "128" })),
          field(id + "-pool", "Pool (default: the sheet's first)", input(id + "-pool", o.pool, set("pool"), { maxlength: "128" })),
          field(id + "-pool_fee", "Pool fee (%)", input(id + "-pool_fee", o.pool_fee, set("pool_fee"), { inputmode: "decimal" })),
          field(id + "-miner_fee", "Miner fee (%, empty: the miner's own)", input(id + "-miner_fee", o.miner_fee, set("miner_fee"), { inputmode: "decimal" })),
          el("div", { class: "field" }, el("label", { text: "\u00a0" }), small("Remove option", () => { m.options.splice(i, 1); rerender(); }, { class: "small danger", id: id + "-remove" }))));
      }),
      small("Add option", () => { m.options.push({ flight_sheet: "", coin: "", algorithm: "", pool: "", pool_fee: "1", miner_fee: "" }); rerender(); }, { id: "profit-add-option" }));
  }
  function sitesBlock(m) {
    const def = el("select", { id: "profit-default-site" });
    const names = m.sites.map((s) => s.name).filter(Boolean);
    if (m.default_site && !names.includes(m.default_site)) names.unshift(m.default_site);
    def.replaceChildren(...names.map((n) => el("option", { value: n, text: n })));
    def.value = m.default_site;
    def.addEventListener("change", () => { m.default_site = def.value; });
    return group("profit-sites", "Sites and electricity",
      el("div", { class: "form" }, field("profit-default-site", "Default site", def)),
      ...m.sites.map((s, i) => {
        const id = "profit-site-" + i;
        return group(id, "", el("div", { class: "form" },
          field(id + "-name", "Site", input(id + "-name", s.name, (v) => { s.name = v; }, { maxlength: "128", "data-site": s.name })),
          field(id + "-default_usd_kwh", "Price ($/kWh)", input(id + "-default_usd_kwh", s.default_usd_kwh, (v) => { s.default_usd_kwh = v; }, { inputmode: "decimal" })),
          field(id + "-timezone", "Time zone (IANA, empty: UTC)", input(id + "-timezone", s.timezone, (v) => { s.timezone = v; }, { maxlength: "128", placeholder: "Europe/Berlin" }))),
        el("p", { class: "sub", text: "Time-of-use prices, in the site's local hours; the first rule covering an hour wins, 22–6 crosses midnight." }),
        ...s.rules.map((r, j) => {
          const rid = id + "-rule-" + j;
          return group(rid, "", el("div", { class: "rule" },
            field(rid + "-days", "Days (empty: every day)", input(rid + "-days", r.days, (v) => { r.days = v; }, { placeholder: "sat,sun" })),
            field(rid + "-from", "From hour", input(rid + "-from", r.from, (v) => { r.from = v; }, { inputmode: "numeric" })),
            field(rid + "-to", "To hour", input(rid + "-to", r.to, (v) => { r.to = v; }, { inputmode: "numeric" })),
            field(rid + "-price", "$/kWh", input(rid + "-price", r.price, (v) => { r.price = v; }, { inputmode: "decimal" })),
            el("div", { class: "field" }, el("label", { text: "\u00a0" }), small("Remove", () => { s.rules.splice(j, 1); rerender(); }, { class: "small danger", id: rid + "-remove" }))));
        }),
        el("div", { class: "toolbar" },
          small("Add tariff rule", () => { s.rules.push({ days: "", from: "0", to: "24", price: s.default_usd_kwh }); rerender(); }, { id: id + "-add-rule" }),
          small("Remove site", () => { m.sites.splice(i, 1); rerender(); }, { class: "small danger", id: id + "-remove" })));
      }),
      small("Add site", () => { m.sites.push({ name: "", default_usd_kwh: "0", timezone: "", rules: [] }); rerender(); }, { id: "profit-add-site" }));
  }
  function rulesFields(id, r) {
    return [
      field(id + "-pin", "Pinned coin", input(id + "-pin", r.pin, (v) => { r.pin = v; }, { maxlength: "128" })),
      field(id + "-coins", "Excluded coins", input(id + "-coins", r.coins, (v) => { r.coins = v; }, { placeholder: "rvn, erg" })),
      field(id + "-pools", "Excluded pools", input(id + "-pools", r.pools, (v) => { r.pools = v; })),
      field(id + "-algorithms", "Excluded algorithms", input(id + "-algorithms", r.algorithms, (v) => { r.algorithms = v; })),
    ];
  }
  function rigsBlock(m) {
    return group("profit-rigs-edit", "Pins and exclusions",
      group("profit-rules", "Whole fleet", el("div", { class: "form" }, ...rulesFields("profit-rules", m.rules))),
      ...m.rigs.map((r, i) => {
        const id = "profit-rig-" + i;
        const site = el("select", { id: id + "-site" });
        const names = [""].concat(m.sites.map((s) => s.name).filter(Boolean));
        if (r.site && !names.includes(r.site)) names.push(r.site);
        site.replaceChildren(...names.map((n) => el("option", { value: n, text: n || "(the rig's site label, else the default)" })));
        site.value = r.site;
        site.addEventListener("change", () => { r.site = site.value; });
        return group(id, "", el("div", { class: "form" },
          field(id + "-rig", "Rig (name or id)", input(id + "-rig", r.rig, (v) => { r.rig = v; }, { maxlength: "128", list: "profit-rig-names" })),
          field(id + "-site", "Site", site),
          ...rulesFields(id, r),
          el("div", { class: "field" }, el("label", { text: "\u00a0" }), small("Remove rig", () => { m.rigs.splice(i, 1); rerender(); }, { class: "small danger", id: id + "-remove" }))),
        r.profile.length ? el("p", { class: "sub", text: "Profile (kept): " + r.profile.map((p) => p.algorithm + " " + Q.fmtHash(num(p.hashrate)) + " at " + Q.fmtW(num(p.power_w))).join("; ") }) : null);
      }),
      small("Add rig", () => { m.rigs.push({ rig: "", site: "", profile: [], pin: "", coins: "", pools: "", algorithms: "" }); rerender(); }, { id: "profit-add-rig" }));
  }
  function policyBlock(m) {
    const p = m.policy;
    const f = (k, label) => field("profit-policy-" + k, label, input("profit-policy-" + k, p[k], (v) => { p[k] = v; }, { inputmode: "decimal" }));
    return group("profit-policy", "Policy", el("div", { class: "form" },
      f("relative", "Switch when the gain is at least (%)"), f("absolute", "… and at least ($/day)"),
      f("min_dwell", "Minimum dwell (s)"), f("downtime", "Switch downtime (s)"),
      f("curtail", "Stop mining below ($/day)"), f("smoothing", "Smoothing (0–1]")));
  }
  function renderForm() {
    const m = st.model;
    const form = el("form", { id: "profit-settings-form", novalidate: true },
      optionsBlock(m), sitesBlock(m), rigsBlock(m), policyBlock(m),
      el("div", { class: "toolbar" }, el("button", { type: "submit", id: "profit-save", text: "Save settings" }),
        el("button", { type: "button", id: "profit-discard", class: "danger", text: "Discard changes" })));
    form.addEventListener("submit", (ev) => { ev.preventDefault(); save(); });
    form.querySelector("#profit-discard").addEventListener("click", () => loadSettings());
    $("profit-settings-body").replaceChildren(form,
      el("datalist", { id: "profit-sheets" }, ...st.sheets.map((n) => el("option", { value: n }))),
      el("datalist", { id: "profit-rig-names" }, ...st.rows.map((r) => el("option", { value: r.rig_name || r.rig_id }))));
  }
  // renderView shows the settings to those who may not change them.
  function renderView(s) {
    const p = s.policy || {};
    const rulesText = (r) => [r && r.pin ? "pinned to " + r.pin : "", r && (r.exclude_coins || []).length ? "no coins " + r.exclude_coins.join(", ") : "",
      r && (r.exclude_pools || []).length ? "no pools " + r.exclude_pools.join(", ") : "", r && (r.exclude_algorithms || []).length ? "no algorithms " + r.exclude_algorithms.join(", ") : ""].filter(Boolean).join("; ") || "none";
    const tariff = (x) => (x.rules || []).map((r) => (r.days && r.days.length ? daysText(r.days) + ":" : "") + r.from_hour + "-" + r.to_hour + "=$" + clean(num(r.price_usd_kwh))).join(", ") || "none";
    const opt = table("profit-view-options", ["Flight sheet", "Coin", "Algorithm", "Pool", "Pool fee", "Miner fee"]);
    opt.querySelector("tbody").replaceChildren(...(s.options || []).map((o) => el("tr", {}, el("td", { text: o.flight_sheet }), el("td", { text: o.coin || "(sheet's)" }),
      el("td", { text: o.algorithm || "(sheet's)" }), el("td", { text: o.pool || "(sheet's)" }), el("td", { class: "num", text: pct(o.pool_fee) + " %" }),
      el("td", { class: "num", text: o.miner_fee === undefined || o.miner_fee === null ? "miner's own" : pct(o.miner_fee) + " %" }))));
    const sites = table("profit-view-sites", ["Site", "Price", "Time zone", "Time of use"]);
    sites.querySelector("tbody").replaceChildren(...(s.sites || []).map((x) => el("tr", { "data-site": x.name }, el("td", { text: x.name + (x.name === s.default_site ? " (default)" : "") }),
      el("td", { class: "num", text: "$" + clean(num(x.default_usd_kwh)) + "/kWh" }), el("td", { text: x.timezone || "UTC" }), el("td", { class: "wrap", text: tariff(x) }))));
    const rigs = table("profit-view-rigs", ["Rig", "Site", "Rules"]);
    rigs.querySelector("tbody").replaceChildren(...(s.rigs || []).map((r) => el("tr", {}, el("td", { text: r.rig }), el("td", { text: r.site || "–" }), el("td", { class: "wrap", text: rulesText(r.rules) }))));
    $("profit-settings-body").replaceChildren(
      el("h3", { text: "Options" }), opt, el("h3", { text: "Sites and electricity" }), el("p", { class: "sub", text: "Default site: " + (s.default_site || "–") }), sites,
      el("h3", { text: "Pins and exclusions" }), el("p", { text: "Whole fleet: " + rulesText(s.rules) }), rigs,
      el("h3", { text: "Policy" }), kv([["Relative threshold", pct(p.relative_threshold) + " %"], ["Absolute threshold", usd(p.absolute_threshold_usd_day) + "/day"],
        ["Minimum dwell", dur(p.min_dwell_seconds)], ["Switch downtime", dur(p.switch_downtime_seconds)], ["Stop below", usd(p.curtail_below_usd_day) + "/day"], ["Smoothing", String(num(p.smoothing))]]));
  }
  function settingsCard() {
    return el("div", { class: "card", id: "profit-settings" }, el("h2", { text: "Settings" }),
      el("p", { id: "profit-version", class: "sub" }), el("p", { id: "profit-settings-result", role: "status" }),
      el("div", { id: "profit-settings-body" }, el("p", { class: "sub", text: "Loading…" })));
  }
  async function loadSettings() {
    let r;
    try { r = await Q.rpc("ProfitService/GetProfitSettings"); } catch (e) { $("profit-settings-body").replaceChildren(el("p", { class: "result-bad", text: e.message })); return; }
    st.current = r;
    const v = r.version || {};
    const vt = $("profit-version");
    vt.dataset.version = v.version;
    vt.textContent = "Version " + v.version + " by " + (v.author || "unknown") + ", " + when(v.time_unix_nano) + (r.origin ? " · " + r.origin : "");
    if (Q.can("ProfitService/UpdateProfitSettings")) {
      st.model = toModel(r.settings || {});
      renderForm();
    } else {
      st.model = null;
      renderView(r.settings || {});
    }
    await loadVersions();
  }
  async function save() {
    clearErrors();
    const { settings, errs } = fromModel(st.model);
    for (const [id, msg] of errs) if (!showAt(id, msg)) result("profit-settings-result", false, msg);
    if (errs.length) { if (!$("profit-settings-result").textContent) result("profit-settings-result", false, "Not saved: see the fields marked above."); return; }
    const btn = $("profit-save");
    btn.disabled = true;
    try {
      const r = await Q.rpc("ProfitService/UpdateProfitSettings", { base_version: st.current.version.version, settings });
      await loadSettings();
      result("profit-settings-result", true, "Stored version " + r.version.version + ": " + r.version.summary + ". The switcher uses it from its next tick.");
      refreshDecisions();
    } catch (e) {
      btn.disabled = false;
      if (e.status === 409) {
        await loadSettings();
        result("profit-settings-result", false, "Not saved: someone else changed the settings while you were editing (" + e.message + "). The settings now in force are shown; make your change again.");
      } else if (e.status === 400) showServerErrors(e.message);
      else result("profit-settings-result", false, "Not saved: " + e.message);
    }
  }

  // ---------- versions ----------
  function versionsCard() {
    return el("div", { class: "card", id: "profit-versions" }, el("h2", { text: "Versions" }), el("p", { id: "profit-versions-result", role: "status" }),
      table("profit-version-table", ["Version", "Who", "When", "What changed", ""]));
  }
  async function loadVersions() {
    const r = await Q.rpc("ProfitService/ListProfitSettingsVersions", { limit: 50 });
    const cur = st.current && st.current.version ? st.current.version.version : "";
    const canRestore = Q.can("ProfitService/RestoreProfitSettings");
    fill("profit-version-table", (r.versions || []).map((v) => {
      let act = null;
      if (canRestore && v.version !== cur) {
        act = el("button", { type: "button", class: "small", "data-restore": v.version, text: "Restore" });
        act.addEventListener("click", async () => {
          act.disabled = true;
          try {
            const x = await Q.rpc("ProfitService/RestoreProfitSettings", { version: v.version, base_version: cur });
            await loadSettings();
            result("profit-versions-result", true, "Stored version " + x.version.version + ": " + x.version.summary + ".");
            refreshDecisions();
          } catch (e) {
            if (e.status === 409) await loadSettings();
            result("profit-versions-result", false, "Not restored: " + e.message);
          }
        });
      }
      return el("tr", { "data-version": v.version, class: v.version === cur ? "picked" : null },
        el("td", { class: "num", text: v.version + (v.version === cur ? " (in force)" : "") }), el("td", { text: v.author || "–" }),
        el("td", { text: when(v.time_unix_nano) }), el("td", { class: "wrap", text: v.summary || (v.seed ? "seeded from the config file" : "–") }), el("td", {}, act));
    }), 5, "No versions stored.");
  }

  // ---------- page ----------
  async function refreshDecisions() {
    let l = null;
    try {
      l = await Q.rpc("ProfitService/ListProfit");
      const rows = l.rows || [];
      // A rig given by name is shown under its id from then on.
      const byName = rows.find((r) => r.rig_name === st.rig && !rows.some((x) => x.rig_id === st.rig));
      if (byName) st.rig = byName.rig_id;
      if (!st.rig && rows.length) st.rig = rows[0].rig_id;
      fillRigs(l);
    } catch (e) { result("profit-result", false, e.message); }
    const res = await Promise.allSettled([loadMarket(l), loadExplain(), loadSwitches()]);
    const failed = res.find((x) => x.status === "rejected");
    if (failed) result("profit-result", false, failed.reason.message);
  }
  async function show(arg) {
    const gen = ++st.gen;
    st.rig = arg || "";
    sec().replaceChildren(el("h1", { text: "Profit" }), el("p", { id: "profit-result", role: "status" }),
      el("div", { class: "profit-top" }, marketCard(), explainCard()), rigsCard(), switchesCard(), settingsCard(), versionsCard());
    try { st.sheets = (await Q.rpc("MinerService/ListFlightSheets")).sheets.map((s) => s.name).sort(); } catch (_) { st.sheets = []; }
    await refreshDecisions();
    await loadSettings();
    // Decisions, switches and the market follow the switcher while the
    // page is shown; the settings form is left alone so edits survive.
    const poll = async () => {
      if (gen !== st.gen || sec().hidden) return;
      await refreshDecisions().catch(() => {});
      setTimeout(poll, 3000);
    };
    setTimeout(poll, 3000);
  }
  Q.registerPage("profit", "Profit", show);
})();
