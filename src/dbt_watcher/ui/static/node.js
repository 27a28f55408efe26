// The node page of one consumer task: its node's result in this run (and its gating tests'), the
// Airflow task's state, and the compiled SQL dbt ran, read from the run's run_results.json.
"use strict";
const TASK_ID = query.get("task_id"), MAP_INDEX = Number(query.get("map_index") || -1);

async function load() {
  try {
    const q = new URLSearchParams({ dag_id: DAG_ID, run_id: RUN_ID });
    const [view, sql, tis] = await Promise.all([
      getJSON(`api/run?${q}`),
      getJSON(`api/sql?${q}&${new URLSearchParams({ task_id: TASK_ID, map_index: MAP_INDEX })}`),
      taskInstances(),
    ]);
    render(view, sql, tis[`${TASK_ID}|${MAP_INDEX}`]);
  } catch (error) {
    showProblem(error);
  }
}

function render(view, sql, ti) {
  const g = view.groups.find((x) => x.producer_task_id === sql.producer_task_id && x.map_index === MAP_INDEX);
  const mine = g ? g.nodes.filter((n) => n.task_id === TASK_ID) : [];
  document.getElementById("title").textContent = `${sql.unique_id} — ${TASK_ID}`;
  const q = new URLSearchParams({ dag_id: DAG_ID, run_id: RUN_ID });
  document.getElementById("links").replaceChildren(
    `Airflow task: ${ti ? ti.state : "?"} · `,
    el("a", { href: `run?${q}` }, "the run's timeline"), " · ",
    el("a", { href: `../dags/${encodeURIComponent(DAG_ID)}/runs/${encodeURIComponent(RUN_ID)}/tasks/` +
      `${encodeURIComponent(TASK_ID)}${MAP_INDEX >= 0 ? `/mapped/${MAP_INDEX}` : ""}` }, "the task in Airflow"));
  const head = ["node", "status", "message", "started", "completed", "dbt s", "rows", "failures"];
  const rows = mine.map((n) => el("tr", { "data-node": n.unique_id, "data-status": n.status },
    el("td", {}, n.unique_id + (n.gates ? " (gating test)" : "")),
    el("td", {}, el("span", { class: `status ${statusClass(n.status)}` }, n.status)),
    el("td", {}, n.message || ""), el("td", {}, n.started_at || ""), el("td", {}, n.completed_at || ""),
    el("td", { class: "num" }, seconds(n.execution_time)), el("td", { class: "num" }, n.rows_affected ?? ""),
    el("td", { class: "num" }, n.failures ?? "")));
  if (!rows.length) rows.push(el("tr", {}, el("td", { colspan: head.length }, "dbt has not reported this node yet.")));
  document.getElementById("result").replaceChildren(
    el("thead", {}, el("tr", {}, ...head.map((h) => el("th", {}, h)))), el("tbody", {}, ...rows));
  const box = document.getElementById("sql");
  box.replaceChildren(el("h2", {}, "Compiled SQL of this run"));
  if (sql.note) box.append(el("p", { class: "muted" }, sql.note));
  for (const s of sql.sql) box.append(el("h2", {}, s.unique_id), el("pre", { "data-sql": s.unique_id }, s.compiled_code || "(none: dbt compiled no SQL for this node)"));
  document.body.dataset.ready = "1";
}

load();
