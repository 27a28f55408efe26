"""What this attempt's dbt invocation selected, published so that the run decides which tests gate a consumer.

dbt reports its selection before it runs the first node (:mod:`dbt_watcher.invocation.selection`). The
producer applies the gating rule (:mod:`dbt_watcher.rules.gating`) to the tests in it, with the test facts
of the invocation's own manifest, and publishes, for each selected node that has a consumer, the tests that
gate it. Consumers wait for this record before they go green, and a consumer whose node the record does
not list is skipped. The work happens on a thread of its own: reading a large manifest.json must not hold
up dbt's main thread (the selection arrives from dbt's callback) or the reading of a subprocess's output.

When dbt reported no selection (a dbt executable that is not a Python script, a dbt without the
selection global), the closing record stands in once the invocation ended: every node in its
run_results.json was selected.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dbt_watcher.channel.writer import ChannelWriter
from dbt_watcher.invocation.selection import facts_from_file, is_test
from dbt_watcher.rules.artifacts import read_run_results
from dbt_watcher.runtime.task_dbt import TaskDbt, closing_selection, selection_gates

log = logging.getLogger(__name__)


def recorded_selection(target_path: Path, positions: Mapping[str, int]) -> dict[str, dict[str, str]] | None:
    """The selection of an attempt that ended without publishing it, from what dbt left in its target
    folder (run_results.json and manifest.json); None when they do not say it."""
    selected = closing_selection(read_run_results(target_path))
    if selected is None:
        return None
    try:
        return selection_gates(selected, facts_from_file(target_path, filter(is_test, selected)), positions)
    except (OSError, ValueError, LookupError) as exc:
        log.warning("The selection of %s cannot be read back (%s): its consumers are not green", target_path, exc)
        return None


class SelectionPublisher:
    """Publishes one attempt's selection into the channel, once."""

    def __init__(self, dbt: TaskDbt, writer: ChannelWriter, positions: Mapping[str, int]) -> None:
        self._dbt, self._writer, self._positions = dbt, writer, positions
        self._thread: threading.Thread | None = None
        self.published = False

    def on_selection(self, selected: frozenset[str]) -> None:
        """dbt's callback: start working out the gates (dbt goes on meanwhile)."""
        self._thread = threading.Thread(
            target=self._publish, args=(selected, "dbt's selection"), name="dbt-watcher-selection", daemon=True
        )
        self._thread.start()

    def finish(self, run_results: Mapping[str, Any] | None) -> None:
        """After the invocation: wait for the live selection, or take it from the closing record."""
        if self._thread is not None:
            self._thread.join()
        selected = closing_selection(run_results)
        if not self.published and selected is not None:
            self._publish(selected, "dbt's closing record")

    def _publish(self, selected: frozenset[str], source: str) -> None:
        try:
            gates = self._dbt.gates(selected, self._positions)
        except Exception:
            # Nothing published: consumers of gated nodes end not green rather than guess their tests.
            log.exception("Could not work out which tests gate each consumer from %s", source)
            return
        self._writer.publish_selection(gates)
        self.published = True
        tests = sum(len(t) for t in gates.values())
        log.info("This run's selection (%s): %d nodes with a consumer, gated by %d tests", source, len(gates), tests)
