"""The README's main command, timed as a new user meets it: first run (nothing cached) and a later run.

    python benchmarks/demo_timing.py [--runs 2]

Runs `python -m aero_verl.main_ppo +recipe=cpu_demo` in a fresh folder with an empty demo cache
(AERO_VERL_CACHE in a temporary folder: the warm start builds the model), then `--runs - 1` more times with
that cache, and reports the wall clock of each and where it went: the warm start, everything until the
first training step (Ray, TransferQueue, workers, model and rollout-server start), the 20 training steps,
the validations and the report (demo_timing.md; the last run's console in demo_console.txt). Targets (issue:
a newcomer's first run): first run <= 3 min, later <= 2 min on 2 cores, install excluded.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from provenance import commit  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def timed_run(folder: Path, cache: Path) -> dict:
    env = dict(os.environ, AERO_VERL_CACHE=str(cache))
    started = time.time()
    output = subprocess.run([sys.executable, "-m", "aero_verl.main_ppo", "+recipe=cpu_demo"], cwd=folder, env=env,
                            capture_output=True, text=True)
    total = time.time() - started
    if output.returncode != 0:
        raise RuntimeError(f"the demo failed:\n{output.stdout[-3000:]}\n{output.stderr[-3000:]}")
    metrics_path = next(folder.glob("outputs/*/*/checkpoints/metrics.jsonl"))
    records = [json.loads(line) for line in metrics_path.read_text().splitlines()]
    steps = [r for r in records if "timing_s/step" in r["metrics"]]
    first_step_end = steps[0]["time"]
    first_step_start = first_step_end - steps[0]["metrics"]["timing_s/step"]
    manifest = next(cache.glob("cpu_demo/*/manifest.json"), None)
    built = json.loads(manifest.read_text())["build_seconds"] if manifest else 0.0
    return {"total_s": total, "console": output.stdout, "console_lines": len(output.stdout.splitlines()),
            "training_steps_s": sum(r["metrics"]["timing_s/step"] for r in steps),
            "start_to_first_step_s": first_step_start - started,
            "after_last_step_s": started + total - steps[-1]["time"], "warm_start_s": built}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        cache = Path(scratch) / "cache"
        results = []
        for run in range(args.runs):
            folder = Path(scratch) / f"run{run}"
            folder.mkdir()
            results.append(timed_run(folder, cache))
            if run:
                results[-1]["warm_start_s"] = 0.0  # cached: built by the first run
            console = results[-1].pop("console")
            print(f"run {run}: {results[-1]}", flush=True)
    # The later run's console as a user sees it: the README's excerpt is taken from this file.
    (args.out / "demo_console.txt").write_text(f"Commit: {commit()}\n\n{console}")
    lines = ["Command: `python benchmarks/demo_timing.py" + (f" --runs {args.runs}`" if args.runs != 2 else "`"), "",
             f"Commit: {commit()}", "", "# The CPU demo's wall clock (`python -m aero_verl.main_ppo +recipe=cpu_demo`)", "",
             "2 cores; install excluded. Start to first step includes the warm start on the first run. Target: first "
             "run <= 180 s, later runs <= 120 s.", "",
             "| run | total s | warm start s | start to first step s | 20 training steps s | after the last step s "
             "(last validation, summary, report) | console lines |", "|---|---|---|---|---|---|---|"]
    for index, r in enumerate(results):
        lines.append(f"| {'first (empty cache)' if index == 0 else 'later'} | {r['total_s']:.0f} | {r['warm_start_s']:.0f} | "
                     f"{r['start_to_first_step_s']:.0f} | {r['training_steps_s']:.0f} | {r['after_last_step_s']:.0f} | "
                     f"{r['console_lines']} |")
    (args.out / "demo_timing.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
