"""Files that other processes and users read: written whole, then renamed into place.

A reader (a dag-processor child, the api-server, another worker) never sees half a file, and the file
gets the mode a plain ``open()`` would give it. ``tempfile.mkstemp`` creates files with mode 0600 for
its own reasons; kept as is, a graph prepared as root in an image, or artifacts written by a worker's
user, could not be read by the ``airflow`` user of another component, which then falls back silently
(the dag-processor parses with dbt again).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path


def _umask() -> int:
    # Linux shows the process's umask in /proc; os.umask() can only read it by setting it, which
    # would race with other threads creating files meanwhile.
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o022


def _place(tmp: str, path: Path) -> None:
    os.chmod(tmp, 0o666 & ~_umask())
    os.replace(tmp, path)


def write_text_atomically(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` (its folder made if missing) by writing a sibling, then renaming it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        _place(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def copy_atomically(source: Path, path: Path) -> None:
    """Copy ``source`` to ``path`` the same way: readers see the old file or the whole new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        shutil.copyfile(source, tmp)
        _place(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
