// Billing page: customers' standing, plans, customers, rig assignment,
// and the Stripe outbox with its dead letters. Standing is what a viewer
// may see (the server leaves emails out below admin); the rest is admin
// only, and the page shows it only when Quarry.can allows.
"use strict";
(function () {
  const Q = window.Quarry;
  const el = Q.el;
  const sec = () => document.getElementById("page-billing");
  const $ = (id) => document.getElementById(id);
  let showDelivered = false;

  const when = Q.when;
  const cents = (c) => Q.fmtUSD(Number(c) / 100);
  // Plans keep energy prices in thousandths of a cent per kWh.
  const perKWh = (mc) => "$" + String(Number(mc) / 100000) + "/kWh";
  const kwh = (mwh) => (Number(mwh) / 1e6).toFixed(2) + " kWh";

  function field(id, label, input) {
    input.id = id;
    return el("div", { class: "field", "data-field": id }, el("label", { for: id, text: label }), input, el("div", { class: "field-error", id: id + "-error" }));
  }
  function fieldError(id, msg) {
    const f = document.querySelector(`[data-field="${id}"]`);
    if (f) f.classList.toggle("invalid", !!msg);
    if ($(id + "-error")) $(id + "-error").textContent = msg || "";
    return !msg;
  }
  const result = Q.result;
  const submitField = (label) => el("div", { class: "field" }, el("label", { text: "\u00a0" }), el("button", { type: "submit", text: label }));
  const table = Q.table, fill = Q.fillTable;
  // Money typed as dollars becomes whole cents (or millicents) without
  // floating-point drift: "0.125" is 12500 millicents, not 12499.
  function units(text, decimals) {
    const m = String(text).trim().match(/^(\d+)(?:\.(\d+))?$/);
    if (!m || (m[2] || "").length > decimals) return null;
    return String(BigInt(m[1]) * 10n ** BigInt(decimals) + BigInt((m[2] || "").padEnd(decimals, "0") || "0"));
  }

  // ---------- standing ----------
  function standingCard() {
    if (!Q.can("BillingService/BillingStatus")) return null;
    return el("div", { class: "card", id: "standing-card" }, el("h2", { text: "Standing" }),
      table("standing-table", ["Customer", "Plan", "Status", "Rigs", "This month", "Estimate", "Pending", "Dead letters", "Action"]),
      el("p", { id: "standing-result", role: "status" }));
  }
  async function loadStanding() {
    if (!$("standing-table")) return;
    try {
      const r = await Q.rpc("BillingService/BillingStatus");
      fill("standing-table", r.customers.map((c) => el("tr", { "data-customer": c.customer.id },
        el("td", { text: c.customer.name || c.customer.id }), el("td", { text: c.customer.plan }),
        el("td", {}, el("span", { class: "badge " + (c.customer.status === "active" ? "online" : "offline"), text: c.customer.status || "–" })),
        el("td", { class: "num", text: c.active_rigs }), el("td", { class: "num", text: kwh(c.month_to_date_milli_wh) }),
        el("td", { class: "num", text: cents(c.estimate_cents) }), el("td", { class: "num", text: c.pending_records }),
        el("td", { class: "num", text: c.dead_letters }), el("td", { text: c.action || "none" }))), 9, "No customers yet.");
    } catch (e) { result("standing-result", false, e.message); throw e; }
  }

  // ---------- plans ----------
  function plansCard() {
    if (!Q.can("BillingService/ListPlans")) return null;
    const form = Q.can("BillingService/CreatePlan") ? el("form", { class: "form", id: "plan-form" },
      field("plan-id", "Plan id", el("input", { type: "text", maxlength: "64", placeholder: "std" })),
      field("plan-name", "Name", el("input", { type: "text", maxlength: "128", placeholder: "Standard" })),
      field("plan-fee", "Fee per rig per month ($)", el("input", { type: "text", inputmode: "decimal", value: "0" })),
      field("plan-kwh", "Energy price per kWh ($)", el("input", { type: "text", inputmode: "decimal", value: "0" })),
      field("plan-price", "Stripe price for rigs", el("input", { type: "text", maxlength: "255", placeholder: "price_…" })),
      field("plan-energy-price", "Stripe metered energy price (optional)", el("input", { type: "text", maxlength: "255", placeholder: "price_…" })),
      submitField("Save plan")) : null;
    if (form) form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const id = $("plan-id").value.trim(), fee = units($("plan-fee").value, 2), kwhPrice = units($("plan-kwh").value, 5), price = $("plan-price").value.trim();
      const ok = [fieldError("plan-id", id ? "" : "an id is required"),
        fieldError("plan-fee", fee !== null ? "" : "dollars, at most two decimals"),
        fieldError("plan-kwh", kwhPrice !== null ? "" : "dollars, at most five decimals"),
        fieldError("plan-price", price ? "" : "the Stripe price the rig count is billed at")].every(Boolean);
      if (!ok) return;
      try {
        const r = await Q.rpc("BillingService/CreatePlan", { plan: { id, name: $("plan-name").value.trim(), monthly_fee_per_rig_cents: fee,
          energy_millicents_per_kwh: kwhPrice, stripe_rig_price_id: price, stripe_energy_price_id: $("plan-energy-price").value.trim() } });
        result("plan-result", true, "Plan " + r.plan.id + " saved.");
        form.reset();
        refresh();
      } catch (e) { result("plan-result", false, e.message); }
    });
    return el("div", { class: "card", id: "plans-card" }, el("h2", { text: "Plans" }),
      table("plan-table", ["Plan", "Name", "Per rig / month", "Energy", "Stripe prices"]), form, el("p", { id: "plan-result", role: "status" }));
  }
  let plans = [];
  async function loadPlans() {
    if (!$("plan-table")) return;
    const r = await Q.rpc("BillingService/ListPlans");
    plans = r.plans;
    fill("plan-table", plans.map((p) => el("tr", { "data-plan": p.id },
      el("td", { text: p.id }), el("td", { text: p.name }), el("td", { class: "num", text: cents(p.monthly_fee_per_rig_cents) }),
      el("td", { class: "num", text: perKWh(p.energy_millicents_per_kwh) }),
      el("td", { text: [p.stripe_rig_price_id, p.stripe_energy_price_id].filter(Boolean).join(", ") }))), 5, "No plans yet.");
    const sel = $("customer-plan");
    if (sel) sel.replaceChildren(...plans.map((p) => el("option", { value: p.id, text: p.name ? p.id + " — " + p.name : p.id })));
  }

  // ---------- customers and rigs ----------
  function customersCard() {
    if (!Q.can("BillingService/ListCustomers")) return null;
    const form = Q.can("BillingService/CreateCustomer") ? el("form", { class: "form", id: "customer-form" },
      field("customer-name", "Name", el("input", { type: "text", maxlength: "128", placeholder: "Acme Hosting" })),
      field("customer-email", "Billing email", el("input", { type: "email", maxlength: "254" })),
      field("customer-plan", "Plan", el("select")),
      field("customer-id", "Id (optional)", el("input", { type: "text", maxlength: "64", placeholder: "from the name" })),
      submitField("Create customer")) : null;
    if (form) form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const name = $("customer-name").value.trim(), email = $("customer-email").value.trim(), plan = $("customer-plan").value;
      const ok = [fieldError("customer-name", name ? "" : "a name is required"),
        fieldError("customer-email", /^[^@\s]+@[^@\s]+$/.test(email) ? "" : "a valid email address"),
        fieldError("customer-plan", plan ? "" : "create a plan first")].every(Boolean);
      if (!ok) return;
      try {
        const r = await Q.rpc("BillingService/CreateCustomer", { id: $("customer-id").value.trim(), name, email, plan });
        result("customer-result", true, "Customer " + r.customer.id + " created; Stripe is told through the outbox.");
        form.reset();
        refresh();
      } catch (e) { result("customer-result", false, e.message); }
    });
    const assign = Q.can("BillingService/AssignRigs") ? el("form", { class: "form", id: "assign-form" },
      field("assign-customer", "Customer", el("select")),
      field("assign-rigs", "Rigs (names or ids, comma-separated)", el("input", { type: "text", maxlength: "4096" })),
      submitField("Assign rigs")) : null;
    if (assign) assign.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const rigs = $("assign-rigs").value.split(/[\s,]+/).filter(Boolean);
      if (!fieldError("assign-rigs", rigs.length ? "" : "name at least one rig")) return;
      const customer = $("assign-customer").value;
      try {
        const r = await Q.rpc("BillingService/AssignRigs", { customer, rigs });
        result("assign-result", true, customer ? r.rig_ids.join(", ") + " assigned to " + customer + " (now " + r.customer.rigs.length + " rigs)." : r.rig_ids.join(", ") + " unassigned.");
        assign.reset();
        refresh();
      } catch (e) { fieldError("assign-rigs", e.message); result("assign-result", false, e.message); }
    });
    return el("div", { class: "card", id: "customers-card" }, el("h2", { text: "Customers" }),
      table("customer-table", ["Customer", "Name", "Email", "Plan", "Status", "Rigs", "Stripe", "Since"]),
      form, el("p", { id: "customer-result", role: "status" }),
      assign ? el("h2", { text: "Assign rigs" }) : null, assign, el("p", { id: "assign-result", role: "status" }));
  }
  async function loadCustomers() {
    if (!$("customer-table")) return;
    const r = await Q.rpc("BillingService/ListCustomers");
    fill("customer-table", r.customers.map((c) => el("tr", { "data-customer": c.id },
      el("td", { text: c.id }), el("td", { text: c.name }), el("td", { text: c.email }), el("td", { text: c.plan }),
      el("td", { text: c.status + (c.past_due_since_unix_nano !== "0" ? " since " + when(c.past_due_since_unix_nano) : "") }),
      el("td", { class: "wrap", text: c.rigs.join(", ") || "–" }), el("td", { text: c.stripe_customer_id || "pending" }),
      el("td", { text: when(c.created_unix_nano) }))), 8, "No customers yet.");
    const sel = $("assign-customer");
    if (sel) {
      const keep = sel.value;
      sel.replaceChildren(...r.customers.map((c) => el("option", { value: c.id, text: c.id })), el("option", { value: "", text: "(nobody: unassign)" }));
      if (keep !== "" && r.customers.some((c) => c.id === keep)) sel.value = keep;
    }
  }

  // ---------- outbox and dead letters ----------
  const recordHeads = ["#", "Kind", "State", "Customer", "Rig", "Attempts", "Last error", "Next / done", "Result"];
  function recordRow(r, extra) {
    return el("tr", { "data-record": r.id, "data-kind": r.kind, "data-state": r.state },
      el("td", { class: "num", text: r.id }), el("td", { text: r.kind }), el("td", { text: r.state }), el("td", { text: r.customer }),
      el("td", { text: r.rig || "–" }), el("td", { class: "num", text: r.attempts }), el("td", { class: "wrap", text: r.last_error || "–" }),
      el("td", { text: r.state === "done" ? when(r.done_unix_nano) : when(r.next_attempt_unix_nano) }), el("td", { text: r.result || "–" }), extra || null);
  }
  function outboxCard() {
    if (!Q.can("BillingService/ListOutbox")) return null;
    const all = el("input", { type: "checkbox", id: "outbox-all" });
    all.checked = showDelivered;
    all.addEventListener("change", () => { showDelivered = all.checked; loadOutbox(); });
    const reload = el("button", { type: "button", class: "small", text: "Refresh" });
    reload.addEventListener("click", refresh);
    return el("div", { class: "card", id: "outbox-card" }, el("h2", { text: "Stripe outbox" }),
      el("div", { class: "toolbar" }, el("label", {}, all, " include delivered"), reload),
      table("outbox-table", recordHeads));
  }
  async function loadOutbox() {
    if (!$("outbox-table")) return;
    const r = await Q.rpc("BillingService/ListOutbox", { all: showDelivered });
    fill("outbox-table", r.records.slice().reverse().map((x) => recordRow(x)), recordHeads.length, showDelivered ? "Nothing sent yet." : "Nothing waiting: every call was delivered.");
  }
  function deadCard() {
    if (!Q.can("BillingService/ListDeadLetter")) return null;
    return el("div", { class: "card", id: "dead-card" }, el("h2", { text: "Dead letters" }),
      el("p", { class: "sub", text: "Stripe calls that failed too often or were refused. Retry after fixing the cause; one that ran out of attempts keeps its idempotency key, so Stripe will not apply it twice." }),
      el("p", { id: "dead-result", role: "status" }), table("dead-table", recordHeads.concat([""])));
  }
  async function loadDead() {
    if (!$("dead-table")) return;
    const r = await Q.rpc("BillingService/ListDeadLetter");
    fill("dead-table", r.records.map((x) => {
      let retry = null;
      if (Q.can("BillingService/RetryOutbox")) {
        retry = el("button", { type: "button", class: "small", "data-retry": x.id, text: "Retry" });
        retry.addEventListener("click", async () => {
          retry.disabled = true;
          try {
            await Q.rpc("BillingService/RetryOutbox", { id: x.id });
            result("dead-result", true, "Record " + x.id + " (" + x.kind + ") is back in the outbox.");
          } catch (e) { result("dead-result", false, "Record " + x.id + ": " + e.message); retry.disabled = false; }
          refresh();
        });
      }
      return recordRow(x, el("td", {}, retry));
    }), recordHeads.length + 1, "No dead letters.");
  }

  async function refresh() {
    const loads = [loadStanding(), loadPlans(), loadCustomers(), loadOutbox(), loadDead()];
    const results = await Promise.allSettled(loads);
    const failed = results.find((r) => r.status === "rejected");
    result("billing-result", !failed, failed ? failed.reason.message : "");
  }

  function show() {
    const cards = [standingCard(), plansCard(), customersCard(), deadCard(), outboxCard()].filter(Boolean);
    sec().replaceChildren(el("h1", { text: "Billing" }), el("p", { id: "billing-result", role: "status" }),
      ...(cards.length ? cards : [el("p", { class: "card sub", id: "billing-denied", text: "Billing needs the admin role." })]));
    return refresh();
  }
  Q.registerPage("billing", "Billing", show);
})();
