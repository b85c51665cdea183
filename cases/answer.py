"""Apply one event to a case and answer the person who caused it: the one helper every caller uses
(chat commands, card taps, questions, the signing page), whatever form its answer takes.

Callers differ only in how they word the answer (a chat `Reply`, a JSON body for the signing page)
and in the rows they add to the event's transaction; the sequence is the same everywhere:

    service.apply(event)            the engine decides; the case's rows are written
      -> accepted(conn, decision)   the caller's own rows, only if the engine accepted the event
      -> inside(conn, answer)       rows that carry the answer (the inbox row), on every commit
    commit  -> answer(result)       what the caller says: `word(decision)` or `refused(refusal)`
    CaseError (unknown case, ...)   -> `failed(error)`, nothing written

An exception raised by `accepted` or `inside` rolls the whole transaction back (case rows too) and
propagates to the caller, which is how the signing page refuses a link claimed meanwhile.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from cases.service import CaseError, CaseService, CaseTx
from storage.models import Case
from workflow import engine
from workflow.model import CaseState

A = TypeVar("A")


async def apply_and_answer(
    service: CaseService,
    case_id: str,
    make_event: Callable[[Case, CaseState], Any],
    *,
    actor: str,
    word: Callable[[engine.Decision], A],
    refused: Callable[[engine.Refusal], A],
    failed: Callable[[CaseError], A],
    accepted: Callable[[Any, engine.Decision], Awaitable[None]] | None = None,
    inside: Callable[[Any, A], Awaitable[None]] | None = None,
) -> A:
    """Apply `make_event(case, state)` to case `case_id` as `actor` and return the answer to it.

    - `word(decision)`: the answer when the engine accepted the event.
    - `refused(refusal)`: the answer when it refused (`accepted` does not run; the refusal's own
      audit entry, if the engine asked for one, is written).
    - `failed(error)`: the answer when the service could not apply it at all (unknown case, ...).
    - `accepted(conn, decision)`: the caller's writes that belong to an accepted event (signature
      rows, dropped drafts), in the event's transaction. The decision's `state` is the case after
      the event; capture the state before it in `make_event`, which receives it.
    - `inside(conn, answer)`: writes that must commit with the answer the caller will give (the
      inbox row of a chat event), in the same transaction, for refusals too.

    The event is built and decided again if another writer moved the case first (the service's
    version check), so `make_event` must be pure and the callbacks must write only through `conn`:
    an attempt that loses the race is rolled back with everything its callbacks wrote.
    """

    def answer(result: engine.Decision | engine.Refusal) -> A:
        return refused(result) if isinstance(result, engine.Refusal) else word(result)

    async def also(tx: CaseTx) -> None:
        # What the engine decided for this attempt, handed over by the service.
        result = tx.result
        if accepted is not None and isinstance(result, engine.Decision):
            await accepted(tx.conn, result)
        if inside is not None:
            await inside(tx.conn, answer(result))

    try:
        outcome = await service.apply(case_id, make_event, actor=actor, also=also)
    except CaseError as exc:
        return failed(exc)
    result = outcome.refusal if outcome.refusal is not None else outcome.decision
    assert result is not None  # the service returns one of the two
    return answer(result)
