// Flight sheets: list, create, edit, delete, and apply to rigs picked by
// selector or by ticking rows, with each rig's result. The server checks
// every call's role; the page only hides what the user may not use.
"use strict";
(function () {
  const Q = window.Quarry;
  const el = Q.el;
  const sec = document.getElementById("page-flightsheets");
  const knownMiners = ["xmrig", "trex", "lolminer", "gminer", "teamredminer", "nbminer", "srbminer", "nanominer", "cgminer", "bmminer", "bosminer", "custom"];
  const soloHint = "daemon+http, the node's RPC host:port";
  const st = { sheets: [], catalogue: [], ocNames: [], editing: null, applying: null, rigs: null, offset: 0, limit: 50, selected: new Map(), pollers: [] };

  // ---------- helpers shared by the page's forms ----------
  function field(name, label, input, hint) {
    if (!input.id) input.id = "fs-f-" + name.replace(/[^a-z0-9]+/gi, "-");
    input.name = name;
    return el("div", { class: "field", "data-field": name },
      el("label", { for: input.id, text: label }), input,
      hint ? el("span", { class: "sub", text: hint }) : null,
      el("div", { class: "field-error", role: "alert" }));
  }
  function b64(text) {
    const bytes = new TextEncoder().encode(text);
    let s = "";
    for (let i = 0; i < bytes.length; i++) s += String.fromCharCode(bytes[i]);
    return btoa(s);
  }
  function unb64(s) {
    const bin = atob(s || "");
    const bytes = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    return new TextDecoder().decode(bytes);
  }
  function when(ns) {
    const n = Number(ns || 0);
    return n ? new Date(n / 1e6).toLocaleString() : "–";
  }
  // fieldOf maps a field path in a server message ("pools[1].url",
  // "extra_args[0]") to the form field that shows it.
  function fieldOf(path) {
    if (/^extra_args/.test(path)) return "extra_args";
    if (/^miner\.archive/.test(path)) return "miner.version";
    if (/^miner\.api/.test(path)) return "miner.api";
    return path;
  }
  const fieldRe = /(?:^|: )((?:name|coin|algorithm|overclock|expected_hashrate|miner(?:\.[a-z0-9_]+)+|pools(?:\[\d+\]\.[a-z]+)?|extra_args(?:\[\d+\])?)): (.+)$/;
  // showErrors puts each line of a validation message under the field it
  // names; lines naming no field go to the form's own error line.
  function showErrors(form, general, message) {
    const rest = [];
    for (const line of String(message).split("\n")) {
      const m = line.match(fieldRe);
      const box = m && form.querySelector(`[data-field="${CSS.escape(fieldOf(m[1]))}"]`);
      if (box) {
        box.classList.add("invalid");
        const e = box.querySelector(".field-error");
        e.textContent = (e.textContent ? e.textContent + "; " : "") + m[2];
      } else if (/expected_hashrate|hashrate "/.test(line) && form.querySelector('[data-field="expected_hashrate"]')) {
        const box2 = form.querySelector('[data-field="expected_hashrate"]');
        box2.classList.add("invalid");
        box2.querySelector(".field-error").textContent = line.replace(/^.*?(hashrate)/, "$1");
      } else rest.push(line);
    }
    general.textContent = rest.join("\n");
  }
  function clearErrors(form, general) {
    for (const b of form.querySelectorAll(".field.invalid")) b.classList.remove("invalid");
    for (const e of form.querySelectorAll(".field-error")) e.textContent = "";
    general.textContent = "";
  }
  function fieldError(form, name, msg) {
    const box = form.querySelector(`[data-field="${CSS.escape(name)}"]`);
    box.classList.add("invalid");
    box.querySelector(".field-error").textContent = msg;
  }
  window.QuarryForms = { field, showErrors, clearErrors, fieldError };

  // ---------- layout ----------
  const listCard = el("div", { class: "card" },
    el("div", { class: "toolbar" }, el("h2", { text: "Flight sheets" }), el("span", { class: "spacer" }),
      el("button", { type: "button", id: "fs-new", text: "New flight sheet" })),
    el("p", { id: "fs-list-error", class: "error", role: "alert" }),
    el("div", { class: "scroll" }, el("table", { id: "fs-table" },
      el("thead", {}, el("tr", {}, ...["Name", "Coin", "Algorithm", "Miner", "Pools", "Updated", ""].map((h) => el("th", { text: h })))),
      el("tbody"))),
    el("p", { id: "fs-empty", class: "sub", text: "No flight sheets yet.", hidden: true }));
  const editor = el("div", { class: "card", id: "fs-editor", hidden: true });
  const applier = el("div", { class: "card", id: "fs-apply", hidden: true });
  const lists = el("div", {},
    el("datalist", { id: "fs-miners" }), el("datalist", { id: "fs-versions" }), el("datalist", { id: "fs-oc" }));
  sec.append(listCard, editor, applier, lists);

  // ---------- list ----------
  async function loadList() {
    try {
      const r = await Q.rpc("MinerService/ListFlightSheets");
      st.sheets = (r.sheets || []).sort((a, b) => a.name.localeCompare(b.name));
      document.getElementById("fs-list-error").textContent = "";
    } catch (e) {
      document.getElementById("fs-list-error").textContent = e.message;
      st.sheets = [];
    }
    renderList();
  }
  function renderList() {
    const canPut = Q.can("MinerService/PutFlightSheet"), canDel = Q.can("MinerService/DeleteFlightSheet"), canApply = Q.can("MinerService/ApplyFlightSheet");
    document.getElementById("fs-new").hidden = !canPut;
    document.getElementById("fs-empty").hidden = st.sheets.length > 0;
    sec.querySelector("#fs-table tbody").replaceChildren(...st.sheets.map((s) => el("tr", { "data-sheet": s.name },
      el("td", {}, el("button", { type: "button", class: "link", "data-act": "view", text: s.name })),
      el("td", { text: s.coin }), el("td", { text: s.algorithm }), el("td", { text: s.miner }),
      el("td", { class: "num", text: s.pools }),
      el("td", { class: "sub", text: when(s.updated_unix_nano) + (s.updated_by ? " · " + s.updated_by : "") }),
      el("td", {}, el("span", { class: "actions" },
        canPut ? el("button", { type: "button", "data-act": "edit", text: "Edit" }) : null,
        canApply ? el("button", { type: "button", "data-act": "apply", text: "Apply" }) : null,
        canDel ? el("button", { type: "button", "data-act": "delete", text: "Delete" }) : null)))));
  }
  sec.querySelector("#fs-table").addEventListener("click", async (ev) => {
    const b = ev.target.closest("button[data-act]");
    if (!b) return;
    const name = b.closest("tr").dataset.sheet;
    if (b.dataset.act === "edit" || b.dataset.act === "view") openEditor(name, b.dataset.act === "view");
    else if (b.dataset.act === "apply") openApply(name);
    else if (b.dataset.act === "delete") {
      if (!window.confirm("Delete flight sheet " + name + "? Rigs mining it keep mining it.")) return;
      try {
        await Q.rpc("MinerService/DeleteFlightSheet", { name });
        if (st.editing === name) editor.hidden = true;
        loadList();
      } catch (e) { document.getElementById("fs-list-error").textContent = e.message; }
    }
  });
  document.getElementById("fs-new").addEventListener("click", () => openEditor(null, false));

  // ---------- editor ----------
  function input(attrs) { return el("input", Object.assign({ type: "text", autocomplete: "off", spellcheck: "false" }, attrs)); }
  function poolRow(p, i) {
    const solo = el("select", { "data-k": "solo", "aria-label": "pool " + (i + 1) + " kind" },
      el("option", { value: "pool", text: "Pool (stratum)" }), el("option", { value: "solo", text: "Solo (coin daemon)" }));
    solo.value = p.solo ? "solo" : "pool";
    const url = input({ "data-k": "url", value: p.url || "", placeholder: p.solo ? soloHint : "stratum+tcp://pool.example:3333" });
    solo.addEventListener("change", () => { url.placeholder = solo.value === "solo" ? soloHint : "stratum+tcp://pool.example:3333"; });
    return el("div", { class: "pool form", "data-pool": String(i) },
      field("pools[" + i + "].kind", "Pool " + (i + 1), solo),
      field("pools[" + i + "].url", "URL", url),
      field("pools[" + i + "].user", "Wallet.worker", input({ "data-k": "user", value: p.user || "" })),
      field("pools[" + i + "].password", "Password", input({ "data-k": "password", value: p.password || "" })),
      el("div", { class: "field" }, el("button", { type: "button", class: "link", "data-remove-pool": String(i), text: "Remove pool" })));
  }
  function renderPools(pools) {
    const box = editor.querySelector("#fs-pools");
    box.replaceChildren(...pools.map(poolRow));
  }
  function readPools() {
    return [...editor.querySelectorAll("#fs-pools [data-pool]")].map((row) => ({
      solo: row.querySelector('[data-k="solo"]').value === "solo",
      url: row.querySelector('[data-k="url"]').value.trim(),
      user: row.querySelector('[data-k="user"]').value.trim(),
      password: row.querySelector('[data-k="password"]').value,
    }));
  }
  function fillVersions(minerName) {
    const vs = st.catalogue.filter((m) => m.name === minerName);
    editor.ownerDocument.getElementById("fs-versions").replaceChildren(...vs.map((m) => el("option", { value: m.version, text: m.name + " " + m.version + " (catalogue)" })));
    const hint = editor.querySelector("#fs-cat-hint");
    if (hint) hint.textContent = vs.length ? "Catalogue has " + vs.map((m) => m.version).join(", ") + ": leave path and sha256 empty to use it." : "No catalogue version of this miner: give its path and sha256 on the rig.";
  }
  async function loadLookups() {
    const [cat, oc] = await Promise.all([
      Q.can("CatalogueService/ListMiners") ? Q.rpc("CatalogueService/ListMiners").catch(() => ({ miners: [] })) : { miners: [] },
      Q.can("OverclockService/ListOverclockProfiles") ? Q.rpc("OverclockService/ListOverclockProfiles").catch(() => ({ profiles: [] })) : { profiles: [] },
    ]);
    st.catalogue = cat.miners || [];
    st.ocNames = (oc.profiles || []).map((p) => p.name);
    const names = [...new Set([...st.catalogue.map((m) => m.name), ...knownMiners])];
    document.getElementById("fs-miners").replaceChildren(...names.map((n) => el("option", { value: n })));
    document.getElementById("fs-oc").replaceChildren(...st.ocNames.map((n) => el("option", { value: n })));
  }

  async function openEditor(name, readOnly) {
    applier.hidden = true;
    let f = { name: "", coin: "", algorithm: "", miner: { name: "", version: "", path: "", sha256: "", api_host: "", api_port: 0, api_token: "" }, pools: [{ url: "", user: "", password: "", solo: false }], extra_args: [], overclock: "", expected_hashrate: "" };
    const general = el("p", { id: "fs-form-error", class: "error", role: "alert" });
    if (name) {
      try {
        const r = await Q.rpc("MinerService/GetFlightSheet", { name });
        f = await Q.api("/api/flightsheets/parse", { method: "POST", body: { yaml: unb64(r.sheet.yaml) } });
        if (!f.pools.length) f.pools = [{ url: "", user: "", password: "", solo: false }];
      } catch (e) { document.getElementById("fs-list-error").textContent = e.message; return; }
    }
    const ro = readOnly || !Q.can("MinerService/PutFlightSheet");
    st.editing = name;
    const form = el("form", { id: "fs-form", novalidate: true },
      el("div", { class: "form" },
        field("name", "Name", input({ value: f.name, required: true, readonly: !!name || null, maxlength: "128" }), name ? "Save under a new name with “Save as new”." : null),
        field("coin", "Coin", input({ value: f.coin, required: true, placeholder: "RVN" })),
        field("algorithm", "Algorithm", input({ value: f.algorithm, required: true, placeholder: "kawpow" })),
        field("miner.name", "Miner", input({ value: f.miner.name, required: true, list: "fs-miners", placeholder: "trex" })),
        field("miner.version", "Version", input({ value: f.miner.version, list: "fs-versions", placeholder: "from the catalogue" })),
        field("miner.path", "Path on the rig", input({ value: f.miner.path, placeholder: "/var/lib/quarry/miners/t-rex" })),
        field("miner.sha256", "Binary sha256", input({ value: f.miner.sha256, maxlength: "64" })),
        field("miner.api", "Stats API port", input({ value: f.miner.api_port ? String(f.miner.api_port) : "", inputmode: "numeric", placeholder: "miner's default" })),
        field("overclock", "Overclock profile", input({ value: f.overclock, list: "fs-oc", placeholder: "none" })),
        field("expected_hashrate", "Expected hashrate", input({ value: f.expected_hashrate, placeholder: "54 MH/s" })),
        field("extra_args", "Extra arguments (one per line)", el("textarea", { rows: "2", spellcheck: "false" }, f.extra_args.join("\n")))),
      el("p", { id: "fs-cat-hint", class: "sub" }),
      el("h2", { text: "Pools, in failover order" }),
      el("div", { "data-field": "pools", class: "field" }, el("div", { id: "fs-pools" }), el("div", { class: "field-error", role: "alert" })),
      ro ? null : el("p", {}, el("button", { type: "button", id: "fs-add-pool", class: "link", text: "+ Add pool" })),
      general,
      el("div", { class: "toolbar" },
        ro ? null : el("button", { type: "submit", id: "fs-save", text: "Save" }),
        ro || !name ? null : el("button", { type: "button", id: "fs-save-as", text: "Save as new" }),
        el("button", { type: "button", id: "fs-cancel", class: "link", text: ro ? "Close" : "Cancel" })));
    editor.replaceChildren(el("h2", { text: name ? (ro ? "Flight sheet " : "Edit ") + name : "New flight sheet" }), form);
    renderPools(f.pools);
    if (ro) for (const x of form.querySelectorAll("input, textarea, select")) x.disabled = true;
    // Settings the form does not show are carried over unchanged.
    st.keep = { api_host: f.miner.api_host, api_token: f.miner.api_token };
    editor.hidden = false;
    const minerIn = form.querySelector('[name="miner.name"]');
    fillVersions(minerIn.value);
    minerIn.addEventListener("input", () => fillVersions(minerIn.value.trim()));
    form.querySelector("#fs-cancel").addEventListener("click", () => { editor.hidden = true; st.editing = null; });
    const add = form.querySelector("#fs-add-pool");
    if (add) add.addEventListener("click", () => { const p = readPools(); p.push({ url: "", user: "", password: "", solo: false }); renderPools(p); });
    form.querySelector("#fs-pools").addEventListener("click", (ev) => {
      const b = ev.target.closest("[data-remove-pool]");
      if (!b || ro) return;
      const p = readPools();
      p.splice(Number(b.dataset.removePool), 1);
      renderPools(p.length ? p : [{ url: "", user: "", password: "", solo: false }]);
    });
    form.addEventListener("submit", (ev) => { ev.preventDefault(); save(form, general, false); });
    const saveAs = form.querySelector("#fs-save-as");
    if (saveAs) saveAs.addEventListener("click", () => {
      const n = form.querySelector('[name="name"]');
      n.readOnly = false;
      n.value = "";
      n.focus();
      st.editing = null;
      saveAs.remove();
    });
    editor.scrollIntoView({ block: "start" });
  }

  function readForm(form) {
    const v = (n) => form.querySelector(`[name="${n}"]`).value.trim();
    return {
      name: v("name"), coin: v("coin"), algorithm: v("algorithm"),
      miner: { name: v("miner.name"), version: v("miner.version"), path: v("miner.path"), sha256: v("miner.sha256"), api_port: v("miner.api") },
      pools: readPools(),
      extra_args: form.querySelector('[name="extra_args"]').value.split("\n").map((s) => s.trim()).filter(Boolean),
      overclock: v("overclock"), expected_hashrate: v("expected_hashrate"),
    };
  }
  // check finds what can be told without the server: required fields and
  // obvious shapes. The server validates everything again.
  function check(form, f) {
    let ok = true;
    const bad = (n, m) => { fieldError(form, n, m); ok = false; };
    for (const [n, val] of [["name", f.name], ["coin", f.coin], ["algorithm", f.algorithm], ["miner.name", f.miner.name]]) if (!val) bad(n, "is required");
    if (!f.miner.path && !f.miner.version) bad("miner.version", "give a catalogue version, or the path and sha256 of the binary on the rig");
    if (f.miner.path && !f.miner.path.startsWith("/")) bad("miner.path", "must be an absolute path");
    if (f.miner.path && !f.miner.sha256) bad("miner.sha256", "is required with a path: agents only run pinned binaries");
    if (f.miner.sha256 && !/^[0-9a-fA-F]{64}$/.test(f.miner.sha256)) bad("miner.sha256", "must be 64 hex digits");
    if (f.miner.api_port && !(/^\d+$/.test(f.miner.api_port) && Number(f.miner.api_port) >= 1 && Number(f.miner.api_port) <= 65535)) bad("miner.api", "a port from 1 to 65535, or empty for the miner's default");
    if (f.expected_hashrate && !/^\s*\d+(\.\d+)?\s*([kmgtpe]?h(\/s)?)?\s*$/i.test(f.expected_hashrate)) bad("expected_hashrate", "a rate like 54 MH/s, or empty");
    if (!f.pools.length) bad("pools", "at least one pool is required");
    f.pools.forEach((p, i) => {
      if (!p.url) bad("pools[" + i + "].url", "is required");
      else if (p.solo && !/^daemon\+https?:\/\//i.test(p.url)) bad("pools[" + i + "].url", "a coin daemon's URL starts with daemon+http or daemon+https and names the node's RPC port");
      if (!p.user) bad("pools[" + i + "].user", p.solo ? "the wallet address is required" : "wallet is missing (want wallet.worker)");
    });
    return ok;
  }
  function yamlOf(f) {
    const q = JSON.stringify; // a JSON string is a valid YAML scalar
    const out = ["name: " + q(f.name), "coin: " + q(f.coin), "algorithm: " + q(f.algorithm), "miner:", "  name: " + q(f.miner.name)];
    if (f.miner.version) out.push("  version: " + q(f.miner.version));
    if (f.miner.path) out.push("  path: " + q(f.miner.path));
    if (f.miner.sha256) out.push("  sha256: " + q(f.miner.sha256));
    const keep = st.keep || {};
    if (f.miner.api_port || keep.api_host || keep.api_token) {
      out.push("  api:");
      if (keep.api_host) out.push("    host: " + q(keep.api_host));
      if (f.miner.api_port) out.push("    port: " + Number(f.miner.api_port));
      if (keep.api_token) out.push("    token: " + q(keep.api_token));
    }
    out.push("pools:");
    for (const p of f.pools) {
      out.push("  - url: " + q(p.url), "    user: " + q(p.user));
      if (p.password) out.push("    password: " + q(p.password));
    }
    if (f.extra_args.length) out.push("extra_args: " + q(f.extra_args));
    if (f.overclock) out.push("overclock: " + q(f.overclock));
    if (f.expected_hashrate) out.push("expected_hashrate: " + q(f.expected_hashrate));
    return out.join("\n") + "\n";
  }
  async function save(form, general) {
    clearErrors(form, general);
    const f = readForm(form);
    if (!check(form, f)) { general.textContent = "Fix the marked fields."; return; }
    if (!st.editing && st.sheets.some((s) => s.name === f.name) && !window.confirm("A flight sheet named " + f.name + " exists. Replace it?")) return;
    const btn = form.querySelector("#fs-save");
    btn.disabled = true;
    try {
      await Q.rpc("MinerService/PutFlightSheet", { yaml: b64(yamlOf(f)) });
      editor.hidden = true;
      st.editing = null;
      await loadList();
    } catch (e) {
      showErrors(form, general, e.message);
    } finally { btn.disabled = false; }
  }

  // ---------- apply ----------
  function openApply(name) {
    editor.hidden = true;
    st.applying = name;
    st.selected = new Map();
    st.offset = 0;
    const modeTick = el("input", { type: "radio", name: "fs-mode", id: "fs-mode-tick", value: "tick", checked: true });
    const modeSel = el("input", { type: "radio", name: "fs-mode", id: "fs-mode-sel", value: "selector" });
    const selector = input({ id: "fs-selector", placeholder: "name=rig-*,tag=hosting,gpu=RTX 3070" });
    const search = input({ id: "fs-rig-search", type: "search", placeholder: "Search rigs" });
    applier.replaceChildren(
      el("h2", { text: "Apply " + name + " to rigs" }),
      el("div", { class: "toolbar" },
        el("label", {}, modeTick, " Ticked rigs"), el("label", {}, modeSel, " Rigs matching a selector")),
      el("div", { class: "form", id: "fs-sel-box", hidden: true }, field("selector", "Selector (empty: every rig)", selector)),
      el("div", { id: "fs-tick-box" },
        el("div", { class: "toolbar" }, search, el("span", { id: "fs-ticked", class: "sub", text: "0 rigs ticked" })),
        el("div", { class: "scroll" }, el("table", { id: "fs-rigs" },
          el("thead", {}, el("tr", {}, el("th", {}, el("input", { type: "checkbox", id: "fs-tick-all", "aria-label": "tick every rig shown" })),
            ...["Rig", "Status", "Algorithm", "GPUs"].map((h) => el("th", { text: h })))),
          el("tbody"))),
        el("div", { class: "pager" }, el("button", { type: "button", id: "fs-rigs-prev", text: "‹ Previous" }), el("span", { id: "fs-rigs-range" }), el("button", { type: "button", id: "fs-rigs-next", text: "Next ›" }))),
      el("p", { id: "fs-apply-error", class: "error", role: "alert" }),
      el("div", { class: "toolbar" }, el("button", { type: "button", id: "fs-apply-go", text: "Apply " + name }), el("button", { type: "button", id: "fs-apply-close", class: "link", text: "Close" })),
      el("div", { class: "scroll" }, el("table", { id: "fs-results", hidden: true },
        el("thead", {}, el("tr", {}, ...["Rig", "Queued", "Result", "Miner"].map((h) => el("th", { text: h })))), el("tbody"))));
    const setMode = () => {
      applier.querySelector("#fs-sel-box").hidden = !modeSel.checked;
      applier.querySelector("#fs-tick-box").hidden = modeSel.checked;
    };
    modeTick.addEventListener("change", setMode);
    modeSel.addEventListener("change", setMode);
    let searchTimer = null;
    search.addEventListener("input", () => { clearTimeout(searchTimer); searchTimer = setTimeout(() => { st.offset = 0; loadRigs(); }, 250); });
    applier.querySelector("#fs-rigs-prev").addEventListener("click", () => { st.offset = Math.max(0, st.offset - st.limit); loadRigs(); });
    applier.querySelector("#fs-rigs-next").addEventListener("click", () => { st.offset += st.limit; loadRigs(); });
    applier.querySelector("#fs-tick-all").addEventListener("change", (ev) => {
      for (const cb of applier.querySelectorAll("#fs-rigs tbody input[type=checkbox]")) { cb.checked = ev.target.checked; tick(cb); }
    });
    applier.querySelector("#fs-rigs tbody").addEventListener("change", (ev) => { if (ev.target.matches("input[type=checkbox]")) tick(ev.target); });
    applier.querySelector("#fs-apply-close").addEventListener("click", () => { applier.hidden = true; stopPolls(); });
    applier.querySelector("#fs-apply-go").addEventListener("click", () => apply(name, modeSel.checked ? selector.value.trim() : null));
    applier.hidden = false;
    loadRigs();
    applier.scrollIntoView({ block: "start" });
  }
  function tick(cb) {
    const tr = cb.closest("tr");
    if (cb.checked) st.selected.set(tr.dataset.rig, tr.dataset.name); else st.selected.delete(tr.dataset.rig);
    applier.querySelector("#fs-ticked").textContent = st.selected.size + (st.selected.size === 1 ? " rig ticked" : " rigs ticked");
  }
  async function loadRigs() {
    const q = applier.querySelector("#fs-rig-search").value.trim();
    try {
      const ov = await Q.api("/api/overview?sort=name&offset=" + st.offset + "&limit=" + st.limit + (q ? "&q=" + encodeURIComponent(q) : ""));
      const shown = ov.matched !== undefined ? ov.matched : ov.total;
      applier.querySelector("#fs-rigs-range").textContent = (shown ? ov.offset + 1 : 0) + "–" + (ov.offset + ov.rigs.length) + " of " + shown;
      applier.querySelector("#fs-rigs-prev").disabled = ov.offset === 0;
      applier.querySelector("#fs-rigs-next").disabled = ov.offset + ov.rigs.length >= shown;
      applier.querySelector("#fs-rigs tbody").replaceChildren(...ov.rigs.map((r) => el("tr", { "data-rig": r.id, "data-name": r.name },
        el("td", {}, el("input", { type: "checkbox", "aria-label": "tick " + r.name, checked: st.selected.has(r.id) })),
        el("td", { text: r.name }),
        el("td", {}, el("span", { class: "badge " + (r.online ? "online" : "offline"), text: r.online ? "online" : "offline" })),
        el("td", { text: r.algorithms || "–" }), el("td", { class: "num", text: r.gpus }))));
    } catch (e) { applier.querySelector("#fs-apply-error").textContent = e.message; }
  }
  function stopPolls() { for (const t of st.pollers) clearTimeout(t); st.pollers = []; }

  async function apply(name, selector) {
    const err = applier.querySelector("#fs-apply-error");
    err.textContent = "";
    stopPolls();
    const table = applier.querySelector("#fs-results");
    const body = table.querySelector("tbody");
    body.replaceChildren();
    let targets;
    if (selector === null) {
      if (st.selected.size === 0) { err.textContent = "Tick at least one rig, or use a selector."; return; }
      targets = [...st.selected].map(([id, rigName]) => ({ selector: id, label: rigName }));
    } else {
      targets = [{ selector, label: selector || "every rig" }];
    }
    table.hidden = false;
    const go = applier.querySelector("#fs-apply-go");
    go.disabled = true;
    try {
      for (const t of targets) {
        try {
          const r = await Q.rpc("MinerService/ApplyFlightSheet", { name, selector: t.selector });
          for (const rig of r.rigs) body.append(resultRow(rig));
        } catch (e) {
          body.append(el("tr", {}, el("td", { text: t.label }), el("td", { class: "result-bad", text: "refused" }), el("td", { class: "result-bad", text: e.message }), el("td", { text: "–" })));
        }
      }
    } finally { go.disabled = false; }
  }
  function resultRow(rig) {
    const res = el("td", { class: "res", text: "waiting for the rig" });
    const miner = el("td", { class: "miner", text: "–" });
    const tr = el("tr", { "data-rig": rig.rig_id }, el("td", { text: rig.rig_name }),
      el("td", { class: "sub", text: (rig.online ? "rig online" : "rig offline: waits for it") }), res, miner);
    const started = Date.now();
    let done = false;
    const poll = async () => {
      try {
        if (!done) {
          const c = await Q.rpc("FleetService/GetCommand", { command_id: rig.command_id });
          const s = String(c.record.status).replace("COMMAND_STATUS_", "");
          done = s === "SUCCEEDED" || s === "FAILED" || s === "EXPIRED";
          const out = c.record.error || (c.record.output ? unb64(c.record.output) : "");
          res.className = "res " + (s === "SUCCEEDED" ? "result-ok" : done ? "result-bad" : "");
          res.textContent = s.toLowerCase() + (out ? ": " + out : "");
        }
        const r = await Q.api("/api/rigs/" + encodeURIComponent(rig.rig_id));
        miner.textContent = r.miners.length ? r.miners.map((m) => m.miner + " " + m.state + (m.hashrate !== undefined ? " " + Q.fmtHash(m.hashrate) : "") + (m.error ? " (" + m.error + ")" : "")).join("; ") : "no miner reported";
        const running = r.miners.some((m) => m.state === "running");
        if (done && running) return;
      } catch (e) { res.textContent = e.message; }
      if (Date.now() - started < 5 * 60 * 1000 && !applier.hidden) st.pollers.push(setTimeout(poll, 1000));
    };
    poll();
    return tr;
  }

  async function show() {
    editor.hidden = true;
    applier.hidden = true;
    stopPolls();
    await Promise.all([loadList(), loadLookups()]);
  }
  Q.registerPage("flightsheets", "Flight sheets", show);
})();
