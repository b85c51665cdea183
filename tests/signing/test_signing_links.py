from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from signing.links import LinkError, default_expiry, make_token, new_nonce, read_token

SECRET = b"s" * 32
NOW = datetime(2025, 4, 1, 8, 0, tzinfo=UTC)


def _token(**kw: object) -> str:
    args: dict = dict(case_id="C1", step_id="sign_guarantee", signer_id="u-7",
                      expires_at=default_expiry(NOW), nonce=new_nonce())
    args.update(kw)
    return make_token(SECRET, **args)


def test_roundtrip() -> None:
    nonce = new_nonce()
    claims = read_token(SECRET, _token(nonce=nonce), NOW + timedelta(hours=71))
    assert (claims.case_id, claims.step_id, claims.signer_id, claims.nonce) == ("C1", "sign_guarantee", "u-7",
                                                                             nonce)
    assert claims.expires_at == NOW + timedelta(hours=72)


def test_nonce_makes_tokens_unique() -> None:
    assert _token() != _token()


def test_expired() -> None:
    with pytest.raises(LinkError) as exc:
        read_token(SECRET, _token(), NOW + timedelta(hours=72))
    assert exc.value.code == "expired"


@pytest.mark.parametrize("mangle", [
    lambda t: t[:-2] + ("A" if t[-2] != "A" else "B") + t[-1],
    lambda t: ("x" if t[0] != "x" else "y") + t[1:],
])
def test_tampered(mangle) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(LinkError) as exc:
        read_token(SECRET, mangle(_token()), NOW)
    assert exc.value.code == "tampered"


def test_other_secret_and_swapped_signer_are_tampered() -> None:
    token = _token()
    with pytest.raises(LinkError) as exc:
        read_token(b"t" * 32, token, NOW)
    assert exc.value.code == "tampered"
    body_other = _token(signer_id="someone-else").split(".")[0]
    with pytest.raises(LinkError) as exc:
        read_token(SECRET, body_other + "." + token.split(".")[1], NOW)
    assert exc.value.code == "tampered"


@pytest.mark.parametrize("token", ["", "abc", "a.b.c", "x" * 2000, "ab.c$d", "é.é"])
def test_malformed(token: str) -> None:
    with pytest.raises(LinkError) as exc:
        read_token(SECRET, token, NOW)
    assert exc.value.code == "malformed"


def test_refuses_weak_inputs() -> None:
    with pytest.raises(ValueError):
        make_token(b"short", case_id=1, step_id=1, signer_id=1, expires_at=NOW, nonce=new_nonce())
    with pytest.raises(ValueError):
        _token(nonce="abc")
    with pytest.raises(ValueError):
        _token(expires_at=datetime(2025, 1, 1))
