"""The verl-side layer of an AERO step at paper scale, without TransferQueue's transport.

    python benchmarks/verl_layer_overhead.py [--prompts 1024] [--rollouts 16] [--tokens 3072] [--repeats 3]

Times what aero_verl's adapter adds to a verl step on its host (verl_ext/batches.py and the trainer's
use of the core): turning the rollout rows read from TransferQueue into the step's arrays (prompt
positions, rewards, lengths and a digest of every response's tokens for the canonical order), the
AEROStep itself (record, rescue plan, finish: posterior, selection, advantages), the loss weights in the
trained batch's layout, and the estimator's per-token advantages. Reading the rows out of TransferQueue is
verl's own cost and is not included. The share is of an assumed GPU step (printed with it).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from aero_verl.core import AEROConfig, AEROStep, BetaPosteriorTable
from aero_verl.verl_ext.batches import rollout_rows, token_level_advantages
from verl import DataProto

ASSUMED_GPU_STEP_S = 250.0  # aero_qwen1.5b-like step (benchmarks/phase_model.py's calibration), see docstring


def synthetic_rows(prompts: int, rollouts: int, tokens: int, rng: np.random.Generator):
    rows = prompts * rollouts
    lengths = rng.integers(tokens // 10, tokens + 1, rows)
    responses = torch.as_tensor(rng.integers(0, 150_000, (rows, tokens)))
    mask = torch.as_tensor(np.arange(tokens)[None, :] < lengths[:, None], dtype=torch.float32)
    p = rng.beta(0.5, 0.5, prompts)
    rewards = (rng.random(rows) < np.repeat(p, rollouts)).astype(np.float32)
    scores = torch.zeros(rows, tokens)
    scores[torch.arange(rows), torch.as_tensor(lengths - 1)] = torch.as_tensor(rewards)
    uids = [f"u{i}" for i in range(prompts)]
    data = DataProto.from_dict(tensors={"rm_scores": scores, "response_mask": mask, "responses": responses},
                               non_tensors={"uid": np.repeat(np.array(uids, dtype=object), rollouts)})
    keys = [f"{uid}_{session}_0" for uid in uids for session in range(rollouts)]
    return data, keys, uids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=1024)
    parser.add_argument("--rollouts", type=int, default=16)
    parser.add_argument("--tokens", type=int, default=3072)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    data, keys, uids = synthetic_rows(args.prompts, args.rollouts, args.tokens, rng)
    position = {uid: i for i, uid in enumerate(uids)}
    cfg = AEROConfig(n_explore=args.rollouts // 2)
    timings: dict[str, list[float]] = {"rows to arrays (digests included)": [], "AEROStep record + finish": [],
                                       "loss weights in the trained layout": [], "per-token advantages": []}
    for repeat in range(args.repeats):
        started = time.perf_counter()
        rows = rollout_rows(keys, data, position)
        timings["rows to arrays (digests included)"].append(time.perf_counter() - started)

        started = time.perf_counter()
        step = AEROStep(cfg, BetaPosteriorTable(), repeat, keys=np.arange(args.prompts))
        stage1 = rows.session < cfg.n_explore
        step.record(rows.group[stage1], rows.rewards[stage1], rows.lengths[stage1], stage1=True,
                    digest=rows.digest[stage1])
        extra = step.rescue_requests()  # one rescue phase from the logged rows stands in for generation
        rescue = np.flatnonzero(~stage1)[: int(extra.sum())]
        step.record(rows.group[rescue], rows.rewards[rescue], rows.lengths[rescue], stage1=False,
                    digest=rows.digest[rescue])
        result = step.finish()
        timings["AEROStep record + finish"].append(time.perf_counter() - started)

        started = time.perf_counter()
        order = result.training_order
        minibatch = (np.arange(order.size) % max(order.size // 8, 1)) // max(order.size // 32, 1)
        weights = result.loss_weights(order, minibatch)
        timings["loss weights in the trained layout"].append(time.perf_counter() - started)

        started = time.perf_counter()
        token_level_advantages(result.advantages[order] * weights, data.batch["response_mask"][torch.as_tensor(order)],
                               data.batch["rm_scores"])
        timings["per-token advantages"].append(time.perf_counter() - started)

    total = sum(min(values) for values in timings.values())
    print(f"{args.prompts} prompts x {args.rollouts} rollouts x {args.tokens} tokens (best of {args.repeats}):")
    for name, values in timings.items():
        print(f"  {name:<38} {1e3 * min(values):8.1f} ms")
    print(f"  {'total':<38} {1e3 * total:8.1f} ms = {total / ASSUMED_GPU_STEP_S:.2%} of an assumed "
          f"{ASSUMED_GPU_STEP_S:.0f} s GPU step (target <= 1%)")


if __name__ == "__main__":
    main()
