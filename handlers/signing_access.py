"""Who may use a signing link: the link's claims checked against the case as it is now.

`resolve_link` turns a token into a `Target` (case, step, signer, their roles, the document kind
whose turn it is, the link row) or refuses with a Chinese message and the HTTP status the route
answers with; it changes nothing. `client_ip` reads the signer's address for the evidence record,
trusting X-Forwarded-For only as far as the configured proxies vouch for it.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import UTC, datetime

from aiohttp import web
from tortoise.exceptions import IntegrityError

from cases.service import CaseError, CaseService
from config.settings import Settings
from signing.links import LinkError, TokenClaims, read_token
from storage.models import Case, Employee, SigningLink
from workflow.documents import document_title
from workflow.model import ROLE_TITLES, CaseState, Role
from workflow.template import StepTemplate


class Refused(Exception):
    """A request we turn down; `status` and a Chinese message for the person holding the phone."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


LINK_ERRORS = {
    "malformed": (400, "链接不完整或格式有误，请从消息卡片重新打开签署链接。"),
    "tampered": (403, "链接无效（签名校验失败），请从消息卡片重新打开签署链接。"),
    "expired": (410, "签署链接已过期，请联系人事（HR）重新发送。"),
}


@dataclass
class Target:
    """Everything a valid, open link points at."""

    claims: TokenClaims
    case: Case
    state: CaseState
    step: StepTemplate
    signer: Employee
    roles: frozenset[Role]
    kind: str
    link: SigningLink | None


def _now() -> datetime:
    return datetime.now(UTC)


async def resolve_link(token: str, settings: Settings, service: CaseService, *, allow_used: bool = False
                       ) -> Target:
    """What the signing link `token` points at, if it is valid, open and this signer's turn;
    Refused (with the reason for the person holding the phone) otherwise."""
    try:
        claims = read_token(settings.secret_bytes(), token, _now())
    except LinkError as exc:
        status, message = LINK_ERRORS[exc.code]
        raise Refused(status, exc.code, message) from None
    case = await Case.get_or_none(id=claims.case_id)
    if case is None:
        raise Refused(404, "unknown_case", "找不到对应的离职流程。")
    link = await SigningLink.get_or_none(nonce=claims.nonce)
    if link is not None and (link.case_id, link.step_id, link.signer_id) != (  # type: ignore[attr-defined]
        claims.case_id, claims.step_id, claims.signer_id
    ):
        raise Refused(403, "tampered", LINK_ERRORS["tampered"][1])
    if link is not None and link.used_at is not None and not allow_used:
        raise Refused(410, "used", "该链接已完成签署，不能重复使用。")
    try:
        template = service.template(case.template_id)
    except CaseError:
        raise Refused(404, "unknown_case", "找不到对应的离职流程模板。") from None
    step = template.by_id.get(claims.step_id)
    if step is None or not step.documents:
        raise Refused(404, "not_signing_step", "该链接对应的步骤不需要签署文件。")
    signer = await Employee.get_or_none(employee_id=claims.signer_id)
    if signer is None:
        raise Refused(403, "unknown_signer", "找不到签署人。")
    roles = await service.roles_of(case, signer)
    if not step.signs(roles):
        raise Refused(403, "not_signer", "这不是您需要签署的文件，请使用发给您本人的签署链接。")
    state = await service.load_state(case)
    if allow_used and link is not None and link.used_at is not None:
        return Target(claims, case, state, step, signer, roles, step.documents[0], link)
    if case.status != "open":
        raise Refused(409, "case_closed", "该离职流程已结束，无需再签署。")
    ss = state.steps[step.id]
    if ss.status != "active":
        message = {"done": "该步骤已完成。", "not_needed": "该步骤已不再需要，无需签署。"}.get(
            ss.status, "该步骤尚未开始，请等待前面的步骤完成。")
        raise Refused(409, "step_not_active", message)
    unsigned = [d for d in step.documents if d not in ss.documents_signed]
    if not unsigned:
        raise Refused(409, "already_signed", "该文件已签署。")
    kind = unsigned[0]
    turn = step.next_signer(ss, kind)
    if turn is not None and turn not in roles:
        # A document several people sign, in order: this signer already signed, or it is not their turn.
        waiting = ROLE_TITLES[turn].zh
        if all(r in step.signed_roles(ss, kind) for r in step.signers if r in roles):
            raise Refused(409, "already_signed", f"您已签署该文件，正在等待{waiting}签署。")
        raise Refused(409, "not_your_turn", f"《{document_title(kind).zh}》需先由{waiting}签署，"
                                            "轮到您签署时会另行通知您。")
    return Target(claims, case, state, step, signer, roles, kind, link)


async def ensure_link(t: Target, now: datetime) -> SigningLink:
    if t.link is not None:
        return t.link
    try:
        link = await SigningLink.create(nonce=t.claims.nonce, case_id=t.case.id, step_id=t.claims.step_id,
                                        signer_id=t.claims.signer_id, expires_at=t.claims.expires_at)
    except IntegrityError:  # the same link opened twice at once
        link = await SigningLink.get(nonce=t.claims.nonce)
    t.link = link
    return link


def client_ip(request: web.Request, trusted: tuple[str, ...]) -> str:
    """The peer address, or the nearest untrusted hop of X-Forwarded-For when the peer is a trusted proxy."""
    peer = request.remote or ""
    nets = [ipaddress.ip_network(t, strict=False) for t in trusted]

    def is_trusted(addr: str) -> bool:
        try:
            ip = ipaddress.ip_address(addr)
        except ValueError:
            return False
        return any(ip in n for n in nets)

    if not nets or not is_trusted(peer):
        return peer[:64]
    hops = [h.strip() for h in request.headers.get("X-Forwarded-For", "").split(",") if h.strip()]
    # Walk from the right: each trusted proxy vouches for the hop before it; the first untrusted one is
    # the client. Anything further left was supplied by the client and could be forged.
    for hop in reversed(hops):
        if not is_trusted(hop):
            try:
                return str(ipaddress.ip_address(hop))
            except ValueError:
                return peer[:64]
    return (hops[0] if hops else peer)[:64]
