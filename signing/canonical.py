"""Canonical JSON and SHA-256 for signing evidence: the implementation lives in `storage.canonical`."""

from storage.canonical import canonical_json, sha256_hex

__all__ = ["canonical_json", "sha256_hex"]
