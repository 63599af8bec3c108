"""A population of synthetic prompts: success probabilities that learn, response lengths that cost.

Prompt i succeeds on a rollout with probability p_i = sigmoid(theta_i). The initial logits mix three
kinds of prompt (paper Fig. 1: more than 35% of prompts are zero-advantage under GRPO):

    hopeless      theta ~ N(-5.0, 0.8)   p ~ 0.007: a group of 16 is almost always all wrong
    near solved   theta ~ N(+4.5, 0.8)   p ~ 0.99:  a group of 16 is mostly all correct
    spread        theta ~ N( 0.0, 1.6)   everything in between

Learning (the simulator's stand-in for a policy update): after a step, every trained prompt moves by
`learning_rate * (signal_i + noise_i)`, where signal_i is the useful gradient signal its trained group carried
under the step's loss weighting (measure.py: Theorem 4.1's f(c, m) for mixed groups) and noise_i its
gradient noise. Every prompt in the population also moves by
`learning_rate * transfer * (sum of the step's signals) / batch_size`: generalisation from the others,
which is how a hopeless prompt eventually becomes solvable. A signal is negative only when AERO's `constant`
advantage 2 p~ - 1 has the opposite sign to what the group's outcome warrants (posterior and outcome
disagree) or through noise; otherwise the population's mean success rises as fast as the signal a policy
extracts.

Response lengths: a per-prompt scale (log-normal) times a log-normal length whose median is longer for
wrong answers (they ramble or truncate), clipped at the maximum response length. Tokens feed the cost model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PopulationConfig:
    """The synthetic prompt population and its learning rule.

    Attributes:
        prompts: Number of prompts in the data set.
        hopeless_share: Share of prompts drawn around `hopeless_logit` (almost never solved).
        solved_share: Share drawn around `solved_logit` (almost always solved); the rest around 0.
        hopeless_logit: Mean initial logit of hopeless prompts.
        solved_logit: Mean initial logit of near-solved prompts.
        cluster_logit_sd: Spread of the hopeless and near-solved clusters.
        spread_logit_sd: Spread of the remaining prompts around logit 0.
        learning_rate: Logit change per unit of useful signal a prompt's trained group carries.
        noise_sd: Gradient noise: a trained group's signal gets Gaussian noise of this sd x its loss
            multiplier / sqrt(its trained rollouts) (measure.py).
        transfer: Share of the step's mean signal that every prompt receives (generalisation).
        correct_median_tokens: Median response length of a correct answer.
        incorrect_median_tokens: Median response length of a wrong answer.
        length_sigma: Log-normal sigma of a response's length around its median.
        prompt_length_sigma: Log-normal sigma of the per-prompt length scale.
        max_response_tokens: Responses are truncated here.
    """

    prompts: int = 2048
    hopeless_share: float = 0.25
    solved_share: float = 0.20
    hopeless_logit: float = -5.0
    solved_logit: float = 4.5
    cluster_logit_sd: float = 0.8
    spread_logit_sd: float = 1.6
    learning_rate: float = 0.5
    noise_sd: float = 0.3
    transfer: float = 0.02
    correct_median_tokens: float = 500.0
    incorrect_median_tokens: float = 900.0
    length_sigma: float = 0.45
    prompt_length_sigma: float = 0.3
    max_response_tokens: int = 3072


def initial_logits(cfg: PopulationConfig, rng: np.random.Generator) -> np.ndarray:
    """Logits of the three prompt kinds, in random order."""
    kind = rng.random(cfg.prompts)
    logits = rng.normal(0.0, cfg.spread_logit_sd, cfg.prompts)
    hopeless = kind < cfg.hopeless_share
    solved = kind >= 1.0 - cfg.solved_share
    logits[hopeless] = rng.normal(cfg.hopeless_logit, cfg.cluster_logit_sd, hopeless.sum())
    logits[solved] = rng.normal(cfg.solved_logit, cfg.cluster_logit_sd, solved.sum())
    return logits


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def zero_variance_probability(p: np.ndarray, n: int) -> np.ndarray:
    """P(a group of n rollouts is all correct or all wrong): the GRPO zero-advantage probability."""
    p = np.asarray(p, dtype=np.float64)
    return p**n + (1.0 - p) ** n


class Population:
    """The prompts' current success probabilities, a rollout sampler and the learning rule."""

    def __init__(self, cfg: PopulationConfig, rng: np.random.Generator):
        self.cfg = cfg
        self.logits = initial_logits(cfg, rng)
        self.length_scale = np.exp(rng.normal(0.0, cfg.prompt_length_sigma, cfg.prompts))

    @property
    def success_probability(self) -> np.ndarray:
        return sigmoid(self.logits)

    def mean_success(self) -> float:
        """Mean success probability over the whole data set: the simulator's accuracy."""
        return float(self.success_probability.mean())

    def rollouts(self, prompt_ids: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """One rollout per entry of prompt_ids: (success bool, response length in tokens)."""
        prompt_ids = np.asarray(prompt_ids, dtype=np.int64)
        success = rng.random(prompt_ids.size) < self.success_probability[prompt_ids]
        return success, self.response_lengths(prompt_ids, success, rng)

    def response_lengths(self, prompt_ids: np.ndarray, success: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Tokens of each response given its outcome (wrong answers are longer)."""
        median = np.where(success, self.cfg.correct_median_tokens, self.cfg.incorrect_median_tokens)
        lengths = median * self.length_scale[prompt_ids] * np.exp(rng.normal(0.0, self.cfg.length_sigma, success.size))
        return np.clip(np.rint(lengths), 1, self.cfg.max_response_tokens).astype(np.int64)

    def sampler(self, rng: np.random.Generator):
        """The `sample(prompt_keys, counts) -> (rewards, lengths)` callback of AEROStep.run (keys are prompt ids)."""

        def sample(keys: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            success, lengths = self.rollouts(np.repeat(keys.astype(np.int64), counts), rng)
            return success.astype(np.float64), lengths

        return sample

    def learn(self, prompt_ids: np.ndarray, signals: np.ndarray, noise_scale: np.ndarray, batch_size: int,
              rng: np.random.Generator) -> None:
        """Move trained prompts by their own signal plus its gradient noise, and every prompt by the shared
        transfer term."""
        noisy = np.asarray(signals, dtype=np.float64) + self.cfg.noise_sd * noise_scale * rng.standard_normal(
            np.size(signals))
        np.add.at(self.logits, np.asarray(prompt_ids, dtype=np.int64), self.cfg.learning_rate * noisy)
        self.logits += self.cfg.learning_rate * self.cfg.transfer * noisy.sum() / batch_size


class PromptStream:
    """The data loader: prompts in a fresh random order each epoch, handed out as many as asked for."""

    def __init__(self, prompts: int, rng: np.random.Generator):
        self.prompts = prompts
        self.rng = rng
        self.epoch = 0
        self._order = rng.permutation(prompts)
        self._next = 0

    def take(self, count: int) -> np.ndarray:
        """The next `count` prompt ids; crossing the end of an epoch reshuffles for the next."""
        taken = []
        while count > 0:
            if self._next == self.prompts:
                self._order = self.rng.permutation(self.prompts)
                self._next = 0
                self.epoch += 1
            chunk = self._order[self._next: self._next + count]
            taken.append(chunk)
            self._next += chunk.size
            count -= chunk.size
        return np.concatenate(taken) if taken else np.zeros(0, dtype=np.int64)
