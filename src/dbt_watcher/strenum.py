"""``enum.StrEnum`` on every Python the package declares: the standard one from 3.11, an equivalent on 3.10.

Members are strings (``NodeStatus.SUCCESS == "success"``), and ``str()`` and ``format()`` give the value,
as the standard class does, so log lines and JSON read the same on every Python.
"""

from __future__ import annotations

import sys
from enum import Enum

if sys.version_info >= (3, 11):
    from enum import StrEnum
else:  # pragma: no cover - exercised by the Python 3.10 CI row

    class StrEnum(str, Enum):
        """A string enum whose members print as their values (Python 3.11's ``enum.StrEnum``)."""

        def __str__(self) -> str:
            return str(self.value)

        def __format__(self, spec: str) -> str:
            return format(str(self.value), spec)


__all__ = ["StrEnum"]
