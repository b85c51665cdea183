"""Errors raised while loading flow templates."""

from __future__ import annotations

from pathlib import Path


class TemplateError(Exception):
    """A flow template file that cannot be used.

    The message always names the file; it names the step and the line whenever they can be found,
    because the person fixing a company's template sees only this one line.
    """

    def __init__(self, path: Path | str, problem: str, *, step: str | None = None, line: int | None = None):
        self.path = Path(path)
        self.problem = problem
        self.step = step
        self.line = line
        parts = [str(self.path)]
        if line is not None:
            parts.append(f"line {line}")
        if step is not None:
            parts.append(f"step '{step}'")
        super().__init__(", ".join(parts) + f": {problem}")
