"""Find the line of a template file that a validation problem points at.

tomllib keeps no positions, so the loader scans the text: `[[steps]]` headers delimit each step's
block, and keys are looked up inside that block, narrowing one key at a time (e.g. `policy` then
`alert_after_hours`). Good enough for hand-written TOML; if nothing matches, the step's own header
is the answer.
"""

from __future__ import annotations

import re

_HEADER = re.compile(r"^\s*\[\[?\s*([A-Za-z0-9_.\"' -]+?)\s*\]\]?\s*(#.*)?$")


def _header_name(line: str) -> str | None:
    m = _HEADER.match(line)
    return m.group(1).replace(" ", "").replace('"', "").replace("'", "") if m else None


def _key_pattern(key: str) -> re.Pattern[str]:
    return re.compile(rf"(^|[{{,\s]){re.escape(key)}\s*=")


def _step_blocks(lines: list[str]) -> list[tuple[int, int]]:
    blocks: list[tuple[int, int]] = []
    start: int | None = None
    for i, line in enumerate(lines):
        name = _header_name(line)
        if name is None:
            continue
        if name.startswith("steps."):
            continue
        if start is not None:
            blocks.append((start, i))
            start = None
        if name == "steps" and line.lstrip().startswith("[["):
            start = i
    if start is not None:
        blocks.append((start, len(lines)))
    return blocks


def _section(lines: list[str], name: str) -> tuple[int, int] | None:
    for i, line in enumerate(lines):
        if _header_name(line) == name:
            end = next((j for j in range(i + 1, len(lines)) if _header_name(lines[j]) is not None), len(lines))
            return i, end
    return None


def _contains_literal(line: str, needle: str) -> bool:
    return f'"{needle}"' in line or f"'{needle}'" in line


def find_line(
    text: str, loc: tuple[str | int, ...], step_id: str | None = None, needle: str | None = None
) -> int | None:
    """1-based line number for `loc` (a pydantic-style location), or None if nothing fits."""
    lines = text.splitlines()
    region: tuple[int, int] = (0, len(lines))
    keys: list[str]
    anchor: int | None = None
    if loc[:1] == ("steps",) and len(loc) >= 2 and isinstance(loc[1], int):
        blocks = _step_blocks(lines)
        if loc[1] < len(blocks):
            region = blocks[loc[1]]
            anchor = region[0]
        elif step_id:
            # Steps written as inline tables: fall back to the line holding the step's id.
            anchor = next((i for i, line in enumerate(lines) if _contains_literal(line, step_id)), None)
            if anchor is not None:
                region = (anchor, len(lines))
        keys = [k for k in loc[2:] if isinstance(k, str)]
    elif loc:
        first = loc[0]
        nested = _section(lines, str(first)) if len(loc) > 1 else None
        if nested:
            region, anchor, keys = nested, nested[0], [k for k in loc[1:] if isinstance(k, str)]
        else:
            keys = [k for k in loc if isinstance(k, str)]
            top_end = next((i for i, line in enumerate(lines) if _header_name(line) is not None), len(lines))
            if len(loc) == 1:
                region = (0, top_end)
    else:
        keys = []
    pos = region[0]
    found = anchor
    for key in keys:
        pattern = _key_pattern(key)
        hit = next((i for i in range(pos, region[1]) if pattern.search(lines[i])), None)
        if hit is None:
            sub = next(
                (i for i in range(pos, region[1]) if (_header_name(lines[i]) or "").endswith("." + key)), None
            )
            hit = sub
        if hit is None:
            break
        pos = found = hit
    if needle is not None:
        hit = next((i for i in range(found or region[0], region[1]) if _contains_literal(lines[i], needle)), None)
        if hit is not None:
            found = hit
    return None if found is None else found + 1


_ID_LINE = re.compile(r"^\s*id\s*=\s*[\"']([^\"']+)")


def step_at_line(text: str, line: int) -> str | None:
    """Id of the `[[steps]]` block containing a 1-based line ("#n" if its id is unreadable), if any."""
    lines = text.splitlines()
    for index, (start, end) in enumerate(_step_blocks(lines)):
        if start < line <= end:
            for candidate in lines[start:end]:
                m = _ID_LINE.match(candidate)
                if m:
                    return m.group(1)
            return f"#{index + 1}"
    return None
