"""Lists of lines HR adds to a step's document (the case-specific handover items): how they are typed,
split and bounded. One definition for `/offboard … 交接事项:a；b`, HR's card form at the step, and the
engine, which keeps the list within the same bounds however often HR adds to it.

Pure; the edges check each line as clean text (`workflow.cleantext`) before it gets here.
"""

from __future__ import annotations

import re

from workflow.text import Text

ITEM_MAX = 100  # characters in one item: a line in the document, not a paragraph
MAX_ITEMS = 30  # added items per step, all additions together
# Items are separated by a newline (the card's textarea) or a semicolon (one chat line).
_SEPARATORS = re.compile(r"[;；\r\n]+")


def split_items(text: str) -> list[str]:
    """The items in `text`, in order, each stripped and each once (empty ones dropped)."""
    out: list[str] = []
    for part in _SEPARATORS.split(text):
        item = part.strip()
        if item and item not in out:
            out.append(item)
    return out


def item_problem(items: list[str], already: int = 0) -> Text | None:
    """Why these items cannot be added (None when they can): none given, one too long, too many."""
    if not items:
        return Text("没有可添加的交接事项（多项请用分号或换行分隔）。",
                    "No handover items to add (separate several with semicolons or new lines).")
    long = next((i for i in items if len(i) > ITEM_MAX), None)
    if long is not None:
        return Text(f"交接事项「{long[:20]}…」过长（每项最多 {ITEM_MAX} 字），请拆分或缩短。",
                    f"The handover item \"{long[:20]}…\" is too long (at most {ITEM_MAX} characters each); "
                    "split or shorten it.")
    if already + len(items) > MAX_ITEMS:
        return Text(f"交接事项最多补充 {MAX_ITEMS} 项（已有 {already} 项）。",
                    f"At most {MAX_ITEMS} handover items can be added (already {already}).")
    return None
