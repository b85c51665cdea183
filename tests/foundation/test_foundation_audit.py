from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tortoise import connections
from tortoise.transactions import in_transaction

from storage import audit, casestore, crypto
from storage.canonical import canonical_json, sha256_hex
from storage.models import AuditEntry, Case, Employee


async def _case() -> Case:
    emp = await Employee.create(employee_id="X1", name="测试")
    return await Case.create(id="OB-TEST01", employee=emp, open_key="X1", template_id="probation",
                             created_by="HR", started_at=datetime.now(UTC))


async def _chain(case: Case, n: int = 5) -> None:
    t0 = datetime(2026, 1, 1, 1, 2, 3, 456789, tzinfo=UTC)
    for i in range(n):
        async with in_transaction() as conn:
            await casestore.append_audit(conn, case.id, [(t0 + timedelta(minutes=i), "E1", f"k{i}",
                                                          {"i": i, "note": "备注", "amount": "1050.00"})])


async def test_chain_verifies(db) -> None:
    case = await _case()
    await _chain(case)
    report = await audit.verify_chain(case.id)
    assert report.ok and report.entries == 5
    assert (await Case.get(id=case.id)).audit_head == report.head


async def test_modified_entry_detected(db) -> None:
    case = await _case()
    await _chain(case)
    await AuditEntry.filter(case_id=case.id, seq=3).update(data={"i": 99, "note": "备注", "amount": "1050.00"})
    report = await audit.verify_chain(case.id)
    assert not report.ok and "#3" in report.problem and "modified" in report.problem


@pytest.mark.parametrize("seq", [2, 5])
async def test_deleted_entry_detected(db, seq: int) -> None:
    case = await _case()
    await _chain(case)
    await connections.get("default").execute_query(f"DELETE FROM audit_entry WHERE seq = {seq}")
    report = await audit.verify_chain(case.id)
    assert not report.ok


async def test_rehashed_forgery_detected_by_link(db) -> None:
    """Recomputing one entry's own hash after editing it still breaks the next entry's link."""
    case = await _case()
    await _chain(case)
    e = await AuditEntry.get(case_id=case.id, seq=2)
    e.data = {"i": 42}
    e.hash = audit.entry_hash(e.prev_hash, case_id=case.id, seq=2, at=e.at, actor=e.actor, kind=e.kind, data=e.data)
    await e.save()
    report = await audit.verify_chain(case.id)
    assert not report.ok and "#3" in report.problem


def test_crypto_roundtrip_and_tamper() -> None:
    crypto.configure(b"k" * 32)
    token = crypto.encrypt("110101199001011234")
    assert token.startswith("v1:") and "1101011990" not in token
    assert crypto.decrypt(token) == "110101199001011234"
    assert crypto.encrypt("same") != crypto.encrypt("same")  # random nonce
    raw = token[:-4] + ("AAAA" if token[-4:] != "AAAA" else "BBBB")
    with pytest.raises(Exception):  # noqa: B017 - InvalidTag or padding error, either way refused
        crypto.decrypt(raw)
    crypto.configure(b"other" * 8)
    with pytest.raises(Exception):  # noqa: B017
        crypto.decrypt(token)


_json_leaf = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**60), max_value=2**60),
                       st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=12),
                       st.decimals(allow_nan=False, allow_infinity=False, places=2))
_json_data = st.dictionaries(st.text(max_size=8), st.recursive(
    _json_leaf, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12), max_size=6)


@settings(max_examples=300, deadline=None)
@given(data=_json_data, actor=st.text(max_size=10), kind=st.text(min_size=1, max_size=10),
       seq=st.integers(min_value=0, max_value=10**6))
def test_built_entries_hash_as_the_generic_canonical_form(data, actor, kind, seq) -> None:
    """build_entries hashes a hand-assembled envelope around the data's canonical text; it must be
    the very bytes canonical_json gives for the whole entry, or stored chains would not verify."""
    at = datetime(2026, 1, 1, 1, 2, 3, 456000, tzinfo=UTC)
    [entry] = audit.build_entries("OB-ABC234", seq, "f" * 64, [(at, actor, kind, data)])
    body = canonical_json({"case": "OB-ABC234", "seq": seq + 1, "at": at.isoformat(), "actor": actor,
                           "kind": kind, "data": entry.data})
    assert entry.hash == sha256_hex(("f" * 64).encode() + body)
    assert entry.hash == audit.entry_hash("f" * 64, case_id="OB-ABC234", seq=seq + 1, at=at, actor=actor,
                                          kind=kind, data=data)
    assert canonical_json(entry.data).decode() == entry.data_json
