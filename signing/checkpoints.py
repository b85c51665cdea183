"""Signed checkpoints of open cases: an Ed25519 signature over each case's audit head, made by a
sweep within `CHECKPOINT_SECONDS` of the head moving.

A closed case gets its checkpoint in the closing transaction. An open one used to have none, so
someone with write access to the database could delete its newest entries and move the head back,
or edit an entry and recompute every hash after it, and `verify` passed. Once a checkpoint covers an
entry that no longer works: the checkpoint names the entry's seq and hash, and only the key (which is
not in the database) can sign a new one.

A sweep rather than a checkpoint in every transaction: the signature and the extra row would sit
on every event's hot path, and a minute's window is what the issue accepts. What an attacker can
still do within that window is written down in the README ("Open cases").
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime

from tortoise.functions import Max

from signing.keys import KeyMaterial
from signing.pipeline import checkpoint_message, public_key_b64
from storage.models import Case, Checkpoint

BATCH = 500  # cases per statement: bounds one sweep's memory when many cases moved at once


async def moved_cases() -> list[tuple[str, int, str]]:
    """(case id, audit seq, audit head) of every open case whose head is past its last checkpoint."""
    heads = await Case.filter(status="open", audit_seq__gt=0).values_list("id", "audit_seq", "audit_head")
    out: list[tuple[str, int, str]] = []
    for i in range(0, len(heads), BATCH):
        part = heads[i:i + BATCH]
        done = dict(await Checkpoint.filter(case_id__in=[h[0] for h in part]).group_by("case_id")
                    .annotate(last=Max("seq")).values_list("case_id", "last"))
        out += [(str(cid), int(seq), str(head)) for cid, seq, head in part if done.get(cid, 0) < seq]
    return out


async def checkpoint_open_cases(keys: KeyMaterial, *, now: datetime | None = None) -> int:
    """Sign the head of every open case that moved since its last checkpoint; returns how many.

    The heads are read outside any transaction, so each is a committed head; a writer moving it
    meanwhile only means the next sweep signs the newer one."""
    now = now or datetime.now(UTC)
    pub = public_key_b64(keys)
    rows = [
        Checkpoint(case_id=cid, seq=seq, head_hash=head, public_key=pub, created_at=now,
                   signature=base64.b64encode(keys.checkpoint_key.sign(checkpoint_message(cid, seq, head)))
                   .decode("ascii"))
        for cid, seq, head in await moved_cases()
    ]
    for i in range(0, len(rows), BATCH):
        await Checkpoint.bulk_create(rows[i:i + BATCH])
    return len(rows)
