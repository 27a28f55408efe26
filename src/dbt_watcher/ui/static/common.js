// Shared by the plugin's pages: reading the page's query, calling the plugin's and Airflow's APIs
// with the user's own Airflow session (the browser sends its cookie), and status colours.
"use strict";
const query = new URLSearchParams(location.search);
const DAG_ID = query.get("dag_id"), RUN_ID = query.get("run_id");
// The pages live at <base>/dbt-watcher/<page>; Airflow's REST API at <base>/api/v2.
const AIRFLOW = new URL("../api/v2/", location.href).href;

class Denied extends Error {}

async function getJSON(url) {
  const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
  if (response.status === 401 || response.status === 403) throw new Denied(String(response.status));
  if (!response.ok) throw new Error(`${response.status} ${(await response.text()).slice(0, 300)}`);
  return response.json();
}

function runPath() {
  return `dags/${encodeURIComponent(DAG_ID)}/dagRuns/${encodeURIComponent(RUN_ID)}`;
}

// Every task instance of the run, through Airflow's REST API (pages of up to 100).
async function taskInstances() {
  const first = await getJSON(`${AIRFLOW}${runPath()}/taskInstances?limit=100&offset=0`);
  const pages = [];
  for (let offset = 100; offset < first.total_entries; offset += 100) {
    pages.push(getJSON(`${AIRFLOW}${runPath()}/taskInstances?limit=100&offset=${offset}`));
  }
  const all = first.task_instances.concat(...(await Promise.all(pages)).map((p) => p.task_instances));
  const byId = {};
  for (const ti of all) byId[`${ti.task_id}|${ti.map_index}`] = ti;
  return byId;
}

function statusClass(status) { return String(status || "running").replace(/ /g, "-"); }
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) if (v !== null && v !== undefined) node.setAttribute(k, v);
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(c ?? ""));
  return node;
}
function seconds(value) { return value === null || value === undefined ? "" : Number(value).toFixed(2); }
function showProblem(error) {
  const box = document.getElementById("notice");
  box.hidden = false;
  if (error instanceof Denied) {
    box.className = "notice denied";
    box.textContent = `You do not have access to the DAG ${DAG_ID}, or your Airflow session has ended (HTTP ${error.message}).`;
    document.body.dataset.denied = "1";
  } else {
    box.className = "notice";
    box.textContent = `Could not load this run (the page tries again): ${error.message}`;
  }
  document.body.dataset.ready = "1";
}
