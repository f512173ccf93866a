// Jobs page: run a self-healing build job from the spec quarryctl takes,
// follow its attempts while it runs (by polling: the gateway has no
// streams), read its logs, cancel or revert it. The server decides who
// may do what and hides env values from roles that may not read secrets.
"use strict";
(function () {
  const Q = window.Quarry;
  const el = Q.el;
  const $ = (id) => document.getElementById(id);
  const sec = () => $("page-jobs");
  let generation = 0; // a poll loop stops once the page is shown anew

  const when = Q.when;
  const running = (s) => s === "pending" || s === "running";
  const badge = (s) => el("span", { class: "badge " + (s === "succeeded" || s === "healed" ? "online" : "offline"), "data-status": s, text: s });
  const result = Q.result;
  // protobuf JSON carries bytes as base64; the spec is UTF-8 text.
  function base64(text) {
    let bin = "";
    for (const b of new TextEncoder().encode(text)) bin += String.fromCharCode(b);
    return btoa(bin);
  }

  // ---------- list and run ----------
  function runCard() {
    if (!Q.can("JobService/RunJob")) return null;
    const spec = el("textarea", { id: "job-spec", class: "spec", spellcheck: "false", placeholder: "name: build\ndir: /srv/src/app\nbuild:\n  - make\nwhere: controller" });
    const form = el("form", { class: "form", id: "job-form" },
      el("div", { class: "field wide", "data-field": "job-spec" }, el("label", { for: "job-spec", text: "Job spec (YAML or JSON, as 'quarryctl job run -f' takes)" }), spec,
        el("div", { class: "field-error", id: "job-spec-error" })),
      el("div", { class: "field" }, el("button", { type: "submit", text: "Run job" })));
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const text = spec.value;
      const bad = !text.trim() ? "paste a job spec" : text.length > 256 * 1024 ? "a spec is at most 256 KiB" : "";
      $("job-spec-error").textContent = bad;
      form.querySelector('[data-field="job-spec"]').classList.toggle("invalid", !!bad);
      if (bad) return;
      try {
        const r = await Q.rpc("JobService/RunJob", { spec_yaml: base64(text) });
        location.hash = "#/jobs/" + encodeURIComponent(r.job.id);
      } catch (e) {
        $("job-spec-error").textContent = e.message;
        form.querySelector('[data-field="job-spec"]').classList.add("invalid");
      }
    });
    return el("div", { class: "card", id: "job-run-card" }, el("h2", { text: "Run a job" }), form);
  }
  async function showList(gen) {
    const tbody = el("tbody");
    sec().replaceChildren(el("h1", { text: "Jobs" }), runCard(),
      el("div", { class: "card" }, el("h2", { text: "Recent jobs" }), el("p", { id: "jobs-result", role: "status" }),
        el("div", { class: "scroll" }, el("table", { id: "job-table" }, el("thead", {}, el("tr", {}, ...["Job", "Name", "Where", "Status", "By", "Started", "Finished"].map((h) => el("th", { text: h })))), tbody))));
    const load = async () => {
      const r = await Q.rpc("JobService/ListJobs", { limit: 50 });
      tbody.replaceChildren(...r.jobs.map((j) => el("tr", { "data-job": j.id },
        el("td", {}, el("a", { href: "#/jobs/" + encodeURIComponent(j.id), text: j.id })), el("td", { text: j.name }), el("td", { text: j.where }),
        el("td", {}, badge(j.status)), el("td", { text: j.created_by || "–" }), el("td", { text: when(j.started_unix_nano) }), el("td", { text: when(j.finished_unix_nano) }))));
      if (!r.jobs.length) tbody.replaceChildren(el("tr", {}, el("td", { colspan: "7", class: "sub", text: "No jobs yet." })));
      return r.jobs.some((j) => running(j.status));
    };
    await poll(gen, load, "jobs-result");
  }

  // poll runs load now and again every second while it says something
  // is still running and the page is still the one it was started for.
  async function poll(gen, load, resultId) {
    for (;;) {
      let again = false;
      try {
        again = await load();
        if ($(resultId) && $(resultId).className === "result-bad") result(resultId, true, "");
      } catch (e) { result(resultId, false, e.message); again = true; }
      if (!again) return;
      await new Promise((r) => setTimeout(r, 1000));
      if (gen !== generation || sec().hidden) return;
    }
  }

  // ---------- one job ----------
  function attemptView(a) {
    const parts = [el("div", {}, el("strong", { text: "Attempt " + a.number }), " · " + [a.phase, a.step].filter(Boolean).join(" ") + " · exit " + a.exit_code +
      " · " + (Number(a.duration_ms) / 1000).toFixed(1) + " s")];
    if (a.diagnostics.length) parts.push(el("ul", { class: "events" }, ...a.diagnostics.map((d) => el("li", { text: [d.tool, d.code, d.file && d.file + ":" + d.line, d.message].filter(Boolean).join(" · ") }))));
    if (a.remediation) {
      parts.push(el("div", { class: "remediation" }, el("span", { class: "kind", text: "Remediation " + a.remediation.rule }), a.remediation.description));
      if (a.remediation.diff) parts.push(el("pre", { class: "log", text: a.remediation.diff }));
    }
    if (a.output_tail) parts.push(el("pre", { class: "log", text: a.output_tail }));
    return el("li", { "data-attempt": a.number }, ...parts);
  }
  function runView(r) {
    return el("div", { class: "card", "data-run": r.target },
      el("h2", {}, "Run on " + r.target + " ", badge(r.status)),
      el("p", { class: "sub", text: [r.attempts + " attempt(s)", r.diagnosis, r.error].filter(Boolean).join(" · ") }),
      el("ul", { class: "events attempts" }, ...r.attempt_log.map(attemptView)));
  }
  async function showJob(gen, id) {
    const actions = el("div", { class: "actions", id: "job-actions" });
    const head = el("div", { class: "card rig-head" },
      el("div", {}, el("h1", { id: "job-title", text: "Job " + id }), el("div", { class: "sub", id: "job-meta" })), actions);
    const runs = el("div", { id: "job-runs" });
    const logs = el("pre", { class: "log", id: "job-logs" });
    const spec = el("pre", { class: "log", id: "job-spec-view" });
    sec().replaceChildren(el("p", {}, el("a", { href: "#/jobs", text: "← All jobs" })), head, el("p", { id: "job-result", role: "status" }), runs,
      el("div", { class: "card" }, el("h2", { text: "Logs" }), logs), el("div", { class: "card" }, el("h2", { text: "Spec" }), spec));
    const cancel = Q.can("JobService/CancelJob") ? el("button", { type: "button", id: "job-cancel", class: "danger", text: "Cancel", hidden: true }) : null;
    const revert = Q.can("JobService/RevertJob") ? el("button", { type: "button", id: "job-revert", class: "danger", text: "Revert edits", hidden: true }) : null;
    if (cancel) {
      actions.append(cancel);
      cancel.addEventListener("click", async () => {
        try { await Q.rpc("JobService/CancelJob", { job_id: id }); result("job-result", true, "Cancel requested."); } catch (e) { result("job-result", false, e.message); }
      });
    }
    if (revert) {
      actions.append(revert);
      revert.addEventListener("click", async () => {
        revert.disabled = true;
        try {
          const r = await Q.rpc("JobService/RevertJob", { job_id: id });
          result("job-result", !r.runs.some((x) => x.error), r.runs.map((x) => x.target + ": " + (x.error ? x.error : x.pending ? "sent, the rig has not answered yet" : "restored " + x.restored.length + " file(s)" + (x.restored.length ? " (" + x.restored.join(", ") + ")" : ""))).join("; ") || "Nothing to revert.");
        } catch (e) { result("job-result", false, e.message); }
        revert.disabled = false;
      });
    }
    const load = async () => {
      const [g, l] = await Promise.all([Q.rpc("JobService/GetJob", { job_id: id }), Q.rpc("JobService/JobLogs", { job_id: id, max_bytes: 256 * 1024 })]);
      const j = g.job;
      $("job-title").replaceChildren("Job " + (j.name || j.id) + " ", badge(j.status));
      $("job-meta").textContent = [j.id, "on " + j.where, j.created_by && "by " + j.created_by, "started " + when(j.started_unix_nano),
        j.finished_unix_nano !== "0" && "finished " + when(j.finished_unix_nano), j.diagnosis].filter(Boolean).join(" · ");
      if (cancel) cancel.hidden = !running(j.status);
      if (revert) revert.hidden = running(j.status);
      runs.replaceChildren(...j.runs.map(runView));
      logs.textContent = (l.truncated ? "… (earlier output cut)\n" : "") + (l.text || "No output yet.");
      spec.textContent = j.spec_yaml;
      return running(j.status);
    };
    await poll(gen, load, "job-result");
  }

  function show(arg) {
    const gen = ++generation;
    return arg ? showJob(gen, arg) : showList(gen);
  }
  Q.registerPage("jobs", "Jobs", show);
})();
