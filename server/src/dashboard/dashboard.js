// The dlm dashboard: polls /api/history every 2 s, keeps the last hour,
// draws line charts on canvases (no library, no network beyond this
// server), and, given an administrator's name and secret (typed in, or in
// the page's #fragment as name=...&secret=..., which never reaches a
// server), shows the lock table and the cluster's members.
"use strict";

const HOUR_MS = 3600 * 1000;
const POLL_MS = 2000;
const COLORS = ["#4fb3ff", "#ffb347", "#7bd88f", "#ff6b6b", "#c39bff", "#f5e663", "#5ee3d1", "#ff8fd0"];

let samples = [];
let lastAt = 0;
let creds = null;

// What each chart draws: [label, function of (previous, current sample)].
function rate(stat) {
  return (p, c) => {
    if (!p) return null;
    const dt = (c.At - p.At) / 1000;
    if (dt <= 0) return null;
    return Math.max(0, (c.Stats[stat] - p.Stats[stat]) / dt);
  };
}
function level(stat) { return (_p, c) => c.Stats[stat]; }

const CHARTS = {
  requests: [
    ["Lock", rate("Lock")], ["Relock", rate("Relock")], ["Unlock", rate("Unlock")],
    ["TestLock", (p, c) => sum(rate("TestLock")(p, c), rate("TestLockNF")(p, c))],
    ["Get", (p, c) => sum(rate("Get")(p, c), rate("GetNF")(p, c))],
    ["Put", (p, c) => sum(rate("PutNew")(p, c), rate("PutUpdate")(p, c))],
    ["Erase", (p, c) => sum(rate("Erased")(p, c), rate("EraseNF")(p, c))],
    ["all requests", rate("In")],
  ],
  grants: [
    ["granted /s", rate("Lock")], ["expired /s", rate("ExpiredLock")],
    ["not owner /s", rate("NotOwner")], ["waiters", level("AWait")], ["live locks", level("ALock")],
  ],
  connections: [["open", level("AConn")], ["accepted /s", rate("Connections")]],
  // The budget is in the legend only: drawn, it would flatten the rest.
  memory: [["engine", level("Memory")], ["connections", level("ConnMemory")], ["budget", (_p, c) => c.MemoryBudget, true]],
};

