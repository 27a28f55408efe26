"""``producer_retry="resume"``: what a later attempt builds, in one dbt invocation, after dbt built in the run."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

from dbt_watcher.channel.records import RunStatus
from dbt_watcher.channel.wire import FINISHED
from dbt_watcher.invocation.events import NodeResult
from dbt_watcher.rules.verdict import Action, final_decision
from dbt_watcher.rules.watch import ConsumerTask
from dbt_watcher.task_states import TaskState


def nodes_to_resume(
    consumers: Sequence[ConsumerTask], previous: RunStatus, consumer_states: Mapping[str, str]
) -> tuple[str, ...]:
    """dbt selectors for everything that did not succeed: failed or never-run nodes, failed tests.

    Nodes whose consumer already went green (it rebuilt the node itself), nodes deliberately left out
    of the run and nodes the run's dbt invocation did not select are left alone, so no node is built
    twice and none is added; a node that succeeded gets only its failed tests (as the run selected them).
    """
    final = replace(previous, state=FINISHED)
    selectors: list[str] = []
    for consumer in consumers:
        uid = consumer.watch.unique_id
        built: NodeResult | None = previous.results.get(uid)
        if consumer_states.get(consumer.task_id) == TaskState.SUCCESS or (built is not None and built.excluded):
            continue
        decision = final_decision(consumer.watch, final)
        if decision.action in (Action.SUCCEED, Action.SKIP):
            continue
        if built is not None and built.succeeded:
            selectors.extend(
                selector
                for test_id, selector in sorted(previous.selection.get(uid, {}).items())
                if not ((test := previous.results.get(test_id)) and test.succeeded)
            )
        else:
            selectors.append(consumer.selector)
    return tuple(dict.fromkeys(selectors))
