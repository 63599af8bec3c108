"""Stage II, Strategy 1 (paper Section 3.3): more rollouts for the prompts Stage I found unsolved.

A prompt of the rescue stratum (Stage I success rate u <= u_res) is rescued once it gains a correct
rollout; its requests end then, or when its budget is spent. Running out of budget is a normal outcome.

    RescueRounds      the paper's wording: rounds of n_extra for every prompt still being rescued, each round
                      a generation barrier for the whole batch. `per_query`: at most n_total rollouts per
                      prompt; `pooled`: the batch shares prompts x n_total, served by priority (posterior mean
                      before the step: the likeliest rescues first), ties to the lower position.
    BarrierFreeRescue the whole remaining budget of each prompt in one request, made as soon as that
                      prompt's own Stage I group has finished (no barrier on the rest of the batch), and its
                      rollouts still running are stopped at its first success.
    NoRescue          Stage I is the whole step (GRPO, DAPO).
"""

from __future__ import annotations

import numpy as np

from aero_verl.core.policies.base import RescueState
from aero_verl.core.policies.registry import register


class NoRescue:
    barrier_free = False
    stops_at_first_success = False

    def requests(self, state: RescueState) -> np.ndarray:
        return np.zeros(state.requested.size, dtype=np.int64)


class RescueRounds:
    barrier_free = False
    stops_at_first_success = False

    def __init__(self, n_total: int, n_extra: int, budget_mode: str = "per_query", max_rounds: int | None = None):
        self.n_total = int(n_total)
        self.n_extra = int(n_extra)
        self.budget_mode = budget_mode
        self.max_rounds = max_rounds

    def requests(self, state: RescueState) -> np.ndarray:
        extra = np.zeros(state.requested.size, dtype=np.int64)
        if self.max_rounds is not None and state.phases >= self.max_rounds:
            return extra
        pending = state.counts.in_rescue & ~state.counts.rescued
        if self.budget_mode == "per_query":
            headroom = np.maximum(self.n_total - state.requested, 0)
            extra[pending] = np.minimum(self.n_extra, headroom[pending])
            return extra
        pool = state.requested.size * self.n_total - int(state.requested.sum())
        candidates = np.flatnonzero(pending)
        if pool <= 0 or candidates.size == 0:
            return extra
        priority = state.prompts.posterior_mean
        order = candidates[np.lexsort((candidates, -priority[candidates]))]
        extra[order] = np.minimum(self.n_extra, np.maximum(pool - self.n_extra * np.arange(order.size), 0))
        return extra


class BarrierFreeRescue:
    barrier_free = True
    stops_at_first_success = True

    def __init__(self, n_total: int):
        self.n_total = int(n_total)

    def allowance(self, explore: np.ndarray) -> np.ndarray:
        """Rescue rollouts a prompt may have if Stage I leaves it unsolved: its whole remaining budget.

        An executor that decides per prompt (the agent-loop worker) asks for exactly this; `requests`
        gives the same numbers to an executor that plans the batch (the simulator)."""
        return np.maximum(self.n_total - np.asarray(explore, dtype=np.int64), 0)

    def requests(self, state: RescueState) -> np.ndarray:
        extra = np.zeros(state.requested.size, dtype=np.int64)
        if state.phases > 0:
            return extra
        pending = state.counts.in_rescue & ~state.counts.rescued
        extra[pending] = np.maximum(self.n_total - state.requested[pending], 0)
        return extra


@register("rescue", "rounds")
def rounds(cfg) -> RescueRounds:
    return RescueRounds(cfg.n_total, cfg.n_extra, cfg.budget_mode, cfg.max_rescue_rounds)


@register("rescue", "barrier_free")
def barrier_free(cfg) -> BarrierFreeRescue:
    return BarrierFreeRescue(cfg.n_total)


def concurrent_stops(group: np.ndarray, success: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The stop rule applied to one phase of rollouts that run concurrently at equal decode speed.

    For an executor without a clock (the simulator): a prompt's first success finishes after L* tokens,
    L* the shortest correct rollout of that prompt in the phase; rollouts no longer than L* finish, the
    others are stopped after L* tokens. Returns (stopped mask, tokens generated per rollout).
    """
    group = np.asarray(group, dtype=np.int64)
    lengths = np.asarray(lengths, dtype=np.int64)
    success = np.asarray(success, dtype=bool)
    n_groups = int(group.max(initial=-1)) + 1
    first_success = np.full(n_groups, np.iinfo(np.int64).max)
    np.minimum.at(first_success, group[success], lengths[success])
    stop_at = first_success[group]
    stopped = lengths > stop_at
    return stopped, np.where(stopped, stop_at, lengths)
