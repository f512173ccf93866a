// Overclock profiles: create, edit, delete, apply to a rig and clear,
// with each of the rig's cards' allowed ranges shown and values outside
// them refused here before anything is sent. The server checks again
// against the same reported limits, and the rig against the card.
"use strict";
(function () {
  const Q = window.Quarry;
  const el = Q.el;
  const sec = document.getElementById("page-overclock");
  const st = { profiles: [], rig: null, editing: null, poll: null };

  function field(name, label, input, hint) {
    if (!input.id) input.id = "oc-f-" + name.replace(/[^a-z0-9]+/gi, "-");
    input.name = name;
    return el("div", { class: "field", "data-field": name },
      el("label", { for: input.id, text: label }), input,
      el("span", { class: "sub hint", text: hint || "" }),
      el("div", { class: "field-error", role: "alert" }));
  }
  function input(attrs) { return el("input", Object.assign({ type: "text", autocomplete: "off", spellcheck: "false" }, attrs)); }
  function num(attrs) { return input(Object.assign({ inputmode: "numeric" }, attrs)); }
  const fieldRe = /^(name|match(?:\.[a-z_]+)?|power_limit_w|gpu_clock_mhz|mem_clock_mhz|fan_percent|settings): (.+)$/;
  function markField(form, name, msg) {
    const box = form.querySelector(`[data-field="${CSS.escape(name)}"]`) || form.querySelector(`[data-field^="${CSS.escape(name)}"]`);
    if (!box) return false;
    box.classList.add("invalid");
    const e = box.querySelector(".field-error");
    e.textContent = (e.textContent ? e.textContent + "; " : "") + msg;
    return true;
  }
  function showErrors(form, general, message) {
    const rest = [];
    for (const line of String(message).split("\n")) {
      const m = line.match(fieldRe);
      if (!(m && markField(form, m[1] === "settings" ? "power_limit_w" : m[1], m[2]))) rest.push(line);
    }
    general.textContent = rest.join("\n");
  }
  function clearErrors(form, general) {
    for (const b of form.querySelectorAll(".field.invalid")) b.classList.remove("invalid");
    for (const e of form.querySelectorAll(".field-error")) e.textContent = "";
    general.textContent = "";
  }
  const range = (lo, hi, unit) => (lo === undefined || lo === null || hi === undefined || hi === null ? "not adjustable" : Math.round(lo) + "–" + Math.round(hi) + " " + unit);
  function summary(p) {
    const m = p.match || {};
    const parts = [];
    if (m.model) parts.push(m.model);
    if (m.index && m.index.length) parts.push("GPU " + m.index.join(", "));
    if (m.bus_id && m.bus_id.length) parts.push("bus " + m.bus_id.join(", "));
    if (m.uuid && m.uuid.length) parts.push(m.uuid.length + " UUID(s)");
    return parts.join(" · ");
  }
  const clock = (r) => (r ? r.min + "–" + r.max + " MHz" : "–");
  const has = (v) => v !== undefined && v !== null;

  // ---------- layout ----------
  const rigCard = el("div", { class: "card", id: "oc-rig-card" },
    el("h2", { text: "Rig" }),
    el("form", { id: "oc-rig-form", class: "toolbar" },
      input({ id: "oc-rig", list: "oc-rigs", placeholder: "rig name or id", "aria-label": "rig" }),
      el("button", { type: "submit", text: "Show cards" })),
    el("datalist", { id: "oc-rigs" }),
    el("p", { id: "oc-rig-error", class: "error", role: "alert" }),
    el("div", { class: "scroll" }, el("table", { id: "oc-cards", hidden: true },
      el("thead", {}, el("tr", {}, ...["#", "Model", "Power limit", "Allowed power", "Core max", "Memory max", "Fans", "Profile"].map((h) => el("th", { text: h })))),
      el("tbody"))),
    el("div", { id: "oc-apply-box", hidden: true },
      el("h2", { text: "Apply profiles" }),
      el("p", { class: "sub", text: "The ticked profiles become the rig's profile file: the cards they match get them, every other card goes back to its defaults." }),
      el("div", { id: "oc-apply-list", class: "toolbar" }),
      el("p", { id: "oc-apply-error", class: "error", role: "alert" }),
      el("div", { class: "toolbar" },
        el("button", { type: "button", id: "oc-apply", text: "Apply" }),
        el("button", { type: "button", id: "oc-clear", text: "Clear overclock" })),
      el("p", { id: "oc-result", class: "sub", role: "status" })));
  const listCard = el("div", { class: "card" },
    el("div", { class: "toolbar" }, el("h2", { text: "Overclock profiles" }), el("span", { class: "spacer" }),
      el("button", { type: "button", id: "oc-new", text: "New profile" })),
    el("p", { id: "oc-list-error", class: "error", role: "alert" }),
    el("div", { class: "scroll" }, el("table", { id: "oc-table" },
      el("thead", {}, el("tr", {}, ...["Name", "Cards", "Power", "Core clock", "Memory clock", "Fan", ""].map((h) => el("th", { text: h })))),
      el("tbody"))),
    el("p", { id: "oc-empty", class: "sub", text: "No overclock profiles yet.", hidden: true }));
  const editor = el("div", { class: "card", id: "oc-editor", hidden: true });
  sec.append(rigCard, listCard, editor);

  // ---------- rig and its cards ----------
  async function loadRigNames() {
    try {
      const ov = await Q.api("/api/overview?sort=name&limit=500");
      document.getElementById("oc-rigs").replaceChildren(...ov.rigs.map((r) => el("option", { value: r.name })));
    } catch (_) { /* the field still takes a typed name */ }
  }
  async function loadRig(name, keepResult) {
    const err = document.getElementById("oc-rig-error");
    err.textContent = "";
    if (!keepResult) document.getElementById("oc-result").textContent = "";
    if (!name) { st.rig = null; renderRig(); return; }
    try {
      st.rig = await Q.api("/api/rigs/" + encodeURIComponent(name));
    } catch (e) { err.textContent = e.message; st.rig = null; }
    renderRig();
  }
  function renderRig() {
    const r = st.rig;
    const table = document.getElementById("oc-cards");
    table.hidden = !r;
    document.getElementById("oc-apply-box").hidden = !r || !(Q.can("OverclockService/ApplyOverclock") || Q.can("OverclockService/ClearOverclock"));
    if (!r) return;
    if (!r.gpus.length) document.getElementById("oc-rig-error").textContent = (r.name || r.id) + " reports no GPUs: there is nothing to overclock.";
    table.querySelector("tbody").replaceChildren(...r.gpus.map((g) => el("tr", { "data-gpu": String(g.index) },
      el("td", { text: g.index }), el("td", { text: g.name }),
      el("td", { class: "num", text: has(g.power_limit_w) ? Math.round(g.power_limit_w) + " W" : "–" }),
      el("td", { class: "num allowed-power", text: range(g.power_limit_min_w, g.power_limit_max_w, "W") }),
      el("td", { class: "num", text: has(g.core_max_mhz) ? "≤ " + g.core_max_mhz + " MHz" : "not reported" }),
      el("td", { class: "num", text: has(g.mem_max_mhz) ? "≤ " + g.mem_max_mhz + " MHz" : "not reported" }),
      el("td", { class: "num", text: g.fan_percent && g.fan_percent.length ? g.fan_percent.length + " (0–100%)" : "none" }),
      el("td", { text: g.oc_profile || "defaults" }))));
    document.getElementById("oc-apply").hidden = !Q.can("OverclockService/ApplyOverclock");
    document.getElementById("oc-clear").hidden = !Q.can("OverclockService/ClearOverclock");
    renderApplyList();
    if (!editor.hidden) showHints(editor.querySelector("form"));
  }
  document.getElementById("oc-rig-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const name = document.getElementById("oc-rig").value.trim();
    history.replaceState(null, "", "#/overclock" + (name ? "/" + encodeURIComponent(name) : ""));
    loadRig(name);
  });

  // matches picks the profile for a card as the agent does: uuid, then
  // bus id, then index, then model.
  function rank(p, g) {
    const m = p.match || {};
    if ((m.uuid || []).includes(g.uuid)) return 4;
    const bus = (s) => String(s || "").toLowerCase().replace(/^0000(0000)?:/, "");
    if (g.bus_id && (m.bus_id || []).some((b) => bus(b) === bus(g.bus_id))) return 3;
    if ((m.index || []).includes(g.index)) return 2;
    if (m.model && m.model === g.name) return 1;
    return 0;
  }
  // violations lists, per field, what profile p asks of the rig's cards
  // that they do not allow.
  function violations(p, gpus) {
    const out = [];
    for (const g of gpus) {
      if (g.lost || rank(p, g) === 0) continue;
      const card = "GPU " + g.index + " (" + g.name + ")";
      if (has(p.power_limit_w)) {
        if (!has(g.power_limit_min_w) || !has(g.power_limit_max_w)) out.push(["power_limit_w", card + " has no adjustable power limit"]);
        else if (p.power_limit_w < g.power_limit_min_w || p.power_limit_w > g.power_limit_max_w) out.push(["power_limit_w", card + " allows " + range(g.power_limit_min_w, g.power_limit_max_w, "W")]);
      }
      for (const [k, max] of [["gpu_clock_mhz", g.core_max_mhz], ["mem_clock_mhz", g.mem_max_mhz]]) {
        if (!p[k]) continue;
        if (!has(max)) out.push([k, card + " reports no clock limit"]);
        else if (p[k].max > max) out.push([k, card + " allows at most " + max + " MHz"]);
      }
      if (has(p.fan_percent) && !(g.fan_percent && g.fan_percent.length)) out.push(["fan_percent", card + " has no fan"]);
    }
    return out;
  }

  // ---------- profiles ----------
  async function loadProfiles() {
    try {
      const r = await Q.rpc("OverclockService/ListOverclockProfiles");
      st.profiles = (r.profiles || []).sort((a, b) => a.name.localeCompare(b.name));
      document.getElementById("oc-list-error").textContent = "";
    } catch (e) { document.getElementById("oc-list-error").textContent = e.message; st.profiles = []; }
    renderProfiles();
  }
  function renderProfiles() {
    const canPut = Q.can("OverclockService/PutOverclockProfile"), canDel = Q.can("OverclockService/DeleteOverclockProfile");
    document.getElementById("oc-new").hidden = !canPut;
    document.getElementById("oc-empty").hidden = st.profiles.length > 0;
    sec.querySelector("#oc-table tbody").replaceChildren(...st.profiles.map((p) => el("tr", { "data-profile": p.name },
      el("td", { text: p.name }), el("td", { text: summary(p) }),
      el("td", { class: "num", text: has(p.power_limit_w) ? p.power_limit_w + " W" : "–" }),
      el("td", { class: "num", text: clock(p.gpu_clock_mhz) }), el("td", { class: "num", text: clock(p.mem_clock_mhz) }),
      el("td", { class: "num", text: has(p.fan_percent) ? p.fan_percent + "%" : "–" }),
      el("td", {}, el("span", { class: "actions" },
        canPut ? el("button", { type: "button", "data-act": "edit", text: "Edit" }) : null,
        canDel ? el("button", { type: "button", "data-act": "delete", text: "Delete" }) : null)))));
    renderApplyList();
  }
  function renderApplyList() {
    const box = document.getElementById("oc-apply-list");
    const ticked = new Set([...box.querySelectorAll("input:checked")].map((c) => c.value));
    box.replaceChildren(...st.profiles.map((p) => el("label", {},
      el("input", { type: "checkbox", value: p.name, checked: ticked.has(p.name) }), " " + p.name)));
    if (!st.profiles.length) box.append(el("span", { class: "sub", text: "Store a profile first." }));
  }
  sec.querySelector("#oc-table").addEventListener("click", async (ev) => {
    const b = ev.target.closest("button[data-act]");
    if (!b) return;
    const name = b.closest("tr").dataset.profile;
    if (b.dataset.act === "edit") openEditor(st.profiles.find((p) => p.name === name));
    else if (b.dataset.act === "delete") {
      if (!window.confirm("Delete overclock profile " + name + "? Rigs running it keep their settings.")) return;
      try { await Q.rpc("OverclockService/DeleteOverclockProfile", { name }); loadProfiles(); } catch (e) { document.getElementById("oc-list-error").textContent = e.message; }
    }
  });
  document.getElementById("oc-new").addEventListener("click", () => openEditor(null));

  function openEditor(p) {
    p = p || { name: "", match: { model: "", index: [], bus_id: [], uuid: [] } };
    const m = p.match || {};
    st.editing = p.name || null;
    const models = st.rig ? [...new Set(st.rig.gpus.map((g) => g.name))] : [];
    const general = el("p", { id: "oc-form-error", class: "error", role: "alert" });
    const form = el("form", { id: "oc-form", novalidate: true },
      el("div", { class: "form" },
        field("name", "Name", input({ value: p.name, readonly: !!p.name || null, maxlength: "64" })),
        field("match.model", "Card model", input({ value: m.model || "", list: "oc-models", placeholder: "NVIDIA GeForce RTX 3070" })),
        field("match.index", "GPU indexes", input({ value: (m.index || []).join(", "), placeholder: "0, 1" })),
        field("match.bus_id", "Bus ids", input({ value: (m.bus_id || []).join(", "), placeholder: "0000:01:00.0" })),
        field("match.uuid", "UUIDs", input({ value: (m.uuid || []).join(", ") })),
        field("power_limit_w", "Power limit (W)", num({ value: has(p.power_limit_w) ? String(p.power_limit_w) : "" })),
        field("gpu_clock_mhz.min", "Core clock min (MHz)", num({ value: p.gpu_clock_mhz ? String(p.gpu_clock_mhz.min) : "" })),
        field("gpu_clock_mhz", "Core clock max (MHz)", num({ value: p.gpu_clock_mhz ? String(p.gpu_clock_mhz.max) : "" })),
        field("mem_clock_mhz.min", "Memory clock min (MHz)", num({ value: p.mem_clock_mhz ? String(p.mem_clock_mhz.min) : "" })),
        field("mem_clock_mhz", "Memory clock max (MHz)", num({ value: p.mem_clock_mhz ? String(p.mem_clock_mhz.max) : "" })),
        field("fan_percent", "Fan (%)", num({ value: has(p.fan_percent) ? String(p.fan_percent) : "" }))),
      el("datalist", { id: "oc-models" }, ...models.map((x) => el("option", { value: x }))),
      el("p", { class: "sub", id: "oc-form-rig", text: "" }),
      general,
      el("div", { class: "toolbar" },
        el("button", { type: "submit", id: "oc-save", text: "Save" }),
        st.rig && Q.can("OverclockService/ApplyOverclock") ? el("button", { type: "button", id: "oc-save-apply", text: "Save and apply to " + (st.rig.name || st.rig.id) }) : null,
        el("button", { type: "button", id: "oc-cancel", class: "link", text: "Cancel" })));
    editor.replaceChildren(el("h2", { text: p.name ? "Edit " + p.name : "New overclock profile" }), form);
    editor.hidden = false;
    showHints(form);
    for (const x of form.querySelectorAll("input")) x.addEventListener("input", () => showHints(form));
    form.querySelector("#oc-cancel").addEventListener("click", () => { editor.hidden = true; });
    form.addEventListener("submit", (ev) => { ev.preventDefault(); save(form, general, false); });
    const sa = form.querySelector("#oc-save-apply");
    if (sa) sa.addEventListener("click", () => save(form, general, true));
    editor.scrollIntoView({ block: "start" });
  }
  // showHints writes, under each setting, what the rig's matching cards
  // allow, so the range is in view while typing.
  function showHints(form) {
    const note = form.querySelector("#oc-form-rig");
    const hint = (n, t) => { const h = form.querySelector(`[data-field="${n}"] .hint`); if (h) h.textContent = t; };
    if (!st.rig) {
      note.textContent = "Pick a rig above to see its cards' allowed ranges; the rig checks them when the profile is applied.";
      for (const n of ["power_limit_w", "gpu_clock_mhz", "mem_clock_mhz", "fan_percent"]) hint(n, "");
      return;
    }
    const p = readForm(form).profile;
    const cards = st.rig.gpus.filter((g) => !g.lost && rank(p, g) > 0);
    note.textContent = cards.length ? "On " + (st.rig.name || st.rig.id) + " this profile matches GPU " + cards.map((g) => g.index).join(", ") + "." : "On " + (st.rig.name || st.rig.id) + " this profile matches no card.";
    const join = (f) => cards.map((g) => "GPU " + g.index + ": " + f(g)).join("; ");
    hint("power_limit_w", cards.length ? "Allowed " + join((g) => range(g.power_limit_min_w, g.power_limit_max_w, "W")) : "");
    hint("gpu_clock_mhz", cards.length ? "Allowed " + join((g) => (has(g.core_max_mhz) ? "≤ " + g.core_max_mhz + " MHz" : "not reported")) : "");
    hint("mem_clock_mhz", cards.length ? "Allowed " + join((g) => (has(g.mem_max_mhz) ? "≤ " + g.mem_max_mhz + " MHz" : "not reported")) : "");
    hint("fan_percent", cards.length ? "0–100%" : "");
  }
  function readForm(form) {
    const v = (n) => form.querySelector(`[name="${n}"]`).value.trim();
    const list = (n) => v(n).split(",").map((s) => s.trim()).filter(Boolean);
    const errs = [];
    const int = (n) => {
      const s = v(n);
      if (s === "") return undefined;
      if (!/^\d+$/.test(s)) { errs.push([n, "a whole number"]); return undefined; }
      return Number(s);
    };
    const p = { name: v("name"), match: { model: v("match.model"), index: [], bus_id: list("match.bus_id"), uuid: list("match.uuid") } };
    for (const s of list("match.index")) {
      if (/^\d+$/.test(s)) p.match.index.push(Number(s)); else errs.push(["match.index", "indexes are whole numbers: " + s]);
    }
    const pw = int("power_limit_w"), fan = int("fan_percent");
    if (pw !== undefined) p.power_limit_w = pw;
    if (fan !== undefined) p.fan_percent = fan;
    for (const k of ["gpu_clock_mhz", "mem_clock_mhz"]) {
      const lo = int(k + ".min"), hi = int(k);
      if (lo === undefined && hi === undefined) continue;
      if (lo === undefined || hi === undefined) { errs.push([k, "give both the minimum and the maximum"]); continue; }
      p[k] = { min: lo, max: hi };
    }
    return { profile: p, errs };
  }
  // check refuses here what the server would: required fields, shapes,
  // and values outside what the selected rig's cards allow.
  function check(form, p, errs) {
    for (const [n, msg] of errs) markField(form, n, msg);
    let ok = errs.length === 0;
    const bad = (n, msg) => { markField(form, n, msg); ok = false; };
    if (!p.name) bad("name", "is required");
    else if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(p.name)) bad("name", "letters, digits, '.', '_' or '-', starting with a letter or digit");
    const m = p.match;
    if (!m.model && !m.index.length && !m.bus_id.length && !m.uuid.length) bad("match.model", "pick the cards: a model, GPU indexes, bus ids or UUIDs");
    if (has(p.power_limit_w) && p.power_limit_w <= 0) bad("power_limit_w", "must be positive");
    if (has(p.fan_percent) && p.fan_percent > 100) bad("fan_percent", "0 to 100");
    for (const k of ["gpu_clock_mhz", "mem_clock_mhz"]) if (p[k] && (p[k].min <= 0 || p[k].max < p[k].min)) bad(k, "want 0 < min ≤ max");
    if (!has(p.power_limit_w) && !p.gpu_clock_mhz && !p.mem_clock_mhz && !has(p.fan_percent)) bad("power_limit_w", "set at least one of power, clocks or fan");
    if (ok && st.rig) for (const [n, msg] of violations(p, st.rig.gpus)) bad(n, "out of range: " + msg);
    return ok;
  }
  async function save(form, general, andApply) {
    clearErrors(form, general);
    const { profile, errs } = readForm(form);
    if (!check(form, profile, errs)) { general.textContent = "Nothing was sent: fix the marked fields."; return; }
    try {
      await Q.rpc("OverclockService/PutOverclockProfile", { profile });
      editor.hidden = true;
      await loadProfiles();
      if (andApply) apply([profile.name]);
    } catch (e) { showErrors(form, general, e.message); }
  }

  // ---------- apply and clear ----------
  async function apply(names) {
    const err = document.getElementById("oc-apply-error");
    err.textContent = "";
    if (!st.rig) { err.textContent = "Pick a rig first."; return; }
    if (!names.length) { err.textContent = "Tick at least one profile, or clear the overclock."; return; }
    const problems = [];
    for (const n of names) {
      const p = st.profiles.find((x) => x.name === n);
      if (p) for (const [f, msg] of violations(p, st.rig.gpus)) problems.push(n + " " + f + ": " + msg);
    }
    if (problems.length) { err.textContent = "Nothing was sent: " + problems.join("; "); return; }
    try {
      const r = await Q.rpc("OverclockService/ApplyOverclock", { rig: st.rig.id, profiles: names });
      follow(r.command_id, "Sent: " + r.cards.map((c) => "GPU " + c.index + " → " + (c.profile || "defaults")).join(", ") + ". ");
    } catch (e) { err.textContent = e.message; }
  }
  async function clearOC() {
    document.getElementById("oc-apply-error").textContent = "";
    if (!st.rig) return;
    if (!window.confirm("Put every card of " + (st.rig.name || st.rig.id) + " back to its defaults?")) return;
    try {
      const r = await Q.rpc("OverclockService/ClearOverclock", { rig: st.rig.id });
      follow(r.command_id, "Clearing. ");
    } catch (e) { document.getElementById("oc-apply-error").textContent = e.message; }
  }
  // follow shows the rig's answer to the command once it comes.
  function follow(id, prefix) {
    clearTimeout(st.poll);
    const out = document.getElementById("oc-result");
    const started = Date.now();
    const step = async () => {
      try {
        const c = await Q.rpc("FleetService/GetCommand", { command_id: id });
        const s = String(c.record.status).replace("COMMAND_STATUS_", "").toLowerCase();
        const done = ["succeeded", "failed", "expired"].includes(s);
        let text = "";
        if (c.record.output) { try { text = atob(c.record.output); } catch (_) { text = ""; } }
        out.className = done ? (s === "succeeded" ? "result-ok" : "result-bad") : "sub";
        out.textContent = prefix + "Rig: " + s + (c.record.error ? ": " + c.record.error : text ? ": " + text : "");
        if (done) { if (st.rig) loadRig(st.rig.id, true); return; }
      } catch (e) { out.textContent = e.message; return; }
      if (Date.now() - started < 5 * 60 * 1000 && !sec.hidden) st.poll = setTimeout(step, 1000);
    };
    step();
  }
  document.getElementById("oc-apply").addEventListener("click", () => apply([...document.querySelectorAll("#oc-apply-list input:checked")].map((c) => c.value)));
  document.getElementById("oc-clear").addEventListener("click", clearOC);

  async function show(arg) {
    editor.hidden = true;
    clearTimeout(st.poll);
    document.getElementById("oc-rig").value = arg || "";
    await Promise.all([loadProfiles(), loadRig(arg), loadRigNames()]);
  }
  Q.registerPage("overclock", "Overclock", show);
})();
