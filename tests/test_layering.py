"""The layering rules ([tool.importlinter] in pyproject.toml) are part of the suite: lint-imports must pass."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def import_tree(target: Path) -> Path:
    """A folder where rawedge/ holds every package under its import name: links to rawedge/* plus the
    packages that pyproject's package-dir maps from other folders (export/, runtimes/, calibration/).
    import-linter only walks rawedge/ itself; the Makefile builds the same tree."""
    package_dir = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    tree = target / "rawedge"
    tree.mkdir(parents=True)
    for entry in (ROOT / "rawedge").iterdir():
        (tree / entry.name).symlink_to(entry)
    for name, folder in package_dir.items():
        if name.startswith("rawedge."):
            tree.joinpath(*name.split(".")[1:]).symlink_to(ROOT / folder)
    return target


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    if not LINT_IMPORTS.exists():
        pytest.skip("import-linter is not installed (pip install -e '.[dev]')")
    return import_tree(tmp_path_factory.mktemp("imports"))


def test_import_contracts_are_kept(tree):
    proc = subprocess.run([str(LINT_IMPORTS), "--no-cache", str(ROOT / "pyproject.toml")], cwd=tree,
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 broken" in proc.stdout


def test_the_graph_has_every_package_and_function_level_imports(tree):
    """What the contracts rest on: the remapped packages are in the graph, and so is an import made
    inside a function (rawedge.cli.core reads RAW files with a function-level import)."""
    code = ("import grimp; g = grimp.build_graph('rawedge', cache_dir=None); "
            "print(' '.join(sorted({m.split('.')[1] for m in g.modules if m.count('.')}))); "
            "print(g.direct_import_exists(importer='rawedge.cli.core', imported='rawedge.io.raw'))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tree, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    packages, function_level = proc.stdout.splitlines()
    assert {"runtimes", "export", "calibration", "io", "cli"} <= set(packages.split())
    assert function_level == "True"
