"""`python -m bot verify [--case ID | FILE.pdf | FILE.zip]`: PASS/FAIL per check, exit 1 if any check fails.

With neither argument every case in the database is checked. A FILE is checked on its own (the seal
against our root, or `--root PEM`), and, when the database knows the file, its whole case as well.
A case archive (`export`) is checked offline, with no database (signing/archive_check.py).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import zipfile
from pathlib import Path

from cryptography import x509


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    v = sub.add_parser("verify", help="re-check audit chains, document hashes, seals and signatures")
    v.add_argument("file", nargs="?", help="a sealed PDF or a case archive (.zip) to check")
    v.add_argument("--case", help="check one case (default: every case)")
    v.add_argument("--root", help="trust this root certificate (PEM) instead of our own")
    v.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    root_pem = pdf = None
    try:
        if args.root:
            root_pem = Path(args.root).read_bytes()
        if args.file and zipfile.is_zipfile(args.file):
            # An archive is read member by member, never whole.
            return asyncio.run(_run_archive(args, root_pem))
        if args.file:
            pdf = Path(args.file).read_bytes()
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return asyncio.run(_run(args, root_pem, pdf))


async def _run_archive(args: argparse.Namespace, root_pem: bytes | None) -> int:
    from signing.archive_check import verify_archive
    from signing.verify import all_ok

    if args.case:
        print("error: give either --case or a FILE, not both", file=sys.stderr)
        return 2
    if root_pem is None:
        print("trusting the root certificate inside the archive (pass --root PEM to pin your own)")
    checks = await verify_archive(Path(args.file), root_pem)
    for c in checks:
        print(c.line())
    ok = all_ok(checks)
    print("RESULT: PASS" if ok else f"RESULT: FAIL ({sum(not c.ok for c in checks)} failed)")
    return 0 if ok else 1


async def _run(args: argparse.Namespace, root_pem: bytes | None, pdf: bytes | None) -> int:
    from bot.runtime import database
    from config.settings import get_settings
    from signing.pipeline import keys_for
    from signing.verify import all_ok, find_document, verify_case, verify_pdf
    from storage.models import Case
    from workflow.templates import load_templates

    if args.file and args.case:
        print("error: give either --case or a FILE, not both", file=sys.stderr)
        return 2
    settings = get_settings()
    # The company's flows, as the service runs them: the steps of each case are replayed under them.
    templates = load_templates([settings.templates_dir] if settings.templates_dir else [])
    keys = None
    trust_root = None
    if root_pem is not None:
        try:
            trust_root = x509.load_pem_x509_certificate(root_pem)
        except ValueError as exc:
            print(f"error: cannot read root certificate {args.root}: {exc}", file=sys.stderr)
            return 2
    if (Path(settings.data_dir) / "keys").is_dir() or settings.seal_pkcs12_path:
        keys = keys_for(settings)
        trust_root = trust_root or keys.root_cert or keys.seal_cert
    checks = []
    if pdf is not None:
        checks += await verify_pdf(pdf, trust_root)
        try:
            async with database(settings):
                doc = await find_document(pdf)
                if doc is not None:
                    print(f"file is document {doc.id} ({doc.kind}) of case {doc.case_id}")  # type: ignore[attr-defined]
                    checks += await verify_case(doc.case_id, keys=keys, trust_root=trust_root,
                                                        templates=templates)  # type: ignore[attr-defined]
                else:
                    print("file is not in this database: only the seal was checked")
        except OSError as exc:
            print(f"database not available ({exc}): only the seal was checked")
    else:
        async with database(settings):
            ids = [args.case] if args.case else list(await Case.all().order_by("id").values_list("id", flat=True))
            if not ids:
                print("no cases to verify")
                return 0
            for case_id in ids:
                print(f"case {case_id}")
                checks += (found := await verify_case(str(case_id), keys=keys, trust_root=trust_root,
                                                                templates=templates))
                for c in found:
                    print("  " + c.line())
    if args.file:
        for c in checks:
            print(c.line())
    ok = all_ok(checks)
    print("RESULT: PASS" if ok else f"RESULT: FAIL ({sum(not c.ok for c in checks)} failed)")
    return 0 if ok else 1
