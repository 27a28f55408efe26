"""What one dbt invocation selected, and what each selected test checks.

dbt computes the exact selection of a ``build`` (``--select``/``--exclude``/``--selector``, YAML default
selectors, ``--indirect-selection``, resource-type flags, tests that vars or environment values enable)
just before it fires ``ConcurrencyLine`` on its main thread, ahead of the on-run-start hooks and the first
node. Both runners report it then as a :data:`SELECTION_EVENT` (the in-process runner reads it in its
callback; a subprocess prints it through :mod:`dbt_watcher.invocation.driver`). Unit tests are not part of
it: dbt runs them right before their model, and a failing one makes the model ``skipped``.

Which node a test checks comes from the invocation's own manifest (the in-memory one, or the
``manifest.json`` dbt wrote in the target folder before it ran a node): ``attached_node``, the YAML entry
the test is written under (``file_key_name``), and the nodes it reads.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: The synthetic event both runners fire once dbt has selected this invocation's nodes.
SELECTION_EVENT = "DbtWatcherSelection"


@dataclass(frozen=True)
class TestFacts:
    """What the manifest says a data test checks (singular tests have no attachment fields)."""

    __test__ = False  # not a pytest test class, whatever its name

    unique_id: str
    attached_node: str | None = None
    #: ``<yaml key>.<entry name>`` of the YAML entry the test is written under (``sources.<source>``...).
    file_key_name: str | None = None
    depends_on: tuple[str, ...] = ()
    fqn: tuple[str, ...] = ()

    @property
    def on_source(self) -> bool:
        """Written under a source in YAML (dbt sets no ``attached_node`` for those)."""
        return (self.file_key_name or "").startswith("sources.")

    @property
    def selector(self) -> str:
        """A dbt selection string that matches this test alone."""
        return f"fqn:{'.'.join(self.fqn)},resource_type:test" if self.fqn else self.unique_id


def is_test(unique_id: str) -> bool:
    return unique_id.startswith("test.")


def facts_from_entry(unique_id: str, entry: Mapping[str, Any]) -> TestFacts:
    """Facts from one node of manifest.json (or the same fields of dbt's manifest object, as a dict)."""
    depends = entry.get("depends_on") or {}
    return TestFacts(
        unique_id=unique_id,
        attached_node=entry.get("attached_node") or None,
        file_key_name=entry.get("file_key_name") or None,
        depends_on=tuple(depends.get("nodes") or ()),
        fqn=tuple(entry.get("fqn") or ()),
    )


def facts_from_manifest(manifest: Any, test_ids: Iterable[str]) -> dict[str, TestFacts]:
    """Facts of these tests from dbt's in-memory manifest (``dbtRunner``'s parse result)."""
    found = {}
    for uid in test_ids:
        node = manifest.nodes.get(uid)
        if node is None:
            continue
        found[uid] = TestFacts(
            unique_id=uid,
            attached_node=getattr(node, "attached_node", None) or None,
            file_key_name=getattr(node, "file_key_name", None) or None,
            depends_on=tuple(node.depends_on.nodes),
            fqn=tuple(node.fqn),
        )
    return found


def facts_from_file(target_path: Path, test_ids: Iterable[str]) -> dict[str, TestFacts]:
    """Facts of these tests from the ``manifest.json`` the invocation wrote in its target folder."""
    with open(target_path / "manifest.json") as fh:
        nodes: Mapping[str, Any] = json.load(fh).get("nodes") or {}
    return {uid: facts_from_entry(uid, nodes[uid]) for uid in test_ids if uid in nodes}
