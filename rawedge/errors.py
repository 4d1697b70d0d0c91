"""One error type for everything a user can get wrong: it names the file and the problem in one line."""
from __future__ import annotations

import os


class RawedgeError(Exception):
    """A clear, user-facing failure: ``path: problem``. The CLI prints it as one line and exits 1."""

    def __init__(self, path: str | os.PathLike | None, problem: str):
        self.path = None if path is None else os.fspath(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path else problem)
