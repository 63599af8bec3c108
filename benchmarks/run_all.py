"""Regenerate every CPU result under benchmarks/results/ with one command.

    python benchmarks/run_all.py [--quick]

Runs, in order, each writing its own files into benchmarks/results/ (each file records its commit):
  core_overhead.py        the AERO step's time and the posterior table's memory       -> core_overhead.txt
  verl_layer_overhead.py  the verl-side layer at 1024 prompts x 16 x 3k tokens          -> verl_layer_overhead.txt
  simulate_allocation.py  the rollout-allocation simulator (10 seeds)                  -> simulator.{json,md,png}
  trainer_comparison.py   AERO vs GRPO and DAPO through verl's real trainer, demo task -> trainer_demo.*
                          and the rescue modes vs GRPO-16 on the long-response task     -> trainer_long.*
  gpu_projection.py       the long task's logged rollouts replayed in a GPU cost model  -> gpu_projection_long.md
  demo_timing.py          the README's first command, timed from a fresh cache          -> demo_timing.md
The trainer comparisons take hours on 2 cores (every run is real training); their per-run results are kept,
so an interrupted run_all resumes where it stopped. --quick skips them and reports from the runs there are.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from provenance import commit

BENCHMARKS = Path(__file__).resolve().parent
RESULTS = BENCHMARKS / "results"
LONG_TASK = ["--task", "long", "--arms", "aero", "aero_barrier_free", "grpo16", "--steps", "40", "--val-every", "20"]


def run(*args: str, capture_to: str | None = None) -> None:
    started = time.time()
    print(f"== {' '.join(args)}", flush=True)
    output = subprocess.run([sys.executable, str(BENCHMARKS / args[0]), *args[1:]], check=True, text=True,
                            stdout=subprocess.PIPE if capture_to else None).stdout
    if capture_to:
        print(output, end="")
        (RESULTS / capture_to).write_text(f"Command: `python benchmarks/{' '.join(args)}`\n\nCommit: {commit()}\n\n{output}")
    print(f"== {args[0]}: {time.time() - started:.0f} s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="report the trainer comparisons from existing runs")
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    run("core_overhead.py", capture_to="core_overhead.txt")
    run("verl_layer_overhead.py", capture_to="verl_layer_overhead.txt")
    run("simulate_allocation.py")
    report_only = ["--report-only"] if args.quick else []
    run("trainer_comparison.py", "--task", "demo", *report_only)
    run("trainer_comparison.py", *LONG_TASK, *report_only)
    run("gpu_projection.py", "--task", "long")
    if not args.quick:
        run("demo_timing.py")


if __name__ == "__main__":
    main()
