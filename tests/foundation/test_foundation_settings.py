from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from config.settings import SettingsError, load_settings

ROOT = Path(__file__).resolve().parents[2]


def test_defaults(env_clean: None, tmp_path: Path) -> None:
    s = load_settings(_env_file=None, data_dir=tmp_path)
    assert s.platforms == ("emulator",)
    assert s.timezone == "Asia/Shanghai"
    assert s.language == "zh"
    assert s.http_port == 8080


def test_platform_list_parsed(env_clean: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLATFORMS", "emulator, wecom,dingtalk")
    assert load_settings(_env_file=None).platforms == ("emulator", "wecom", "dingtalk")


@pytest.mark.parametrize(
    ("name", "value"),
    # An unknown but well-formed platform name ("slack") is refused by the registry at start-up
    # (tests/chat/test_chat_connectors.py): which platforms exist is the platform packages' business.
    [("PLATFORMS", "Slack!"), ("HTTP_PORT", "70000"), ("TIMEZONE", "Mars/Base"), ("LANGUAGE", "fr"),
     ("DATABASE_URL", "mysql://x"), ("PUBLIC_BASE_URL", "ftp://x")],
)
def test_bad_setting_names_itself(env_clean: None, monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as exc:
        load_settings(_env_file=None)
    assert name in str(exc.value)
    assert "\n" not in str(exc.value)


def test_bad_setting_stops_cli_with_one_line(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "HTTP_PORT": "abc", "DATA_DIR": str(tmp_path)}
    r = subprocess.run([sys.executable, "-m", "bot", "migrate"], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "HTTP_PORT" in lines[0]


def test_secret_generated_once_and_private(env_clean: None, tmp_path: Path) -> None:
    s = load_settings(_env_file=None, data_dir=tmp_path / "d")
    first = s.secret_bytes()
    assert len(first) >= 48
    assert s.secret_bytes() == first
    assert (tmp_path / "d" / "secret_key").stat().st_mode & 0o077 == 0
    assert str(first) not in repr(s) and "secret" not in repr(s.secret_key or "")


def test_configured_secret_is_not_printed(env_clean: None) -> None:
    s = load_settings(_env_file=None, secret_key="hunter2-very-secret")
    assert "hunter2" not in repr(s) and "hunter2" not in str(s.model_dump())


def test_env_example_documents_every_setting() -> None:
    from config.settings import Settings

    text = (ROOT / ".env.example").read_text(encoding="utf-8")
    for name in Settings.model_fields:
        assert f"{name.upper()}=" in text, f"{name.upper()} missing from .env.example"
