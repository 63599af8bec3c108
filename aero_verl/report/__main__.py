"""python -m aero_verl.report RUN_FOLDER... [--out PATH]: write the runs' report PNG and print its path."""

from __future__ import annotations

import argparse
import sys

from aero_verl.report import ReportError, write_report


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m aero_verl.report",
        description="One PNG of one or more training runs, overlaid: held-out accuracy against compute and "
                    "wall clock, rollouts, AERO's rescues, zero-advantage groups and calibration.")
    parser.add_argument("run_folders", nargs="+", metavar="RUN_FOLDER",
                        help="a Hydra output folder of aero_verl.main_ppo, its checkpoints/ folder, or any "
                             "folder holding metrics.jsonl")
    parser.add_argument("--out", default=None, metavar="PATH",
                        help="the PNG to write (default: report.png in the run folder for one run, in the "
                             "current folder for several)")
    args = parser.parse_args(argv)
    try:
        print(write_report(args.run_folders, args.out))
    except ReportError as error:
        print(f"[aero report] {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
