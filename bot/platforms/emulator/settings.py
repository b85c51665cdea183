"""The emulator's own settings, `EMULATOR_*`, read by this package (environment, then `.env`), as
every platform reads its own: the core Settings know nothing of them. A bad value is a ConfigError
naming the setting, which stops start-up with that one line (bot.platforms.registry)."""

from __future__ import annotations

import re

from pydantic import SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from chat.connector import ConfigError


class EmulatorSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="EMULATOR_", env_file=".env", env_file_encoding="utf-8",
                                      extra="ignore")

    # The emulator acts as whoever a request names, so every call carries this secret. Empty: a
    # random one per start, printed with the emulator's address.
    token: SecretStr | None = None
    # Serve the emulator although HTTP_HOST is not loopback or TRUSTED_PROXIES is set.
    allow_exposed: bool = False

    @field_validator("token", mode="before")
    @classmethod
    def _check_token(cls, value: object) -> object:
        raw = value.get_secret_value() if isinstance(value, SecretStr) else value
        if raw is None or raw == "":
            return None
        # Unreserved URL characters only: it travels in a query string and a cookie unescaped.
        if not isinstance(raw, str) or not re.fullmatch(r"[A-Za-z0-9._~-]{16,}", raw):
            raise ValueError("must be at least 16 of A-Z a-z 0-9 . _ ~ - (or empty: random per start)")
        return value


def load(env_file: str | None = ".env") -> EmulatorSettings:
    """EMULATOR_* from the environment, then `env_file`."""
    try:
        return EmulatorSettings(_env_file=env_file)  # type: ignore[call-arg]
    except ValidationError as exc:
        err = exc.errors()[0]
        name = "EMULATOR_" + str(err["loc"][0]).upper() if err["loc"] else "EMULATOR_*"
        raise ConfigError(f"bad setting {name}: {err['msg']}") from None
