"""Flow templates: the TOML files in this folder, optionally overridden per company.

load_templates() reads the bundled folder first and then each extra folder; a later file with the same
template id replaces the earlier one, which is how a company adapts a flow without forking the code.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Sequence
from pathlib import Path

from workflow.errors import TemplateError
from workflow.schema import TemplateProblem, compile_template
from workflow.sourcelines import find_line, step_at_line
from workflow.template import FlowTemplate

BUNDLED_DIR = Path(__file__).resolve().parent
_TOML_LINE = re.compile(r"at line (\d+)")


def _read(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise TemplateError(path, f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise TemplateError(path, f"cannot read: {exc.strerror or exc}") from None


def load_template(path: Path) -> FlowTemplate:
    """Parse and validate one template file; raises TemplateError naming file, step, problem, line."""
    path = Path(path)
    text = _read(path)
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = _TOML_LINE.search(str(exc))
        line = int(m.group(1)) if m else None
        step = step_at_line(text, line) if line is not None else None
        raise TemplateError(path, f"TOML syntax error: {exc}", step=step, line=line) from None
    try:
        return compile_template(raw, str(path))
    except TemplateProblem as problem:
        line = find_line(text, problem.loc, problem.step, problem.needle)
        raise TemplateError(path, problem.problem, step=problem.step, line=line) from None


def load_templates(dirs: Sequence[Path] | None = None) -> dict[str, FlowTemplate]:
    """All templates by id: bundled ones, then each folder in `dirs` overriding by id."""
    result: dict[str, FlowTemplate] = {}
    for folder in (BUNDLED_DIR, *(Path(d) for d in dirs or ())):
        if not folder.is_dir():
            raise TemplateError(folder, "template folder does not exist")
        seen: dict[str, Path] = {}
        for path in sorted(folder.glob("*.toml")):
            template = load_template(path)
            if template.id in seen:
                raise TemplateError(
                    path, f"template id '{template.id}' is already defined by {seen[template.id].name}"
                )
            seen[template.id] = path
            result[template.id] = template
    return result
