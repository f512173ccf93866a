// Controllers page: the Raft group's health as its leader sees it (who
// leads, the term and log indexes, each member's addresses, liveness and
// how far behind it applies the log). Any signed-in role may read it; an
// admin may also take a member that is gone for good out of the group.
// A controller without a cluster section does not serve ClusterService,
// so the bridge answers Unimplemented and the page says it runs alone.
"use strict";
(function () {
  const Q = window.Quarry;
  const el = Q.el;
  const $ = (id) => document.getElementById(id);
  const sec = () => $("page-controllers");
  // armed is the member whose Remove button waits for its confirming
  // click; it lives here rather than on the button because every poll
  // rebuilds the table.
  // shown is the answer on screen: an unchanged one is not drawn again,
  // so an address being selected for copying stays selected.
  const st = { gen: 0, armed: "", armTimer: null, busy: "", shown: "" };
  const ALONE = "This controller runs alone (no cluster section): it has no Raft group to show.";

  // protobuf JSON writes uint64 as a decimal string; a member that has
  // not said how far it applied the log has 0 there, which is unknown,
  // not "nothing applied".
  const known = (v) => v !== undefined && v !== null && String(v) !== "" && String(v) !== "0";
  const badge = (ok, text) => el("span", { class: "badge " + (ok ? "online" : "offline"), text });
  const kv = (pairs) => el("dl", { class: "kv" }, ...pairs.flatMap(([k, v, key]) => [el("dt", { text: k }), el("dd", { "data-k": key }, v)]));

  function disarm() {
    clearTimeout(st.armTimer);
    st.armed = "";
    const b = document.querySelector("#controllers-table button[data-armed]");
    if (b) { delete b.dataset.armed; b.textContent = "Remove"; }
  }
  function removeButton(id) {
    const armed = st.armed === id;
    const b = el("button", { type: "button", class: "danger small", "data-remove": id, "data-armed": armed ? "1" : null,
      disabled: st.busy !== "", text: armed ? "Confirm remove" : "Remove" });
    b.addEventListener("click", async () => {
      if (st.armed !== id) {
        disarm();
        st.armed = id;
        b.dataset.armed = "1";
        b.textContent = "Confirm remove";
        st.armTimer = setTimeout(disarm, 5000);
        return;
      }
      disarm();
      st.busy = id;
      for (const x of document.querySelectorAll("#controllers-table button[data-remove]")) x.disabled = true;
      try {
        await Q.rpc("ClusterService/RemovePeer", { id });
        Q.result("controllers-result", true, "Removed " + id + " from the group: its quorum no longer counts it.");
      } catch (e) {
        Q.result("controllers-result", false, "Not removed: " + e.message);
      } finally {
        st.busy = "";
        st.shown = "";
      }
      await load(st.gen).catch(() => {});
    });
    return b;
  }

  function render(g) {
    const key = JSON.stringify(g);
    if (key === st.shown) return;
    st.shown = key;
    const peers = g.peers || [];
    const voters = peers.filter((p) => p.voter);
    const alive = voters.filter((p) => p.alive).length;
    const quorum = Math.floor(voters.length / 2) + 1;
    $("controllers-group").replaceChildren(kv([
      ["Leader", g.leader_id || "none: no member leads", "leader"],
      ["Term", known(g.term) ? String(g.term) : "unknown", "term"],
      ["Last index", known(g.last_index) ? String(g.last_index) : "unknown", "last-index"],
      ["Commit index", known(g.commit_index) ? String(g.commit_index) : "unknown", "commit-index"],
      ["Quorum", el("span", {}, badge(alive >= quorum, alive >= quorum ? "ok" : "lost"),
        " " + alive + " of " + voters.length + " voters alive, " + quorum + " needed"), "quorum"],
    ]));
    const canRemove = Q.can("ClusterService/RemovePeer");
    const heads = ["Member", "Raft address", "gRPC address", "State", "Voter", "Alive", "Applied index", "Lag"];
    if (canRemove) heads.push("");
    const head = document.querySelector("#controllers-table thead tr");
    if (head && head.children.length !== heads.length) head.replaceChildren(...heads.map((h) => el("th", { text: h })));
    Q.fillTable("controllers-table", peers.map((p) => {
      const applied = known(p.applied_index);
      const state = p.leader ? "leader" : "follower";
      return el("tr", { "data-peer": p.id, "data-state": state, class: p.leader ? "picked" : null },
        el("td", { text: p.id }),
        el("td", { class: "wrap", text: p.raft_addr || "unknown" }),
        el("td", { class: "wrap", text: p.grpc_addr || "unknown" }),
        el("td", { "data-k": "state", text: state }),
        el("td", { "data-k": "voter", text: p.voter ? "yes" : "no" }),
        el("td", { "data-k": "alive" }, badge(p.alive, p.alive ? "alive" : "down")),
        el("td", { class: "num", "data-k": "applied", text: applied ? String(p.applied_index) : "unknown" }),
        el("td", { class: "num", "data-k": "lag", text: applied ? String(p.lag) : "unknown" }),
        canRemove ? el("td", {}, p.leader ? null : removeButton(p.id)) : null);
    }), heads.length, "The group lists no members.");
  }

  // load fetches the group once; it returns false when there is no group
  // to follow.
  async function load(gen) {
    let g;
    try {
      g = await Q.rpc("ClusterService/ListPeers");
    } catch (e) {
      if (gen !== st.gen) return false;
      if (e.code === "Unimplemented") {
        $("controllers-body").replaceChildren(el("div", { class: "card" }, el("p", { id: "controllers-alone", text: ALONE })));
        return false;
      }
      Q.result("controllers-result", false, e.message);
      return true;
    }
    if (gen !== st.gen) return false;
    if (!$("controllers-group")) {
      $("controllers-body").replaceChildren(
        el("div", { class: "card" }, el("h2", { text: "Group" }), el("div", { id: "controllers-group" })),
        el("div", { class: "card" }, el("h2", { text: "Members" }), Q.table("controllers-table", [])));
    }
    const r = $("controllers-result");
    if (r && r.className === "result-bad" && !r.textContent.startsWith("Not removed")) { r.className = ""; r.textContent = ""; }
    render(g);
    return true;
  }

  async function show() {
    const gen = ++st.gen;
    disarm();
    st.shown = "";
    sec().replaceChildren(el("h1", { text: "Controllers" }), el("p", { id: "controllers-result", role: "status" }),
      el("div", { id: "controllers-body" }, el("p", { class: "sub", text: "Loading…" })));
    if (!(await load(gen))) return;
    // Leadership, liveness and lag change without anyone acting here, so
    // the page follows them while it is shown.
    const poll = async () => {
      if (gen !== st.gen || sec().hidden) return;
      if (!(await load(gen).catch(() => true))) return;
      setTimeout(poll, 3000);
    };
    setTimeout(poll, 3000);
  }
  Q.registerPage("controllers", "Controllers", show);
})();