// 1, 2 or 5 times a power of ten, at least v.
function niceCeil(v) {
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function sum(a, b) { return a === null || b === null ? null : a + b; }

function fmt(v) {
  if (v === null || v === undefined) return "–";
  const a = Math.abs(v);
  if (a >= 1e9) return (v / 1e9).toFixed(1) + "G";
  if (a >= 1e6) return (v / 1e6).toFixed(1) + "M";
  if (a >= 1e3) return (v / 1e3).toFixed(1) + "k";
  return Number.isInteger(v) ? String(v) : v.toFixed(1);
}

function draw(name) {
  const canvas = document.getElementById("chart-" + name);
  const ctx = canvas.getContext("2d");
  const W = canvas.width, H = canvas.height, L = 48, B = 20, T = 8, R = 8;
  ctx.clearRect(0, 0, W, H);
  const series = CHARTS[name].map(([label, f, legendOnly]) => ({
    label,
    legendOnly: !!legendOnly,
    points: samples.map((c, i) => [c.At, f(samples[i - 1], c)]).filter((p) => p[1] !== null),
  }));
  const now = samples.length ? samples[samples.length - 1].At : Date.now();
  const t0 = Math.max(samples.length ? samples[0].At : now - 60000, now - HOUR_MS);
  const span = Math.max(now - t0, 10000);
  let max = 1;
  for (const s of series) if (!s.legendOnly) for (const p of s.points) max = Math.max(max, p[1]);
  max = niceCeil(max * 1.05);
  const x = (t) => L + ((t - (now - span)) / span) * (W - L - R);
  const y = (v) => H - B - (v / max) * (H - B - T);
  ctx.strokeStyle = "#26323e";
  ctx.fillStyle = "#8a97a5";
  ctx.font = "11px system-ui, sans-serif";
  for (let i = 0; i <= 4; i++) {
    const v = (max * i) / 4;
    ctx.beginPath(); ctx.moveTo(L, y(v)); ctx.lineTo(W - R, y(v)); ctx.stroke();
    ctx.fillText(fmt(v), 4, y(v) + 4);
  }
  const mins = Math.round(span / 60000);
  ctx.fillText(mins >= 1 ? `last ${mins} min` : `last ${Math.round(span / 1000)} s`, L, H - 4);
  let drawn = 0;
  series.forEach((s, i) => {
    if (s.legendOnly) return;
    ctx.strokeStyle = COLORS[i % COLORS.length];
    ctx.lineWidth = 1.6;
    ctx.beginPath();
    s.points.forEach((p, j) => (j ? ctx.lineTo(x(p[0]), y(p[1])) : ctx.moveTo(x(p[0]), y(p[1]))));
    ctx.stroke();
    drawn += s.points.length;
  });
  canvas.dataset.points = String(drawn);
  const legend = document.getElementById("legend-" + name);
  legend.replaceChildren(...series.map((s, i) => {
    const span = document.createElement("span");
    const sw = document.createElement("i");
    sw.style.background = COLORS[i % COLORS.length];
    const last = s.points.length ? s.points[s.points.length - 1][1] : null;
    span.append(sw, `${s.label} ${fmt(last)}`);
    span.dataset.last = last === null ? "" : String(last);
    return span;
  }));
}

async function poll() {
  try {
    const r = await fetch(`/api/history?since=${lastAt}`, { cache: "no-store" });
    if (!r.ok) throw new Error(r.status);
    const fresh = await r.json();
    if (fresh.length === 0 && samples.length === 0) {
      const one = await (await fetch("/api/sample", { cache: "no-store" })).json();
      fresh.push(one);
    }
    for (const s of fresh) if (s.At > lastAt) { samples.push(s); lastAt = s.At; }
    const cut = lastAt - HOUR_MS;
    while (samples.length && samples[0].At < cut) samples.shift();
    const last = samples[samples.length - 1];
    const status = document.getElementById("status");
    if (last) {
      status.textContent = last.Ready ? "serving" : "not ready";
      status.className = "pill " + (last.Ready ? "ok" : "bad");
      document.getElementById("updated").textContent = "updated " + new Date(last.At).toLocaleTimeString();
      const c = last.Cluster;
      document.getElementById("cluster").textContent = c
        ? `member ${c.Node} of ${c.Members} · term ${c.Term} · leader ${c.Leader || "none"} · commit ${c.Commit}`
        : "single server";
    }
    for (const name of Object.keys(CHARTS)) draw(name);
    document.body.dataset.samples = String(samples.length);
  } catch (e) {
    const status = document.getElementById("status");
    status.textContent = "unreachable";
    status.className = "pill bad";
  }
  if (creds) await locks();
}

function secs(v) { return v === undefined ? "–" : `${v.toFixed(1)} s`; }

function row(cells) {
  const tr = document.createElement("tr");
  for (const v of cells) {
    const td = document.createElement("td");
    td.textContent = v; // text, never markup
    tr.append(td);
  }
  return tr;
}

// One row per hold: an exclusive lock's holder, or each holder of a
// semaphore or read/write lock (the name, waiters and kind on its first).
function lockRows(l) {
  if (l.Kind !== "semaphore" && l.Kind !== "rwlock") {
    return [row([l.FileName, l.ID, String(l.Token), secs(l.Held), secs(l.Expire), String(l.Waiters), "lock"])];
  }
  const kind = (h) => l.Kind === "semaphore"
    ? `semaphore ${l.Holds}/${l.Permits}`
    : `rwlock ${h && h.Mode === "Write" ? "write" : "read"}`;
  const holders = l.Holders || [];
  if (holders.length === 0) {
    return [row([l.FileName, "–", "–", "–", "–", String(l.Waiters), l.Kind === "semaphore" ? kind() : "rwlock"])];
  }
  const rows = holders.map((h, i) => row([
    i === 0 ? l.FileName : "", h.ID, String(h.Token), secs(h.Held), secs(h.Expire),
    i === 0 ? String(l.Waiters) : "", kind(h),
  ]));
  if (l.Holds > holders.length) {
    rows.push(row(["", `… ${l.Holds - holders.length} more holds`, "", "", "", "", ""]));
  }
  return rows;
}

async function locks() {
  const msg = document.getElementById("admin-message");
  const table = document.getElementById("locks");
  const prefix = document.getElementById("filter").value;
  let r;
  try {
    r = await fetch(`/api/locks?prefix=${encodeURIComponent(prefix)}`, {
      cache: "no-store",
      headers: { Authorization: "Basic " + btoa(`${creds.name}:${creds.secret}`) },
    });
  } catch (e) { msg.textContent = "The server is unreachable."; return; }
  const body = await r.json().catch(() => ({}));
  if (r.status === 401 || r.status === 403) {
    table.hidden = true;
    msg.textContent = "Refused: not an administrator's name and secret.";
    msg.dataset.refused = "true";
    return;
  }
  if (!r.ok) { msg.textContent = `Error ${r.status}`; return; }
  msg.textContent = "";
  msg.dataset.refused = "false";
  const rows = body.Table.Locks.flatMap(lockRows);
  table.tBodies[0].replaceChildren(...rows);
  table.hidden = false;
  document.getElementById("locks-count").textContent =
    `${body.Table.Count} lock(s)${body.Table.More ? " (first " + body.Table.Locks.length + " shown: narrow the prefix)" : ""}`;
  const members = document.getElementById("members");
  const last = samples[samples.length - 1];
  const leader = last && last.Cluster ? last.Cluster.Leader : 0;
  members.tBodies[0].replaceChildren(...body.Members.map((m) => {
    const tr = document.createElement("tr");
    for (const v of [String(m.ID), m.Peer, m.ID === leader ? "leader" : "follower"]) {
      const td = document.createElement("td");
      td.textContent = v;
      tr.append(td);
    }
    return tr;
  }));
  members.hidden = body.Members.length === 0;
  document.getElementById("members-message").textContent = body.Members.length ? "" : "A single server.";
}

function fromFragment() {
  const p = new URLSearchParams(location.hash.slice(1));
  if (p.get("name") && p.get("secret")) {
    document.getElementById("admin-name").value = p.get("name");
    document.getElementById("admin-secret").value = p.get("secret");
    if (p.get("prefix")) document.getElementById("filter").value = p.get("prefix");
    creds = { name: p.get("name"), secret: p.get("secret") };
  }
}

document.addEventListener("DOMContentLoaded", () => {
  fromFragment();
  document.getElementById("login").addEventListener("submit", (e) => {
    e.preventDefault();
    creds = {
      name: document.getElementById("admin-name").value,
      secret: document.getElementById("admin-secret").value,
    };
    locks();
  });
  poll();
  setInterval(poll, POLL_MS);
});
