"""Files at rest after the first start (issue 11, finding 5): `make run`'s `serve --migrate --demo` and a
bare `migrate` leave the data dir 0700 and the database, its WAL/SHM, the secret and the keys 0600, even
under a permissive umask; and `serve` outside `--demo` refuses a root CA key in the data dir.
"""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import PG_URL, ROOT

pytestmark = pytest.mark.skipif(bool(PG_URL), reason="checks the SQLite files of a fresh data dir")


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _env(**extra: str) -> dict[str, str]:
    # Defaults as `make run` has them: DATA_DIR=data, DATABASE_URL=sqlite://data/bot.sqlite3, no SECRET_KEY.
    return {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), **extra}


def _cli(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bot", *args], env=_env(**env), cwd=cwd, capture_output=True,
                          text=True, timeout=120, umask=0o022)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def served(cwd: Path, *args: str, **env: str) -> Iterator[tuple[int, Path]]:
    """`python -m bot serve ARGS` until /healthz answers; yields (port, log file)."""
    port = _free_port()
    log = cwd / "serve.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "bot", "serve", *args], cwd=cwd, stdout=out,
                                stderr=subprocess.STDOUT, env=_env(HTTP_PORT=str(port), **env), umask=0o022)
        try:
            for _ in range(300):
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as resp:
                        assert b'"ok"' in resp.read()
                        break
                except OSError:
                    assert proc.poll() is None, log.read_text()
                    time.sleep(0.2)
            else:
                raise AssertionError("serve did not answer: " + log.read_text())
            yield port, log
        finally:
            proc.terminate()
            proc.wait(timeout=30)


def _assert_private(data: Path) -> None:
    assert _mode(data) == 0o700
    assert _mode(data / "bot.sqlite3") == 0o600
    files = [p for p in data.rglob("*") if p.is_file()]
    loose = {str(p.relative_to(data)): oct(_mode(p)) for p in files if _mode(p) & 0o077}
    assert loose == {}
    dirs = {str(p.relative_to(data)): oct(_mode(p)) for p in data.rglob("*") if p.is_dir() and _mode(p) != 0o700}
    assert dirs == {}


def test_first_start_of_make_run_leaves_only_private_files(tmp_path: Path) -> None:
    with served(tmp_path, "--migrate", "--demo", LOG_LEVEL="DEBUG") as (_port, log):
        data = tmp_path / "data"
        # While serving, SQLite has its WAL and shared-memory files open next to the database.
        for name in ("bot.sqlite3", "bot.sqlite3-wal", "bot.sqlite3-shm", "secret_key", "keys/seal.key.pem",
                     "keys/root.key.pem", "keys/checkpoint.key.pem"):
            assert _mode(data / name) == 0o600, name
        _assert_private(data)
    _assert_private(data)
    output = log.read_text()
    assert "demo mode: root CA private key and seal key generated together" in output
    # DEBUG was on, yet neither the secret nor the demo directory's data reached the log.
    assert (data / "secret_key").read_text().strip() not in output
    assert "13800000001" not in output and "李娜" not in output
    assert "parameters not logged" in output


def test_migrate_alone_creates_private_files_and_tightens_old_ones(tmp_path: Path) -> None:
    r = _cli(tmp_path, "migrate")
    assert r.returncode == 0, r.stderr
    data = tmp_path / "data"
    assert _mode(data / "secret_key") == 0o600
    _assert_private(data)
    # An install from before: world-readable directory and files are tightened by the next run.
    os.chmod(data, 0o755)
    for p in data.iterdir():
        os.chmod(p, 0o644)
    r = _cli(tmp_path, "migrate")
    assert r.returncode == 0, r.stderr
    _assert_private(data)


def test_serve_outside_demo_refuses_a_root_key_until_keys_moves_it(tmp_path: Path) -> None:
    r = _cli(tmp_path, "serve", "--migrate")
    assert r.returncode == 2 and "no seal key installed" in r.stderr, r.stdout + r.stderr
    # A demo (or an older version) generated the root beside the seal key.
    with served(tmp_path, "--migrate", "--demo"):
        pass
    data = tmp_path / "data"
    assert (data / "keys" / "root.key.pem").exists()
    root_cert = (data / "keys" / "root.crt.pem").read_bytes()
    r = _cli(tmp_path, "serve")
    assert r.returncode == 2 and "root CA private key" in r.stderr and "python -m bot keys" in r.stderr, r.stderr

    offline = tmp_path / "offline-root"
    r = _cli(tmp_path, "keys", "--root-dir", str(offline))
    assert r.returncode == 0, r.stderr
    assert "moved the root CA key" in r.stdout
    assert not (data / "keys" / "root.key.pem").exists()
    assert (offline / "root.key.pem").exists() and _mode(offline / "root.key.pem") == 0o600
    # Same root as before, so what was sealed so far still verifies against the published certificate.
    assert (offline / "root.crt.pem").read_bytes() == root_cert == (data / "keys" / "root.crt.pem").read_bytes()
    with served(tmp_path):
        assert not (data / "keys" / "root.key.pem").exists()
    _assert_private(data)


def test_keys_refuses_the_data_dir_as_root_dir(tmp_path: Path) -> None:
    r = _cli(tmp_path, "keys", "--root-dir", "data/keys")
    assert r.returncode == 2 and "must not be the data dir" in r.stderr
    assert not (tmp_path / "data" / "keys" / "root.key.pem").exists()
