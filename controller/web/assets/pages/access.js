// Access page: join tokens, admin tokens, revoking a rig, the audit log.
// Everything here is admin-only on the server; the page shows a control
// only when Quarry.can says the signed-in role may use it.
"use strict";
(function () {
  const Q = window.Quarry;
  const el = Q.el;
  const sec = () => document.getElementById("page-access");
  const audit = { filter: {}, pages: [""], page: 0 };

  // Durations as quarryctl takes them: 90s, 30m, 24h, 7d.
  function seconds(text) {
    const m = String(text).trim().match(/^(\d+)\s*(s|m|h|d)$/);
    if (!m) return null;
    return Number(m[1]) * { s: 1, m: 60, h: 3600, d: 86400 }[m[2]];
  }
  const when = Q.when;
  const expired = (ns) => ns && ns !== "0" && Number(BigInt(ns) / 1000000n) < Date.now();

  function field(id, label, input, wide) {
    input.id = id;
    return el("div", { class: "field" + (wide ? " wide" : ""), "data-field": id }, el("label", { for: id, text: label }), input, el("div", { class: "field-error", id: id + "-error" }));
  }
  function fieldError(id, msg) {
    const f = document.querySelector(`[data-field="${id}"]`);
    if (f) f.classList.toggle("invalid", !!msg);
    const e = document.getElementById(id + "-error");
    if (e) e.textContent = msg || "";
  }
  const result = Q.result;
  // A destructive button asks once more on the same spot: the first
  // click arms it, the second acts, and it disarms itself after a while.
  function confirmButton(label, act) {
    const b = el("button", { type: "button", class: "danger", text: label });
    let timer = null;
    b.addEventListener("click", () => {
      if (b.dataset.armed) {
        clearTimeout(timer);
        delete b.dataset.armed;
        b.textContent = label;
        act(b);
        return;
      }
      b.dataset.armed = "1";
      b.textContent = "Confirm " + label.toLowerCase();
      timer = setTimeout(() => { delete b.dataset.armed; b.textContent = label; }, 5000);
    });
    return b;
  }
  // secretBox shows a credential once, with a copy button. Nothing keeps
  // it: it is gone when the page is left or another one is made.
  function secretBox(id, token, note) {
    const input = el("input", { type: "text", readonly: true, id: id + "-value", class: "secret", spellcheck: "false", autocomplete: "off" });
    input.value = token;
    const copy = el("button", { type: "button", text: "Copy" });
    copy.addEventListener("click", async () => {
      try {
        await navigator.clipboard.writeText(input.value);
      } catch (_) {
        input.select();
        document.execCommand("copy");
      }
      copy.textContent = "Copied";
    });
    const box = document.getElementById(id);
    box.replaceChildren(el("div", { class: "toolbar" }, input, copy), el("p", { class: "sub", text: note }));
    box.hidden = false;
  }

  // ---------- join tokens ----------
  function joinCard() {
    if (!Q.can("FleetService/CreateToken")) return null;
    const form = el("form", { class: "form", id: "join-form" },
      field("join-name", "Rig name (optional)", el("input", { type: "text", maxlength: "128", placeholder: "the rig's hostname" })),
      field("join-ttl", "Valid for", el("input", { type: "text", value: "1h", placeholder: "1h, 30m, 7d" })),
      field("join-uses", "Rigs that may enroll", el("input", { type: "number", min: "1", max: "1000", value: "1" })),
      el("div", { class: "field" }, el("label", { text: "\u00a0" }), el("button", { type: "submit", text: "Create join token" })));
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const ttl = seconds(document.getElementById("join-ttl").value);
      const uses = Number(document.getElementById("join-uses").value);
      fieldError("join-ttl", ttl ? "" : "a number and a unit: 90s, 30m, 24h, 7d");
      fieldError("join-uses", Number.isInteger(uses) && uses >= 1 && uses <= 1000 ? "" : "a whole number from 1 to 1000");
      if (!ttl || document.querySelector('[data-field="join-uses"]').classList.contains("invalid")) return;
      try {
        const r = await Q.rpc("FleetService/CreateToken", { rig_name: document.getElementById("join-name").value.trim(), ttl_seconds: String(ttl), uses });
        secretBox("join-secret", r.token, "Shown once: run 'quarry-agent --controller HOST:PORT --token TOKEN' on the rig before " + when(r.expires_unix_nano) + ". It cannot be shown again.");
        result("join-result", true, "Join token created.");
        form.reset();
        loadJoin();
      } catch (e) { result("join-result", false, e.message); }
    });
    return el("div", { class: "card", id: "join-card" }, el("h2", { text: "Join tokens" }),
      el("p", { class: "sub", text: "A join token lets a rig enroll once (or as many times as its uses). Revoking it refuses further enrolments; rigs already enrolled stay." }),
      form, el("p", { id: "join-result", role: "status" }), el("div", { id: "join-secret", hidden: true }),
      Q.can("FleetService/ListTokens") ? el("div", { class: "scroll" }, el("table", { id: "join-table" },
        el("thead", {}, el("tr", {}, ...["Id", "Rig name", "Uses left", "Expires", "Created by", ""].map((h) => el("th", { text: h })))), el("tbody"))) : null);
  }
  async function loadJoin() {
    const tb = document.querySelector("#join-table tbody");
    if (!tb) return;
    try {
      const r = await Q.rpc("FleetService/ListTokens");
      tb.replaceChildren(...r.tokens.map((t) => el("tr", { "data-token": t.id },
        el("td", {}, el("code", { text: t.id })), el("td", { text: t.rig_name || "–" }),
        el("td", { class: "num", text: t.uses_left }),
        el("td", { text: when(t.expires_unix_nano) + (expired(t.expires_unix_nano) ? " (expired)" : "") }),
        el("td", { text: t.created_by || "–" }),
        el("td", {}, Q.can("FleetService/RevokeToken") ? confirmButton("Revoke", async () => {
          try {
            await Q.rpc("FleetService/RevokeToken", { id: t.id });
            document.getElementById("join-secret").hidden = true;
            result("join-result", true, "Join token " + t.id + " revoked.");
          } catch (e) { result("join-result", false, e.message); }
          loadJoin();
        }) : null))));
      if (r.tokens.length === 0) tb.replaceChildren(el("tr", {}, el("td", { colspan: "6", class: "sub", text: "No join tokens." })));
    } catch (e) { result("join-result", false, e.message); }
  }

  // ---------- admin tokens ----------
  function adminCard() {
    if (!Q.can("FleetService/CreateAdminToken") && !Q.can("FleetService/ListAdminTokens")) return null;
    const role = el("select", {}, ...["viewer", "operator", "admin"].map((r) => el("option", { value: r, text: r })));
    const form = Q.can("FleetService/CreateAdminToken") ? el("form", { class: "form", id: "admin-form" },
      field("admin-name", "Name", el("input", { type: "text", maxlength: "128", required: true, placeholder: "wall-screen" })),
      field("admin-role", "Role", role),
      field("admin-ttl", "Valid for", el("input", { type: "text", value: "90d", placeholder: "720h, 90d" })),
      el("div", { class: "field" }, el("label", { text: "\u00a0" }), el("button", { type: "submit", text: "Create admin token" }))) : null;
    if (form) form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const name = document.getElementById("admin-name").value.trim();
      const ttl = seconds(document.getElementById("admin-ttl").value);
      fieldError("admin-name", name ? "" : "a name is required");
      fieldError("admin-ttl", ttl ? "" : "a number and a unit: 12h, 90d");
      if (!name || !ttl) return;
      try {
        const r = await Q.rpc("FleetService/CreateAdminToken", { name, role: document.getElementById("admin-role").value, ttl_seconds: String(ttl) });
        secretBox("admin-secret", r.token, "Shown once: sign in with it here or run 'quarryctl login --token TOKEN'. Valid until " + when(r.expires_unix_nano) + ". It cannot be shown again.");
        result("admin-result", true, "Admin token " + name + " created.");
        form.reset();
        loadAdmins();
      } catch (e) {
        if (/name/.test(e.message)) fieldError("admin-name", e.message);
        result("admin-result", false, e.message);
      }
    });
    return el("div", { class: "card", id: "admin-card" }, el("h2", { text: "Admin tokens" }),
      el("p", { class: "sub", text: "Bearer tokens for quarryctl and this dashboard. Only their names are kept readable; the token itself is shown once." }),
      form, el("p", { id: "admin-result", role: "status" }), el("div", { id: "admin-secret", hidden: true }),
      el("div", { class: "scroll" }, el("table", { id: "admin-table" },
        el("thead", {}, el("tr", {}, ...["Name", "Role", "Created", "By", "Last used", "Expires", ""].map((h) => el("th", { text: h })))), el("tbody"))));
  }
  async function loadAdmins() {
    const tb = document.querySelector("#admin-table tbody");
    if (!tb || !Q.can("FleetService/ListAdminTokens")) return;
    try {
      const r = await Q.rpc("FleetService/ListAdminTokens");
      tb.replaceChildren(...r.tokens.map((t) => el("tr", { "data-name": t.name },
        el("td", { text: t.name }), el("td", { text: t.role }), el("td", { text: when(t.created_unix_nano) }),
        el("td", { text: t.created_by || "–" }), el("td", { text: t.last_used_unix_nano === "0" ? "never" : when(t.last_used_unix_nano) }),
        el("td", { text: when(t.expires_unix_nano) + (expired(t.expires_unix_nano) ? " (expired)" : "") }),
        el("td", {}, Q.can("FleetService/RevokeAdminToken") ? confirmButton("Revoke", async () => {
          try {
            await Q.rpc("FleetService/RevokeAdminToken", { name: t.name });
            document.getElementById("admin-secret").hidden = true;
            result("admin-result", true, "Admin token " + t.name + " revoked.");
          } catch (e) { result("admin-result", false, e.message); }
          loadAdmins();
        }) : null))));
    } catch (e) { result("admin-result", false, e.message); }
  }

  // ---------- revoke a rig ----------
  function rigCard() {
    if (!Q.can("FleetService/RevokeRig")) return null;
    const form = el("form", { class: "form", id: "revoke-rig-form" },
      field("revoke-rig", "Rig (name or id)", el("input", { type: "text", maxlength: "253", required: true })),
      el("div", { class: "field" }, el("label", { text: "\u00a0" }), confirmButton("Revoke rig", () => form.requestSubmit())));
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const rig = document.getElementById("revoke-rig").value.trim();
      fieldError("revoke-rig", rig ? "" : "name the rig to revoke");
      if (!rig) return;
      try {
        await Q.rpc("FleetService/RevokeRig", { rig });
        result("revoke-rig-result", true, "Rig " + rig + " revoked: its certificate is refused from now on.");
        form.reset();
      } catch (e) { fieldError("revoke-rig", e.message); result("revoke-rig-result", false, e.message); }
    });
    return el("div", { class: "card", id: "revoke-card" }, el("h2", { text: "Revoke a rig" }),
      el("p", { class: "sub", text: "A revoked rig's certificate is refused at once; it must enroll again with a new join token." }),
      form, el("p", { id: "revoke-rig-result", role: "status" }));
  }

  // ---------- audit log ----------
  function auditCard() {
    if (!Q.can("FleetService/ListAudit")) return null;
    const form = el("form", { class: "form", id: "audit-form" },
      field("audit-who", "Who", el("input", { type: "text", maxlength: "256" })),
      field("audit-action", "Action", el("input", { type: "text", maxlength: "256", placeholder: "token" })),
      field("audit-target", "Target", el("input", { type: "text", maxlength: "256" })),
      field("audit-from", "From", el("input", { type: "datetime-local" })),
      field("audit-to", "To", el("input", { type: "datetime-local" })),
      el("div", { class: "field" }, el("label", { text: "\u00a0" }), el("button", { type: "submit", text: "Filter" })));
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      const ns = (id) => { const v = document.getElementById(id).value; return v ? String(BigInt(new Date(v).getTime()) * 1000000n) : "0"; };
      audit.filter = { who: document.getElementById("audit-who").value.trim(), action: document.getElementById("audit-action").value.trim(),
        target: document.getElementById("audit-target").value.trim(), since_unix_nano: ns("audit-from"), until_unix_nano: ns("audit-to") };
      audit.pages = [""];
      audit.page = 0;
      loadAudit();
    });
    const newer = el("button", { type: "button", id: "audit-newer", text: "‹ Newer" });
    const older = el("button", { type: "button", id: "audit-older", text: "Older ›" });
    newer.addEventListener("click", () => { audit.page = Math.max(0, audit.page - 1); loadAudit(); });
    older.addEventListener("click", () => { audit.page++; loadAudit(); });
    return el("div", { class: "card", id: "audit-card" }, el("h2", { text: "Audit log" }), form,
      el("p", { id: "audit-result", role: "status" }),
      el("div", { class: "scroll" }, el("table", { id: "audit-table" },
        el("thead", {}, el("tr", {}, ...["Time", "Who", "Role", "Action", "Target", "Result", "Detail"].map((h) => el("th", { text: h })))), el("tbody"))),
      el("div", { class: "pager" }, newer, el("span", { id: "audit-range" }), older));
  }
  const auditPageSize = 50;
  async function loadAudit() {
    const tb = document.querySelector("#audit-table tbody");
    if (!tb) return;
    try {
      const r = await Q.rpc("FleetService/ListAudit", Object.assign({ limit: auditPageSize, page_token: audit.pages[audit.page] }, audit.filter));
      // The answer is oldest first within the page; newest on top reads better.
      const rows = r.entries.slice().reverse();
      tb.replaceChildren(...rows.map((e) => el("tr", {},
        el("td", { text: when(e.time_unix_nano) }), el("td", { text: e.who }), el("td", { text: e.role }), el("td", { text: e.action }),
        el("td", { text: e.target }), el("td", { class: e.result === "ok" ? "" : "result-bad", text: e.result }), el("td", { class: "detail", text: e.detail }))));
      if (rows.length === 0) tb.replaceChildren(el("tr", {}, el("td", { colspan: "7", class: "sub", text: "No entries match." })));
      audit.pages[audit.page + 1] = r.next_page_token;
      document.getElementById("audit-newer").disabled = audit.page === 0;
      document.getElementById("audit-older").disabled = !r.next_page_token;
      document.getElementById("audit-range").textContent = "page " + (audit.page + 1);
      result("audit-result", true, "");
    } catch (e) { result("audit-result", false, e.message); }
  }

  function show() {
    const cards = [joinCard(), adminCard(), rigCard(), auditCard()].filter(Boolean);
    sec().replaceChildren(el("h1", { text: "Access" }), ...(cards.length ? cards : [el("p", { class: "card sub", id: "access-denied", text: "Managing access needs the admin role." })]));
    loadJoin();
    loadAdmins();
    loadAudit();
  }
  Q.registerPage("access", "Access", show);
})();
