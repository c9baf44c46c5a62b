// Fustor's web console: plain JavaScript over the JSON/HTTP gateway (/v1/...). The API key is
// kept in sessionStorage and sent as the Authorization header; it never goes into a URL. Every
// listing is paged (a view of a million files is never loaded whole), and the directory on
// screen follows the view's change feed (Watch, newline-delimited JSON read with fetch and a
// ReadableStream). A rows view (driver rows) is shown as its rows in key order, paged the same
// way, with its row figures: it has no tree, stats or change feed.
"use strict";

const KEY = "fustor.key";
const $ = (id) => document.getElementById(id);
const state = {
  views: [], view: "", member: "", path: "/", pageSize: 250,
  tokens: [""], page: 0, nextToken: "", watch: null, refetch: null, statsTimer: null, tab: "browse",
};

// ---- the gateway ----------------------------------------------------------------------------

class APIError extends Error {
  constructor(status, body) {
    super(body && body.message ? body.message : "HTTP " + status);
    this.status = status;
    this.code = body && body.code;
  }
}

function headers() {
  return { "Authorization": "Bearer " + sessionStorage.getItem(KEY), "Accept": "application/json" };
}

function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== "" && v !== undefined && v !== null && v !== false) q.set(k, String(v));
  }
  const s = q.toString();
  return s ? "?" + s : "";
}

async function api(path, params = {}) {
  const resp = await fetch(path + query(params), { headers: headers() });
  let body = null;
  try { body = await resp.json(); } catch (e) { body = null; }
  if (!resp.ok) throw new APIError(resp.status, body);
  return body;
}

function viewURL(what) { return "/v1/views/" + encodeURIComponent(state.view) + "/" + what; }

// ---- formatting -----------------------------------------------------------------------------

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v; else if (k === "text") e.textContent = v; else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c);
  return e;
}

function size(n) {
  n = Number(n || 0);
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i === 0 ? String(n) : n.toFixed(1)) + " " + units[i];
}

function when(ts) {
  if (!ts) return "";
  const d = new Date(ts);
  return isNaN(d) ? ts : d.toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
}

function flags(e) {
  const f = [];
  if (e.integrity_suspect) f.push(el("span", { class: "flag suspect", title: "may still be being written", text: "suspect" }));
  if (!e.known_by_agent && e.path !== "/") f.push(el("span", { class: "flag blind", title: "found by an audit, not seen by an agent", text: "blind spot" }));
  if (e.audit_skipped) f.push(el("span", { class: "flag skipped", title: "the last audit found it unchanged", text: "audit skipped" }));
  if (e.member) f.push(el("span", { class: "flag member", text: e.member }));
  return f;
}

function showError(err) {
  if (err && err.status === 401) {
    $("error").textContent = "The key was refused (" + err.message + "). Sign in again with a valid key.";
  } else if (err && err.status === 403) {
    $("error").textContent = "This key may not do that: " + err.message;
  } else {
    $("error").textContent = err ? String(err.message || err) : "";
  }
}

function parentOf(p) {
  const i = p.lastIndexOf("/");
  return i <= 0 ? "/" : p.slice(0, i);
}

function join(dir, name) { return dir === "/" ? "/" + name : dir + "/" + name; }

// ---- sign in --------------------------------------------------------------------------------

async function signIn(key) {
  sessionStorage.setItem(KEY, key);
  try {
    const resp = await api("/v1/views");
    state.views = resp.views || [];
  } catch (err) {
    sessionStorage.removeItem(KEY);
    $("loginerror").textContent = err.status === 401
      ? "Wrong key: Fusion refused it (" + err.message + ")."
      : "Cannot sign in: " + err.message;
    $("login").hidden = false;
    $("app").hidden = true;
    $("viewbar").hidden = true;
    return false;
  }
  $("loginerror").textContent = "";
  $("login").hidden = true;
  $("app").hidden = false;
  $("viewbar").hidden = false;
  fillViews();
  return true;
}

function signOut() {
  sessionStorage.removeItem(KEY);
  stopWatch();
  location.hash = "";
  location.reload();
}

