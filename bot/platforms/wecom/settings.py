"""The WeCom connector's own settings (`WECOM_*`, from the environment or `.env`).

Incomplete or malformed settings stop start-up with one line naming every setting that is
missing and the first one that is wrong, so whoever configures the app fixes it in one go.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from chat.connector import ConfigError

REQUIRED = ("corp_id", "agent_id", "secret", "token", "aes_key")


class WeComSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="WECOM_", env_file=".env", env_file_encoding="utf-8",
                                      extra="ignore")

    corp_id: str = ""
    agent_id: str = ""
    secret: SecretStr | None = None
    token: SecretStr | None = None  # the callback Token (letters and digits, ≤32)
    aes_key: SecretStr | None = None  # the callback EncodingAESKey (43 characters)
    api_base: str = "https://qyapi.weixin.qq.com"
    oauth_url: str = "https://open.weixin.qq.com/connect/oauth2/authorize"
    callback_path: str = "/wecom/callback"
    # A callback whose timestamp is further than this from our clock is refused as a replay.
    max_clock_skew_seconds: float = Field(600.0, gt=0, le=86400)
    # Sends per second and in flight; WeCom's per-API limit is 10,000 a minute per corp, and
    # 45033 ("too many concurrent calls") starts around 5–10 parallel calls.
    rate_per_second: float = Field(50.0, gt=0, le=150)
    concurrency: int = Field(8, ge=1, le=16)
    timeout_seconds: float = Field(10.0, gt=0, le=60)

    @field_validator("agent_id")
    @classmethod
    def _agent(cls, value: str) -> str:
        if value and not value.isdigit():
            raise ValueError("must be the app's numeric AgentId")
        return value

    @field_validator("token")
    @classmethod
    def _token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and value.get_secret_value() and not re.fullmatch(
                r"[A-Za-z0-9]{1,32}", value.get_secret_value()):
            raise ValueError("must be the callback Token: 1–32 letters and digits")
        return value

    @field_validator("aes_key")
    @classmethod
    def _aes(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and value.get_secret_value() and not re.fullmatch(
                r"[A-Za-z0-9]{43}", value.get_secret_value()):
            raise ValueError("must be the callback EncodingAESKey: 43 letters and digits")
        return value

    @field_validator("callback_path")
    @classmethod
    def _path(cls, value: str) -> str:
        if not re.fullmatch(r"/[A-Za-z0-9_/-]{1,100}", value):
            raise ValueError("must be a path such as /wecom/callback")
        return value

    @field_validator("api_base", "oauth_url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    def secret_value(self, name: str) -> str:
        value = getattr(self, name)
        return value.get_secret_value() if isinstance(value, SecretStr) else str(value or "")


def load(given: Mapping[str, Any] | None = None, env_file: str | None = ".env") -> WeComSettings:
    """Settings from the environment (then `env_file`); `given` (a caller's `wecom_*` values by
    name, e.g. a test's fake server) wins where it holds a non-empty value."""
    given = {k[len("wecom_"):]: v for k, v in (given or {}).items()
             if k.startswith("wecom_") and v not in (None, "")}
    try:
        settings = WeComSettings(_env_file=env_file, **given)  # type: ignore[call-arg]
    except ValidationError as exc:
        err = exc.errors()[0]
        name = "WECOM_" + str(err["loc"][0]).upper() if err["loc"] else "WECOM_*"
        raise ConfigError(f"bad setting {name}: {err['msg']}") from None
    missing = [f"WECOM_{n.upper()}" for n in REQUIRED if not settings.secret_value(n)]
    if missing:
        raise ConfigError(f"wecom needs {', '.join(missing)} (the self-built app's credentials and its callback "
                          "Token/EncodingAESKey; see README 'Connecting a real WeCom app')")
    return settings
