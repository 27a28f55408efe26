// The run page: for each dbt-watcher group of one DAG run, a timeline (one bar per dbt node from
// dbt's start to finish, a tick where its Airflow task ended, the producer's span on top) and a node
// table. Data: the plugin's /api/run (the run's channel) and Airflow's task instances. While the
// DAG run is not finished the page refreshes itself every 5 seconds.
"use strict";
const REFRESH_MS = 5000;
// Task states after which a task runs no more (a DAG run is over when all its tasks are): the page
// asks Airflow for the task instances anyway, and the DAG run's own view costs the api-server seconds
// at thousands of tasks.
const ENDED_TASK = new Set(["success", "failed", "skipped", "upstream_failed", "removed"]);

let filterText = "";  // kept across refreshes
let rendered = false;

async function load() {
  let again = REFRESH_MS;
  try {
    const [view, tis] = await Promise.all([
      getJSON(`api/run?${new URLSearchParams({ dag_id: DAG_ID, run_id: RUN_ID })}`),
      taskInstances(),
    ]);
    const count = Object.keys(tis).length;
    // Each refresh reads every task instance (100 a request): fewer refreshes for big runs.
    again = Math.max(REFRESH_MS, count * 10);
    const ended = count > 0 && Object.values(tis).every((ti) => ENDED_TASK.has(ti.state));
    render(view, tis, ended, again);
    rendered = true;
    if (ended) return;
  } catch (error) {
    showProblem(error);
    if (error instanceof Denied || !rendered) return;  // a failed refresh is retried, a refusal is not
  }
  setTimeout(load, again);
}

function render(view, tis, ended, again) {
  document.getElementById("title").textContent = `dbt build — ${DAG_ID} / ${RUN_ID}`;
  const nodes = view.groups.reduce((n, g) => n + g.nodes.length, 0);
  document.getElementById("summary").textContent =
    `DAG run ${ended ? "ended" : "running"}; ${view.groups.length} dbt-watcher group(s), ${nodes} dbt node results` +
    (ended ? "" : ` (refreshing every ${Math.round(again / 1000)} s)`);
  document.getElementById("notice").hidden = true;
  const box = document.getElementById("groups");
  box.replaceChildren(...view.groups.map((g) => group(g, tis)));
  if (!view.groups.length) {
    box.append(el("p", { class: "notice" }, "No dbt-watcher producer has published anything in this DAG run yet."));
  }
  document.body.dataset.ready = "1";
}

function group(g, tis) {
  const producer = tis[`${g.producer_task_id}|${g.map_index}`] || {};
  const section = el("section", { "data-group": g.group });
  const state = g.phase ? `producer ${g.phase}, attempt ${g.attempt}` : "producer not started";
  const exit = g.exit_code === null || g.exit_code === undefined ? "" : `, dbt exit code ${g.exit_code}`;
  section.append(el("h2", {}, `${g.group}${g.map_index >= 0 ? ` [${g.map_index}]` : ""} — ${state}${exit}`));
  if (g.error || g.problem) section.append(el("p", { class: "notice" }, g.error || g.problem));
  section.append(timeline(g, tis, producer), legend(), table(g, tis));
  return section;
}

function legend() {
  const item = (cls, label) => el("span", {}, el("span", { class: `status ${cls}` }, " "), ` ${label}`);
  return el("div", { class: "legend muted" }, item("success", "success / pass"), item("warn", "warn"),
    item("error", "error / fail"), item("skipped", "skipped"), item("running", "producer"),
    "│ tick: the node's Airflow task ended");
}

function time(value) { return value ? Date.parse(value) / 1000 : null; }

