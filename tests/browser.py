"""What every browser test launches: Debian's chromium, headless, with nothing reaching out, and the
user agent of a phone (its app's own marker appended: DingTalk's or WeCom's in-app browser)."""

from __future__ import annotations

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--no-first-run"]
IPHONE = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
          "Mobile/15E148")


def phone(app: str) -> str:
    """An iPhone's user agent inside `app` (e.g. "DingTalk/7.6.0")."""
    return f"{IPHONE} {app}"
