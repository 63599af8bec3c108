"""SFT warm start for the CPU demo policy, and a batched KV-cache sampler that measures what it produced.

RL on a random 200k-parameter model gets no signal from a 0/1 reward (every group is all-wrong), and a fully
trained one gives mostly all-right groups. The warm start stops in between, when the training-loss EMA first
drops below a threshold: the loss sits on a plateau (~1.0) for a seed-dependent 800-2700 steps and then falls,
so a loss threshold lands every seed at a similar competence where a fixed step or time budget would not.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from aero_verl.demo.reward import is_correct
from aero_verl.cpu.sampling import BatchedSampler, SampleRequest, SamplingSettings, left_pad, positions_of
from aero_verl.demo.task import Problem, SuccessSpread, sample_training_problems

IGNORE_INDEX = -100
_SFT_DATA_STREAM = 2000  # numpy stream id for SFT batches, apart from task.py's split streams


@dataclass(frozen=True)
class WarmStartConfig:
    """SFT hyper-parameters. All but the threshold and cap come from the CPU probe (docs/cpu_task.md, "Warm
    start"): lr 1e-2 learns nothing, a cosine decay stalls on the plateau, so the lr is constant after warmup."""

    # Stop when the loss EMA falls below this. Measured over 5 seeds, held-out 0/8 | mixed | 8/8 shares
    # (the late-escaping seed in brackets): 0.35 gives 0.25-0.27 | 0.49-0.57 | 0.16-0.26 (0.35|0.59|0.06)
    # at 1.0k-2.9k steps; 0.30 gives 0.23-0.25 | 0.41-0.50 | 0.28-0.35 (0.22|0.68|0.10) at 95-330 more
    # steps; 0.40 leaves only 0.10-0.16 at 8/8.
    # The scratchpad format (recipe cpu_long) averages over ~40 target tokens, most of them predictable from
    # the ones before (layout, copied digits), so its loss has no long plateau and its EMA is far lower at
    # the same competence. Over seeds 0-2: 0.04 gives 0.22-0.24 | 0.52-0.55 | 0.21-0.26 at 480-630 steps;
    # 0.05 gives 0.24-0.32 | 0.49-0.57 | 0.18-0.19; 0.035 gives 0.17-0.25 | 0.47-0.50 | 0.26-0.36.
    loss_threshold: float = 0.35
    learning_rate: float = 3e-3
    betas: tuple[float, float] = (0.9, 0.98)
    warmup_steps: int = 50
    sft_batch_size: int = 64
    grad_clip_norm: float = 1.0
    ema_decay: float = 0.95
    check_from_step: int = 100  # the EMA starts at the first loss; give it time to mean something
    # Safety cap. Runs stop on the threshold at 1.0k-2.9k steps (the plateau's length depends on the seed);
    # 4000 leaves room for a late escape while bounding a stuck run to ~3 min on 2 idle cores.
    max_sft_steps: int = 4000
    # L1 (single-digit facts) is weighted double: it shortens the plateau (probe §5, rows 6 and 11)
    sft_level_weights: tuple[float, ...] = (2.0, 1.0, 1.0, 1.0, 1.0)


@dataclass(frozen=True)
class SamplingConfig:
    """How the success spread is measured: `samples_per_prompt` T=1 samples per prompt, no top-k/top-p,
    matching the GRPO group size the demo trains with."""

    samples_per_prompt: int = 8
    temperature: float = 1.0
    # Answer format: longest answer (4 digits) + eos + 1 spare. Scratchpads: the RL response budget, so the
    # measured lengths are the ones rollouts will have. No eos by then counts as wrong.
    max_new_tokens: int = 6
    # bounds the KV cache: 1024 rows need a few MB in the answer format, ~150 MB at a 128-token scratchpad budget
    max_batch_sequences: int = 1024


@dataclass(frozen=True)
class WarmStartResult:
    steps: int
    seconds: float
    loss_ema: float
    reached_threshold: bool


@contextlib.contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Run with `count` intra-op threads and restore the caller's setting afterwards."""
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def available_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def resolve_threads(threads: int | str | None) -> int:
    """None means every core this process may use: fastest on an idle machine (about 1.5x one thread on 2
    cores). On a busy one pass 1: torch's OpenMP threads spin-wait for each other and collapse under
    oversubscription (measured on this 2-core box with other jobs running: 124 ms per SFT step with 1
    thread, 1930 ms with 2). "auto" chooses by the machine's load: every core while the 1-minute load
    average leaves more than one of them free, else 1. Results are bitwise identical for any thread count,
    so it is a run-time choice, not part of the cache key."""
    if threads == "auto":
        cores = available_cores()
        return cores if os.getloadavg()[0] < cores - 1 + 0.5 else 1
    return available_cores() if threads is None else int(threads)


def encode_prompts(tokenizer, problems: Sequence[Problem]) -> list[list[int]]:
    """Prompt ids exactly as verl builds them: the chat template with the generation prompt."""
    conversations = [problem.messages() for problem in problems]
    texts = tokenizer.apply_chat_template(conversations, add_generation_prompt=True, tokenize=False)
    return tokenizer(texts, add_special_tokens=False)["input_ids"]


def encode_targets(tokenizer, problems: Sequence[Problem], response_format: str = "answer") -> list[list[int]]:
    """Response ids followed by eos: the model must learn to stop, or the reward counts the answer wrong."""
    texts = [problem.response(response_format) for problem in problems]
    return [ids + [tokenizer.eos_token_id] for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]


def sft_batch(prompts: Sequence[list[int]], targets: Sequence[list[int]], pad_id: int) -> dict[str, torch.Tensor]:
    """Left-padded prompts then right-padded targets; labels only on the targets (prompt-masked loss)."""
    prompt_ids, prompt_mask, _ = left_pad(list(prompts), pad_id)
    target_width = max(len(target) for target in targets)
    target_ids = torch.full((len(targets), target_width), pad_id, dtype=torch.long)
    target_labels = torch.full((len(targets), target_width), IGNORE_INDEX, dtype=torch.long)
    for i, target in enumerate(targets):
        target_ids[i, : len(target)] = torch.tensor(target, dtype=torch.long)
        target_labels[i, : len(target)] = target_ids[i, : len(target)]
    attention_mask = torch.cat([prompt_mask, (target_labels != IGNORE_INDEX).long()], dim=1)
    return {
        "input_ids": torch.cat([prompt_ids, target_ids], dim=1),
        "attention_mask": attention_mask,
        "position_ids": positions_of(attention_mask),
        "labels": torch.cat([torch.full_like(prompt_ids, IGNORE_INDEX), target_labels], dim=1),
    }


def masked_next_token_loss(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean cross-entropy over the labelled (answer and eos) tokens."""
    logits = model(
        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], position_ids=batch["position_ids"]
    ).logits
    return F.cross_entropy(
        logits[:, :-1].reshape(-1, logits.shape[-1]), batch["labels"][:, 1:].reshape(-1), ignore_index=IGNORE_INDEX
    )


class WarmStartTrainer:
    """Stateful SFT loop, so a run can be continued to a lower threshold (that is how thresholds were
    compared: one trajectory per seed, measured at each threshold it crosses)."""

    def __init__(
        self,
        model,
        tokenizer,
        config: WarmStartConfig,
        seed: int,
        excluded_questions: set[str],
        response_format: str = "answer",
    ):
        self.model, self.tokenizer, self.config = model, tokenizer, config
        self.excluded_questions = excluded_questions
        self.response_format = response_format
        self.data_rng = np.random.default_rng([seed, _SFT_DATA_STREAM])
        self.optimizer = torch.optim.AdamW(
            model.parameters(), lr=config.learning_rate, betas=config.betas, weight_decay=0.0
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: min(1.0, (step + 1) / config.warmup_steps)
        )
        self.steps_done = 0
        self.loss_ema: float | None = None
        self.seconds = 0.0

    def train_step(self) -> float:
        problems = sample_training_problems(
            self.data_rng, self.config.sft_batch_size, self.config.sft_level_weights, self.excluded_questions
        )
        batch = sft_batch(
            encode_prompts(self.tokenizer, problems),
            encode_targets(self.tokenizer, problems, self.response_format),
            self.tokenizer.pad_token_id,
        )
        loss = masked_next_token_loss(self.model, batch)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.steps_done += 1
        value = loss.item()
        decay = self.config.ema_decay
        self.loss_ema = value if self.loss_ema is None else decay * self.loss_ema + (1 - decay) * value
        return value

    def reached(self, loss_threshold: float) -> bool:
        if self.loss_ema is None or self.steps_done < self.config.check_from_step:
            return False
        return self.loss_ema < loss_threshold

    def run(
        self, loss_threshold: float | None = None, progress: bool = True, threads: int | None = None
    ) -> WarmStartResult:
        """Train until the loss EMA is below `loss_threshold` (default: the config's) or the step cap."""
        threshold = self.config.loss_threshold if loss_threshold is None else loss_threshold
        self.model.train()
        bar = tqdm(
            total=self.config.max_sft_steps,
            initial=self.steps_done,
            desc=f"SFT warm start (stops at loss EMA < {threshold})",
            disable=not progress,
        )
        started = time.perf_counter()
        with torch_threads(resolve_threads(threads)), bar:
            while self.steps_done < self.config.max_sft_steps and not self.reached(threshold):
                self.train_step()
                bar.update(1)
                if self.steps_done % 20 == 0:
                    bar.set_postfix(loss_ema=f"{self.loss_ema:.3f}")
        self.seconds += time.perf_counter() - started
        self.model.eval()
        return WarmStartResult(self.steps_done, self.seconds, self.loss_ema, self.reached(threshold))


@torch.no_grad()
def sample_responses(
    model, prompts: Sequence[list[int]], config: SamplingConfig, eos_id: int, pad_id: int, generator: torch.Generator
) -> list[list[int]]:
    """One sampled response per prompt row, as ids up to and including eos (if it came in time).

    The rollout server's batched KV-cache sampler, with one seed per row drawn from `generator`."""
    settings = SamplingSettings(temperature=config.temperature, top_p=1.0, top_k=-1,
                                max_tokens=config.max_new_tokens, want_logprobs=False)
    seeds = torch.randint(0, 2**62, (len(prompts),), generator=generator).tolist()
    sampler = BatchedSampler(model, {eos_id}, pad_id, logprobs_mode="processed_logprobs", ignore_eos=False)
    results = sampler.sample([SampleRequest(list(prompt), settings, seed) for prompt, seed in zip(prompts, seeds)])
    return [result.token_ids for result in results]


def response_is_correct(tokenizer, response_ids: list[int], answer: int, response_format: str = "answer") -> bool:
    """The probe's rule: correct only if eos came within the budget and the text before it is graded right."""
    if not response_ids or response_ids[-1] != tokenizer.eos_token_id:
        return False
    return is_correct(tokenizer.decode(response_ids[:-1]), answer, response_format)


def measure_spread(
    model,
    tokenizer,
    problems: Sequence[Problem],
    config: SamplingConfig = SamplingConfig(),
    seed: int = 0,
    threads: int | None = None,
    response_format: str = "answer",
) -> SuccessSpread:
    """Sample `samples_per_prompt` responses for every problem; histogram the successes per prompt and
    record the lengths of correct and incorrect samples."""
    n = config.samples_per_prompt
    prompt_rows = [ids for ids in encode_prompts(tokenizer, problems) for _ in range(n)]
    generator = torch.Generator().manual_seed(seed)
    model.eval()
    responses: list[list[int]] = []
    with torch_threads(resolve_threads(threads)):
        for start in range(0, len(prompt_rows), config.max_batch_sequences):
            chunk = prompt_rows[start : start + config.max_batch_sequences]
            responses += sample_responses(
                model, chunk, config, tokenizer.eos_token_id, tokenizer.pad_token_id, generator
            )
    answers = [problem.answer for problem in problems for _ in range(n)]
    correct = [response_is_correct(tokenizer, ids, answer, response_format) for ids, answer in zip(responses, answers)]
    truncated = [not ids or ids[-1] != tokenizer.eos_token_id for ids in responses]
    return SuccessSpread.from_samples(
        [problem.level.name for problem in problems],
        np.reshape(correct, (len(problems), n)),
        np.reshape([len(ids) for ids in responses], (len(problems), n)),
        np.reshape(truncated, (len(problems), n)),
    )
