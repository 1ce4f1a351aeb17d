// The Marathon UI: polls the v2 API and renders apps and deployments; forms call
// the same API a client would. Plain DOM, no build step, nothing fetched from outside.
"use strict";

const POLL_MS = 2000;
// Scale values being typed, by app id: the table is redrawn on every poll and must not eat them.
const pendingScale = new Map();
const $ = (sel) => document.querySelector(sel);
// Who is looking (GET /v2/whoami). A principal that may only read gets no buttons the
// API would refuse; the API still decides, this only keeps the page honest.
const session = { operator: true };

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "class") node.className = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return node;
}

function say(text, isError) {
  const box = $("#message");
  box.textContent = text;
  box.className = isError ? "error" : "";
  box.hidden = false;
  clearTimeout(say.timer);
  say.timer = setTimeout(() => { box.hidden = true; }, isError ? 8000 : 3000);
}

async function api(method, path, body) {
  const init = { method, headers: { Accept: "application/json" } };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  // From the origin alone: fetch() refuses a URL that still holds an address bar's user:password@.
  const response = await fetch(new URL(path, location.origin).href, init);
  const text = await response.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (e) { data = text; }
  if (!response.ok) {
    let message = (data && data.message) || `${response.status} ${response.statusText}`;
    for (const d of (data && data.details) || []) message += `\n${d.path}: ${(d.errors || []).join(", ")}`;
    if (response.status === 401) message = `${message}. Reload the page and log in with a principal of the API's credentials.`;
    const error = new Error(message);
    error.status = response.status;
    throw error;
  }
  return data;
}

async function act(what, method, path, body) {
  try {
    const result = await api(method, path, body);
    say(`${what}${result && result.deploymentId ? ` (deployment ${result.deploymentId})` : ""}`);
    refresh();
  } catch (e) {
    say(`${what} failed: ${e.message}`, true);
  }
}

function status(app, delayed) {
  if (app.deployments.length) return "Deploying";
  if (app.instances === 0 && app.tasksRunning === 0) return "Suspended";
  if (delayed.has(app.id)) return "Delayed";
  if (app.tasksRunning < app.instances) return "Waiting";
  return "Running";
}

function health(app) {
  if (!app.healthChecks || !app.healthChecks.length) return el("span", { class: "muted" }, "no checks");
  return el("span", {},
    el("span", { class: "good" }, `${app.tasksHealthy} healthy`), " / ",
    el("span", { class: app.tasksUnhealthy ? "bad" : "muted" }, `${app.tasksUnhealthy} unhealthy`));
}

function applySession(who) {
  session.operator = !who || who.operator !== false;
  document.body.classList.toggle("read-only", !session.operator);
  $("#whoami").textContent = who && who.authenticated
    ? `signed in as ${who.principal}${session.operator ? "" : " (read-only)"}` : "";
}

function appActions(app, path) {
  if (!session.operator) return el("td", { class: "actions muted" }, "read-only");
  const scale = el("input", { type: "number", min: "0", "aria-label": "instances",
    value: pendingScale.has(app.id) ? pendingScale.get(app.id) : String(app.instances),
    oninput: (event) => pendingScale.set(app.id, event.target.value) });
  return el("td", { class: "actions" },
    scale,
    el("button", { class: "scale", onclick: () => {
      pendingScale.delete(app.id);
      act(`Scaled ${app.id} to ${scale.value}`, "PUT", path, { instances: Number(scale.value) });
    } }, "Scale"), " ",
    el("button", { class: "restart", onclick: () => act(`Restarting ${app.id}`, "POST", `${path}/restart`) },
      "Restart"), " ",
    el("button", { class: "delete", onclick: () => {
      if (window.confirm(`Destroy ${app.id} and all its instances?`)) act(`Deleted ${app.id}`, "DELETE", path);
    } }, "Delete"));
}

function appRow(app, delayed) {
  const path = `/v2/apps${app.id}`;
  const state = status(app, delayed);
  return el("tr", { "data-app": app.id },
    el("td", {}, app.id),
    el("td", {}, el("span", { class: `status ${state}` }, state)),
    el("td", {}, `${app.tasksRunning} / ${app.instances}`),
    el("td", {}, health(app)),
    el("td", {}, app.deployments.map((d) => d.id.slice(0, 8)).join(", ") || "–"),
    el("td", {}, `${app.cpus} / ${app.mem} MiB`),
    appActions(app, path));
}

function deploymentRow(d) {
  return el("tr", {},
    el("td", {}, d.id),
    el("td", {}, d.affectedApps.join(", ")),
    el("td", {}, d.currentActions.map((a) => `${a.action} ${a.app}`).join(", ")),
    el("td", {}, `${d.currentStep} / ${d.totalSteps}`),
    el("td", {}, session.operator
      ? el("button", { class: "rollback", onclick: () => act(`Rolling back ${d.id}`, "DELETE", `/v2/deployments/${d.id}`) },
        "Roll back") : ""));
}

async function refresh() {
  try {
    const [apps, deployments, queue, leader, who] = await Promise.all([
      api("GET", "/v2/apps"), api("GET", "/v2/deployments"), api("GET", "/v2/queue"),
      api("GET", "/v2/leader").catch(() => null), api("GET", "/v2/whoami").catch(() => null)]);
    applySession(who);
    $("#auth-error").hidden = true;
    const delayed = new Set(queue.queue.filter((q) => q.delay && q.delay.timeLeftSeconds > 0).map((q) => q.app.id));
    const list = apps.apps.slice().sort((a, b) => a.id.localeCompare(b.id));
    $("#apps tbody").replaceChildren(...list.map((a) => appRow(a, delayed)));
    $("#no-apps").hidden = list.length > 0;
    $("#app-count").textContent = `(${list.length})`;
    $("#deployments tbody").replaceChildren(...deployments.map(deploymentRow));
    $("#no-deployments").hidden = deployments.length > 0;
    $("#leader").textContent = leader ? `leader ${leader.leader}` : "";
    $("#refreshed").textContent = `updated ${new Date().toLocaleTimeString()}`;
    document.body.dataset.loaded = "true";
  } catch (e) {
    if (e.status === 401 || e.status === 403) {
      // Not a network problem: say so plainly instead of leaving an empty table.
      $("#auth-error").textContent = `${e.status === 401 ? "Not authenticated" : "Not authorized"}: ${e.message}`;
      $("#auth-error").hidden = false;
      $("#refreshed").textContent = "";
    } else {
      $("#refreshed").textContent = `API unreachable: ${e.message}`;
    }
  }
}

$("#create").addEventListener("submit", (event) => {
  event.preventDefault();
  const form = new FormData(event.target);
  const app = { id: form.get("id"), cmd: form.get("cmd"), instances: Number(form.get("instances")),
                cpus: Number(form.get("cpus")), mem: Number(form.get("mem")) };
  act(`Created ${app.id}`, "POST", "/v2/apps", app);
});

refresh();
setInterval(refresh, POLL_MS);
