"""The status page: one HTML document with its style and script inline (no external asset, so
it works on a machine without Internet access). It only reads ``/status.json`` and
``/history.json`` once a second and offers no action; every value goes into the page as text,
never as markup."""

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>nonstop status</title>
<style>
  body { font: 14px/1.4 system-ui, sans-serif; margin: 1.2em 2em; color: #1d2430;
         background: #f6f7f9; }
  h1 { font-size: 1.35em; margin: 0 0 .2em; }
  h2 { font-size: 1.05em; margin: 1.3em 0 .4em; }
  .sub { color: #5b6472; }
  table { border-collapse: collapse; background: #fff; min-width: 40em; }
  th, td { text-align: left; padding: .3em .8em; border-bottom: 1px solid #e2e5ea; }
  th { font-weight: 600; background: #eef0f3; }
  .st { font-weight: 600; padding: .05em .5em; border-radius: .6em; }
  .active, .held, .up, .running { background: #d7f5dd; color: #11632a; }
  .dead, .failed, .stop_failed, .start_failed { background: #fbdada; color: #8c1515; }
  .init, .starting, .stopping, .unknown { background: #fdf0c8; color: #6b5200; }
  .none, .stopped { background: #e8eaee; color: #444c58; }
  #timeline { font: 13px/1.45 ui-monospace, monospace; background: #fff; padding: .5em 1em;
              max-height: 32em; overflow: auto; border: 1px solid #e2e5ea; }
  #timeline div { white-space: pre-wrap; }
  .k-node_dead, .k-group_failed, .k-link_dead, .k-sync_conflict, .k-sync_failed,
  .k-sync_overwritten, .k-standby_refused { color: #a11616; }
  .k-group_acquired, .k-node_up, .k-comm_up { color: #11632a; }
  #error { color: #a11616; font-weight: 600; }
</style>
</head>
<body>
<h1 id="title">nonstop</h1>
<div class="sub"><span id="summary">loading...</span> <span id="error"></span></div>
<h2>Nodes</h2>
<table><thead><tr><th>node</th><th>status</th><th>last heard</th><th>deadtime</th>
<th>links</th></tr></thead><tbody id="nodes"></tbody></table>
<h2>Resource groups</h2>
<table><thead><tr><th>group</th><th>held by</th><th>here</th><th>epoch</th>
<th>resources</th><th>last decision</th></tr></thead><tbody id="groups"></tbody></table>
<h2>Replication</h2>
<div id="sync" class="sub">-</div>
<h2>History <span class="sub">(newest first)</span></h2>
<div id="timeline"></div>
<script>
"use strict";
let lastSeq = 0;
const records = [];
function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}
function badge(state) { return el("span", state, "st " + state); }
function row(cells) {
  const tr = el("tr");
  for (const c of cells) {
    const td = el("td");
    if (c instanceof Node) td.appendChild(c); else td.textContent = c;
    tr.appendChild(td);
  }
  return tr;
}
function ago(ms) { return ms === null ? "never" : ms < 1000 ? ms + " ms ago"
                                                 : (ms / 1000).toFixed(1) + " s ago"; }
function heard(st, n) {  // a peer never heard while comm is not up: when initdead ends
  if (n.local) return "-";
  const waiting = !st.comm_up && n.last_heard_ms_ago === null && n.dead_in_ms != null;
  return ago(n.last_heard_ms_ago) + (waiting ? " (declared dead in " +
    Math.ceil(n.dead_in_ms / 1000) + " s unless heard)" : "");
}
function showStatus(st) {
  document.getElementById("title").textContent =
    "nonstop: cluster " + st.cluster + " seen from " + st.node;
  document.getElementById("summary").textContent =
    st.node + " is " + st.status + (st.comm_up ? ", comm up" : ", waiting for peers") +
    " - generation " + st.generation + ", up " + Math.round(st.uptime_s) + " s - updated " +
    new Date().toTimeString().slice(0, 8);
  const nodes = document.getElementById("nodes");
  nodes.replaceChildren(...st.nodes.map(n => row([
    n.name + (n.local ? " (this node)" : ""), badge(n.status),
    heard(st, n), n.deadtime_ms + " ms",
    Object.entries(n.links).map(([k, v]) => k + ": " + v).join(", ") || "-"])));
  const groups = document.getElementById("groups");
  groups.replaceChildren(...st.groups.map(g => {
    const res = el("div");
    for (const r of g.resources) {
      const line = el("div");
      line.appendChild(badge(r.state));
      line.appendChild(document.createTextNode(" " + r.resource));
      res.appendChild(line);
    }
    return row([g.key, g.holder === null ? "nobody" : g.holder, badge(g.local_state),
                g.epoch, res, g.reason || "-"]);
  }));
  const s = st.sync;
  document.getElementById("sync").textContent = st.sync_error ? "OFF: " + st.sync_error :
    s === null ? "off (no nonstop_sync)" :
    (s.active ? "active: pushing to the peers" : "standby: receiving") +
    " - lag " + s.lag_s + " s, " + s.dirty + " file(s) not yet pushed, " + s.syncs +
    " push(es)" + (s.last_error ? " - error: " + s.last_error :
                   s.last_problem ? " - last problem (" +
                   new Date(s.last_problem.at * 1000).toLocaleTimeString() + "): " +
                   s.last_problem.text : "");
}
function showHistory(recs) {
  for (const r of recs) { records.push(r); lastSeq = Math.max(lastSeq, r.seq); }
  records.splice(0, Math.max(0, records.length - 300));
  const box = document.getElementById("timeline");
  box.replaceChildren(...records.slice().reverse().map(r => {
    const t = new Date(r.time * 1000);
    const text = t.toTimeString().slice(0, 8) + "." +
      String(t.getMilliseconds()).padStart(3, "0") + "  " + ("#" + r.seq).padEnd(7) +
      r.kind.replace(/_/g, " ").padEnd(18) + " " + r.reason +
      (r.data.duration_ms != null ? " (" + r.data.duration_ms + " ms)" : "") +
      (r.data.who ? " [asked by " + r.data.who + "]" : "");
    return el("div", text, "k-" + r.kind);
  }));
}
async function refresh() {
  try {
    const [st, hist] = await Promise.all([
      fetch("status.json", {cache: "no-store"}).then(r => r.json()),
      fetch("history.json?after=" + lastSeq, {cache: "no-store"}).then(r => r.json())]);
    showStatus(st);
    showHistory(hist.records);
    document.getElementById("error").textContent = "";
  } catch (e) {
    document.getElementById("error").textContent = "daemon not answering (" + e + ")";
  }
}
refresh();
setInterval(refresh, 1000);
</script>
</body>
</html>
"""
