"""Runs one dbt command in another virtualenv's Python, exactly as its ``dbt`` executable would, and adds
one JSON log line: the invocation's selection, the moment dbt has computed it.

Started by :class:`dbt_watcher.invocation.runners.SubprocessDbt` as ``<venv python> -c <this file's text>
<dbt args>``, in the project folder. It imports nothing of dbt-watcher (it runs where only dbt is
installed) and exits with dbt's own codes: 0 success, 1 some node, test or hook failed, 2 dbt could not
run.
"""

import json
import os
import sys
import time
from typing import Any

# `python -c` puts the working directory (the dbt project) first on sys.path, where dbt's own executable
# has its bin folder: a project file must not shadow a module dbt imports.
sys.path[:] = [p for p in sys.path if p not in ("", os.getcwd())]

#: The event name of the extra line (dbt_watcher.invocation.selection.SELECTION_EVENT).
SELECTION_EVENT = "DbtWatcherSelection"


def _selection_line(event: Any) -> None:
    # dbt fires ConcurrencyLine on its main thread once the build's graph queue (its selection) exists,
    # before any worker thread runs a node: the line cannot interleave with dbt's own log lines.
    if event.info.name != "ConcurrencyLine":
        return
    try:  # an exception in a dbtRunner callback would abort the build: without the line, nothing is lost
        from dbt.selected_resources import SELECTED_RESOURCES  # the global behind dbt's `selected_resources`

        info = {"name": SELECTION_EVENT, "level": "info", "msg": "", "ts": time.time()}
        sys.stdout.write(json.dumps({"info": info, "data": {"unique_ids": sorted(SELECTED_RESOURCES)}}) + "\n")
        sys.stdout.flush()
    except Exception as exc:  # the producer then takes the selection from dbt's closing record
        sys.stderr.write(f"dbt-watcher could not report the selection: {exc}\n")


def main(args: list[str]) -> int:
    from dbt.cli.main import dbtRunner

    result = dbtRunner(callbacks=[_selection_line]).invoke(args)
    if result.success:
        return 0
    return 1 if result.exception is None and result.result is not None else 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
