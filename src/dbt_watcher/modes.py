"""The modes a group runs in, one enum each, so that every rule that depends on a mode asks the enum."""

from __future__ import annotations

from dbt_watcher.strenum import StrEnum


class TestBehavior(StrEnum):
    """Where a group's dbt tests run (``test_behavior=``)."""

    __test__ = False  # not a pytest test class, whatever its name

    #: In the producer's build, gating the consumer of the node each test checks.
    BUILD = "build"
    #: Not at all.
    NONE = "none"
    #: One task runs the selection's tests after every consumer.
    AFTER_ALL = "after_all"
    #: In the producer's build; a second consumer per node watches its tests, after the node's consumer.
    AFTER_EACH = "after_each"

    @property
    def in_build(self) -> bool:
        """The producer's build runs the tests (and the channel carries their results)."""
        return self in (TestBehavior.BUILD, TestBehavior.AFTER_EACH)

    @property
    def gates_consumers(self) -> bool:
        """A node's tests decide its own consumer's state."""
        return self is TestBehavior.BUILD


class ProducerRetry(StrEnum):
    """What a later producer attempt of a DAG run does once dbt built in it (``producer_retry=``,
    ``producer_retry_skip=``; docs/reliability.md)."""

    #: Publish what earlier attempts published and end with their verdict; consumers rebuild on retry.
    SKIP = "skip"
    #: One dbt invocation for the nodes that failed or never ran.
    RESUME = "resume"
    #: Build the whole selection again (``producer_retry_skip=False``).
    REBUILD = "rebuild"

    @property
    def builds_again(self) -> bool:
        """A later attempt may build nodes an earlier one did not."""
        return self is not ProducerRetry.SKIP
