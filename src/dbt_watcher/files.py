"""Files that other processes and users read: written whole, then renamed into place.

A reader (a dag-processor child, the api-server, another worker) never sees half a file, and the file
gets the mode a plain ``open()`` would give it: the kernel applies the umask to 0666. ``tempfile``'s
files are 0600 for their own reasons; kept as is, a graph prepared as root in an image, or artifacts
written by a worker's user, could not be read by the ``airflow`` user of another component, which
then falls back silently (the dag-processor parses with dbt again). No chmod: some shared volumes
refuse one.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO


@contextmanager
def _replacing(path: Path, private: bool) -> Iterator[BinaryIO]:
    """A new sibling of ``path`` to write; renamed onto ``path`` when the block ends, removed if it fails."""
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
        try:
            fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600 if private else 0o666)
            break
        except FileExistsError:
            continue
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text_atomically(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` (its folder made if missing) by writing a sibling, then renaming it."""
    with _replacing(path, private=False) as fh:
        fh.write(text.encode())


def copy_atomically(source: Path, path: Path, *, private: bool = False) -> None:
    """Copy ``source`` to ``path`` the same way: readers see the old file or the whole new one.
    ``private``: mode 0600 whatever the umask, for a file only this user reads."""
    with _replacing(path, private) as dst, open(source, "rb") as src:
        shutil.copyfileobj(src, dst)
