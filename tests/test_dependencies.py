"""Every third-party package our code imports is declared in pyproject.toml, not only brought
by another package: an upgrade of that other package could otherwise take it away (as
htmldate brings dateparser, which normalize.metadata reads month names from)."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions

from tests.conftest import REPO_ROOT

PACKAGES = ("normalize", "storage", "spiders", "flows", "browse")


def _name(requirement: str) -> str:
    """A requirement's distribution name, normalised as PEP 503 says."""
    return re.sub(r"[-_.]+", "-", re.match(r"[A-Za-z0-9._-]+", requirement)[0]).lower()


def _imported_modules() -> dict[str, str]:
    """Top-level module imported -> a file that imports it (absolute imports only)."""
    found: dict[str, str] = {}
    for package in PACKAGES:
        for path in sorted((REPO_ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    found.setdefault(name.split(".")[0], str(path.relative_to(REPO_ROOT)))
    return found


def test_every_imported_third_party_package_is_declared():
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    declared = {_name(r) for r in project["project"]["dependencies"]}
    distributions = packages_distributions()
    undeclared = {}
    for module, where in _imported_modules().items():
        if module in sys.stdlib_module_names or module in PACKAGES or module == "__future__":
            continue
        names = {_name(d) for d in distributions.get(module, [])}
        assert names, f"{module} (imported by {where}) belongs to no installed distribution"
        if not names & declared:
            undeclared[module] = (sorted(names), where)
    assert not undeclared, f"imported but not declared in pyproject.toml: {undeclared}"
