"""The import-linter contracts in pyproject.toml hold for the tree, and would fail on an upward
import or a new module cycle (so `make test`, which runs `lint-imports`, keeps the layers one-way).

Each check copies our packages into a temporary directory, optionally plants one bad import, and
runs the real `lint-imports` there with the real configuration."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ["bot", "handlers", "chat", "cards", "cases", "storage", "signing", "workflow", "settlement", "config"]
LINT = Path(sys.executable).with_name("lint-imports")


def _tree(tmp_path: Path) -> Path:
    for name in PACKAGES:
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def _lint(tree: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run([str(LINT), "--no-cache"], cwd=tree, env=env, capture_output=True, text=True,
                          timeout=120)


def _plant(path: Path, line: str) -> None:
    path.write_text(path.read_text(encoding="utf-8") + f"\n\n{line}\n", encoding="utf-8")


@pytest.fixture(scope="module")
def linter() -> Path:
    if not LINT.exists():
        pytest.fail(f"lint-imports is not installed beside {sys.executable}; run `make test`")
    return LINT


def test_contracts_hold_for_the_tree(linter: Path, tmp_path: Path) -> None:
    result = _lint(_tree(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "line", "broken"),
    [
        ("workflow/engine.py", "import storage.models  # noqa", "The domain"),
        ("settlement/basis.py", "import config.settings  # noqa", "The domain"),
        ("storage/audit.py", "import signing.verify  # noqa", "Layers"),
        ("cards/view.py", "import chat.router  # noqa", "Layers"),
        ("cases/service.py", "import chat.router  # noqa", "Layers"),
        # Settings sit at the bottom beside the domain, importing nothing of ours.
        ("config/settings.py", "import storage.db  # noqa", "Layers"),
        # Nothing below the app factory reads its module globals: keys live in chat.appkeys.
        ("handlers/queries.py", "import bot.app  # noqa", "Layers"),
        ("signing/links.py", "import chat.appkeys  # noqa", "Layers"),
        # Imports inside functions count too: they are how cycles were hidden before.
        ("signing/seal.py", "def _late():\n    import handlers.links  # noqa", "Layers"),
        ("storage/crypto.py", "def _late():\n    import storage.audit  # noqa", "No module cycles"),
        # The extensions get what they need from the factory; one reaching back is a cycle.
        ("bot/timers.py", "def _late():\n    import bot.app  # noqa", "No module cycles"),
    ],
)
def test_a_planted_import_breaks_a_contract(linter: Path, tmp_path: Path, module: str, line: str,
                                            broken: str) -> None:
    tree = _tree(tmp_path)
    _plant(tree / module, line)
    result = _lint(tree)
    assert result.returncode != 0, f"{module}: `{line}` was not caught\n{result.stdout}"
    broken_section = result.stdout.split("Broken contracts", 1)[-1]
    assert broken in broken_section, result.stdout


def test_no_contract_lists_exceptions() -> None:
    """The layers hold without exemptions; an upward need is met by passing the thing down."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["importlinter"]
    exempt = {c["name"]: c["ignore_imports"] for c in config["contracts"] if c.get("ignore_imports")}
    assert exempt == {}


# Lower layers first; a module may name in a path only its own package or one below it.
_ORDER = ["config", "workflow", "settlement", "storage", "cases", "cards", "signing", "chat", "handlers", "bot"]


def _path_naming(pkg: str) -> re.Pattern[str]:
    # "handlers" / "templates" or "handlers/templates": a path built from a package's folder name.
    return re.compile(rf"""["']{pkg}["']\s*/|["']{pkg}/""")


def test_no_module_reads_a_higher_layer_file_by_path() -> None:
    """Imports are not the only way up: a file of a higher layer read by path (the signing page's
    template once was) ties the lower one to the higher one's folder. Package data is read with
    importlib.resources from the reader's own package instead."""
    offenders = []
    for i, pkg in enumerate(_ORDER):
        higher = [_path_naming(h) for h in _ORDER[i + 1:] if h != "signing" or pkg != "cards"]
        for path in sorted((ROOT / pkg).rglob("*.py")):
            text = path.read_text(encoding="utf-8")
            offenders += [f"{path.relative_to(ROOT)}: {p.pattern}" for p in higher if p.search(text)]
    assert offenders == []


def test_the_path_check_sees_a_planted_path() -> None:
    assert _path_naming("handlers").search('Path(__file__).parent.parent / "handlers" / "templates"')
    assert _path_naming("handlers").search("'handlers/templates/sign.html'")
    assert not _path_naming("handlers").search('log = logging.getLogger("handlers")')


def test_the_signing_page_template_ships_with_its_reader() -> None:
    from importlib.resources import files

    assert files("signing").joinpath("sign_page.html").is_file()
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    assert "*.html" in config["package-data"]["*"]
