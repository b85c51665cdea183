"""`python -m bot keys --root-dir DIR`: the root CA offline, only the seal key on the server.

Run it where the root may live (an offline machine, or this host with DIR on removable media that is
taken away afterwards). It creates the root CA in DIR (or reuses the one there), issues a fresh seal
certificate and installs the seal key, the seal certificate and the root certificate into
`DATA_DIR/keys/`. The same command renews the seal before it expires (every two years).

`serving_key_problem` is the start-up check `serve` runs: outside `--demo` the data dir must hold an
installed seal (or SEAL_PKCS12_PATH is set) and no root private key.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from config.settings import Settings, get_settings

log = logging.getLogger("bot.keys")


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    k = sub.add_parser("keys", help="create the root CA offline and install the seal key (see SECURITY.md)")
    k.add_argument("--root-dir", required=True, type=Path,
                   help="where the root CA key and certificate are (created if absent); keep it offline")
    k.add_argument("--data-dir", type=Path, help="install into this data dir (default: DATA_DIR)")
    k.add_argument("--organization", help="organisation name in new certificates (default: COMPANY_NAME)")
    k.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from signing.keys import KeyMaterialError, install_seal

    settings = get_settings()
    data_dir = args.data_dir or Path(settings.data_dir)
    org = args.organization or settings.company_name
    if args.root_dir.resolve() == (data_dir / "keys").resolve() or args.root_dir.resolve() == data_dir.resolve():
        print("error: --root-dir must not be the data dir: the root key has to stay off the server", file=sys.stderr)
        return 2
    try:
        done = install_seal(args.root_dir, data_dir, org)
    except (KeyMaterialError, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if done.root_moved:
        print(f"moved the root CA key out of {done.keydir} into {done.root_dir}")
    print(f"root CA: {done.root_dir} ({'created' if done.root_created else 'existing'}); "
          f"SHA-256 {done.root_fingerprint}")
    print(f"installed into {done.keydir}: seal.key.pem, seal.crt.pem (valid until "
          f"{done.seal_not_after:%Y-%m-%d}), root.crt.pem; no root private key")
    print(f"now store {done.root_dir} offline and delete it from this host if it is the server")
    return 0


def serving_key_problem(settings: Settings, *, demo: bool) -> str | None:
    """Why `serve` must not start with the keys in DATA_DIR, or None. In demo mode missing keys (root
    included) are generated here, and a log line says the root key is on this host."""
    from signing.keys import KeyMaterialError, has_installed_seal, has_root_key, seal_expired
    from signing.pipeline import keys_for

    keydir = Path(settings.data_dir) / "keys"
    if not demo:
        if has_root_key(settings.data_dir):
            return (f"the root CA private key {keydir / 'root.key.pem'} is on the serving host; move it offline: "
                    "python -m bot keys --root-dir <offline dir> (or run with --demo)")
        if settings.seal_pkcs12_path is None and not has_installed_seal(settings.data_dir):
            return (f"no seal key installed in {keydir}: run python -m bot keys --root-dir <offline dir>, "
                    "set SEAL_PKCS12_PATH, or run with --demo")
    try:
        keys = keys_for(settings)
    except KeyMaterialError as exc:
        return str(exc)
    if seal_expired(keys):
        return (f"the seal certificate expired on {keys.seal_cert.not_valid_after_utc:%Y-%m-%d}; issue a new one: "
                "python -m bot keys --root-dir <offline dir>")
    if demo and has_root_key(settings.data_dir):
        log.warning("demo mode: root CA private key and seal key generated together in %s (root key on this "
                    "host: not for production; see `python -m bot keys`); root SHA-256 %s",
                    keydir, keys.root_fingerprint())
    return None
