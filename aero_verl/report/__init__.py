"""A training run's report as one PNG: `python -m aero_verl.report RUN_FOLDER... [--out PATH]`.

Reads each run folder's own files (metrics.jsonl, eval/step_<N>.json; runs.py) and draws six panels with
the runs overlaid (figure.py): held-out Avg@N and Pass@N against cumulative compute and wall clock,
rollouts generated and kept per step against AERO's budget, AERO's rescue outcomes, the share of
zero-advantage groups, and AERO's posterior calibration (Brier score, posterior vs prior).
A run that cannot be read is named with what is wrong and the others are still drawn.
Imports numpy only; matplotlib when drawing; nothing of verl, Ray or torch.
"""

from __future__ import annotations

import sys
from pathlib import Path

from aero_verl.report.runs import Run, RunReadError, Validation, label_runs, load_run

__all__ = ["ReportError", "Run", "RunReadError", "Validation", "load_runs", "write_report"]

REPORT_FILE = "report.png"


class ReportError(RuntimeError):
    """No run could be read; the message lists each folder and what is wrong with it."""


def _warn(message: str) -> None:
    print(f"[aero report] {message}", file=sys.stderr, flush=True)


def load_runs(run_folders, warn=_warn) -> tuple[list[Run], list[str]]:
    """The readable runs, labelled, and a message per run folder that could not be read (`warn` gets
    what a readable run had to skip: a corrupt line, a broken eval file)."""
    runs, problems = [], []
    for folder in run_folders:
        try:
            runs.append(load_run(Path(folder), warn))
        except (RunReadError, OSError) as error:
            problems.append(str(error))
    label_runs(runs)
    return runs, problems


def default_out_path(run_folders) -> Path:
    """report.png in the run folder when there is one run, else in the current folder."""
    return Path(run_folders[0]) / REPORT_FILE if len(run_folders) == 1 else Path(REPORT_FILE)


def write_report(run_folders, out_path=None) -> str:
    """Draw the runs in `run_folders` into one PNG and return its path (default_out_path when None).
    Raises ReportError if no run can be read."""
    run_folders = [Path(folder) for folder in run_folders]
    if not run_folders:
        raise ReportError("no run folder given")
    runs, problems = load_runs(run_folders)
    if not runs:
        raise ReportError("no run could be read:\n  " + "\n  ".join(problems))
    for problem in problems:
        _warn(f"{problem}; this run is not drawn")
    out_path = Path(out_path) if out_path is not None else default_out_path(run_folders)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        import matplotlib  # noqa: F401  (figure.py imports it when drawing)
    except ImportError as error:
        raise ReportError("the report needs matplotlib: pip install matplotlib") from error
    from aero_verl.report.figure import draw_report

    draw_report(runs, str(out_path), problems)
    return str(out_path)
