"""`verify FILE.zip`: check a case archive (signing/archive.py) with no database.

Every member against the manifest's SHA-256 (and the manifest against its Ed25519 signature), the audit
chain recomputed from audit.jsonl, each checkpoint's signature and head, each PDF's PAdES seal against a
root certificate, and each signature's strokes re-rendered and its evidence recomputed against the chain.
Any changed byte in any member fails at least the manifest line naming that member.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import zipfile
import zlib
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from signing.archive import FORMAT, MANIFEST, MANIFEST_SIG, PUBLIC_KEY, ROOT_PEM
from signing.evidence import AUDIT_KIND, SignatureFacts, evidence_sha256
from signing.pipeline import checkpoint_message
from signing.render import RenderBusy
from signing.render import render as render_signature
from signing.strokes import StrokeError, parse_strokes_json
from signing.uploads import UPLOAD_KIND, upload_problem
from signing.verify import Check, check_seal
from storage.audit import GENESIS, entry_hash
from storage.canonical import canonical_json, sha256_hex

_CHUNK = 1 << 16


def _read(zf: zipfile.ZipFile, name: str) -> bytes | None:
    try:
        return zf.read(name)
    except (KeyError, zipfile.BadZipFile, zlib.error, OSError):
        return None


def _json(zf: zipfile.ZipFile, name: str) -> Any:
    raw = _read(zf, name)
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None


def _manifest_checks(zf: zipfile.ZipFile, pub: Ed25519PublicKey | None) -> tuple[list[Check], dict[str, str]]:
    out: list[Check] = []
    raw = _read(zf, MANIFEST)
    sig = _read(zf, MANIFEST_SIG)
    if raw is None:
        return [Check(MANIFEST, False, "missing or unreadable")], {}
    if pub is None or sig is None:
        out.append(Check(f"{MANIFEST} signature", False, "no signature or no public key in the archive"))
    else:
        try:
            pub.verify(base64.b64decode(sig.strip(), validate=True), raw)
            out.append(Check(f"{MANIFEST} signature", True, "Ed25519, checkpoint key"))
        except (InvalidSignature, ValueError, binascii.Error):
            out.append(Check(f"{MANIFEST} signature", False, "does not verify: the manifest was changed"))
    try:
        manifest = json.loads(raw)
        listed = {f["path"]: f["sha256"] for f in manifest["files"]}
        if manifest.get("format") != FORMAT:
            out.append(Check(f"{MANIFEST} format", False, f"unknown format {manifest.get('format')!r}"))
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        return [*out, Check(MANIFEST, False, "not a readable manifest")], {}
    # The manifest cannot list its own hash, nor its signature: the signature covers it instead.
    listed.pop(MANIFEST, None)
    present = set(zf.namelist()) - {MANIFEST, MANIFEST_SIG}
    for name in sorted(present - set(listed)):
        out.append(Check(f"file {name}", False, "in the zip but not in the manifest"))
    for name in sorted(set(listed) - present):
        out.append(Check(f"file {name}", False, "in the manifest but missing from the zip"))
    for name in sorted(present & set(listed)):
        h = hashlib.sha256()
        try:
            with zf.open(name) as f:
                while chunk := f.read(_CHUNK):
                    h.update(chunk)
        except (zipfile.BadZipFile, zlib.error, OSError) as exc:
            out.append(Check(f"file {name}", False, f"unreadable ({exc})"))
            continue
        ok = h.hexdigest() == listed[name]
        out.append(Check(f"file {name}", ok, "sha256 matches the manifest" if ok
                         else "sha256 differs from the manifest: the file was changed"))
    return out, listed


def _chain_checks(zf: zipfile.ZipFile, case: dict[str, Any], uploads: dict[str, tuple[int, dict[str, Any]]]
                  ) -> tuple[list[Check], dict[int, str], dict[int, dict[str, Any]]]:
    """The chain recomputed line by line; returns the hash at each seq and the evidence entries (the upload
    entries go into `uploads`, by upload key)."""
    hashes: dict[int, str] = {}
    evidence: dict[int, dict[str, Any]] = {}
    prev, seq = GENESIS, 0
    problem = ""
    try:
        with zf.open("audit.jsonl") as f:
            for n, raw in enumerate(f, start=1):
                try:
                    e = json.loads(raw)
                    at = datetime.fromisoformat(e["at"])
                except (ValueError, KeyError, TypeError, UnicodeDecodeError):
                    problem = f"line {n} is not an audit entry"
                    break
                if canonical_json(e) + b"\n" != raw:
                    problem = f"line {n} is not in the canonical form it was written in"
                    break
                if e.get("seq") != seq + 1 or e.get("case") != case.get("id"):
                    problem = f"line {n}: expected entry #{seq + 1} of case {case.get('id')}"
                    break
                if e.get("prev_hash") != prev:
                    problem = f"entry #{e['seq']}: previous-hash link broken"
                    break
                h = entry_hash(prev, case_id=e["case"], seq=e["seq"], at=at, actor=e["actor"], kind=e["kind"],
                               data=e["data"])
                if h != e.get("hash"):
                    problem = f"entry #{e['seq']} ({e['kind']}) was modified"
                    break
                seq, prev = e["seq"], h
                hashes[seq] = h
                if e["kind"] == AUDIT_KIND:
                    evidence[seq] = e
                elif e["kind"] == UPLOAD_KIND:
                    uploads[str(e["data"].get("upload_key"))] = (seq, e["data"])
    except (KeyError, zipfile.BadZipFile, zlib.error, OSError) as exc:
        problem = f"audit.jsonl unreadable ({exc})"
    if not problem and (seq != case.get("audit_seq") or prev != case.get("audit_head")):
        problem = f"chain ends at #{seq} but case.json records #{case.get('audit_seq')}"
    check = Check("audit chain (audit.jsonl)", not problem, problem or f"{seq} entries, head {prev[:16]}…")
    return [check], hashes, evidence


def _checkpoint_checks(zf: zipfile.ZipFile, case: dict[str, Any], pub_b64: str | None,
                       hashes: dict[int, str]) -> list[Check]:
    cps = _json(zf, "checkpoints.json")
    if not isinstance(cps, list):
        return [Check("checkpoints.json", False, "missing or unreadable")]
    out: list[Check] = []
    for cp in cps:
        name = f"checkpoint #{cp.get('seq')}"
        try:
            if cp["public_key"] != pub_b64:
                raise ValueError("signed by a key other than the archive's")
            key = Ed25519PublicKey.from_public_bytes(base64.b64decode(cp["public_key"]))
            key.verify(base64.b64decode(cp["signature"]), checkpoint_message(case["id"], cp["seq"], cp["head_hash"]))
            out.append(Check(f"{name} signature", True, "Ed25519"))
        except (InvalidSignature, ValueError, KeyError, TypeError, binascii.Error) as exc:
            out.append(Check(f"{name} signature", False, f"does not verify ({exc or type(exc).__name__})"))
            continue
        ok = hashes.get(cp["seq"]) == cp["head_hash"]
        out.append(Check(f"{name} head", ok, "matches the audit entry" if ok else "does not match the audit chain"))
    if case.get("status") != "open":
        closing = any(cp.get("seq") == case.get("audit_seq") and cp.get("head_hash") == case.get("audit_head")
                      for cp in cps)
        out.append(Check("closing checkpoint", closing, f"#{case.get('audit_seq')}" if closing
                         else f"no checkpoint covers the final entry #{case.get('audit_seq')}"))
    return out


async def _document_checks(zf: zipfile.ZipFile, trust_root: x509.Certificate | None) -> list[Check]:
    docs = _json(zf, "documents.json")
    if not isinstance(docs, list):
        return [Check("documents.json", False, "missing or unreadable")]
    out: list[Check] = []
    for d in docs:
        if not d.get("file"):
            continue
        label = f"{d['file']}"
        pdf = _read(zf, d["file"])
        if pdf is None:
            out.append(Check(f"{label} PAdES seal", False, "missing from the archive"))
            continue
        out.append(Check(f"{label} signed hash", sha256_hex(pdf) == d.get("sha256_signed"),
                         "" if sha256_hex(pdf) == d.get("sha256_signed") else "differs from documents.json"))
        out.append(await check_seal(f"{label} PAdES seal", pdf, trust_root))
    return out


def _prior_hashes(zf: zipfile.ZipFile, names: list[str]) -> dict[int, list[tuple[int, str]]]:
    """Per document, its signatures' (id, evidence hash) in signing order: what a later signer of a
    document several people sign saw on it, which that signer's evidence record names."""
    out: dict[int, list[tuple[int, str]]] = {}
    for name in names:
        sig = _json(zf, name)
        if isinstance(sig, dict) and isinstance(sig.get("evidence_entry"), dict):
            digest = str((sig["evidence_entry"].get("data") or {}).get("evidence_sha256", "?"))
            out.setdefault(sig.get("document_id"), []).append((sig.get("id"), digest))  # type: ignore[arg-type]
    return {doc: sorted(v) for doc, v in out.items()}


