"""Fixtures for the signing flow: the demo probation case driven to its guarantee-letter step, the signing
routes on a real aiohttp server on 127.0.0.1, and helpers to make links and stroke payloads."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from bot.app import build_service
from bot.platforms import registry
from cases.service import CaseService
from chat.appkeys import CONNECTORS, SERVICE, SETTINGS
from chat.connector import Connector
from config.settings import Settings
from handlers import signing_web
from signing.links import make_token, new_nonce
from storage.models import Employee
from workflow.events import Act
from workflow.model import Role

EMPLOYEE, MANAGER, HR, HANDOVER, FINANCE = "E003", "E002", "E001", "E006", "E004"


def signature_strokes(width: int = 360, height: int = 200) -> dict[str, Any]:
    """Three wavy strokes with plausible timing, like a short cursive name."""
    strokes = []
    t = 0.0
    for s in range(3):
        pts = []
        for i in range(60):
            a = i / 59
            t += 8 + (i % 5)
            pts.append({"x": round(40 + s * 100 + a * 80, 2),
                        "y": round(100 + 40 * math.sin(a * math.pi * 3 + s) * (1 - a * 0.5), 2), "t": t, "p": 0.5})
        strokes.append(pts)
        t += 200
    return {"width": width, "height": height, "strokes": strokes}


def token_for(settings: Settings, case_id: str, step_id: str, signer_id: str, *,
              expires_at: datetime | None = None) -> str:
    return make_token(settings.secret_bytes(), case_id=case_id, step_id=step_id, signer_id=signer_id,
                      expires_at=expires_at or datetime.now(UTC) + timedelta(hours=72), nonce=new_nonce())


async def act(service: CaseService, case_id: str, step: str, action: str, who: str, roles: set[Role],
              data: dict[str, Any] | None = None) -> None:
    out = await service.apply(case_id, lambda c, s: Act(step, action, who, frozenset(roles), data or {},
                                                        datetime.now(UTC)), actor=who)
    assert out.ok, out.refusal


async def start_probation(service: CaseService) -> str:
    emp = await Employee.get(employee_id=EMPLOYEE)
    out = await service.start_case(employee=emp, template_id="probation", last_day=date(2025, 7, 31),
                                   reason="试用期绩效未达标（完成率 60%，要求 80%）", created_by=HR,
                                   handover_id=HANDOVER)
    return out.case_id


async def to_guarantee_step(service: CaseService, case_id: str) -> None:
    await act(service, case_id, "application", "submit", EMPLOYEE, {Role.EMPLOYEE},
              {"last_working_day": "2025-07-31", "reason": "试用期考核未通过"})
    await act(service, case_id, "performance_review", "approve", MANAGER, {Role.MANAGER},
              {"result": "完成率 60%，要求 80%"})
    await act(service, case_id, "hr_check", "complete", HR, {Role.HR}, {"unpaid_months": "2"})


@dataclass
class Flow:
    settings: Settings
    service: CaseService
    case_id: str
    client: TestClient

    def token(self, step: str = "guarantee", signer: str = EMPLOYEE, **kw: Any) -> str:
        return token_for(self.settings, self.case_id, step, signer, **kw)

    async def open(self, token: str) -> tuple[int, str]:
        resp = await self.client.get(f"/sign/{token}")
        return resp.status, await resp.text()

    async def post(self, token: str, body: Any, *, h: str | None = None, raw: bytes | None = None,
                   headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
        url = f"/sign/{token}" + (f"?h={h}" if h else "")
        data = raw if raw is not None else __import__("json").dumps(body).encode()
        resp = await self.client.post(url, data=data, headers={"Content-Type": "application/json",
                                                                **(headers or {})})
        try:
            return resp.status, await resp.json()
        except Exception:  # an error page that is not JSON (e.g. aiohttp's own 413)
            return resp.status, {"text": await resp.text()}


def make_app(settings: Settings, service: CaseService,
             connectors: dict[str, Connector] | None = None) -> web.Application:
    """The signing pages alone. `connectors`: the platforms whose sign-in the pages use (built, not
    started, from PLATFORMS when not given: the emulator's links need none)."""
    app = web.Application()
    app[SETTINGS] = settings
    app[SERVICE] = service
    app[CONNECTORS] = registry.build(settings) if connectors is None else connectors
    signing_web.setup(app)
    return app


@pytest.fixture
async def flow(demo_org: Settings) -> AsyncIterator[Flow]:
    service = build_service(demo_org)
    case_id = await start_probation(service)
    await to_guarantee_step(service, case_id)
    app = make_app(demo_org, service)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        yield Flow(demo_org, service, case_id, client)


async def sign_step(flow: Flow, step: str = "guarantee", signer: str = EMPLOYEE) -> dict[str, Any]:
    """Open the link for `step` and sign it as a phone would; returns the JSON answer."""
    import re

    token = flow.token(step, signer)
    status, page = await flow.open(token)
    assert status == 200, page
    found = re.search(r'\?h=([0-9a-f]{64})"', page)
    assert found, page
    status, body = await flow.post(token, {"token": token, "consent": True, "consent_version": "2025-01",
                                           "strokes": signature_strokes()}, h=found.group(1))
    assert status == 200, body
    return body


async def complete_case(flow: Flow) -> None:
    """Sign every document and finish every step of the probation case after hr_check."""
    await sign_step(flow, "guarantee")
    await sign_step(flow, "handover")
    await sign_step(flow, "handover", HANDOVER)  # the receiving colleague signs the same sheet
    await act(flow.service, flow.case_id, "backpay", "confirm", FINANCE, {Role.FINANCE},
              {"payment_reference": "PAY-2025-0001"})
    await sign_step(flow, "separation_certificate")
    await sign_step(flow, "rights_notice")
    await act(flow.service, flow.case_id, "rights_notice", "acknowledge", EMPLOYEE, {Role.EMPLOYEE})
