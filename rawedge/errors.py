"""One error type for everything a user can get wrong: it names the file and the problem in one line."""
from __future__ import annotations

import os


class RawedgeError(Exception):
    """A clear, user-facing failure: ``path: problem``. The CLI prints it as one line and exits 1."""

    def __init__(self, path: str | os.PathLike | None, problem: str):
        self.path = None if path is None else os.fspath(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path else problem)


def install_command(extra: str) -> str:
    """The pip command that adds an optional extra to this install, runnable as printed: an editable
    checkout (the README's install) gets ``pip install -e '/path/to/checkout[extra]'``."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    if (root / "pyproject.toml").is_file() and (root / "rawedge" / "__init__.py").is_file():
        return f"pip install -e '{root}[{extra}]'"
    return f"pip install 'rawedge[{extra}]'"