function fillViews() {
  const sel = $("view");
  sel.replaceChildren();
  for (const v of state.views) sel.append(el("option", { value: v.id, text: v.id + " (" + v.driver + ")" }));
  const h = new URLSearchParams(location.hash.slice(1));
  const want = h.get("view");
  state.view = state.views.some((v) => v.id === want) ? want : (state.views[0] ? state.views[0].id : "");
  state.member = h.get("member") || "";
  state.path = h.get("path") || "/";
  sel.value = state.view;
  if (!state.view) {
    showError({ message: "This key may query no view (an admin key only sees sessions)." });
    selectTab("sessions");
    return;
  }
  viewChanged(false);
}

function currentView() { return state.views.find((v) => v.id === state.view); }

function viewChanged(resetPath) {
  const v = currentView();
  const members = (v && v.meta && v.meta.members) || [];
  const msel = $("member");
  msel.replaceChildren(el("option", { value: "", text: "all members" }));
  for (const m of members) msel.append(el("option", { value: m.member, text: m.member + (m.ready ? "" : " (not ready)") }));
  $("memberlabel").hidden = members.length === 0;
  if (!members.some((m) => m.member === state.member)) state.member = "";
  msel.value = state.member;
  if (resetPath) state.path = "/";
  openDir(state.path);
}

function saveHash() {
  const h = new URLSearchParams({ view: state.view, path: state.path });
  if (state.member) h.set("member", state.member);
  history.replaceState(null, "", "#" + h.toString());
}

function metaText(meta) {
  if (!meta) return "";
  const s = [];
  if (!meta.snapshot_complete) s.push("snapshot running");
  if (!meta.authoritative_session) s.push("no leader agent");
  if (meta.stale) s.push("stale since " + when(meta.stale_since));
  if (meta.restored) s.push("restored from a checkpoint");
  if (meta.has_blind_spot) s.push("has blind spots");
  return s.length ? s.join(" · ") : "live, authoritative";
}

// ---- browse ---------------------------------------------------------------------------------

function openDir(path) {
  state.path = path;
  state.tokens = [""];
  state.page = 0;
  saveHash();
  if (isRows()) {
    // A rows view (a table's rows by key) has no tree, stats or change feed: its rows, paged.
    stopWatch();
    $("live").textContent = "";
    setHeader(["Key", "Index", "Updated", "Fields"]);
    const v = currentView();
    $("crumbs").replaceChildren(el("span", { text: v.id + ": rows of schema " + v.schema }));
    loadPage();
    return;
  }
  setHeader(["Name", "Size", "Modified", "Flags"]);
  crumbs();
  loadPage();
  loadStats();
  startWatch();
}

function isRows() {
  const v = currentView();
  return !!v && v.driver === "rows";
}

function setHeader(cols) {
  $("listing").tHead.rows[0].replaceChildren(...cols.map((c) => el("th", { text: c })));
}

// loadRows shows one page of a rows view's rows, in key order.
async function loadRows() {
  const started = performance.now();
  let resp;
  try {
    resp = await api(viewURL("rows"), { page_size: state.pageSize, page_token: state.tokens[state.page] });
  } catch (err) {
    showError(err);
    return;
  }
  showError(null);
  const fetched = performance.now();
  const rows = resp.rows || [];
  state.nextToken = resp.next_page_token || "";
  const frag = document.createDocumentFragment();
  for (const r of rows) {
    const fields = Object.keys(r.fields || {}).sort().map((k) => k + "=" + r.fields[k]).join("  ");
    const tr = el("tr", { class: "file" }, el("td", { text: r.key }), el("td", { class: "num", text: String(r.index || 0) }),
      el("td", { text: when(r.updated_at) }), el("td", { text: fields }));
    tr.dataset.key = r.key;
    frag.append(tr);
  }
  const tb = $("listing").tBodies[0];
  tb.replaceChildren(frag);
  const done = performance.now();
  document.body.dataset.rows = String(tb.rows.length);
  $("rendertime").textContent = tb.rows.length + " rows, rendered in " + (done - fetched).toFixed(0) + " ms";
  document.body.dataset.loadMs = (done - started).toFixed(1);
  $("prev").disabled = state.page === 0;
  $("next").disabled = !state.nextToken;
  $("pageinfo").textContent = "page " + (state.page + 1);
  $("viewstate").textContent = metaText(resp.meta);
  const st = resp.stats || {};
  const item = (label, value) => el("span", {}, label + " ", el("b", { text: String(value) }));
  $("stats").replaceChildren(item("rows", Number(st.rows || 0)), item("tombstones", Number(st.tombstones || 0)),
    item("last index", Number(st.last_index || 0)), item("stale", Number(st.stale || 0)),
    item("rejected", Number(st.rejected || 0)), item("blind-spot deletions", Number(st.blind_spot_deletions || 0)),
    item("snapshot", resp.meta && resp.meta.snapshot_complete ? "complete" : "running"));
}

