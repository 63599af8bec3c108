"""Time of the AERO core per training step, next to nothing of generation (issue: target < 5 ms).

    python benchmarks/core_overhead.py [--prompts 1024] [--table-size 10000000] [--repeats 50]

Part 1 times one AEROStep (the object the trainer drives) for `--prompts` prompts with up to n_total = 16 rollouts
each, on a difficulty mix with many zero-success and all-correct prompts: exploration plan, recording of
every phase's outcomes, the rescue plan (all rounds), posterior update, selective rejection, advantages
and loss weights. Generation is not included: the benchmark feeds pre-drawn outcomes. Part 2 fills a posterior table with `--table-size`
prompts and times a batch update of `--prompts` prompts into it, reporting the table's memory.
Median and 90th percentile over `--repeats` runs.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from aero_verl.core import AEROConfig, AEROStep, BetaPosteriorTable


def difficulty_mix(n: int, rng: np.random.Generator) -> np.ndarray:
    """30% never solved, 30% always solved, the rest spread (paper Fig. 1: >35% zero-advantage)."""
    p = rng.beta(0.8, 0.8, n)
    kind = rng.random(n)
    p[kind < 0.3] = 0.01
    p[kind > 0.7] = 0.99
    return p


def one_step(cfg: AEROConfig, table: BetaPosteriorTable, keys: np.ndarray, outcomes: np.ndarray, step: int):
    """One AEROStep driven as the trainer drives it (Stage I, rescue phases, finish) on pre-drawn outcomes:
    outcomes[i, j] is prompt i's j-th rollout."""
    aero_step = AEROStep(cfg, table, step, keys=keys)
    drawn = np.zeros(keys.size, dtype=np.int64)

    def record(extra: np.ndarray, stage1: bool) -> None:
        columns = np.arange(cfg.n_total)
        window = (columns >= drawn[:, None]) & (columns < (drawn + extra)[:, None])
        group = np.nonzero(window)[0]
        aero_step.record(group, outcomes[window].astype(np.float64), np.full(group.size, 100), stage1=stage1)
        drawn[:] += extra

    record(aero_step.explore, stage1=True)
    while (extra := aero_step.rescue_requests()).any():
        record(extra, stage1=False)
    result = aero_step.finish()
    result.loss_weights(result.training_order)
    return int(result.keep.sum()), int(result.group.size)


def timed(fn, repeats: int) -> np.ndarray:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return np.array(times) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=1024)
    parser.add_argument("--table-size", type=int, default=10_000_000)
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    cfg = AEROConfig()

    keys = np.arange(args.prompts)
    p = difficulty_mix(args.prompts, rng)
    outcomes = rng.random((args.repeats + 1, args.prompts, cfg.n_total)) < p[None, :, None]
    table = BetaPosteriorTable()
    one_step(cfg, table, keys, outcomes[0], 0)  # warm-up
    counter = iter(range(1, args.repeats + 1))
    last = {}

    def step_once():
        step = next(counter)
        last["kept"], last["generated"] = one_step(cfg, table, keys, outcomes[step], step)

    step_ms = timed(step_once, args.repeats)
    print(f"core step (AEROStep), {args.prompts} prompts x up to {cfg.n_total} rollouts "
          f"(plan + record + rescue plan + posterior update + rejection + advantages + weights): "
          f"median {np.median(step_ms):.2f} ms, p90 {np.percentile(step_ms, 90):.2f} ms "
          f"[last step: {last['generated']} generated, {last['kept']} kept]")

    big = BetaPosteriorTable()
    fill_start = time.perf_counter()
    for chunk in np.array_split(np.arange(args.table_size, dtype=np.uint64) * np.uint64(2654435761), 100):
        big.update(chunk, np.ones(chunk.size), np.ones(chunk.size))
    fill_s = time.perf_counter() - fill_start
    batches = [rng.choice(args.table_size, args.prompts, replace=False) * 2654435761 for _ in range(args.repeats)]
    batch_iter = iter(batches)
    update_ms = timed(lambda: big.update(next(batch_iter), np.ones(args.prompts), np.zeros(args.prompts)),
                      args.repeats)
    new_keys = iter([np.arange(args.prompts) * 7 + 2**62 + i * args.prompts * 7 for i in range(args.repeats)])
    insert_ms = timed(lambda: big.update(next(new_keys), np.ones(args.prompts), np.zeros(args.prompts)),
                      args.repeats)
    print(f"posterior table with {len(big):,} prompts: {big.nbytes / 2**20:.0f} MiB "
          f"({big.nbytes / len(big):.1f} bytes/prompt), filled in {fill_s:.1f} s")
    print(f"  update of {args.prompts} seen prompts: median {np.median(update_ms):.2f} ms, "
          f"p90 {np.percentile(update_ms, 90):.2f} ms")
    print(f"  update of {args.prompts} new prompts:  median {np.median(insert_ms):.2f} ms, "
          f"p90 {np.percentile(insert_ms, 90):.2f} ms")


if __name__ == "__main__":
    main()
