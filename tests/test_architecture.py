"""The import rules of docs/ARCHITECTURE.md and the README's "Layout of the code", checked on
the code itself: every ``import`` statement of every module (function-level ones included)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("normalize", "storage", "spiders", "flows", "browse")

# What each package may import of ours (besides itself).
ALLOWED = {
    "normalize": set(),
    "storage": set(),
    "spiders": {"normalize", "storage"},
    "flows": {"spiders.interface", "storage", "browse"},
    "browse": {"storage"},
}


def imports_of(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import in ``path`` that names one of our packages."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found += [(node.lineno, name) for name in names if name.split(".")[0] in PACKAGES]
    return found


def _allowed(package: str, module: str) -> bool:
    if module.split(".")[0] == package:
        return True
    return any(module == rule or module.startswith(rule + ".") for rule in ALLOWED[package])


@pytest.mark.parametrize("package", PACKAGES)
def test_a_package_imports_only_what_the_architecture_allows(package):
    broken = [f"{path.relative_to(ROOT)}:{line} imports {module}"
              for path in sorted((ROOT / package).rglob("*.py"))
              for line, module in imports_of(path) if not _allowed(package, module)]
    assert not broken, broken


def test_the_rules_see_the_imports_they_judge():
    """The checker finds an import where one is (else every rule above holds vacuously)."""
    found = {module for path in (ROOT / "flows").rglob("*.py") for _, module in imports_of(path)}
    assert "spiders.interface" in found and "storage" in found
    found = {module for path in (ROOT / "spiders").rglob("*.py") for _, module in imports_of(path)}
    assert {"normalize", "storage"} <= {m.split(".")[0] for m in found}


def test_the_interface_to_the_crawls_loads_no_crawler():
    """flows reaches spiders through spiders.interface only, and that loads neither Scrapy
    nor Twisted: the command that orchestrates crawls does not carry a crawler."""
    probe = ("import sys, spiders.interface; "
             "print(sorted(m for m in ('scrapy', 'twisted', 'trafilatura') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout.strip()
    assert out == "[]", out
