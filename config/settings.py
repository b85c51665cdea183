"""Settings from the environment and `.env` (pydantic-settings).

A bad value stops start-up with one line naming the setting (see `load_settings`).
The secret key is generated on first run and kept in `data/secret_key`, so a fresh
checkout works without any configuration and restarts keep the same key.
"""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class SettingsError(Exception):
    """One clear line naming the bad setting."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    database_url: str = "sqlite://data/bot.sqlite3"
    http_host: str = "127.0.0.1"
    http_port: int = Field(8080, ge=1, le=65535)
    public_base_url: str = "http://127.0.0.1:8080"
    secret_key: SecretStr | None = None
    data_dir: Path = Path("data")
    platforms: Annotated[tuple[str, ...], NoDecode] = ("emulator",)
    timezone: str = "Asia/Shanghai"
    language: Literal["zh", "en"] = "zh"
    templates_dir: Path | None = None
    rate_tables_dir: Path | None = None
    doc_templates_dir: Path | None = None
    cjk_font_path: Path | None = None
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    outbox_poll_seconds: float = Field(1.0, gt=0)
    timer_poll_seconds: float = Field(1.0, gt=0)
    # How long a replica's claim on a due timer lasts: a replica that dies holding timers delays them
    # by at most this (plus a poll). A fire takes milliseconds; a claim outliving it is harmless.
    timer_lease_seconds: float = Field(3.0, gt=0)
    link_ttl_hours: int = Field(72, ge=1)
    tsa_url: str | None = None
    seal_pkcs12_path: Path | None = None
    seal_pkcs12_passphrase: SecretStr | None = None
    # Printed in documents as the issuing company and as the addressee of the guarantee letter.
    company_name: str = "本公司"
    # The issuer's address and unified social credit code (统一社会信用代码), printed on company documents.
    company_address: str = ""
    company_registration_number: str = ""
    # Proxies whose X-Forwarded-For we believe (comma list of IPs or CIDR networks); empty: none.
    trusted_proxies: Annotated[tuple[str, ...], NoDecode] = ()
    signing_sweep_seconds: float = Field(30.0, gt=0)
    # How soon an open case's moved audit head is signed (at most a minute: the integrity window).
    checkpoint_seconds: float = Field(60.0, gt=0, le=60)
    # Failed seal attempts (inline and by the sweep) before a signed document is given up: HR is told and
    # the signer gets a new link. TSA outages count too: a signature must not wait unsealed for ever.
    seal_max_attempts: int = Field(10, ge=1, le=1000)
    # How long an HR dashboard sign-in lasts (absolute, not extended by use).
    dashboard_session_minutes: float = Field(480, gt=0, le=7 * 24 * 60)
    # Reminders and alerts wait while it is night here (local times in TIMEZONE; equal ends: never quiet).
    quiet_hours: str = "22:00-08:00"
    # The largest evidence scan HR may upload (postal receipt, newspaper page); larger gets 413.
    upload_max_bytes: int = Field(10 * 1024 * 1024, ge=1024, le=100 * 1024 * 1024)

    @field_validator("platforms", mode="before")
    @classmethod
    def _split_platforms(cls, value: object) -> tuple[str, ...]:
        if isinstance(value, str):
            value = [p.strip() for p in value.split(",") if p.strip()]
        items = tuple(value)  # type: ignore[arg-type]
        # Which names exist is the platform packages' business (bot/platforms/, checked by the
        # registry at start-up); here only their shape.
        bad = [p for p in items if not re.fullmatch(r"[a-z][a-z0-9_]{0,15}", p)]
        if bad:
            raise ValueError(f"not a platform name: {bad[0]!r} (lower-case letters, digits, _)")
        if not items:
            raise ValueError("at least one platform is required")
        return items

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _split_proxies(cls, value: object) -> tuple[str, ...]:
        if isinstance(value, str):
            value = [p.strip() for p in value.split(",") if p.strip()]
        items = tuple(str(v) for v in value)  # type: ignore[union-attr]
        for item in items:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f"not an IP address or network: {item!r}") from None
        return items

    @field_validator("quiet_hours")
    @classmethod
    def _check_quiet(cls, value: str) -> str:
        # The same form workflow.timerules.QuietHours.parse reads (this layer cannot import it).
        m = re.fullmatch(r"\s*(\d{1,2}):(\d{2})\s*[-–~]\s*(\d{1,2}):(\d{2})\s*", value)
        if m is None or not all(int(h) < 24 and int(mi) < 60 for h, mi in (m.group(1, 2), m.group(3, 4))):
            raise ValueError(f"must read like 22:00-08:00 (local times), got {value!r}")
        return value

    @field_validator("timezone")
    @classmethod
    def _check_tz(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @field_validator("database_url")
    @classmethod
    def _check_db(cls, value: str) -> str:
        scheme = value.split("://", 1)[0] if "://" in value else ""
        if scheme not in {"sqlite", "postgres", "postgresql", "asyncpg", "psycopg"}:
            raise ValueError("must start with sqlite:// or postgres://")
        return value

    @field_validator("public_base_url")
    @classmethod
    def _check_base(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def secret_bytes(self) -> bytes:
        """The application secret; generated under data_dir on first use when not configured."""
        if self.secret_key is not None:
            return self.secret_key.get_secret_value().encode()
        path = self.data_dir / "secret_key"
        if not path.exists():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_urlsafe(48))
        return path.read_text().strip().encode()


def load_settings(**overrides: object) -> Settings:
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        err = exc.errors()[0]
        name = str(err["loc"][0]).upper() if err["loc"] else "?"
        raise SettingsError(f"bad setting {name}: {err['msg']}") from None


def get_settings() -> Settings:
    """The settings of this process's environment, read afresh: the CLI reads them once per command
    and hands them down; the server gets them from the app factory (`app[SETTINGS]`). Nothing keeps
    a copy at module level, so two apps (or a test that changes the environment) never share one."""
    return load_settings()