function crumbs() {
  const c = $("crumbs");
  c.replaceChildren();
  const parts = state.path === "/" ? [] : state.path.slice(1).split("/");
  const root = el("a", { text: state.view + ":/" });
  root.onclick = () => openDir("/");
  c.append(root);
  let p = "";
  parts.forEach((name, i) => {
    p += "/" + name;
    const target = p;
    const a = el("a", { text: name });
    a.onclick = () => openDir(target);
    c.append(a);
    if (i < parts.length - 1) c.append("/");
  });
  $("searchpath").value = state.path;
}

async function loadPage() {
  if (isRows()) return loadRows();
  const started = performance.now();
  let resp;
  try {
    resp = await api(viewURL("dir"), {
      path: state.path, page_size: state.pageSize, page_token: state.tokens[state.page], member: state.member,
    });
  } catch (err) {
    showError(err);
    return;
  }
  showError(null);
  const fetched = performance.now();
  let entries = resp.entries || [];
  let next = resp.next_page_token || "";
  if (resp.members && resp.members.length) {
    // A forest asked without a member: each member's first page, labelled; paging is per
    // member (choose one above).
    entries = [];
    for (const m of resp.members) {
      for (const e of m.entries || []) { e.member = e.member || m.member; entries.push(e); }
      if (m.next_page_token) next = "member";
    }
  }
  state.nextToken = next;
  renderListing(entries);
  const done = performance.now();
  const tb = $("listing").tBodies[0];
  document.body.dataset.renderMs = (done - fetched).toFixed(1);
  document.body.dataset.loadMs = (done - started).toFixed(1);
  document.body.dataset.rows = String(tb.rows.length);
  $("rendertime").textContent = tb.rows.length + " entries, rendered in " + (done - fetched).toFixed(0) + " ms";
  $("prev").disabled = state.page === 0;
  $("next").disabled = !next || next === "member";
  $("pageinfo").textContent = "page " + (state.page + 1) + (next === "member" ? " (choose a member to see its next pages)" : "");
  $("viewstate").textContent = metaText(resp.meta);
}

function renderListing(entries) {
  const tb = $("listing").tBodies[0];
  const old = new Set(Array.from(tb.rows, (r) => r.dataset.path));
  const frag = document.createDocumentFragment();
  if (state.path !== "/") {
    const up = el("a", { text: ".." });
    up.onclick = () => openDir(parentOf(state.path));
    frag.append(el("tr", { class: "dir" }, el("td", {}, up), el("td"), el("td"), el("td")));
  }
  for (const e of entries) {
    const name = e.name || e.path;
    const cell = el("td");
    if (e.is_dir) {
      const a = el("a", { text: name + "/" });
      a.onclick = () => openDir(e.path);
      cell.append(a);
    } else {
      cell.textContent = name;
    }
    const row = el("tr", { class: e.is_dir ? "dir" : "file" }, cell,
      el("td", { class: "num", text: e.is_dir ? (e.child_count ? e.child_count + " items" : "") : size(e.size) }),
      el("td", { text: when(e.mtime) }),
      el("td", {}, ...flags(e)));
    row.dataset.path = e.path;
    if (e.integrity_suspect) row.dataset.suspect = "1";
    if (old.size && !old.has(e.path)) row.classList.add("fresh");
    frag.append(row);
  }
  tb.replaceChildren(frag);
}

