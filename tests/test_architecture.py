"""The import rules of docs/ARCHITECTURE.md and the README's "Layout of the code", checked on
the code itself: every ``import`` statement of every module (function-level ones included);
and every third-party package imported is declared in pyproject.toml."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tomllib
from importlib.metadata import packages_distributions
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


def all_imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every absolute import in ``path``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found += [(node.lineno, name) for name in names]
    return found


def imports_of(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import in ``path`` that names one of our packages."""
    return [(line, name) for line, name in all_imports(path) if name.split(".")[0] in PACKAGES]


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


def test_a_crawls_own_process_loads_no_extractor():
    """The crawl's process only records what its extraction workers found: loading every
    module it runs, and reading an Article back as it comes from a worker (pickled), loads
    neither trafilatura nor the language detector (0.2 s of each crawl's start-up;
    normalize/__init__.py). Every name ``normalize`` exports still resolves."""
    probe = (
        "import pickle, sys\n"
        "import spiders.archiving, spiders.news, spiders.page, spiders.pipelines, spiders.run\n"
        "from normalize import Article, PageKind, SoftBlock\n"
        "pickle.loads(pickle.dumps((Article(text='x'), SoftBlock(PageKind.ARTICLE))))\n"
        "print(sorted(m for m in ('trafilatura', 'py3langid', 'normalize.article') "
        "if m in sys.modules))\n"
        "import normalize\n"
        "print(sorted(n for n in normalize.__all__ if getattr(normalize, n, None) is None))\n"
        "import trafilatura\n"
        "print(normalize.EXTRACTOR_VERSION.endswith(f'+trafilatura.{trafilatura.__version__}'))")
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout.split("\n")
    assert out[:3] == ["[]", "[]", "True"], out


def _distribution(requirement: str) -> str:
    """A requirement's distribution name, normalised as PEP 503 says."""
    return re.sub(r"[-_.]+", "-", re.match(r"[A-Za-z0-9._-]+", requirement)[0]).lower()


def test_every_imported_third_party_package_is_declared():
    """Every third-party package our code imports is declared in pyproject.toml, not only
    brought by another package: an upgrade of that one could take it away (htmldate brings
    dateparser, which normalize.metadata reads month names from)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    declared = {_distribution(r) for r in project["project"]["dependencies"]}
    distributions = packages_distributions()
    undeclared = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            for _, name in all_imports(path):
                module = name.split(".")[0]
                if module in sys.stdlib_module_names or module in PACKAGES \
                        or module == "__future__":
                    continue
                names = {_distribution(d) for d in distributions.get(module, [])}
                assert names, f"{module} ({path.relative_to(ROOT)}) is in no installed distribution"
                if not names & declared:
                    undeclared[module] = str(path.relative_to(ROOT))
    assert not undeclared, f"imported but not declared in pyproject.toml: {undeclared}"
