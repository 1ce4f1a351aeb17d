// The dashboard: reads the master's /master/state and redraws every 2 seconds.
"use strict";

const SCALARS = ["cpus", "mem", "disk", "gpus"];

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  if (cls) node.className = cls;
  return node;
}

function fill(tableId, rows) {
  const body = document.querySelector(`#${tableId} tbody`);
  body.replaceChildren(...rows.map((cells) => {
    const tr = el("tr");
    for (const cell of cells) tr.append(cell instanceof Node ? cell : el("td", cell));
    return tr;
  }));
}

function fmt(value) {
  if (value === undefined || value === null) return "0";
  return Number.isInteger(value) ? String(value) : value.toFixed(2);
}

function sum(items, key, name) {
  return items.reduce((acc, item) => acc + ((item[key] || {})[name] || 0), 0);
}

function render(state) {
  document.getElementById("cluster").textContent = state.cluster ? `cluster ${state.cluster}` : "";
  document.getElementById("leader").textContent = `leader ${state.leader || state.pid || ""}`;
  document.getElementById("updated").textContent = `updated ${new Date().toLocaleTimeString()}`;

  const frameworks = state.frameworks || [];
  const tasks = frameworks.flatMap((f) => (f.tasks || []).map((t) => ({ ...t, framework: f.name })));
  const completed = frameworks.concat(state.completed_frameworks || [])
    .flatMap((f) => (f.completed_tasks || []).map((t) => ({ ...t, framework: f.name })));
  const counts = {};
  for (const task of tasks.concat(completed)) counts[task.state] = (counts[task.state] || 0) + 1;

  const cards = [
    ["slaves", (state.slaves || []).filter((s) => s.active !== false).length],
    ["frameworks", frameworks.length],
    ["running", counts.TASK_RUNNING || 0],
    ["staging", (counts.TASK_STAGING || 0) + (counts.TASK_STARTING || 0)],
    ["finished", counts.TASK_FINISHED || 0],
    ["failed", (counts.TASK_FAILED || 0) + (counts.TASK_ERROR || 0)],
    ["killed", counts.TASK_KILLED || 0],
    ["lost", (counts.TASK_LOST || 0) + (counts.TASK_UNREACHABLE || 0)],
  ];
  document.getElementById("summary").replaceChildren(...cards.map(([label, value]) => {
    const card = el("div", undefined, "card");
    card.append(el("div", String(value), "value"), el("div", label, "label"));
    card.dataset.metric = label;
    return card;
  }));

  const slaves = state.slaves || [];
  fill("resources", SCALARS.map((name) => {
    const total = sum(slaves, "resources", name);
    const used = sum(slaves, "used_resources", name);
    const offered = sum(slaves, "offered_resources", name);
    return [name, fmt(total), fmt(used), fmt(offered), fmt(Math.max(0, total - used - offered))];
  }));
  fill("slaves", slaves.map((s) => [el("td", s.id, "id"), s.hostname, fmt(s.resources.cpus),
    fmt(s.resources.mem), fmt(s.resources.disk), s.active === false ? "no" : "yes"]));
  fill("frameworks", frameworks.map((f) => [el("td", f.id, "id"), f.name, f.user,
    (f.roles || [f.role]).join(","), String((f.tasks || []).length), fmt((f.used_resources || {}).cpus),
    fmt((f.used_resources || {}).mem), f.connected === false ? "no" : "yes"]));

  const needle = document.getElementById("filter").value.toLowerCase();
  const shown = tasks.concat(completed.slice(-200))
    .filter((t) => !needle || `${t.id} ${t.name} ${t.state}`.toLowerCase().includes(needle));
  fill("tasks", shown.map((t) => [el("td", t.id, "id"), t.name, el("td", t.state, `state-${t.state}`),
    t.framework, el("td", t.slave_id, "id"), fmt((t.resources || {}).cpus), fmt((t.resources || {}).mem)]));
}

async function refresh() {
  try {
    const response = await fetch("master/state", { cache: "no-store" });
    if (response.ok) render(await response.json());
  } catch (err) {
    document.getElementById("updated").textContent = `cannot reach the master: ${err}`;
  }
}

document.getElementById("filter").addEventListener("input", refresh);
refresh();
setInterval(refresh, 2000);
