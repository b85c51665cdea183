"""Decoding a directory CSV the way Chinese HR files arrive.

Excel on a Chinese Windows saves "CSV" in the system code page (GBK, or GB18030 which contains
it); "CSV UTF-8" adds a BOM; "Unicode text" is UTF-16 with a BOM. Valid UTF-8 is taken as UTF-8:
GBK text of any length is almost never valid UTF-8, so the order below does not misread real files.
"""

from __future__ import annotations

import codecs

# Names people pass to --encoding, mapped to the codec that decodes them. GB18030 is a superset of
# GBK and GB2312, so a file saved in either decodes the same way through it.
_ALIASES = {"gbk": "gb18030", "gb2312": "gb18030", "cp936": "gb18030", "utf8": "utf-8"}


class EncodingError(ValueError):
    pass


def decode_csv(data: bytes, encoding: str | None = None) -> tuple[str, str]:
    """Return (text, encoding used). With `encoding` given, only that one is tried."""
    if encoding:
        name = _ALIASES.get(encoding.lower().replace("_", "-"), encoding)
        try:
            codecs.lookup(name)
        except LookupError:
            raise EncodingError(f"unknown encoding {encoding!r}") from None
        try:
            return data.decode(name).lstrip("\ufeff"), name
        except UnicodeDecodeError as exc:
            raise EncodingError(f"not valid {encoding}: byte {exc.start} ({data[exc.start:exc.start + 1]!r})") \
                from None
    if data.startswith(codecs.BOM_UTF8):
        return data[len(codecs.BOM_UTF8):].decode("utf-8", errors="strict"), "utf-8-sig"
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return data.decode("utf-16").lstrip("\ufeff"), "utf-16"
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("gb18030"), "gb18030"
    except UnicodeDecodeError as exc:
        raise EncodingError(
            f"neither UTF-8 nor GBK/GB18030 (byte {exc.start}); save the file as CSV UTF-8 or pass --encoding"
        ) from None
