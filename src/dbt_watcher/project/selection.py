"""A dbt node selection, as dbt's ``--select``/``--exclude``/``--selector`` take it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Selection:
    """A dbt node selection, exactly as dbt's ``--select``/``--exclude``/``--selector`` take it."""

    select: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    selector: str | None = None

    def describe(self) -> str:
        parts = []
        if self.select:
            parts.append(f"select={' '.join(self.select)!r}")
        if self.exclude:
            parts.append(f"exclude={' '.join(self.exclude)!r}")
        if self.selector:
            parts.append(f"selector={self.selector!r}")
        return ", ".join(parts) or "the whole project"


def as_tuple(value: str | Sequence[str] | None) -> tuple[str, ...]:
    """Accept ``"a b"``, ``["a", "b"]`` or ``None`` for select/exclude, like dbt's CLI does."""
    if value is None:
        return ()
    if isinstance(value, str):
        return tuple(value.split())
    return tuple(str(v) for v in value)
