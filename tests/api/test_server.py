"""api/server.py: the settings reach uvicorn's factory call through the environment."""

from __future__ import annotations

from pathlib import Path

from api.server import settings_env
from recall.settings import Settings


def test_settings_survive_the_trip_through_the_environment(monkeypatch, tmp_path):
    chosen = Settings(_env_file=None, var_dir=tmp_path / "var", redis_url="redis://example:6379/3",
                      max_n=77, seed_count=12, open_recall=True, reload_interval_seconds=0.5)
    for name, value in settings_env(chosen).items():
        monkeypatch.setenv(name, value)
    rebuilt = Settings(_env_file=None)
    assert rebuilt == chosen
    assert rebuilt.var_dir == Path(tmp_path / "var") and rebuilt.open_recall is True
