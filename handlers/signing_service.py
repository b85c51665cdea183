"""The signing service: what a signature changes, in one transaction, and the sweep that finishes it.

`record_signature` applies `DocumentSigned` through the case service and, in the same transaction
(the service's `also`, only when the engine accepted it): the link's single use (compare-and-set on
the claim this submission holds), the document's status (a draft replaced meanwhile takes no
signature), the evidence record chained into the case's audit log by the case's own write, and the
Signature row that points at that entry. Any of them failing undoes all of them.

`claim_link` / `release_link` are the lease a submission takes before any of that, so of parallel
submissions on one link only one renders. `give_up` and `sweep_round` are the bounded retry of
sealing. No HTTP here: the routes (handlers/signing_web.py) turn results into pages.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from tortoise.expressions import Q

from cases.service import CaseService, CaseTx, Outcome
from config.settings import Settings
from signing.channel import Channel
from signing.evidence import AUDIT_KIND, SignatureFacts, audit_data
from signing.pipeline import (
    PipelineError,
    exhausted,
    issue_completion_notice,
    issue_step_notice,
    prior_evidence,
    sweep,
    unissued_completed,
    unissued_notices,
)
from storage.models import Case, Document, Signature, SigningLink
from workflow import engine
from workflow.events import DocumentSigned, SealFailed
from workflow.model import CaseState, Role
from workflow.template import StepTemplate

log = logging.getLogger("signing")

CLAIM_LEASE = timedelta(seconds=120)  # far above a bounded render; only matters if the process dies
ISSUE_RETRY_DAYS = 7  # how long after completion the sweep keeps trying to issue a completion notice


class LinkClaimed(Exception):
    """The link was used (or its claim lost) before this signature committed."""


class DocumentChanged(Exception):
    """The draft stopped being current while the signature was on its way (HR added to it)."""


class _Sealed(Exception):
    """The document was sealed while we were giving it up; roll the give-up back."""


def _now() -> datetime:
    return datetime.now(UTC)


# ---------------------------------------------------------------- the link's single use

async def claim_link(nonce: str, now: datetime) -> str | None:
    """Claim an unused link for one submission (compare-and-set with a lease); the claim token, or None."""
    token = secrets.token_hex(16)
    n = await SigningLink.filter(Q(nonce=nonce), Q(used_at=None),
                                 Q(claimed_until=None) | Q(claimed_until__lt=now)).update(
        claim_token=token, claimed_until=now + CLAIM_LEASE)
    return token if n == 1 else None


async def release_link(nonce: str, token: str) -> None:
    await SigningLink.filter(nonce=nonce, claim_token=token, used_at=None).update(claim_token=None,
                                                                                  claimed_until=None)


# ---------------------------------------------------------------- the signature's transaction

@dataclass(frozen=True)
class Submission:
    """A checked signature on its way in: who, what, the rendered image and its evidence."""

    case_id: str
    step: StepTemplate
    kind: str
    signer_id: str
    roles: frozenset[Role]
    doc: Document
    link_nonce: str
    claim: str
    facts: SignatureFacts
    strokes: bytes
    png: bytes
    client_hash: str | None
    at: datetime


@dataclass(frozen=True)
class Signed:
    outcome: Outcome
    complete: bool  # every signer of the document has signed: it can be sealed


async def record_signature(service: CaseService, s: Submission) -> Signed:
    """Apply the signature and write everything it changes in one transaction (module docstring).
    Raises LinkClaimed or DocumentChanged when that transaction had to be undone."""
    decided: dict[str, Any] = {"complete": False}

    def make_event(case: Case, state: CaseState) -> DocumentSigned:
        return DocumentSigned(s.step.id, s.kind, s.signer_id, s.roles, s.at)

    async def also(tx: CaseTx) -> None:
        # The service hands over what the engine decided: a refused signature writes nothing.
        if isinstance(tx.result, engine.Refusal):
            return
        signed_as = s.step.next_signer(tx.before.steps[s.step.id], s.kind)
        decided["complete"] = s.kind in tx.result.state.steps[s.step.id].documents_signed
        conn = tx.conn
        claimed = await SigningLink.filter(nonce=s.link_nonce, used_at=None, claim_token=s.claim).using_db(
            conn).update(used_at=s.at, claim_token=None, claimed_until=None)
        if claimed != 1:
            raise LinkClaimed()
        # Sealed once every signer has signed; until then it waits for the next one ("partly_signed").
        moved = await Document.filter(id=s.doc.id, status__in=["draft", "partly_signed"]).using_db(conn).update(
            status="signed" if decided["complete"] else "partly_signed")
        if moved != 1:
            raise DocumentChanged()
        record = s.facts
        if s.step.cosigned:
            # The signatures already on the document, which this signer saw on the page, bound into
            # their own evidence record.
            record = replace(record, cosigned=True, signed_as=str(signed_as),
                             after=tuple(await prior_evidence(s.doc.id, s.case_id, using=conn)))
        # Chained by the case's own write, under its version check: the service's snapshot of the
        # case stays current, so the next event on it neither re-reads nor runs twice.
        entry = await tx.audit(AUDIT_KIND, audit_data(record), actor=s.signer_id, at=s.at)
        f = s.facts
        await Signature.create(
            using_db=conn, document_id=s.doc.id, case_id=s.case_id, step_id=s.step.id, signer_id=s.signer_id,
            identity_method=f.identity_method, platform_identity=f.platform_identity,
            doc_hash_presented=f.doc_hash_presented, strokes=s.strokes, strokes_hash=f.strokes_hash,
            image_png=s.png, image_hash=f.image_hash, client_image_hash=s.client_hash, server_time=s.at, ip=f.ip,
            user_agent=f.user_agent, consent_version=f.consent_version, audit_seq=entry.seq,
        )

    outcome = await service.apply(s.case_id, make_event, actor=s.signer_id, also=also)
    return Signed(outcome, bool(decided["complete"]) and outcome.ok)


# ---------------------------------------------------------------- sealing that keeps failing

async def give_up(service: CaseService, doc: Document, *, now: datetime | None = None) -> bool:
    """Stop trying to seal `doc`: in one transaction the document becomes "failed" (kept, with its
    signature, as evidence of what happened), its signature stops counting, the step opens again with a
    fresh card and link for the signer, and HR gets a card saying why. On a finished case only HR is
    told. False if nothing was changed (sealed meanwhile)."""
    now = now or _now()
    reason = (doc.seal_error or "seal failed")[:300]
    event = SealFailed(doc.step_id, doc.kind, str(doc.id), f"{doc.seal_attempts} attempts: {reason}", now)

    async def also(tx: CaseTx) -> None:
        n = await Document.filter(id=doc.id, status__in=["signed", "pending_tsa"]).using_db(tx.conn).update(
            status="failed")
        if n != 1:
            raise _Sealed()

    try:
        outcome = await service.apply(doc.case_id, lambda case, state: event, actor="system",  # type: ignore[attr-defined]
                                      also=also)
    except _Sealed:
        return False
    if not outcome.ok:
        log.error("document %s cannot be sealed and case %s refuses re-signing: %s", doc.id,
                  doc.case_id, outcome.refusal.message_en if outcome.refusal else "?")  # type: ignore[attr-defined]
        return False
    log.error("document %s given up after %s seal attempts (%s); HR told, the signer asked to sign again "
              "if the case is still open", doc.id, doc.seal_attempts, reason)
    return True


async def sweep_round(settings: Settings, service: CaseService, *, channel: Channel) -> dict[int, str]:
    """One round of the sweep: seal what can be sealed, give up what used up its attempts (`channel`:
    what documents say about the platform, chat.presentation.channel_of)."""
    results = await sweep(settings, channel=channel)
    # A completion notice the completion card could not issue (render or seal failed) is issued here.
    for case in await unissued_completed(_now() - timedelta(days=ISSUE_RETRY_DAYS)):
        try:
            doc = await issue_completion_notice(case, settings, channel=channel, now=_now())
        except PipelineError as exc:  # data HR must fix (told by the card render's log); retried next round
            log.error("case %s: completion notice not issued: %s", case.id, exc)
            continue
        except Exception:  # retried next round
            log.exception("case %s: completion notice not issued", case.id)
            continue
        if doc is not None:
            results[doc.id] = doc.status
    # The fallback paper (registered-mail letter, newspaper notice) HR's card could not issue.
    for case, step_id in await unissued_notices(service.templates):
        try:
            doc = await issue_step_notice(case, step_id, settings, channel=channel, now=_now())
        except PipelineError as exc:  # data HR must fix (the card says what); retried next round
            log.warning("case %s: %s paper not issued: %s", case.id, step_id, exc)
            continue
        except Exception:  # retried next round
            log.exception("case %s: %s paper not issued", case.id, step_id)
            continue
        if doc is not None:
            results[doc.id] = doc.status
    for doc in await exhausted(settings):
        if await give_up(service, doc):
            results[doc.id] = "failed"
    return results