// loadStats shows the subtree's figures; while a snapshot or an audit runs they are asked
// again every 5 s (progress), else when the change feed says something changed.
async function loadStats() {
  clearTimeout(state.statsTimer);
  let s;
  try {
    s = await api(viewURL("stats"), { path: state.path, member: state.member });
  } catch (err) {
    $("stats").replaceChildren(el("span", { class: "muted", text: "no figures: " + err.message }));
    return;
  }
  const item = (label, value) => el("span", {}, label + " ", el("b", { text: String(value) }));
  const audit = s.audit_running ? "running" : (s.last_audit_end ? "last ended " + when(s.last_audit_end) : "none yet");
  $("stats").replaceChildren(
    item("files", Number(s.file_count || 0)), item("directories", Number(s.dir_count || 0)),
    item("size", size(s.total_size)), item("newest", when(s.latest_mtime) || "-"),
    item("suspects (view)", Number(s.suspect_count || 0)),
    item("blind spots (view)", Number(s.blind_spot_additions || 0) + Number(s.blind_spot_deletions || 0)),
    item("audits", Number(s.audit_cycles || 0) + ", " + audit),
    item("snapshot", s.meta && s.meta.snapshot_complete ? "complete" : "running"));
  if (s.audit_running || !(s.meta && s.meta.snapshot_complete)) state.statsTimer = setTimeout(loadStats, 5000);
}

// ---- live updates ---------------------------------------------------------------------------

function stopWatch() {
  if (state.watch) state.watch.abort();
  state.watch = null;
}

// startWatch follows the changes under the directory on screen; a change of one of its
// entries (or the directory itself) reloads the page shown, at most every 300 ms.
function startWatch() {
  stopWatch();
  const ctl = new AbortController();
  state.watch = ctl;
  const dir = state.path;
  const relevant = (p) => p === dir || parentOf(p) === dir;
  const run = async () => {
    const resp = await fetch(viewURL("watch") + query({ path: dir, member: state.member }), { headers: headers(), signal: ctl.signal });
    if (!resp.ok) throw new APIError(resp.status, await resp.json().catch(() => null));
    $("live").textContent = "● live";
    const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += value;
      let nl;
      while ((nl = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (!line.trim()) continue;
        const msg = JSON.parse(line);
        if (msg.error) throw new APIError(0, msg.error);
        const r = msg.result || {};
        if (r.fresh_instance || r.cursor_lost || r.lagged || (r.changes || []).some((c) => relevant(c.path))) scheduleRefetch();
      }
    }
  };
  const loop = async () => {
    while (!ctl.signal.aborted) {
      try {
        await run();
      } catch (err) {
        if (ctl.signal.aborted) return;
        $("live").textContent = "○ live updates paused: " + err.message;
        if (err.status === 401) return;
      }
      await new Promise((r) => setTimeout(r, 2000));
    }
  };
  loop();
}

function scheduleRefetch() {
  if (state.refetch || isRows()) return;
  state.refetch = setTimeout(() => {
    state.refetch = null;
    loadPage();
    loadStats();
  }, 300);
}

// ---- search, suspects, blind spots, sessions ------------------------------------------------

function entryRow(e, cells) {
  const a = el("a", { text: e.path + (e.is_dir ? "/" : "") });
  a.onclick = () => { selectTab("browse"); openDir(e.is_dir ? e.path : parentOf(e.path)); };
  const row = el("tr", {}, el("td", {}, a), ...cells);
  row.dataset.path = e.path;
  return row;
}

