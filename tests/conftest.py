"""Builders shared by the tests (fixtures; no test imports another test file)."""

from __future__ import annotations

import numpy as np
import pytest


def _bernoulli_sampler(p, seed, lengths=(1, 50)):
    """A sampler callback for AEROStep.run: a rollout of the prompt keyed i is correct with probability p[i]."""
    rng = np.random.default_rng(seed)

    def sample(keys, counts):
        prompts = np.repeat(keys.astype(np.int64), counts)
        return (rng.random(prompts.size) < p[prompts]).astype(float), rng.integers(*lengths, prompts.size)

    return sample


@pytest.fixture
def bernoulli_sampler():
    return _bernoulli_sampler


def _make_batch(groups, response_length=5, seed=0):
    """A verl DataProto of rollouts: groups = [(uid, rewards)]; each row gets a random response and its
    reward on its last token."""
    import torch
    from verl import DataProto

    rng = np.random.default_rng(seed)
    uids, scores, masks, responses = [], [], [], []
    for uid, rewards in groups:
        for reward in rewards:
            length = int(rng.integers(1, response_length + 1))
            mask = torch.zeros(response_length)
            mask[:length] = 1
            score = torch.zeros(response_length)
            score[length - 1] = reward
            uids.append(uid)
            scores.append(score)
            masks.append(mask)
            responses.append(torch.as_tensor(rng.integers(5, 200, response_length)))
    return DataProto.from_dict(
        tensors={"rm_scores": torch.stack(scores), "response_mask": torch.stack(masks),
                 "responses": torch.stack(responses)},
        non_tensors={"uid": np.array(uids, dtype=object)},
    )


@pytest.fixture
def make_batch():
    return _make_batch


class FakeTransferQueue:
    """The part of transfer_queue's KV API the trainer calls, in memory."""

    def __init__(self):
        self.cleared, self.written = [], []

    def kv_clear(self, keys, partition_id):
        self.cleared.extend(keys)

    def kv_batch_put(self, keys, partition_id, fields=None, tags=None):
        self.written.append((list(keys), fields))

    def kv_batch_get(self, keys, partition_id, select_fields=None):
        import torch
        from tensordict import TensorDict

        return TensorDict({"response_mask": torch.nested.as_nested_tensor(
            [torch.ones(3) for _ in keys], layout=torch.jagged)}, batch_size=len(keys))


@pytest.fixture
def fake_transfer_queue():
    return FakeTransferQueue()
