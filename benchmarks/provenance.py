"""The commit a result was made at, for the first lines of every result file under benchmarks/results/."""

from __future__ import annotations

import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def commit() -> str:
    """HEAD's hash, with "+changes" when tracked files differ from it (the result is then not reproducible
    from the commit alone)."""
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                           capture_output=True, text=True).stdout.strip()
    return (head or "unknown") + ("+changes" if dirty else "")
