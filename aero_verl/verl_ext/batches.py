"""verl's rollout rows to the core's arrays and back; no AERO decision is made here.

verl 0.9.1's v1 trainer keeps every rollout in TransferQueue under the key `{uid}_{session}_{index}`
(verl/trainer/ppo/v1/agent_loop_tq.py), with the fields `uid` (the prompt's per-step id), `rm_scores` (the
verified reward on the response's last token), `response_mask` and `responses`. The trainer reads them
into a `DataProto` as verl's own advantage step does; these functions turn that into what AEROStep
records (prompt position, reward, tokens, a digest of the response) and turn the step's per-row decisions
into what verl's advantage estimator returns.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from verl import DataProto

SCORE_FIELDS = ("token_level_scores", "rm_scores")
OUTCOME_FIELDS = ["uid", "rm_scores", "response_mask", "responses"]


class RolloutCountError(RuntimeError):
    """Rollouts came back that AERO did not ask for (a custom agent loop or multi-output sessions)."""


@dataclass(frozen=True)
class RolloutRows:
    """Rows of one read, in the order of the keys they were read for."""

    keys: list[str]
    group: np.ndarray  # position of each row's prompt in the step
    session: np.ndarray  # the agent-loop session the row came from ({uid}_{session}_{index})
    rewards: np.ndarray
    lengths: np.ndarray
    digest: np.ndarray


def sequence_scores(data: DataProto) -> np.ndarray:
    """One scalar reward per row: the sum of its token-level scores, as verl's GRPO takes it."""
    for name in SCORE_FIELDS:
        if name in data.batch.keys():
            return data.batch[name].sum(dim=-1).double().cpu().numpy()
    raise KeyError(f"the batch has none of the reward fields {SCORE_FIELDS}; found {list(data.batch.keys())}")


def response_digests(responses: torch.Tensor, lengths: np.ndarray) -> np.ndarray:
    """A uint64 digest of each response's tokens (blake2b of its valid tokens).

    It only has to tell apart different responses of one prompt and be a function of the tokens alone:
    rows are ordered by (prompt, digest) before selective rejection's random choice, so a resumed run
    rejects what an uninterrupted one would.
    """
    tokens = responses.cpu().numpy()
    return np.array([int.from_bytes(hashlib.blake2b(row[:n].tobytes(), digest_size=8).digest(), "little")
                     for row, n in zip(tokens, np.asarray(lengths, dtype=np.int64))], dtype=np.uint64)


def rollout_rows(keys: Sequence[str], data: DataProto, position_of_uid: dict[str, int]) -> RolloutRows:
    """Rows read for `keys` as the core records them; every row's `uid` must be a prompt of the step."""
    uids = data.non_tensor_batch["uid"]
    unknown = sorted({uid for uid in uids if uid not in position_of_uid})
    if unknown:
        raise KeyError(f"{len(unknown)} rollout uid(s) belong to no prompt of this step, e.g. {unknown[:3]}")
    group = np.fromiter((position_of_uid[uid] for uid in uids), dtype=np.int64, count=len(uids))
    sessions, outputs = [], []
    for key in keys:
        _, session, output = key.rsplit("_", 2)
        sessions.append(int(session))
        outputs.append(int(output))
    if any(outputs):
        multi = sorted({key.split("_")[0] for key, output in zip(keys, outputs) if output})
        raise RolloutCountError(
            f"agent-loop sessions of {len(multi)} prompt(s) wrote more than one output (keys {{uid}}_{{session}}_"
            f"{{index}} with index > 0, e.g. prompt uid {multi[0]}): AERO counts one verified rollout per "
            "session. Use a single-output agent loop (actor_rollout_ref.rollout.agent.default_agent_loop="
            "single_turn_agent) with the AERO trainer")
    lengths = data.batch["response_mask"].sum(dim=-1).cpu().numpy().astype(np.int64)
    digest = response_digests(data.batch["responses"], lengths) if "responses" in data.batch.keys() \
        else np.zeros(len(keys), dtype=np.uint64)
    return RolloutRows(list(keys), group, np.array(sessions, dtype=np.int64), sequence_scores(data), lengths, digest)


def check_rollout_counts(requested: np.ndarray, returned: np.ndarray, prompt_keys: np.ndarray) -> None:
    """More rollouts than requested for a prompt means something outside AERO generated them: say so."""
    over = np.flatnonzero(returned > requested)
    if over.size:
        i = over[0]
        raise RolloutCountError(
            f"{over.size} prompt(s) got more rollouts than AERO requested (prompt key {int(prompt_keys[i])}: "
            f"{int(returned[i])} came back, {int(requested[i])} were requested). AERO sets each prompt's count "
            "with `__rollout_n__`; an agent loop or agent-loop manager that ignores it, or samples on its own, "
            "cannot run under the AERO trainer (actor_rollout_ref.rollout.agent.*)")


def token_level_advantages(per_row: np.ndarray, response_mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(bs,) advantages to verl's (bs, L) layout: one value on every response token of its row."""
    values = torch.as_tensor(per_row, dtype=like.dtype, device=like.device)
    return values.unsqueeze(-1) * response_mask
