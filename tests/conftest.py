"""Shared test fixtures: paths, and a dbt-free ProjectGraph builder for fast unit tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
JAFFLE_SHOP = EXAMPLES / "jaffle_shop"

os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "cache"
    monkeypatch.setenv("DBT_WATCHER_CACHE_DIR", str(path))
    from dbt_watcher.project import cache

    monkeypatch.setattr(cache, "_memory_cache", {})
    return path