def _cosign(record: dict[str, Any], prior: list[tuple[int, str]], sig_id: int) -> dict[str, Any]:
    """A co-signed document's extra facts: the role recorded, and the evidence hashes of the signatures
    made before this one, taken from the archive itself (so a removed or altered earlier signature fails)."""
    if "cosign" not in record:
        return {}
    return {"cosigned": True, "signed_as": str((record["cosign"] or {}).get("as", "")),
            "after": tuple(h for i, h in prior if i < sig_id)}


async def _signature_checks(zf: zipfile.ZipFile, evidence: dict[int, dict[str, Any]]) -> list[Check]:
    out: list[Check] = []
    names = sorted(n for n in zf.namelist() if n.startswith("signatures/") and n.count(".") == 1
                   and n.endswith(".json"))
    priors = _prior_hashes(zf, names)
    for name in names:
        sig = _json(zf, name)
        if not isinstance(sig, dict):
            out.append(Check(name, False, "unreadable"))
            continue
        label = f"signature {sig.get('id')} ({sig.get('signer_id')})"
        strokes = _read(zf, f"signatures/{sig.get('id')}.strokes.json")
        png = _read(zf, f"signatures/{sig.get('id')}.png")
        if strokes is None or png is None:
            out.append(Check(f"{label} stroke data", False, "strokes or image missing from the archive"))
            continue
        out.append(Check(f"{label} stroke data hash", sha256_hex(strokes) == sig.get("strokes_hash")))
        payload = None
        try:
            payload = parse_strokes_json(strokes)
            rendered = sha256_hex(await render_signature(payload))
            ok = rendered == sig.get("image_hash") == sha256_hex(png)
            out.append(Check(f"{label} stroke re-render", ok, "image hash reproduced" if ok
                             else "the strokes do not render to the stored image"))
        except (StrokeError, RenderBusy) as exc:
            out.append(Check(f"{label} stroke re-render", False, f"not re-rendered: {exc}"))
        entry = evidence.get(sig.get("audit_seq"))  # type: ignore[arg-type]
        if entry is None or entry != sig.get("evidence_entry"):
            out.append(Check(f"{label} evidence in audit chain", False,
                             f"no matching evidence entry at #{sig.get('audit_seq')}"))
            continue
        record = entry["data"].get("evidence") or {}
        try:
            facts = SignatureFacts(
                case_id=sig["case_id"], step_id=sig["step_id"], document_kind=sig["document_kind"],
                document_id=sig["document_id"], signer_id=sig["signer_id"],
                signer_name=str((record.get("signer") or {}).get("name", "")),
                identity_method=sig["identity_method"], platform_identity=sig["platform_identity"],
                doc_hash_presented=sig["doc_hash_presented"], strokes_hash=sha256_hex(strokes),
                image_hash=sha256_hex(png), client_image_hash=sig["client_image_hash"],
                n_strokes=len(payload.strokes) if payload else -1, n_points=payload.point_count if payload else -1,
                canvas=(payload.width, payload.height) if payload else (0, 0),
                server_time=datetime.fromisoformat(sig["server_time"]), ip=sig["ip"], user_agent=sig["user_agent"],
                consent_version=sig["consent_version"], template_sha256=sig["template_sha256"],
                **_cosign(record, priors.get(sig["document_id"], []), sig["id"]))
            ok = evidence_sha256(facts) == entry["data"].get("evidence_sha256")
        except (KeyError, TypeError, ValueError):
            ok = False
        out.append(Check(f"{label} evidence in audit chain", ok, f"entry #{entry['seq']}" if ok
                         else f"the signature's facts differ from the evidence recorded at #{entry['seq']}"))
    return out


