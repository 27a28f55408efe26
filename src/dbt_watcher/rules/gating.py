"""Which consumer a dbt test gates: one rule for the plan that ``render`` shows and for the run, which
applies it to the tests its own dbt invocation selected (docs/reliability.md, "Which tests gate a consumer").

* A test written under a model, seed or snapshot in YAML gates that node's consumer (dbt's
  ``attached_node``), whatever else it reads: a ``relationships`` test gates the model that holds the
  foreign key.
* A test written under a source gates no consumer: it checks the source (dbt sets no ``attached_node``
  there, even when the test also reads a model through ``to: ref(...)``).
* A test with no attachment (a singular test in ``tests/``) gates the node it reads that dbt builds last.
* A test whose node has no consumer in the group (a source, an ephemeral model, a node left out of the
  group) gates nothing; it still runs in the build, and ``dbt-watcher render`` lists it with the reason.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from dbt_watcher.invocation.selection import TestFacts


def gated_node(test: TestFacts, consumers: Mapping[str, int]) -> tuple[str | None, str]:
    """The node whose consumer ``test`` gates, or None and why it gates none.

    ``consumers``: the unique id of every node that has a consumer, with its position in dbt's order
    (parents first).
    """
    if test.attached_node is not None:
        if test.attached_node in consumers:
            return test.attached_node, ""
        return None, f"it checks {test.attached_node}, which has no task"
    if test.on_source:
        source = (test.file_key_name or "").split(".", 1)[-1]
        return None, f"it checks the source {source}, which has no task"
    parents = [p for p in test.depends_on if p in consumers]
    if parents:
        return max(parents, key=consumers.__getitem__), ""
    return None, "none of the nodes it reads has a task (sources, ephemeral models)"


def gating(
    tests: Iterable[TestFacts], consumers: Mapping[str, int]
) -> tuple[dict[str, dict[str, str]], dict[str, str]]:
    """For each node with a consumer, the tests that gate it (test id -> its dbt selector); and each test
    that gates nothing, with the reason."""
    gates: dict[str, dict[str, str]] = {}
    ungated: dict[str, str] = {}
    for test in tests:
        node, reason = gated_node(test, consumers)
        if node is None:
            ungated[test.unique_id] = reason
        else:
            gates.setdefault(node, {})[test.unique_id] = test.selector
    return gates, ungated
