"""Tortoise models: the only description of our tables.

Migrations in `storage/migrations/` are generated from these with
`tortoise -c storage.db.TORTOISE_ORM makemigrations` and applied by `python -m bot migrate`.
"""

from __future__ import annotations

from tortoise import fields
from tortoise.models import Model

from storage.fields import EncryptedBinaryField, EncryptedJSONField, EncryptedTextField


class Employee(Model):
    id = fields.IntField(primary_key=True)
    employee_id = fields.CharField(max_length=64, unique=True)
    name = fields.CharField(max_length=128)
    department = fields.CharField(max_length=128, default="")
    position = fields.CharField(max_length=128, default="")
    manager_id = fields.CharField(max_length=64, null=True, db_index=True)
    roles = fields.CharField(max_length=256, default="")  # ';'-separated: hr, finance, it
    city = fields.CharField(max_length=64, default="")
    hire_date = fields.DateField(null=True)
    contract_start = fields.DateField(null=True)
    contract_end = fields.DateField(null=True)
    monthly_wage = fields.DecimalField(max_digits=14, decimal_places=2, null=True)
    dingtalk_userid = fields.CharField(max_length=128, null=True, unique=True)
    wecom_userid = fields.CharField(max_length=128, null=True, unique=True)
    phone = EncryptedTextField(null=True)
    id_number = EncryptedTextField(null=True)
    # The postal address on file: where the registered-mail notice goes when the employee cannot be reached.
    address = EncryptedTextField(null=True)
    active = fields.BooleanField(default=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "employee"
        # So "who is finance" walks only the people with a role, not the whole directory. (An index
        # here, not db_index on the field: Tortoise's SQLite AlterField rebuilds the table and
        # drops its other indexes.)
        indexes = (("roles",),)

    @property
    def role_set(self) -> frozenset[str]:
        return frozenset(r for r in self.roles.split(";") if r)


class Case(Model):
    id = fields.CharField(max_length=32, primary_key=True)
    employee = fields.ForeignKeyField("models.Employee", related_name="cases", on_delete=fields.RESTRICT)
    # Set to the employee id while the case is open, NULL after: the unique index then allows
    # one open case per employee on both SQLite and PostgreSQL without partial indexes.
    open_key = fields.CharField(max_length=64, null=True, unique=True)
    template_id = fields.CharField(max_length=64)
    template_version = fields.IntField(default=1)
    status = fields.CharField(max_length=16, default="open", db_index=True)
    last_day = fields.DateField(null=True)
    reason = fields.TextField(default="")
    manager_id = fields.CharField(max_length=64, null=True)
    handover_id = fields.CharField(max_length=64, null=True)
    created_by = fields.CharField(max_length=64)
    fallback_started = fields.BooleanField(default=False)
    started_at = fields.DatetimeField()
    closed_at = fields.DatetimeField(null=True)
    version = fields.IntField(default=1)
    # The audit chain's head, updated in the same transaction as every append, so that deleting
    # the newest entries is detected too.
    audit_seq = fields.IntField(default=0)
    audit_head = fields.CharField(max_length=64, default="0" * 64)
    updated_at = fields.DatetimeField(auto_now=True)
    # The employee's questions to HR and the answers (workflow.model.Question, in the order asked):
    # part of the case state, so they load with the case in its one statement and move with its
    # compare-and-set.
    questions = fields.JSONField(null=True)  # NULL on rows from before the column: no questions

    class Meta:
        table = "case"


class CaseStep(Model):
    id = fields.IntField(primary_key=True)
    case = fields.ForeignKeyField("models.Case", related_name="steps", on_delete=fields.CASCADE)
    step_id = fields.CharField(max_length=64)
    position = fields.IntField()
    status = fields.CharField(max_length=16)
    activated_at = fields.DatetimeField(null=True)
    viewed_at = fields.DatetimeField(null=True)
    done_at = fields.DatetimeField(null=True)
    done_by = fields.CharField(max_length=64, null=True)
    outcome = fields.CharField(max_length=32, null=True)
    data = fields.JSONField(default=dict)
    documents_signed = fields.JSONField(default=list)
    reminders_sent = fields.IntField(default=0)
    rejections = fields.IntField(default=0)
    timers_fired = fields.JSONField(default=list)
    # Employee ids of the step's holders who opened it (details page or signing page); null before.
    viewed_by = fields.JSONField(null=True)

    class Meta:
        table = "case_step"
        unique_together = (("case", "step_id"),)


class AuditEntry(Model):
    """Append-only, hash-chained: hash = sha256(prev_hash ‖ canonical(entry))."""

    id = fields.BigIntField(primary_key=True)
    case = fields.ForeignKeyField("models.Case", related_name="audit", on_delete=fields.RESTRICT)
    seq = fields.IntField()
    at = fields.DatetimeField()
    actor = fields.CharField(max_length=64, default="")
    kind = fields.CharField(max_length=64)
    data = fields.JSONField(default=dict)
    prev_hash = fields.CharField(max_length=64)
    hash = fields.CharField(max_length=64)

    class Meta:
        table = "audit_entry"
        unique_together = (("case", "seq"),)


class Checkpoint(Model):
    """Ed25519 signature over an audit chain head (closes a case)."""

    id = fields.IntField(primary_key=True)
    case = fields.ForeignKeyField("models.Case", related_name="checkpoints", on_delete=fields.RESTRICT)
    seq = fields.IntField()
    head_hash = fields.CharField(max_length=64)
    signature = fields.CharField(max_length=200)
    public_key = fields.CharField(max_length=100)
    created_at = fields.DatetimeField()

    class Meta:
        table = "checkpoint"
        # A case's last checkpoint, asked for every open case by the checkpoint sweep each minute.
        indexes = (("case_id", "seq"),)


class InboxEvent(Model):
    """Dedup of inbound events: the unique key absorbs redeliveries."""

    id = fields.BigIntField(primary_key=True)
    dedup_key = fields.CharField(max_length=255, unique=True)
    platform = fields.CharField(max_length=16)
    sender = fields.CharField(max_length=128, default="")
    kind = fields.CharField(max_length=32, default="")
    received_at = fields.DatetimeField()
    result = fields.JSONField(default=dict)

    class Meta:
        table = "inbox"


class OutboxMessage(Model):
    id = fields.BigIntField(primary_key=True)
    key = fields.CharField(max_length=255, unique=True)  # idempotency key (also the platform card id)
    case = fields.ForeignKeyField("models.Case", related_name="outbox", null=True, on_delete=fields.RESTRICT)
    platform = fields.CharField(max_length=16)
    recipient = fields.CharField(max_length=64)  # employee_id
    step_id = fields.CharField(max_length=64, null=True)
    kind = fields.CharField(max_length=32)  # card | update | text
    payload = fields.JSONField(default=dict)
    status = fields.CharField(max_length=16, default="pending")
    attempts = fields.IntField(default=0)
    next_attempt_at = fields.DatetimeField()
    lease_until = fields.DatetimeField(null=True)
    claimed_by = fields.CharField(max_length=64, null=True)
    platform_message_id = fields.CharField(max_length=255, null=True)
    # What the platform answered (chat.connector.Delivery as JSON): handed back on the next update
    # of this card, replaced by what that update returns. NULL: not delivered, or delivered before
    # deliveries were kept (the card then carries its raw key as card id, see storage.cardids).
    delivery = fields.JSONField(null=True)
    last_error = fields.TextField(null=True)
    created_at = fields.DatetimeField()
    sent_at = fields.DatetimeField(null=True)

    class Meta:
        table = "outbox"
        # (case, step): the card holders a step update re-renders, read on every event; a scan
        # of the whole queue there grew with it. (status, due): the relay's claim query.
        indexes = (("case_id", "step_id"), ("status", "next_attempt_at"))


class Timer(Model):
    id = fields.BigIntField(primary_key=True)
    key = fields.CharField(max_length=255, unique=True)
    case = fields.ForeignKeyField("models.Case", related_name="timers", on_delete=fields.RESTRICT)
    step_id = fields.CharField(max_length=64)
    kind = fields.CharField(max_length=16)
    due_at = fields.DatetimeField()
    status = fields.CharField(max_length=16, default="pending")
    lease_until = fields.DatetimeField(null=True)
    claimed_by = fields.CharField(max_length=64, null=True)
    attempts = fields.IntField(default=0)
    fired_at = fields.DatetimeField(null=True)

    class Meta:
        table = "timer"
        # (case, step): cancelling a step's timers on every event; (status, due): the runner's claim.
        indexes = (("case_id", "step_id"), ("status", "due_at"))


class Document(Model):
    id = fields.IntField(primary_key=True)
    case = fields.ForeignKeyField("models.Case", related_name="documents", on_delete=fields.RESTRICT)
    step_id = fields.CharField(max_length=64)
    kind = fields.CharField(max_length=64)
    # draft | partly_signed (a document several people sign, waiting for the next one) | signed | sealed |
    # pending_tsa | failed (sealing gave up; the signer was asked to sign again) | superseded (HR added to
    # what the draft says before anyone signed it; the next open renders a fresh one)
    status = fields.CharField(max_length=16, default="draft")
    sha256_unsigned = fields.CharField(max_length=64)
    sha256_signed = fields.CharField(max_length=64, null=True)
    # Both PDFs print the ID number, name and amounts, so they are encrypted at rest; the hashes
    # are of the clear PDF, which is what the signer saw and `verify` checks.
    pdf_unsigned = EncryptedBinaryField()
    pdf_signed = EncryptedBinaryField(null=True)
    # The filled-in values the draft was rendered from (already formatted as text), so the signed
    # version is rendered from exactly what the signer saw even if the directory changes meanwhile.
    # Holds the ID number: encrypted as a whole.
    context = EncryptedJSONField(default=dict)
    lang = fields.CharField(max_length=8, default="zh")
    created_at = fields.DatetimeField()
    sealed_at = fields.DatetimeField(null=True)
    # Failed seal attempts (TSA down, any seal error): bounded by SEAL_MAX_ATTEMPTS, then "failed".
    seal_attempts = fields.IntField(default=0, null=True)  # never NULL in practice: see migration 0007
    seal_error = fields.TextField(null=True)

    class Meta:
        table = "document"


class Signature(Model):
    id = fields.IntField(primary_key=True)
    document = fields.ForeignKeyField("models.Document", related_name="signatures", on_delete=fields.RESTRICT)
    case = fields.ForeignKeyField("models.Case", related_name="signatures", on_delete=fields.RESTRICT)
    step_id = fields.CharField(max_length=64)
    signer_id = fields.CharField(max_length=64)
    identity_method = fields.CharField(max_length=32)
    platform_identity = fields.CharField(max_length=128, default="")
    doc_hash_presented = fields.CharField(max_length=64)
    strokes = EncryptedBinaryField()  # points with timing: biometric-like, encrypted at rest
    strokes_hash = fields.CharField(max_length=64)
    image_png = EncryptedBinaryField()
    image_hash = fields.CharField(max_length=64)
    client_image_hash = fields.CharField(max_length=64, null=True)
    server_time = fields.DatetimeField()
    ip = fields.CharField(max_length=64)
    user_agent = fields.TextField(default="")
    consent_version = fields.CharField(max_length=32)
    audit_seq = fields.IntField(null=True)

    class Meta:
        table = "signature"


class SigningLink(Model):
    """Single-use enforcement of signing links: the nonce is claimed once."""

    nonce = fields.CharField(max_length=64, primary_key=True)
    case = fields.ForeignKeyField("models.Case", related_name="links", on_delete=fields.RESTRICT)
    step_id = fields.CharField(max_length=64)
    signer_id = fields.CharField(max_length=64)
    expires_at = fields.DatetimeField()
    opened_at = fields.DatetimeField(null=True)
    used_at = fields.DatetimeField(null=True)
    # A submission claims the link (compare-and-set, with a lease in case the process dies) before it
    # parses or renders anything, so parallel submissions on one link cost one render.
    claim_token = fields.CharField(max_length=32, null=True)
    claimed_until = fields.DatetimeField(null=True)

    class Meta:
        table = "signing_link"


class FormLink(Model):
    """Single use of a step's web form link (for platforms whose cards hold no text input): the nonce
    is claimed by one submission, and marked used once the router accepted it."""

    nonce = fields.CharField(max_length=64, primary_key=True)
    case = fields.ForeignKeyField("models.Case", related_name="form_links", on_delete=fields.RESTRICT)
    step_id = fields.CharField(max_length=64)
    action = fields.CharField(max_length=64)
    holder_id = fields.CharField(max_length=64)
    expires_at = fields.DatetimeField()
    opened_at = fields.DatetimeField(null=True)
    used_at = fields.DatetimeField(null=True)
    claim_token = fields.CharField(max_length=32, null=True)
    claimed_until = fields.DatetimeField(null=True)

    class Meta:
        table = "form_link"


class EmulatorMessage(Model):
    """What the local emulator shows in each person's pane: delivered cards and chat lines.

    Kept here rather than in the process so that a restart cannot renumber the messages the
    outbox already recorded, and so that replicas on one database show the same panes. `seq`
    orders a person's pane and moves forward whenever a message changes, which is what the page
    polls for; the unique (recipient, seq) index serves those reads and makes two writers that
    picked the same number retry instead of hiding one change.
    """

    id = fields.BigIntField(primary_key=True)
    recipient = fields.CharField(max_length=64)  # employee id whose pane shows it
    seq = fields.IntField()
    kind = fields.CharField(max_length=8)  # card | text
    sender = fields.CharField(max_length=64)  # "bot" or the employee id who typed it
    # The card's own id (the outbox key), a sent text's key or "in:<event id>" of a typed line:
    # a resend with the same id finds the message instead of adding one.
    card_id = fields.CharField(max_length=255, null=True, unique=True)
    text = fields.TextField(default="")
    card = fields.JSONField(null=True)  # cards.model.Card.to_dict()
    html = fields.TextField(default="")  # rendered once when written, not on every poll
    version = fields.IntField(default=1)
    at = fields.DatetimeField()

    class Meta:
        table = "emulator_message"
        unique_together = (("recipient", "seq"),)


class CaseAccess(Model):
    """Who took what out of a case, and when: archive exports, links issued, downloads. Kept with the
    case but outside its audit chain, whose closing checkpoint must stay the last word on a closed case."""

    id = fields.BigIntField(primary_key=True)
    case = fields.ForeignKeyField("models.Case", related_name="accesses", on_delete=fields.RESTRICT)
    at = fields.DatetimeField()
    actor = fields.CharField(max_length=128)  # employee id, or "cli:<os user>"
    action = fields.CharField(max_length=32)  # export | link | download
    detail = fields.JSONField(default=dict)  # e.g. the archive's manifest hash, the client address

    class Meta:
        table = "case_access"
        indexes = (("case_id", "at"),)


class Upload(Model):
    """A file HR uploaded as evidence for a step (the postal receipt, the printed newspaper page): the bytes
    encrypted at rest, their SHA-256 here and in the case's audit chain (`evidence_uploaded`, found by `key`)."""

    id = fields.BigIntField(primary_key=True)
    key = fields.CharField(max_length=32, unique=True)  # names the upload in its audit entry
    case = fields.ForeignKeyField("models.Case", related_name="uploads", on_delete=fields.RESTRICT)
    step_id = fields.CharField(max_length=64)
    field = fields.CharField(max_length=64)
    content_type = fields.CharField(max_length=64)  # what the bytes are (checked), not what the browser said
    size = fields.IntField()
    sha256 = fields.CharField(max_length=64)
    filename = fields.CharField(max_length=255, default="")  # as HR's device named it; shown, never trusted
    data = EncryptedBinaryField()
    uploaded_by = fields.CharField(max_length=64)
    uploaded_at = fields.DatetimeField()

    class Meta:
        table = "upload"
        indexes = (("case_id", "step_id"),)
