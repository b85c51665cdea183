"""The DingTalk connector's own settings (`DINGTALK_*`), read by the connector, not by the core.

Incomplete settings stop start-up with one line naming every missing variable, so an operator fixes
them in one go instead of one restart per variable.
"""

from __future__ import annotations

from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from chat.connector import ConfigError

API_BASE = "https://api.dingtalk.com"
OAPI_BASE = "https://oapi.dingtalk.com"
LOGIN_URL = "https://login.dingtalk.com/oauth2/auth"
OPEN_PATH = "/v1.0/gateway/connections/open"


class DingTalkSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DINGTALK_", env_file=".env", env_file_encoding="utf-8",
                                      extra="ignore")

    client_id: str = ""  # the app's AppKey (开发者后台 → 凭证与基础信息)
    client_secret: SecretStr | None = None
    robot_code: str = ""  # an internal app's robot code is its client id
    card_template_id: str = ""  # the imported card_template.json's id (…schema)
    api_base: str = API_BASE
    oapi_base: str = OAPI_BASE
    login_url: str = LOGIN_URL
    stream_open_url: str = ""  # default: the gateway's open-connection URL on api_base
    rate_per_second: float = Field(20.0, gt=0, le=1000)  # DingTalk's per-app, per-API QPS
    concurrency: int = Field(8, ge=2, le=64)  # requests in flight at once (a send is ~50-200 ms)
    monthly_calls: int = Field(10_000, ge=0)  # the org's monthly budget of non-exempt calls; 0: not counted
    budget_warn_share: float = Field(0.8, gt=0, le=1)
    # The clicked card's new content goes back in the click's ACK (DingTalk's callback response)
    # instead of a PUT: one budget-counted call less per tap. false: every update is a PUT.
    update_in_reply: bool = True

    @property
    def robot(self) -> str:
        return self.robot_code or self.client_id

    @property
    def open_url(self) -> str:
        return self.stream_open_url or self.api_base.rstrip("/") + OPEN_PATH

    def secret(self) -> str:
        return self.client_secret.get_secret_value() if self.client_secret else ""


REQUIRED = ("client_id", "client_secret", "card_template_id")


def load(env_file: str | None = None, **overrides: object) -> DingTalkSettings:
    """The settings, or ConfigError with one line naming what is missing or wrong."""
    try:
        kw: dict[str, object] = dict(overrides)
        if env_file is not None:
            kw["_env_file"] = env_file
        s = DingTalkSettings(**kw)  # type: ignore[arg-type]
    except ValidationError as exc:
        err = exc.errors()[0]
        name = "DINGTALK_" + str(err["loc"][0]).upper() if err["loc"] else "DINGTALK_?"
        raise ConfigError(f"bad setting {name}: {err['msg']}") from None
    missing = [f"DINGTALK_{n.upper()}" for n in REQUIRED
               if not (s.secret() if n == "client_secret" else getattr(s, n))]
    if missing:
        verb = "is" if len(missing) == 1 else "are"
        raise ConfigError(f"PLATFORMS includes dingtalk but {', '.join(missing)} {verb} not set "
                            "(see README: Connecting a real DingTalk app)")
    for name in ("api_base", "oapi_base", "login_url", "stream_open_url"):
        value = getattr(s, name)
        if value and not value.startswith(("http://", "https://")):
            raise ConfigError(f"bad setting DINGTALK_{name.upper()}: must start with http:// or https://")
    return s
