// The offerd web UI: one page, hash routes (#/slaves/<id>, ...), no build step.
// It polls the master's read-only endpoints (/master/state, /metrics/snapshot)
// and redraws the current view in place; sandbox files and slave usage come
// through the master's proxy, so the browser never needs to reach a slave.
// When the master requires HTTP authentication the browser's Basic prompt is the
// login: the page and every request it makes carry what was typed there.
"use strict";

const SCALARS = ["cpus", "mem", "disk", "gpus"];
const POLL_MS = 2000;
const HISTORY_SECONDS = 15 * 60;
const COUNTED_STATES = ["TASK_STAGING", "TASK_STARTING", "TASK_RUNNING", "TASK_KILLING", "TASK_UNREACHABLE",
  "TASK_FINISHED", "TASK_KILLED", "TASK_FAILED", "TASK_LOST", "TASK_ERROR", "TASK_DROPPED", "TASK_GONE"];
const ACTIVE_STATES = new Set(["TASK_STAGING", "TASK_STARTING", "TASK_RUNNING", "TASK_KILLING"]);

const app = { state: null, metrics: null, view: null, history: loadHistory(), whoami: null };

// -- small DOM helpers ------------------------------------------------------

function h(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "class") node.className = value;
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function table(headers, rows, attrs) {
  const head = h("tr", {}, headers.map((name) => h("th", { class: /^(cpus|mem|disk|gpus|tasks|processes|weight|size|allocated|offered|#)/.test(name) ? "num" : null }, name)));
  const body = rows.length ? rows.map((cells) => h("tr", {}, cells.map((c) => (c instanceof Node && c.tagName === "TD") ? c : h("td", {}, c))))
    : [h("tr", {}, h("td", { colspan: headers.length, class: "empty" }, "none"))];
  return h("table", attrs || {}, h("thead", {}, head), h("tbody", {}, body));
}

function num(value, attrs) { return h("td", { class: "num", ...(attrs || {}) }, fmt(value)); }

function fmt(value) {
  if (value === undefined || value === null || value === "") return "0";
  if (typeof value !== "number") return String(value);
  return Number.isInteger(value) ? String(value) : value.toFixed(2).replace(/\.?0+$/, "");
}

function bytes(n) {
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
  return `${fmt(Math.round(n * 10) / 10)} ${units[i]}`;
}

function when(ts) { return ts ? new Date(ts * 1000).toLocaleString() : ""; }
function link(href, text, cls) { return h("a", { href, class: cls }, text); }
// A URL from the cluster (a framework's webui_url) is a link only when it is http(s):
// `javascript:` or `data:` from a hostile framework must not become clickable.
function safeLink(url, text) {
  let parsed = null;
  try { parsed = new URL(url, location.href); } catch (e) { parsed = null; }
  if (!parsed || (parsed.protocol !== "http:" && parsed.protocol !== "https:")) return h("span", { class: "id" }, text);
  return h("a", { href: parsed.href, rel: "noopener noreferrer", target: "_blank" }, text);
}
function idLink(href, text) { return link(href, text, "id"); }
function stateCell(state) { return h("td", { class: `state-${state}` }, state); }

// -- routing ----------------------------------------------------------------

function parseHash() {
  const raw = location.hash.replace(/^#/, "") || "/";
  const [path, query] = raw.split("?");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  return { parts, query: new URLSearchParams(query || "") };
}

function setQuery(query) {
  const { parts } = parseHash();
  const text = query.toString();
  history.replaceState(null, "", `#/${parts.map(encodeURIComponent).join("/")}${text ? "?" + text : ""}`);
}

const ROUTES = {
  "": dashboardView, frameworks: frameworksView, slaves: slavesView, tasks: tasksView, roles: rolesView,
  offers: offersView, sandbox: sandboxView, log: logView, task: taskView, maintenance: maintenanceView,
};

function route() {
  if (app.view && app.view.unmount) app.view.unmount();
  const { parts, query } = parseHash();
  const make = ROUTES[parts[0] || ""] || notFoundView;
  const root = document.getElementById("view");
  root.replaceChildren();
  for (const a of document.querySelectorAll("header nav a")) {
    a.classList.toggle("current", a.dataset.nav === (parts[0] || "dashboard"));
  }
  app.view = make(root, parts.slice(1), query) || {};
  if (app.state && app.view.update) app.view.update(app.state);
}

// -- data -------------------------------------------------------------------

class HttpError extends Error {
  constructor(url, status, text) {
    super(httpMessage(url, status, text));
    this.status = status;
  }
}

function httpMessage(url, status, text) {
  if (status === 401) return `Not authenticated: the master requires HTTP credentials (${text.trim()}). Reload the page and log in with a principal of the master's --credentials.`;
  if (status === 403) return `Not authorized: ${text.trim()}`;
  return `${url}: ${status} ${text.trim()}`;
}

// Relative to this page, but never with the user:password@ an address bar may hold:
// fetch() refuses such URLs, and the browser sends the credentials by itself.
function resolve(path) { return new URL(path, location.origin + location.pathname).href; }

async function getJSON(url) {
  const response = await fetch(resolve(url), { cache: "no-store", credentials: "same-origin" });
  const text = await response.text();
  if (!response.ok) throw new HttpError(url, response.status, text);
  return JSON.parse(text);
}

// Operator actions are POSTs of a form to the master, from this page's own origin (the
// master refuses them from any other site).
async function postForm(url, fields) {
  const response = await fetch(resolve(url), { method: "POST", credentials: "same-origin", body: new URLSearchParams(fields) });
  const text = await response.text();
  if (!response.ok) throw new HttpError(url, response.status, text);
  return text;
}

// What the caller may do (GET /master/whoami); operator buttons show only when allowed.
// A master without that endpoint has no ACLs to ask about: its actions are shown, and
// its refusals, if any, are shown as they come.
async function loadWhoami() {
  try {
    app.whoami = await getJSON("master/whoami");
  } catch (err) {
    if (!(err instanceof HttpError) || err.status !== 404) return;
    app.whoami = { principal: null, authenticated: false, permissions: null };
  }
  const who = document.getElementById("whoami");
  who.textContent = app.whoami.authenticated ? `signed in as ${app.whoami.principal}` : "";
  if (app.state && app.view && app.view.update) app.view.update(app.state);
}

function may(permission) {
  if (!app.whoami) return false;   // not known yet: show nothing that may be refused
  const permissions = app.whoami.permissions;
  return permissions === null || permissions === undefined || permissions[permission] === true;
}

function allFrameworks(state) { return (state.frameworks || []).concat(state.completed_frameworks || []); }

function allTasks(state) {
  const out = [];
  for (const f of allFrameworks(state)) {
    for (const key of ["tasks", "unreachable_tasks", "completed_tasks"]) {
      for (const t of f[key] || []) out.push({ ...t, framework_name: f.name, active: key === "tasks" });
    }
  }
  return out;
}

function taskCounts(state) {
  const counts = Object.fromEntries(COUNTED_STATES.map((s) => [s, 0]));
  for (const t of allTasks(state)) counts[t.state] = (counts[t.state] || 0) + 1;
  return counts;
}

function resourceTotals(state) {
  const out = {};
  for (const name of SCALARS) {
    let total = 0, used = 0, offered = 0;
    for (const s of state.slaves || []) {
      total += (s.resources || {})[name] || 0;
      used += (s.used_resources || {})[name] || 0;
      offered += (s.offered_resources || {})[name] || 0;
    }
    out[name] = { total, allocated: used, offered, idle: Math.max(0, total - used - offered) };
  }
  return out;
}

function loadHistory() {
  try { return JSON.parse(sessionStorage.getItem("offerd-history") || "[]"); } catch (e) { return []; }
}

function record(state) {
  const totals = resourceTotals(state);
  const now = Date.now() / 1000;
  const sample = { t: now };
  for (const name of ["cpus", "mem", "disk"]) {
    const r = totals[name];
    sample[name] = r.total ? (r.allocated / r.total) * 100 : 0;
  }
  app.history.push(sample);
  app.history = app.history.filter((s) => s.t > now - HISTORY_SECONDS);
  try { sessionStorage.setItem("offerd-history", JSON.stringify(app.history)); } catch (e) { /* full */ }
}

async function poll() {
  try {
    if (!app.whoami) await loadWhoami();
    const [state, metrics] = await Promise.all([getJSON("master/state"), getJSON("metrics/snapshot").catch(() => null)]);
    app.state = state;
    app.metrics = metrics;
    record(state);
    renderHeader(state);
    document.getElementById("error").hidden = true;
    if (app.view && app.view.update) app.view.update(state);
  } catch (err) {
    const box = document.getElementById("error");
    box.hidden = false;
    box.textContent = err instanceof HttpError && (err.status === 401 || err.status === 403)
      ? err.message : `Cannot reach the master: ${err.message || err}`;
  }
}

function leaderURL(state) {
  const info = state.leader_info || {};
  const address = info.address || {};
  const host = address.ip || address.hostname || info.hostname;
  const port = address.port || info.port;
  return host && port ? `${location.protocol}//${host}:${port}/` : null;
}

function renderHeader(state) {
  document.getElementById("cluster").textContent = state.cluster ? `cluster ${state.cluster}` : "";
  const leader = document.getElementById("leader");
  leader.replaceChildren("leader ", link(leaderURL(state) || "#/", state.leader || "none"));
  document.getElementById("updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
  const standby = document.getElementById("standby");
  const isStandby = state.leader !== undefined && state.leader !== state.pid;
  standby.hidden = !isStandby;
  if (isStandby) {
    const url = leaderURL(state);
    standby.replaceChildren(`This master (${state.pid}) is a standby. `,
      state.leader && url ? h("a", { href: url, id: "leader-link" }, `Go to the leading master ${state.leader}`)
        : "No leading master is elected right now.");
  }
}

// -- views ------------------------------------------------------------------

function dashboardView(root) {
  root.append(
    h("h2", {}, "Cluster"), h("div", { id: "info" }),
    h("h3", {}, "Slaves"), h("section", { class: "cards", id: "slave-counts" }),
    h("h3", {}, "Tasks"), h("section", { class: "cards", id: "task-counts" }),
    h("div", { class: "row" },
      h("div", {}, h("h3", {}, "Resources"), h("div", { id: "resources" })),
      h("div", {}, h("h3", {}, "Allocation (% of total)"), h("div", { class: "chart", id: "chart" }))),
    h("h3", {}, "Frameworks"), h("div", { id: "dash-frameworks" }),
    h("h3", {}, "Active tasks"), h("div", { id: "dash-active-tasks" }),
    h("h3", {}, "Completed tasks"), h("div", { id: "dash-completed-tasks" }));
  return {
    update(state) {
      const metrics = app.metrics || {};
      document.getElementById("info").replaceChildren(h("dl", { class: "kv" },
        h("dt", {}, "cluster"), h("dd", {}, state.cluster || "(unnamed)"),
        h("dt", {}, "master"), h("dd", { class: "id" }, `${state.id} (${state.pid})`),
        h("dt", {}, "leader"), h("dd", {}, link(leaderURL(state) || "#/", state.leader || "none")),
        h("dt", {}, "version"), h("dd", {}, state.version),
        h("dt", {}, "started"), h("dd", {}, when(state.start_time)),
        h("dt", {}, "elected"), h("dd", {}, when(state.elected_time)),
        h("dt", {}, "outstanding offers"), h("dd", {}, link("#/offers", fmt(metrics["master/outstanding_offers"] ?? countOffers(state))))));
      const cards = (id, items) => document.getElementById(id).replaceChildren(...items.map(([label, value, key]) =>
        h("div", { class: "card", "data-count": key }, h("div", { class: "value" }, fmt(value)), h("div", { class: "label" }, label))));
      cards("slave-counts", [["activated", state.activated_slaves, "activated_slaves"],
        ["deactivated", state.deactivated_slaves, "deactivated_slaves"],
        ["unreachable", state.unreachable_slaves, "unreachable_slaves"]]);
      const counts = taskCounts(state);
      cards("task-counts", COUNTED_STATES.filter((s) => counts[s] || !["TASK_DROPPED", "TASK_GONE", "TASK_ERROR"].includes(s))
        .map((s) => [s.replace("TASK_", "").toLowerCase(), counts[s], s]));
      const totals = resourceTotals(state);
      document.getElementById("resources").replaceChildren(table(["", "total", "allocated", "offered", "idle"],
        SCALARS.map((name) => [name, ...["total", "allocated", "offered", "idle"].map((k) => num(totals[name][k], { "data-res": `${name}-${k}` }))]),
        { id: "resources-table" }));
      drawChart(document.getElementById("chart"));
      document.getElementById("dash-frameworks").replaceChildren(frameworkTable(state.frameworks || []));
      const tasks = allTasks(state).sort((a, b) => lastUpdate(b) - lastUpdate(a));
      dashTasks("dash-active-tasks", tasks.filter((t) => t.active), "#/tasks", "active");
      dashTasks("dash-completed-tasks", tasks.filter((t) => !t.active), "#/tasks?all=1", "completed");
    },
  };
}

// The dashboard lists the most recently changed tasks, as Mesos' front page does; the Tasks page has them all.
const DASHBOARD_TASKS = 20;

function lastUpdate(task) {
  const statuses = task.statuses || [];
  return statuses.length ? statuses[statuses.length - 1].timestamp || 0 : 0;
}

function dashTasks(id, tasks, more, what) {
  const box = document.getElementById(id);
  if (!tasks.length) { box.replaceChildren(h("p", { class: "muted" }, `No ${what} tasks.`)); return; }
  const shown = taskTable(tasks.slice(0, DASHBOARD_TASKS), { cls: `tasks dash-${what}` });
  const rest = tasks.length - DASHBOARD_TASKS;
  box.replaceChildren(shown, ...(rest > 0 ? [h("p", {}, link(more, `${rest} more ${what} tasks…`))] : []));
}

function countOffers(state) { return (state.frameworks || []).reduce((n, f) => n + (f.offers || []).length, 0); }

function drawChart(box) {
  const W = 600, H = 160, pad = 24;
  const points = app.history;
  const colors = { cpus: "#3e7bfa", mem: "#e8590c", disk: "#2f9e44" };
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.setAttribute("preserveAspectRatio", "none");
  const line = (x1, y1, x2, y2, color) => {
    const l = document.createElementNS(svg.namespaceURI, "line");
    Object.entries({ x1, y1, x2, y2, stroke: color, "stroke-width": 1 }).forEach(([k, v]) => l.setAttribute(k, v));
    svg.append(l);
  };
  for (const pct of [0, 50, 100]) {
    const y = H - pad - (pct / 100) * (H - 2 * pad);
    line(pad, y, W - 4, y, "#e4e7eb");
    const t = document.createElementNS(svg.namespaceURI, "text");
    t.setAttribute("x", 0); t.setAttribute("y", y + 4); t.setAttribute("font-size", 10); t.setAttribute("fill", "#7b8794");
    t.textContent = `${pct}%`;
    svg.append(t);
  }
  if (points.length > 1) {
    const t0 = points[0].t, span = Math.max(1, points[points.length - 1].t - t0);
    for (const name of Object.keys(colors)) {
      const d = points.map((p, i) => `${i ? "L" : "M"}${(pad + ((p.t - t0) / span) * (W - pad - 4)).toFixed(1)},` +
        `${(H - pad - (Math.min(100, p[name]) / 100) * (H - 2 * pad)).toFixed(1)}`).join(" ");
      const path = document.createElementNS(svg.namespaceURI, "path");
      path.setAttribute("d", d); path.setAttribute("fill", "none"); path.setAttribute("stroke", colors[name]);
      path.setAttribute("stroke-width", 2); path.setAttribute("vector-effect", "non-scaling-stroke");
      svg.append(path);
    }
  }
  const minutes = points.length > 1 ? Math.round((points[points.length - 1].t - points[0].t) / 60) : 0;
  box.replaceChildren(svg, h("div", { class: "legend" },
    Object.entries(colors).map(([name, color]) => h("span", {}, h("span", { class: "swatch", style: `background:${color}` }), name)),
    h("span", { class: "muted" }, `last ${minutes || "<1"} min`)));
}

// The allocator's own account (framework.allocator, see offerd/allocator/explain.py):
// {getting_offers, dominant_share, roles: {...}, reasons: [{code, message, role}]}.
function why(framework) {
  const info = framework.allocator;
  if (!info || typeof info !== "object" || !Object.keys(info).length) return null;
  const reasons = (info.reasons || []).map((r) => typeof r === "string" ? r : `${r.code ? r.code + ": " : ""}${r.message || JSON.stringify(r)}`);
  if (!reasons.length) return info.getting_offers === false ? h("span", { class: "why" }, "not getting offers") : null;
  return h("span", { class: info.getting_offers ? "muted" : "why", "data-why": framework.id }, reasons.join("; "));
}

function share(framework) {
  const info = framework.allocator || {};
  return typeof info.dominant_share === "number" ? `${(info.dominant_share * 100).toFixed(1)}%` : "";
}

function frameworkTable(frameworks) {
  return table(["id", "name", "user", "roles", "principal", "active", "tasks", "cpus", "mem", "disk", "gpus", "share", "registered", "offers"],
    frameworks.map((f) => [idLink(`#/frameworks/${encodeURIComponent(f.id)}`, f.id), f.name, f.user, (f.roles || [f.role]).join(", "),
      f.principal || "", f.active ? "yes" : "no", num((f.tasks || []).length),
      ...SCALARS.map((name) => num((f.used_resources || {})[name])), share(f), when(f.registered_time),
      h("td", {}, `${(f.offers || []).length}`, why(f) ? " · " : "", why(f))]), { class: "frameworks" });
}

function frameworksView(root, args) {
  if (args.length) return frameworkView(root, args[0]);
  root.append(h("h2", {}, "Frameworks"), h("div", { id: "active" }), h("h3", {}, "Completed frameworks"), h("div", { id: "completed" }));
  return {
    update(state) {
      document.getElementById("active").replaceChildren(frameworkTable(state.frameworks || []));
      document.getElementById("completed").replaceChildren(frameworkTable(state.completed_frameworks || []));
    },
  };
}

function taskTable(tasks, options) {
  const opts = options || {};
  return table(["id", "name", "state", "framework", "slave", "cpus", "mem", "started", "sandbox"],
    tasks.map((t) => [h("td", { class: "id", "data-task": t.id }, t.id), t.name, stateCell(t.state),
      idLink(`#/frameworks/${encodeURIComponent(t.framework_id)}`, t.framework_name || t.framework_id),
      idLink(`#/slaves/${encodeURIComponent(t.slave_id)}`, t.slave_id),
      num((t.resources || {}).cpus), num((t.resources || {}).mem),
      when(t.statuses && t.statuses.length ? t.statuses[0].timestamp : null),
      h("td", {}, link(`#/task/${encodeURIComponent(t.framework_id)}/${encodeURIComponent(t.id)}`, "sandbox", "sandbox-link"))]),
    { class: opts.cls || "tasks" });
}

// Tear down: only for principals the master's ACLs allow (teardown_frameworks).
function teardownButton(f) {
  const status = document.getElementById("action-status");
  return h("button", { id: "teardown", class: "danger", onclick: async () => {
    if (!window.confirm(`Tear down framework ${f.name} (${f.id})? All its tasks are killed.`)) return;
    try {
      await postForm("master/teardown", { frameworkId: f.id });
      status.className = "muted";
      status.textContent = `Framework ${f.id} torn down.`;
      poll();
    } catch (err) {
      status.className = "error";
      status.textContent = String(err.message || err);
    }
  } }, "Tear down");
}

function frameworkView(root, id) {
  root.append(h("h2", {}, "Framework ", h("span", { class: "id" }, id)),
    h("div", { class: "toolbar" }, h("span", { id: "actions" }), h("span", { id: "action-status", role: "status" })),
    h("div", { id: "detail" }));
  return {
    update(state) {
      const f = allFrameworks(state).find((x) => x.id === id);
      const box = document.getElementById("detail");
      const active = (state.frameworks || []).some((x) => x.id === id);
      document.getElementById("actions").replaceChildren(f && active && may("teardown_frameworks") ? teardownButton(f) : "");
      if (!f) { box.replaceChildren(h("p", { class: "empty" }, "No such framework on this master.")); return; }
      const named = (list) => list.map((t) => ({ ...t, framework_name: f.name }));
      const reason = why(f);
      box.replaceChildren(
        h("dl", { class: "kv" }, h("dt", {}, "name"), h("dd", {}, f.name), h("dt", {}, "user"), h("dd", {}, f.user),
          h("dt", {}, "roles"), h("dd", {}, (f.roles || [f.role]).join(", ")), h("dt", {}, "principal"), h("dd", {}, f.principal || ""),
          h("dt", {}, "active / connected"), h("dd", {}, `${f.active ? "active" : "inactive"} / ${f.connected ? "connected" : "disconnected"}`),
          h("dt", {}, "hostname"), h("dd", {}, f.hostname || ""),
          h("dt", {}, "web UI"), h("dd", { id: "webui-url" }, f.webui_url ? safeLink(f.webui_url, f.webui_url) : ""),
          h("dt", {}, "registered"), h("dd", {}, when(f.registered_time)),
          h("dt", {}, "used"), h("dd", {}, SCALARS.map((n) => `${n} ${fmt((f.used_resources || {})[n])}`).join(", ")),
          h("dt", {}, "offered"), h("dd", {}, SCALARS.map((n) => `${n} ${fmt((f.offered_resources || {})[n])}`).join(", ")),
          h("dt", {}, "dominant share"), h("dd", {}, share(f) || "n/a"),
          h("dt", {}, "offers"), h("dd", { id: "why" }, reason || h("span", { class: "muted" },
            (f.allocator || {}).getting_offers ? "getting offers" : "(the allocator reports nothing)"))),
        h("h3", {}, `Active tasks (${(f.tasks || []).length})`), taskTable(named(f.tasks || [])),
        h("h3", {}, "Executors"), table(["id", "name", "slave", "cpus", "mem"], (f.executors || []).map((e) =>
          [h("td", { class: "id" }, e.executor_id), e.name, idLink(`#/slaves/${encodeURIComponent(e.slave_id)}`, e.slave_id),
            num((e.resources || {}).cpus), num((e.resources || {}).mem)])),
        h("h3", {}, "Outstanding offers"), offerTable(f.offers || []),
        h("h3", {}, `Unreachable tasks (${(f.unreachable_tasks || []).length})`), taskTable(named(f.unreachable_tasks || [])),
        h("h3", {}, `Completed tasks (${(f.completed_tasks || []).length})`), taskTable(named(f.completed_tasks || []).slice(-500).reverse()));
    },
  };
}

// -- maintenance ------------------------------------------------------------

// A machine as Mesos matches it: the hostname without case, and the ip.
function machineKey(id) { return `${(id.hostname || "").toLowerCase()}|${id.ip || ""}`; }
function machineText(id) { return [id.hostname, id.ip].filter(Boolean).join(" / "); }
// A slave's machine: its hostname and the ip of its pid (slave(1)@IP:PORT).
function slaveMachineKey(s) {
  const ip = ((s.pid || "").split("@")[1] || "").replace(/:\d+$/, "");
  return machineKey({ hostname: s.hostname, ip });
}

// machine key -> "DRAINING" | "DOWN", from GET /master/maintenance/status.
async function loadMachineModes() {
  const status = await getJSON("master/maintenance/status");
  const modes = {};
  for (const m of status.draining_machines || []) modes[machineKey(m.id)] = "DRAINING";
  for (const m of status.down_machines || []) modes[machineKey(m)] = "DOWN";
  return { status, modes };
}

function maintenanceView(root) {
  root.append(h("h2", {}, "Maintenance"),
    h("h3", {}, "Schedule"), h("div", { id: "maintenance-schedule" }, h("p", { class: "empty" }, "loading…")),
    h("h3", {}, "Machines"), h("div", { id: "maintenance-machines" }, h("p", { class: "empty" }, "loading…")));
  async function load(state) {
    try {
      const [schedule, { status }] = await Promise.all([getJSON("master/maintenance/schedule"), loadMachineModes()]);
      const at = (ns) => new Date(Number(ns) / 1e6).toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC");
      document.getElementById("maintenance-schedule")?.replaceChildren(table(["machines", "unavailable from", "for"],
        (schedule.windows || []).map((w) => [(w.machine_ids || []).map(machineText).join(", "),
          at(w.unavailability.start.nanoseconds),
          w.unavailability.duration ? `${fmt(Number(w.unavailability.duration.nanoseconds) / 3.6e12)} h` : "-"]),
        { class: "maintenance-windows" }));
      const slaves = {};
      for (const s of (state && state.slaves) || []) (slaves[slaveMachineKey(s)] ||= []).push(s);
      const names = Object.fromEntries(allFrameworks(state || {}).map((f) => [f.id, f.name]));
      const rows = [];
      for (const m of status.draining_machines || []) {
        const answers = (m.statuses || []).map((a) => `${names[a.framework_id.value] || a.framework_id.value}: ${a.status}`);
        rows.push([machineText(m.id), h("td", { class: "mode-DRAINING" }, "DRAINING"),
          (slaves[machineKey(m.id)] || []).map((s) => s.id).join(", ") || "-", answers.join(", ") || "no answer yet"]);
      }
      for (const m of status.down_machines || []) rows.push([machineText(m), h("td", { class: "mode-DOWN" }, "DOWN"), "-", "-"]);
      document.getElementById("maintenance-machines")?.replaceChildren(table(["machine", "mode", "slaves", "inverse offer answers"],
        rows, { class: "maintenance-machines" }));
    } catch (err) {
      document.getElementById("maintenance-machines")?.replaceChildren(h("p", {}, String(err.message || err)));
    }
  }
  return { update: load };
}

function slavesView(root, args) {
  if (args.length) return slaveView(root, args[0]);
  root.append(h("h2", {}, "Slaves"), h("div", { id: "list" }));
  let modes = {};
  function render(state) {
    document.getElementById("list")?.replaceChildren(table(["id", "host", "cpus", "mem", "disk", "gpus", "allocated cpus", "allocated mem", "active", "maintenance", "registered"],
      (state.slaves || []).map((s) => [idLink(`#/slaves/${encodeURIComponent(s.id)}`, s.id), s.hostname,
        ...SCALARS.map((n) => num((s.resources || {})[n])), num((s.used_resources || {}).cpus), num((s.used_resources || {}).mem),
        s.active ? "yes" : "no", h("td", { class: `mode-${modes[slaveMachineKey(s)] || "UP"}` }, modes[slaveMachineKey(s)] || ""),
        when(s.registered_time)]), { class: "slaves" }));
  }
  return {
    update(state) {
      render(state);
      // The machines' modes come from the maintenance status; the list is redrawn when they arrive.
      loadMachineModes().then((loaded) => { modes = loaded.modes; render(state); }).catch(() => {});
    },
  };
}

function slaveView(root, id) {
  root.append(h("h2", {}, "Slave ", h("span", { class: "id" }, id)), h("div", { id: "detail" }),
    h("h3", {}, "Running executors and live usage"), h("div", { id: "usage" }, h("p", { class: "empty" }, "loading…")));
  let previous = {}, stopped = false;
  async function usage() {
    if (stopped) return;
    try {
      const [slaveState, stats] = await Promise.all([
        getJSON(`master/slaves/${encodeURIComponent(id)}/state`), getJSON(`master/slaves/${encodeURIComponent(id)}/monitor/statistics`)]);
      const byExecutor = Object.fromEntries(stats.map((s) => [`${s.framework_id}/${s.executor_id}`, s]));
      const rows = [];
      for (const f of slaveState.frameworks || []) {
        for (const e of f.executors || []) {
          const key = `${f.id}/${e.id}`, st = (byExecutor[key] || {}).statistics || {};
          const cpuTime = (st.cpus_user_time_secs || 0) + (st.cpus_system_time_secs || 0);
          const prev = previous[key];
          const cpu = prev && st.timestamp > prev.ts ? (cpuTime - prev.cpu) / (st.timestamp - prev.ts) : null;
          previous[key] = { cpu: cpuTime, ts: st.timestamp };
          rows.push([h("td", { class: "id" }, e.id), idLink(`#/frameworks/${encodeURIComponent(f.id)}`, f.name || f.id),
            num((e.tasks || []).length),
            h("td", { class: "num", "data-usage": "cpu" }, cpu === null ? "…" : `${fmt(Math.round(cpu * 1000) / 1000)} / ${fmt((e.resources || {}).cpus)}`),
            h("td", { class: "num", "data-usage": "mem" }, `${bytes(st.mem_rss_bytes || 0)} / ${fmt((e.resources || {}).mem)} MB`),
            num(st.processes || 0),
            link(`#/sandbox/${encodeURIComponent(id)}?path=${encodeURIComponent(e.directory)}`, "sandbox", "sandbox-link")]);
        }
      }
      document.getElementById("usage")?.replaceChildren(table(["executor", "framework", "tasks", "cpus used / allocated", "mem used / allocated", "processes", ""], rows, { class: "usage" }));
    } catch (err) {
      document.getElementById("usage")?.replaceChildren(h("p", { class: "error" }, String(err.message || err)));
    }
  }
  usage();
  const timer = setInterval(usage, POLL_MS);
  return {
    unmount() { stopped = true; clearInterval(timer); },
    update(state) {
      const s = (state.slaves || []).find((x) => x.id === id);
      const box = document.getElementById("detail");
      if (!s) { box.replaceChildren(h("p", { class: "empty" }, "No such slave registered with this master.")); return; }
      const kinds = ["resources", "used_resources", "offered_resources", "unreserved_resources"];
      box.replaceChildren(h("div", { class: "row" },
        h("div", {}, h("dl", { class: "kv" }, h("dt", {}, "host"), h("dd", {}, s.hostname), h("dt", {}, "pid"), h("dd", { class: "id" }, s.pid),
          h("dt", {}, "active"), h("dd", {}, s.active ? "yes" : "no"), h("dt", {}, "registered"), h("dd", {}, when(s.registered_time)),
          h("dt", {}, "version"), h("dd", {}, s.version || ""), h("dt", {}, "ports"), h("dd", {}, (s.resources || {}).ports || ""),
          h("dt", {}, "attributes"), h("dd", { id: "attributes" }, Object.entries(s.attributes || {}).map(([k, v]) => `${k}=${v}`).join(", ") || "none"))),
        h("div", {}, table(["", ...SCALARS], kinds.map((k) => [k.replace("_resources", "").replace("resources", "total"),
          ...SCALARS.map((n) => num((s[k] || {})[n]))]), { class: "slave-resources" }))));
    },
  };
}

function tasksView(root, args, query) {
  const framework = h("select", { id: "f-framework" }, h("option", { value: "" }, "all frameworks"));
  const stateSel = h("select", { id: "f-state" }, h("option", { value: "" }, "all states"),
    COUNTED_STATES.map((s) => h("option", { value: s }, s)));
  const text = h("input", { id: "f-text", placeholder: "filter by id, name, slave" });
  const all = h("input", { id: "f-all", type: "checkbox" });
  framework.value = query.get("framework") || "";
  stateSel.value = query.get("state") || "";
  text.value = query.get("q") || "";
  all.checked = query.get("all") === "1";
  const changed = () => {
    const q = new URLSearchParams();
    if (framework.value) q.set("framework", framework.value);
    if (stateSel.value) q.set("state", stateSel.value);
    if (text.value) q.set("q", text.value);
    if (all.checked) q.set("all", "1");
    setQuery(q);
    if (app.state) view.update(app.state);
  };
  for (const input of [framework, stateSel, all]) input.addEventListener("change", changed);
  text.addEventListener("input", changed);
  root.append(h("h2", {}, "Tasks"), h("div", { class: "filters" }, framework, stateSel, text, h("label", {}, all, " include completed")),
    h("div", { id: "list" }));
  const view = {
    update(state) {
      const known = new Set([...framework.options].map((o) => o.value));
      for (const f of allFrameworks(state)) {
        if (!known.has(f.id)) framework.append(h("option", { value: f.id }, `${f.name} (${f.id})`));
      }
      if (query.get("framework")) framework.value = framework.value || query.get("framework");
      const needle = text.value.toLowerCase();
      const shown = allTasks(state).filter((t) => (all.checked || t.active || stateSel.value) &&
        (!framework.value || t.framework_id === framework.value) && (!stateSel.value || t.state === stateSel.value) &&
        (!needle || `${t.id} ${t.name} ${t.slave_id} ${t.state}`.toLowerCase().includes(needle)));
      document.getElementById("list").replaceChildren(h("p", { class: "muted" }, `${shown.length} task(s)${shown.length > 1000 ? ", first 1000 shown" : ""}`),
        taskTable(shown.slice(0, 1000)));
    },
  };
  return view;
}

function rolesView(root) {
  root.append(h("h2", {}, "Roles"), h("div", { id: "list" }));
  let stopped = false;
  async function load() {
    if (stopped) return;
    try {
      const doc = await getJSON("master/roles");
      document.getElementById("list")?.replaceChildren(table(["role", "weight", "frameworks", "allocated cpus", "allocated mem",
        "offered cpus", "offered mem", "quota guarantee", "quota limit"], doc.roles.map((r) => [r.name, num(r.weight),
        num((r.frameworks || []).length), num(r.allocated.cpus), num(r.allocated.mem), num(r.offered.cpus), num(r.offered.mem),
        resourceText((r.quota || {}).guarantee), resourceText((r.quota || {}).limit)]), { class: "roles" }));
    } catch (err) {
      document.getElementById("list")?.replaceChildren(h("p", {}, String(err.message || err)));
    }
  }
  return { update: load, unmount() { stopped = true; } };
}

function resourceText(r) {
  const parts = Object.entries(r || {}).filter(([, v]) => v).map(([k, v]) => `${k}:${fmt(v)}`);
  return parts.length ? parts.join(" ") : "none";
}

function offerTable(offers) {
  return table(["offer", "framework", "role", "slave", "cpus", "mem", "disk", "gpus", "ports"], offers.map((o) => [
    h("td", { class: "id" }, o.id), idLink(`#/frameworks/${encodeURIComponent(o.framework_id)}`, o.framework_id),
    (o.allocation_info || {}).role || "", idLink(`#/slaves/${encodeURIComponent(o.slave_id)}`, o.slave_id),
    ...SCALARS.map((n) => num((o.resources || {})[n])), (o.resources || {}).ports || ""]), { class: "offers" });
}

function offersView(root) {
  root.append(h("h2", {}, "Outstanding offers"), h("div", { id: "list" }));
  return {
    update(state) {
      document.getElementById("list").replaceChildren(offerTable((state.frameworks || []).flatMap((f) => f.offers || [])));
    },
  };
}

// #/task/<framework>/<task>: find the task's sandbox through the master, then browse it.
function taskView(root, args) {
  const [frameworkId, taskId] = args;
  root.append(h("p", { class: "muted" }, `Looking for the sandbox of task ${taskId}…`));
  getJSON(`master/sandbox?framework_id=${encodeURIComponent(frameworkId)}&task_id=${encodeURIComponent(taskId)}`)
    .then((box) => {
      const dir = encodeURIComponent(box.directory);
      location.replace(`#/sandbox/${encodeURIComponent(box.slave_id)}?path=${dir}&root=${dir}&task=${encodeURIComponent(taskId)}`);
    })
    .catch((err) => root.replaceChildren(h("p", { class: "error" }, String(err.message || err))));
  return {};
}

function sandboxView(root, args, query) {
  const slaveId = args[0], path = query.get("path") || "";
  const task = query.get("task"), rootDir = query.get("root") || path;
  const keep = `&root=${encodeURIComponent(rootDir)}${task ? "&task=" + encodeURIComponent(task) : ""}`;
  const parent = path.replace(/\/+$/, "").replace(/\/[^/]*$/, "");
  root.append(h("h2", {}, "Sandbox", task ? ` of task ${task}` : ""),
    h("p", { class: "muted" }, "slave ", idLink(`#/slaves/${encodeURIComponent(slaveId)}`, slaveId), " · ", h("span", { class: "id", id: "path" }, path)),
    h("div", { class: "toolbar" }, path.replace(/\/+$/, "") !== rootDir.replace(/\/+$/, "") && parent.startsWith(rootDir.replace(/\/+$/, ""))
      ? link(`#/sandbox/${encodeURIComponent(slaveId)}?path=${encodeURIComponent(parent)}${keep}`, "↑ parent", "parent-link") : null,
    ["stdout", "stderr"].map((name) =>
      link(`#/log/${encodeURIComponent(slaveId)}?path=${encodeURIComponent(path.replace(/\/$/, "") + "/" + name)}`, `tail ${name}`, `tail-${name}`))),
    h("div", { id: "files" }, h("p", { class: "empty" }, "loading…")));
  const base = `slave_id=${encodeURIComponent(slaveId)}`;
  async function load() {
    try {
      const entries = await getJSON(`files/browse?${base}&path=${encodeURIComponent(path)}`);
      document.getElementById("files")?.replaceChildren(table(["mode", "size", "modified", "name", ""], entries.map((e) => {
        const name = e.path.split("/").pop();
        const isDir = e.mode.startsWith("d");
        const target = `#/${isDir ? "sandbox" : "log"}/${encodeURIComponent(slaveId)}?path=${encodeURIComponent(e.path)}${isDir ? keep : ""}`;
        return [h("td", { class: "id" }, e.mode), num(e.size), when(e.mtime), h("td", {}, link(target, name + (isDir ? "/" : ""), "file-link")),
          isDir ? "" : h("td", {}, link(`files/download?${base}&path=${encodeURIComponent(e.path)}`, "download"))];
      }), { class: "files" }));
    } catch (err) {
      document.getElementById("files")?.replaceChildren(h("p", { class: "error", id: "files-error" }, String(err.message || err)));
    }
  }
  return { update: load };
}

// The "pailer": reads the file's end, then what was appended since, every second.
function logView(root, args, query) {
  const slaveId = args[0], path = query.get("path") || "";
  const follow = h("input", { type: "checkbox", id: "follow", checked: true });
  const pre = h("pre", { class: "log", id: "log" });
  const status = h("span", { class: "muted", id: "log-status" });
  const dir = path.replace(/\/[^/]*$/, "");
  root.append(h("h2", {}, "Log ", h("span", { class: "id" }, path.split("/").pop())),
    h("div", { class: "toolbar" }, link(`#/sandbox/${encodeURIComponent(slaveId)}?path=${encodeURIComponent(dir)}`, "← sandbox"),
      h("label", {}, follow, " follow"),
      link(`files/download?slave_id=${encodeURIComponent(slaveId)}&path=${encodeURIComponent(path)}`, "download"), status), pre);
  const base = `files/read?slave_id=${encodeURIComponent(slaveId)}&path=${encodeURIComponent(path)}`;
  const CHUNK = 64 * 1024;
  let offset = null, stopped = false, busy = false;
  async function tick() {
    if (stopped || busy) return;
    busy = true;
    try {
      if (offset === null) {
        const size = (await getJSON(`${base}&offset=-1`)).offset;
        offset = Math.max(0, size - 4 * CHUNK);
      }
      for (;;) {
        const chunk = await getJSON(`${base}&offset=${offset}&length=${CHUNK}`);
        if (!chunk.data) break;
        pre.append(document.createTextNode(chunk.data));
        offset = chunk.offset + new TextEncoder().encode(chunk.data).length;
        if (chunk.data.length < CHUNK / 4) break;
      }
      status.textContent = `${bytes(offset)} read · ${new Date().toLocaleTimeString()}`;
      if (follow.checked) pre.scrollTop = pre.scrollHeight;
    } catch (err) {
      status.textContent = String(err.message || err);
    } finally {
      busy = false;
    }
  }
  tick();
  const timer = setInterval(() => { if (follow.checked) tick(); }, 1000);
  return { unmount() { stopped = true; clearInterval(timer); } };
}

function notFoundView(root) {
  root.append(h("p", {}, "No such page. ", link("#/", "Back to the dashboard")));
  return {};
}

window.addEventListener("hashchange", route);
route();
poll();
setInterval(poll, POLL_MS);