def _upload_checks(zf: zipfile.ZipFile, chain: dict[str, tuple[int, dict[str, Any]]]) -> list[Check]:
    """Each uploaded scan against its row and the SHA-256 the audit chain recorded for it; every upload the
    chain records must be in the archive."""
    rows = _json(zf, "uploads.json")
    if rows is None:
        # Archives from before uploads existed have no uploads.json; then the chain must record none.
        return [Check("uploads.json", not chain, "" if not chain else "missing, but the chain records uploads")]
    if not isinstance(rows, list):
        return [Check("uploads.json", False, "unreadable")]
    out: list[Check] = []
    seen: set[str] = set()
    for row in rows:
        if not isinstance(row, dict):
            out.append(Check("uploads.json", False, "unreadable row"))
            continue
        label = f"upload {row.get('id')} ({row.get('step_id')}.{row.get('field')})"
        data = _read(zf, str(row.get("file") or ""))
        if data is None:
            out.append(Check(label, False, "file missing from the archive"))
            continue
        seen.add(str(row.get("key")))
        problem = upload_problem(row, data, chain.get(str(row.get("key"))))
        entry = chain.get(str(row.get("key")))
        out.append(Check(label, not problem, problem or f"SHA-256 matches audit entry #{entry[0] if entry else '?'}"))
    for key in sorted(set(chain) - seen):
        out.append(Check(f"upload {key}", False, f"recorded at audit entry #{chain[key][0]} but not in the archive"))
    return out


