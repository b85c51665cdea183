"""Encryption at rest for sensitive columns (phone, ID numbers, stroke data, signature images, documents).

AES-256-GCM with a key derived from SECRET_KEY by HKDF, so rotating SECRET_KEY makes old
ciphertext unreadable (by design: the key never lives in the database). Stored forms:
text ``v1:`` + base64url(nonce ‖ ciphertext+tag); bytes ``\\x00ENC1`` + nonce ‖ ciphertext+tag.
The byte prefix starts with NUL, which no PDF (``%PDF``), PNG (``\\x89PNG``) or stroke JSON (``{``)
does, so rows written before encryption are told apart from ciphertext and still read.
"""

from __future__ import annotations

import base64
import os

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_PREFIX = "v1:"
BYTES_PREFIX = b"\x00ENC1"
_aead: AESGCM | None = None


class CryptoNotConfigured(RuntimeError):
    pass


def derive_key(secret: bytes, purpose: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose).derive(secret)


def configure(secret: bytes) -> None:
    global _aead
    _aead = AESGCM(derive_key(secret, b"offboard-bot/column-encryption/v1"))


def _get() -> AESGCM:
    if _aead is None:
        raise CryptoNotConfigured("storage.crypto.configure(secret) was not called")
    return _aead


def is_encrypted(stored: str) -> bool:
    return stored.startswith(_PREFIX)


def encrypt(plain: str) -> str:
    nonce = os.urandom(12)
    ct = _get().encrypt(nonce, plain.encode("utf-8"), None)
    return _PREFIX + base64.urlsafe_b64encode(nonce + ct).decode("ascii")


def decrypt(stored: str) -> str:
    if not stored.startswith(_PREFIX):
        raise ValueError("not an encrypted value")
    raw = base64.urlsafe_b64decode(stored[len(_PREFIX) :].encode("ascii"))
    return _get().decrypt(raw[:12], raw[12:], None).decode("utf-8")


def is_encrypted_bytes(stored: bytes) -> bool:
    return stored[: len(BYTES_PREFIX)] == BYTES_PREFIX


def encrypt_bytes(plain: bytes) -> bytes:
    nonce = os.urandom(12)
    return BYTES_PREFIX + nonce + _get().encrypt(nonce, plain, None)


def decrypt_bytes(stored: bytes) -> bytes:
    if not is_encrypted_bytes(stored):
        raise ValueError("not an encrypted value")
    raw = memoryview(stored)[len(BYTES_PREFIX) :]
    return _get().decrypt(bytes(raw[:12]), bytes(raw[12:]), None)
