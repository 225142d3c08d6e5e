"""Fixtures of the jobs tests."""

from __future__ import annotations

import pytest


@pytest.fixture
def cli_env(tmp_path, monkeypatch) -> str:
    """The CLI reads its settings from the environment; point it at a fresh, empty database."""
    url = f"sqlite:///{tmp_path / 'fresh' / 'recall.db'}"
    monkeypatch.chdir(tmp_path)  # no stray .env
    monkeypatch.setenv("RECALL_DATABASE_URL", url)
    monkeypatch.setenv("RECALL_VAR_DIR", str(tmp_path / "var"))
    return url