async def verify_archive(path: Path, root_pem: bytes | None = None) -> list[Check]:
    """Every check of the archive at `path`; `root_pem` is the root to trust (default: the archive's own)."""
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        return [Check(f"archive {path.name}", False, f"not a readable zip ({exc})")]
    with zf:
        pub_b64 = (_read(zf, PUBLIC_KEY) or b"").decode("ascii", "replace").strip() or None
        pub = None
        try:
            pub = Ed25519PublicKey.from_public_bytes(base64.b64decode(pub_b64 or "", validate=True))
        except (ValueError, binascii.Error):
            pass
        checks, _ = _manifest_checks(zf, pub)
        case = _json(zf, "case.json")
        if not isinstance(case, dict):
            return [*checks, Check("case.json", False, "missing or unreadable")]
        uploads: dict[str, tuple[int, dict[str, Any]]] = {}
        chain, hashes, evidence = _chain_checks(zf, case, uploads)
        checks += chain + _checkpoint_checks(zf, case, pub_b64, hashes)
        pem = root_pem if root_pem is not None else _read(zf, ROOT_PEM)
        try:
            root = x509.load_pem_x509_certificate(pem) if pem else None
        except ValueError:
            root = None
            checks.append(Check("root certificate", False, "unreadable"))
        checks += await _document_checks(zf, root)
        checks += await _signature_checks(zf, evidence)
        checks += _upload_checks(zf, uploads)
        # What the full check (step replay against the rows, which the archive cannot hold) said at export.
        report = (_read(zf, "verify_report.txt") or b"").decode("utf-8", "replace").strip().splitlines()
        last = report[-1] if report else ""
        checks.append(Check("verify report at export", last == "RESULT: PASS", last or "missing"))
    return checks
