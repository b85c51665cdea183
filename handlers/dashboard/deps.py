"""What the dashboard is given by the application shell (bot/dashboard.py), so that nothing here imports
upward: the settings it needs as values, the case service, and the chat's own command path.

HR actions on the dashboard are typed commands run through that path (`run_command`), so remind, cancel and
fallback keep one implementation, one authorisation check and one dedup key per form submission.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import tzinfo
from pathlib import Path
from typing import Any

from aiohttp import web

from cases.service import CaseService
from chat.connector import WebIdentity
from storage.models import Employee
from workflow.text import Text


@dataclass(frozen=True)
class CommandResult:
    ok: bool
    code: str
    text: str
    duplicate: bool = False


# (actor employee id, command text, dedup key, language) -> the chat's answer
RunCommand = Callable[[str, str, str, str], Awaitable[CommandResult]]
# (platform, the platform's user id) -> the active employee it is, or None
ResolveUser = Callable[[str, str], Awaitable[Employee | None]]


@dataclass(frozen=True)
class DashboardConfig:
    secret: bytes
    public_base_url: str
    language: str
    tz: tzinfo
    session_seconds: int
    data_dir: Path

    @property
    def https(self) -> bool:
        return self.public_base_url.startswith("https://")


@dataclass(frozen=True)
class Dashboard:
    config: DashboardConfig
    service: CaseService
    # Sign-in providers by platform name (the emulator's local sign-in among them when it runs).
    identities: Mapping[str, WebIdentity]
    resolve_user: ResolveUser
    is_hr: Callable[[Employee | None], bool]
    run_command: RunCommand
    has_command: Callable[[str], bool]
    # The whole settings object, handed on untouched to the archive exporter and verify.
    settings: Any = None
    # The evidence upload page of a step for an HR person, (case, step, HR employee id) -> URL, where the app
    # has one: the case page links it from steps that take files and from upload entries.
    upload_url: Callable[[str, str, str], str] | None = None
    # The sign-in page's button for each provider (its connector's presentation); default: its name.
    sign_in_labels: Mapping[str, Text] = field(default_factory=dict)
    # verify results by (case, audit head, documents): kept for this app's life, not the process's.
    verified: OrderedDict[tuple[Any, ...], tuple[bool, list[str]]] = field(default_factory=OrderedDict)


DASHBOARD = web.AppKey("dashboard", Dashboard)
