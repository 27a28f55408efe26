"""Benchmark output: the machine, a markdown table (min and median per cell), a timeline PNG."""

from __future__ import annotations

import os
import platform
import statistics
from collections import defaultdict
from importlib.metadata import version
from pathlib import Path
from typing import Any

LABELS = {
    "watcher_deferrable": "dbt-watcher (deferrable)",
    "watcher_sync": "dbt-watcher (deferrable=False)",
    "cosmos_watcher": "Cosmos WATCHER",
    "cosmos_local": "Cosmos LOCAL",
}


def machine() -> dict[str, Any]:
    versions = {}
    for package in ("apache-airflow", "apache-airflow-task-sdk", "dbt-core", "dbt-postgres", "astronomer-cosmos"):
        try:
            versions[package] = version(package)
        except Exception:
            versions[package] = None
    return {
        "cpus": os.cpu_count(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": versions,
    }


def _agg(values: list[float]) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:g}"
    return f"{min(values):g} / {statistics.median(values):g}"


def markdown(result: dict[str, Any]) -> str:
    groups: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
    for cell in result["cells"]:
        groups[(cell["contender"], cell["threads"])].append(cell)
    bares: dict[int, list[float]] = defaultdict(list)
    for bare in result["bare"]:
        bares[bare["threads"]].append(bare["wall"])
    w = result["workload"]
    lines = [
        f"Workload: {w['models']} models, {w['seeds']} seeds, {w['sources']} sources, {w['latency']} s warehouse "
        f"latency per model. Cells show min / median over {result['reps']} repetition(s).",
        "",
        "| contender | threads | DAG wall s | P1 wall ÷ bare | P2 p50 s | P2 p95 s | P2 max s | P3 API calls | "
        "P5 worker s | P6 producer ÷ bare | triggerer CPU s | triggerer peak MB | channel KB per run | state |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for threads in sorted(bares):
        lines.append(
            f"| bare `dbt build` | {threads} | {_agg(bares[threads])} | 1 | - | - | - | - | - | - | - | - | - | - |"
        )
        for contender in result["contenders"]:
            cells = groups.get((contender, threads)) or []
            if not cells:
                continue
            lines.append(
                f"| {LABELS.get(contender, contender)} | {threads} | {_agg([c['wall'] for c in cells])} | "
                f"{_agg([c['p1'] for c in cells])} | {_agg([c['p2'].get('p50') for c in cells if c['p2']])} | "
                f"{_agg([c['p2'].get('p95') for c in cells if c['p2']])} | "
                f"{_agg([c['p2'].get('max') for c in cells if c['p2']])} | {_agg([c['p3'] for c in cells])} | "
                f"{_agg([c['p5_worker_seconds'] for c in cells])} | {_agg([c['p6'] for c in cells if c['p6']])} | "
                f"{_agg([c['triggerer_cpu'] for c in cells if 'triggerer_cpu' in c])} | "
                f"{_agg([c['triggerer_peak_mb'] for c in cells if 'triggerer_peak_mb' in c])} | "
                f"{_agg([c['channel_kb'] for c in cells if c.get('channel_kb')])} | "
                f"{'/'.join(sorted({c['state'] for c in cells}))} |"
            )
    lines += ["", "P4, DAG-file import time with a warm cache (seconds, best of 3):", ""]
    lines += [
        f"- {name.replace('_', ' at ')} models: {seconds}" for name, seconds in result["p4_import_seconds"].items()
    ]
    lines += [
        "",
        "Airflow settings (identical for every contender): "
        + ", ".join(f"{k}={v}" for k, v in result["airflow_settings"].items()),
    ]
    m = result["machine"]
    lines += [
        f"Machine: {m['cpus']} CPUs, {m['memory_gib']} GiB, Python {m['python']}; "
        + ", ".join(f"{k} {v}" for k, v in m["versions"].items() if v)
    ]
    return "\n".join(lines) + "\n"


def timeline(result: dict[str, Any], path: Path) -> None:
    """The timeline of bench/run.py: one panel per contender at 8 threads (or the most threads run)."""
    threads = 8 if 8 in result["threads"] else result["threads"][-1]
    panels = []
    for contender in ("watcher_deferrable", "cosmos_watcher", "watcher_sync", "cosmos_local"):
        cells = [c for c in result["cells"] if c["contender"] == contender and c["threads"] == threads and c["nodes"]]
        if cells:
            cell = cells[-1]
            title = (
                f"{LABELS.get(contender, contender)} — {threads} threads: DAG run {cell['wall']} s, "
                f"bare dbt build {cell['bare']} s"
            )
            panels.append((title, cell["nodes"]))
    draw_timeline(panels, path)


def draw_timeline(panels: list[tuple[str, dict[str, dict[str, float]]]], path: Path) -> None:
    """dbt node bars (start → finish in the warehouse) with each consumer task's end marked, a panel each.

    ``panels``: (title, {node: {"start", "finish", "task_end": seconds since the DAG run started}}).
    Thousands of nodes draw as thin rows; the x axis is shared so panels compare at a glance.
    """
    if not panels:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(panels), 1, figsize=(12, 3.2 * len(panels)), squeeze=False)
    horizon = max(
        max((max(t.get("task_end", 0), t.get("finish", 0)) for t in nodes.values()), default=1) for _, nodes in panels
    )
    for ax, (title, nodes) in zip(axes[:, 0], panels, strict=False):
        rows = sorted(nodes.items(), key=lambda kv: (kv[1].get("start", kv[1].get("finish", 0)), kv[0]))
        many = len(rows) > 500
        for y, (_, times) in enumerate(rows):
            if "start" in times and "finish" in times:
                ax.plot([times["start"], times["finish"]], [y, y], color="#4c72b0", linewidth=0.4 if many else 1.2)
            if "task_end" in times:
                ax.plot(times["task_end"], y, marker="|" if not many else ".", color="#dd4444",
                        markersize=1 if many else 4)  # fmt: skip
        ax.set_title(title, fontsize=10)
        ax.set_xlim(0, horizon * 1.02)
        ax.set_ylabel(f"dbt nodes ({len(rows):,})")
        ax.set_yticks([])
    axes[-1, 0].set_xlabel(
        "seconds since the DAG run started   (blue: dbt builds the node; red: its Airflow task ends)"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
