"""Rollout-allocation simulator: AERO against GRPO, DAPO, GRESO and an oracle at equal rollout budget.

    python benchmarks/simulate_allocation.py [--seeds 10] [--steps 200] [--prompts 2048] [--batch 128]
                                             [--out benchmarks/results]

Simulates RL post-training on a synthetic population of prompts (many never solved, many always solved)
whose success probabilities rise with the useful gradient signal (Theorem 4.1, under each step's loss
weighting, with gradient noise) each policy trains on. Every policy is one aero_verl.core.AEROStep with its
own StepPolicies (GRPO, DAPO, GRESO and the oracle on the same protocols as AERO). Writes simulator.json, simulator.md (its first line is the
command) and simulator_*.png into --out. CPU only; the default run takes well under a minute on 2 cores.
Design and definitions: benchmarks/simulator/ (population.py, measure.py, policies.py, experiment.py, report.py).
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

from simulator.experiment import (
    POLICY_DEFINITIONS,
    REFERENCE,
    SimulationConfig,
    curves,
    run_all,
    summarise,
)
from simulator.population import PopulationConfig
from simulator.report import write_outputs

DEFAULT_OUT = Path(__file__).resolve().parent / "results"


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text}")
    return value


def parse_args(argv: list[str]) -> argparse.Namespace:
    defaults = SimulationConfig()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=positive_int, default=defaults.seeds, help="independent runs")
    parser.add_argument("--steps", type=positive_int, default=defaults.steps, help="training steps per run")
    parser.add_argument("--prompts", type=positive_int, default=defaults.population.prompts, help="data set size")
    parser.add_argument("--batch", type=positive_int, default=defaults.batch_size, help="prompts per step (B)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output directory")
    args = parser.parse_args(argv)
    if args.batch > args.prompts:
        parser.error(f"--batch ({args.batch}) cannot exceed --prompts ({args.prompts})")
    return args


def simulation_config(args: argparse.Namespace) -> SimulationConfig:
    return SimulationConfig(seeds=args.seeds, steps=args.steps, batch_size=args.batch,
                            population=PopulationConfig(prompts=args.prompts))


def headline(summary: dict) -> str:
    """AERO variants against GRPO n=16, for the terminal."""
    rows = []
    for name, metrics in summary.items():
        if name.startswith("aero"):
            compute = metrics["compute_ratio_vs_grpo16"]["mean"]
            wall = metrics["wall_ratio_vs_grpo16"]["mean"]
            accuracy = metrics["accuracy_diff_vs_grpo16"]["mean"]
            rows.append(f"  {name:24s} compute saving {100 * (1 - compute):5.1f}%  modelled wall saving "
                        f"{100 * (1 - wall):5.1f}%  mean success vs {REFERENCE} {accuracy:+.4f}")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> dict:
    """Run, write the outputs, and return the summary."""
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    cfg = simulation_config(args)
    start = time.perf_counter()
    runs = run_all(cfg)
    summary = summarise(runs, cfg)
    elapsed = time.perf_counter() - start
    command = shlex.join(["python", "benchmarks/simulate_allocation.py", *argv])
    paths = write_outputs(args.out, command, cfg, POLICY_DEFINITIONS, summary, curves(runs, cfg.cost), elapsed)
    print(headline(summary))
    print(f"simulated in {elapsed:.1f} s; wrote " + ", ".join(str(path) for path in paths))
    return summary


if __name__ == "__main__":
    main()