async function search(ev) {
  ev.preventDefault();
  const q = $("query").value.trim();
  const glob = /[*?[]/.test(q);
  let resp;
  try {
    resp = await api(viewURL("find"), { path: $("searchpath").value || "/", name: glob ? "" : q, glob: glob ? q : "", limit: 500, member: state.member });
  } catch (err) {
    $("searchinfo").textContent = "";
    showError(err);
    return;
  }
  showError(null);
  const entries = resp.entries || [];
  $("searchinfo").textContent = entries.length + " match(es)" + (resp.truncated ? " (first 500 only: narrow the search)" : "");
  $("results").tBodies[0].replaceChildren(...entries.map((e) => entryRow(e, [
    el("td", { class: "num", text: e.is_dir ? "" : size(e.size) }), el("td", { text: when(e.mtime) }), el("td", {}, ...flags(e))])));
}

async function loadSuspects() {
  try {
    const resp = await api(viewURL("suspects"), { path: "/", limit: 500, member: state.member });
    $("suspects").tBodies[0].replaceChildren(...(resp.suspects || []).map((s) => entryRow(s.entry, [
      el("td", { class: "num", text: size(s.entry.size) }), el("td", { text: when(s.entry.mtime) }),
      el("td", { text: Math.round(Number(s.expires_in_ms || 0) / 1000) + " s" })])));
    showError(null);
  } catch (err) { showError(err); }
}

async function loadBlind() {
  try {
    const resp = await api(viewURL("blind-spots"), { path: "/", limit: 500, member: state.member });
    $("additions").tBodies[0].replaceChildren(...(resp.additions || []).map((e) => entryRow(e, [
      el("td", { class: "num", text: size(e.size) }), el("td", { text: when(e.mtime) })])));
    $("deletions").replaceChildren(...(resp.deletions || []).map((p, i) => el("li", {
      text: p + (resp.deletion_members && resp.deletion_members[i] ? " (" + resp.deletion_members[i] + ")" : "") })));
    showError(null);
  } catch (err) { showError(err); }
}

function progressText(p) {
  if (!p) return "";
  const s = [];
  if (p.snapshot_running) s.push("snapshot running");
  if (p.audit_running) s.push("audit running");
  if (p.walk && p.walk.kind) {
    const seen = Number(p.walk.dirs || 0) + Number(p.walk.files || 0);
    const total = Number(p.walk.estimated_total || 0);
    s.push(p.walk.kind + ": " + seen + (total ? " of ~" + total + " (" + Math.min(100, Math.round(100 * seen / total)) + "%)" : "") + " entries");
  }
  s.push(Number(p.events_sent || 0) + " events sent");
  return s.join(" · ");
}

async function loadSessions() {
  try {
    const resp = await api("/v1/admin/sessions");
    const list = resp.sessions || [];
    $("sessionsinfo").textContent = list.length + " live session(s)";
    $("sessions").tBodies[0].replaceChildren(...list.map((s) => el("tr", {},
      el("td", { text: s.agent_id || "" }), el("td", { text: (s.role || "").replace("ROLE_", "").toLowerCase() }),
      el("td", { text: s.pipe_id || "" }), el("td", { text: (s.views || []).join(", ") }),
      el("td", { text: s.source_uri || "" }), el("td", { text: when(s.last_heartbeat) }),
      el("td", { text: progressText(s.progress) }))));
    showError(null);
  } catch (err) {
    $("sessions").tBodies[0].replaceChildren();
    $("sessionsinfo").textContent = err.status === 401
      ? "Sessions and agents need an admin key: sign in with one to see them."
      : "Cannot list sessions: " + err.message;
  }
}

function selectTab(name) {
  state.tab = name;
  for (const b of document.querySelectorAll("#tabs button")) b.classList.toggle("active", b.dataset.tab === name);
  for (const s of document.querySelectorAll(".tab")) s.hidden = s.id !== "tab-" + name;
  if (name === "suspects") loadSuspects();
  if (name === "blind") loadBlind();
  if (name === "sessions") loadSessions();
}

// ---- wiring ---------------------------------------------------------------------------------

document.addEventListener("DOMContentLoaded", () => {
  $("loginform").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const k = $("key").value.trim();
    $("key").value = "";
    if (k) signIn(k);
  });
  $("logout").onclick = signOut;
  $("view").onchange = () => { state.view = $("view").value; state.member = ""; viewChanged(true); };
  $("member").onchange = () => { state.member = $("member").value; viewChanged(false); };
  $("pagesize").onchange = () => { state.pageSize = Number($("pagesize").value); openDir(state.path); };
  $("next").onclick = () => { state.tokens[state.page + 1] = state.nextToken; state.page++; loadPage(); };
  $("prev").onclick = () => { if (state.page > 0) { state.page--; loadPage(); } };
  $("searchform").addEventListener("submit", search);
  for (const b of document.querySelectorAll("#tabs button")) b.onclick = () => selectTab(b.dataset.tab);
  if (sessionStorage.getItem(KEY)) signIn(sessionStorage.getItem(KEY));
});