function timeline(g, tis, producer) {
  const rows = g.nodes.filter((n) => n.started_at || n.completed_at);
  const starts = [time(producer.start_date), ...rows.map((n) => time(n.started_at || n.completed_at))].filter((x) => x);
  if (!starts.length) return el("p", { class: "muted" }, "No node has started yet.");
  const t0 = Math.min(...starts);
  const ends = [time(producer.end_date), ...rows.map((n) => time(n.completed_at))];
  for (const n of rows) ends.push(time((tis[`${n.task_id}|${g.map_index}`] || {}).end_date));
  const t1 = Math.max(...ends.filter((x) => x), t0 + 1);
  const width = 1100, left = 4, rowH = rows.length > 400 ? 2 : rows.length > 150 ? 4 : 8, top = 22;
  const height = top + (rows.length + 2) * rowH + 24;
  const x = (t) => left + ((t - t0) / (t1 - t0)) * (width - 2 * left);
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("width", width); svg.setAttribute("height", height); svg.setAttribute("class", "timeline");
  const add = (tag, attrs, title) => {
    const node = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    if (title) { const t = document.createElementNS(ns, "title"); t.textContent = title; node.append(t); }
    svg.append(node);
    return node;
  };
  for (let s = 0; s <= t1 - t0; s += niceStep(t1 - t0)) {
    add("line", { x1: x(t0 + s), x2: x(t0 + s), y1: top - 4, y2: height - 20, stroke: "#eaeef2" });
    add("text", { x: x(t0 + s) + 2, y: top - 8 }).textContent = `${Math.round(s)} s`;
  }
  if (producer.start_date) {
    const end = time(producer.end_date) || t1;
    add("rect", { class: "producer", x: x(time(producer.start_date)), y: top, height: Math.max(rowH, 4),
      width: Math.max(1, x(end) - x(time(producer.start_date))), fill: "#0969da" },
      `producer ${g.producer_task_id}: ${producer.state || "running"}, ${seconds(end - time(producer.start_date))} s`);
  }
  rows.forEach((n, i) => {
    const y = top + (i + 2) * rowH;
    const start = time(n.started_at || n.completed_at), end = time(n.completed_at) || start;
    const ti = tis[`${n.task_id}|${g.map_index}`];
    const lines = [`${n.unique_id}: ${n.status}`, n.message, `dbt ${seconds(n.execution_time)} s`,
      n.rows_affected !== null && n.rows_affected !== undefined ? `rows: ${n.rows_affected}` : null,
      n.task_id ? `task ${n.task_id}: ${ti ? ti.state : "?"}${n.gates ? " (gating test)" : ""}` : "no task of its own"];
    add("rect", { class: `bar ${statusClass(n.status)}`, "data-node": n.unique_id, "data-status": n.status,
      x: x(start), y, width: Math.max(1.5, x(end) - x(start)), height: Math.max(1, rowH - 1),
      fill: colour(n.status) }, lines.filter((l) => l).join("\n"));
    if (ti && ti.end_date && !n.gates) {
      add("rect", { class: "task-end", "data-task": n.task_id, x: x(time(ti.end_date)) - 0.75, y: y - 1,
        width: 1.5, height: rowH + 1, fill: "#24292f" }, `${n.task_id} ended ${ti.state} at ${ti.end_date}`);
    }
  });
  return svg;
}

function niceStep(span) {
  for (const step of [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600]) if (span / step <= 12) return step;
  return 7200;
}

function colour(status) {
  return { success: "#1a7f37", pass: "#1a7f37", warn: "#bf8700", skipped: "#8c959f", excluded: "#8c959f",
    "no-op": "#8c959f" }[status] || "#cf222e";
}

function table(g, tis) {
  const search = el("input", { type: "search", placeholder: "filter nodes (name, status, message)" });
  const head = ["node", "type", "status", "message", "start s", "dbt s", "rows", "task", "task state", "asset"];
  const body = el("tbody");
  const starts = g.nodes.map((n) => time(n.started_at || n.completed_at)).filter((t) => t);
  const t0 = Math.min(...starts);
  for (const n of g.nodes) {
    const ti = tis[`${n.task_id}|${g.map_index}`];
    const taskLink = n.task_id
      ? el("a", { href: `node?${new URLSearchParams({ dag_id: DAG_ID, run_id: RUN_ID, task_id: n.task_id,
        map_index: g.map_index })}` }, n.task_id + (n.gates ? " (gates)" : ""))
      : "";
    body.append(el("tr", { "data-node": n.unique_id, "data-status": n.status, "data-task-state": ti ? ti.state : "" },
      el("td", {}, n.name), el("td", {}, n.resource_type),
      el("td", {}, el("span", { class: `status ${statusClass(n.status)}` }, n.status)),
      el("td", {}, n.message || ""), el("td", { class: "num" }, n.started_at ? seconds(time(n.started_at) - t0) : ""),
      el("td", { class: "num" }, seconds(n.execution_time)),
      el("td", { class: "num" }, n.rows_affected ?? ""), el("td", {}, taskLink),
      el("td", {}, ti ? ti.state || "" : ""), el("td", {}, n.gates ? "" : n.asset || "")));
  }
  for (const uid of g.waiting) {
    body.append(el("tr", { "data-node": uid, "data-status": "" }, el("td", {}, uid.split(".")[2] || uid),
      el("td", {}, uid.split(".")[0]), el("td", {}, el("span", { class: "status running" }, "waiting")),
      el("td", {}, "no result from dbt yet"), el("td"), el("td"), el("td"), el("td"), el("td"), el("td")));
  }
  const apply = () => {
    const needle = filterText.toLowerCase();
    for (const row of body.rows) row.hidden = needle !== "" && !row.textContent.toLowerCase().includes(needle);
  };
  search.value = filterText;
  search.addEventListener("input", () => { filterText = search.value; apply(); });
  apply();
  const tbl = el("table", { class: "nodes" }, el("thead", {}, el("tr", {}, ...head.map((h) => el("th", {}, h)))), body);
  return el("div", {}, search, tbl);
}

load();
