"""Batched token-by-token sampling with a KV cache, for small models on CPU (torch only).

Used by the `hf` rollout server (aero_verl.cpu.rollout) and by the CPU demo's warm start to measure the
success spread it produced. Each request carries its own settings (temperature, top-k, top-p, max
tokens) and its own seed: every row draws its uniforms from its own generator, so a request's sample
does not depend on what else is in the batch. (Up to float rounding: the batch's longest prompt sets the
left-padding width, which can move a row's log-probs by an ulp, and so can a batch of under 4 rows, see below.)

Rows leave the batch (and its KV cache) as they finish, so a batch costs the tokens still being
generated rather than batch size x longest row; each finished row is handed to a callback at once, and
a row can be stopped between two token steps (the server's per-request results and `abort_request`).
Dropping rows leaves every other row's numbers unchanged bit for bit, except for one thing this module
works around: MKL's sgemm computes a row with other kernels when a matmul has fewer than 4 rows (gemv
for 1, a small-M kernel for 2-3). Measured with one torch thread on AVX-512, for the Linear shapes of
the demo model and of Qwen2-0.5B: from 4 rows on, a row's result depends neither on the row count nor
on its position. So the decode batch never shrinks below `MIN_DECODE_ROWS`: finished rows fill it.
"""

from collections.abc import Callable
from dataclasses import dataclass

import torch

GREEDY_TEMPERATURE = 1e-5  # vLLM's threshold: below it, sampling is greedy
LOGPROBS_MODES = ("processed_logprobs", "raw_logprobs")
MIN_DECODE_ROWS = 4  # fewer rows in a matmul change MKL's kernel, hence a row's bits (module docstring)


@dataclass(frozen=True)
class SamplingSettings:
    temperature: float
    top_p: float
    top_k: int
    max_tokens: int
    want_logprobs: bool

    @property
    def greedy(self) -> bool:
        return self.temperature < GREEDY_TEMPERATURE

    @property
    def distribution_key(self) -> tuple:
        """What defines the sampling distribution (max_tokens only truncates it)."""
        return (self.temperature, self.top_p, self.top_k)


@dataclass(frozen=True)
class SampleRequest:
    prompt_ids: list[int]
    settings: SamplingSettings
    seed: int


@dataclass
class SampleResult:
    token_ids: list[int]
    log_probs: list[float]
    aborted: bool = False  # stopped on request before eos or max_tokens


RowFinished = Callable[[int, SampleResult], None]  # (request index, its final result)
StopRequested = Callable[[int], bool]  # request index -> stop it before its next token


class TokenPicker:
    """Chooses each row's next token under that row's own settings and random generator."""

    def __init__(self, requests: list[SampleRequest], vocab_size: int, logprobs_mode: str):
        settings = [request.settings for request in requests]
        self._greedy = torch.tensor([s.greedy for s in settings])
        self._temperature = torch.tensor([1.0 if s.greedy else s.temperature for s in settings])
        # Rows without a filter get bounds that never bite (k = vocab, p above any cumulative sum).
        self._top_k = torch.tensor(
            [s.top_k if 0 < s.top_k < vocab_size and not s.greedy else vocab_size for s in settings]
        )
        self._top_p = torch.tensor([s.top_p if s.top_p < 1.0 and not s.greedy else 2.0 for s in settings])
        self._needs_filter = bool((self._top_k < vocab_size).any() or (self._top_p < 1.0).any())
        self._generators = [torch.Generator().manual_seed(request.seed) for request in requests]
        self._report_raw = logprobs_mode == "raw_logprobs"

    def pick(
        self, logits: torch.Tensor, requests: torch.Tensor, live: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Next token and its log-prob for every batch row, under the settings of the request it samples
        for (`requests`); only live sampling rows consume randomness."""
        scaled = logits / self._temperature[requests][:, None]
        log_probs = torch.log_softmax(self._filter(scaled, requests), dim=-1)
        tokens = logits.argmax(dim=-1)
        sampling_rows = (live & ~self._greedy[requests]).nonzero().flatten()
        if len(sampling_rows):
            tokens[sampling_rows] = self._draw(log_probs[sampling_rows], requests[sampling_rows])
        reported = torch.log_softmax(logits, dim=-1) if self._report_raw else log_probs
        return tokens, reported.gather(1, tokens[:, None]).squeeze(1)

    def _draw(self, log_probs: torch.Tensor, requests: torch.Tensor) -> torch.Tensor:
        # Inverse-CDF sampling: one uniform per row and token, from its request's generator only.
        uniforms = torch.stack([torch.rand((), generator=self._generators[r]) for r in requests.tolist()])
        cdf = log_probs.exp().cumsum(dim=-1)
        # right=True skips zero-probability (filtered) tokens even when the uniform is exactly 0.
        picked = torch.searchsorted(cdf, (uniforms * cdf[:, -1])[:, None], right=True).squeeze(1)
        return picked.clamp(max=cdf.size(-1) - 1)

    def _filter(self, scaled: torch.Tensor, requests: torch.Tensor) -> torch.Tensor:
        """Top-k, then top-p (vLLM's order); filtered-out tokens get -inf."""
        if not self._needs_filter:
            return scaled
        sorted_logits, order = scaled.sort(dim=-1, descending=True, stable=True)
        ranks = torch.arange(scaled.size(-1))
        drop = ranks[None, :] >= self._top_k[requests][:, None]
        probs = sorted_logits.masked_fill(drop, float("-inf")).softmax(dim=-1)
        drop |= probs.cumsum(dim=-1) - probs > self._top_p[requests][:, None]
        drop[:, 0] = False  # the most likely token always survives
        return torch.full_like(scaled, float("-inf")).scatter(-1, order, sorted_logits.masked_fill(drop, float("-inf")))


def positions_of(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position ids that skip padding: left padding shifts tokens right, RoPE must not see it."""
    return (attention_mask.cumsum(dim=-1) - 1).clamp(min=0)


def left_pad(prompts: list[list[int]], pad_token_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """input_ids, attention_mask and position_ids of left-padded prompts (positions start at 0 per row)."""
    width = max(len(prompt) for prompt in prompts)
    input_ids = torch.full((len(prompts), width), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, prompt in enumerate(prompts):
        input_ids[row, width - len(prompt) :] = torch.tensor(prompt, dtype=torch.long)
        attention_mask[row, width - len(prompt) :] = 1
    return input_ids, attention_mask, positions_of(attention_mask)


class BatchedSampler:
    """Samples many requests in one batch with a KV cache; each row stops at its own eos/max_tokens and
    then leaves the batch (module docstring)."""

    def __init__(self, model, eos_token_ids: set[int], pad_token_id: int, logprobs_mode: str, ignore_eos: bool):
        if logprobs_mode not in LOGPROBS_MODES:
            raise ValueError(f"hf rollout supports logprobs_mode in {LOGPROBS_MODES}, got {logprobs_mode!r}")
        self.model = model
        self._eos = torch.tensor(sorted(eos_token_ids), dtype=torch.long)
        self._pad_token_id = pad_token_id
        self._logprobs_mode = logprobs_mode
        self._ignore_eos = ignore_eos

    @torch.no_grad()
    def sample(
        self,
        requests: list[SampleRequest],
        on_finished: RowFinished | None = None,
        stop_requested: StopRequested | None = None,
    ) -> list[SampleResult]:
        """Sample every request; `on_finished` gets each row the moment it ends (called from this thread),
        and a request for which `stop_requested` turns true ends, aborted, before its next token."""
        input_ids, attention_mask, position_ids = left_pad([r.prompt_ids for r in requests], self._pad_token_id)
        picker = TokenPicker(requests, self.model.config.vocab_size, self._logprobs_mode)
        max_tokens = [r.settings.max_tokens for r in requests]
        results = [SampleResult(token_ids=[], log_probs=[]) for _ in requests]
        # Per batch row: the request it samples for, and whether it still does (else it only fills the batch).
        batch_requests = torch.arange(len(requests))
        live = torch.ones(len(requests), dtype=torch.bool)
        output = self._forward(input_ids, attention_mask, position_ids, past_key_values=None)
        next_positions = position_ids[:, -1:] + 1
        while True:
            tokens, log_probs = picker.pick(output.logits[:, -1, :].float(), batch_requests, live)
            token_list, log_prob_list, eos_list = tokens.tolist(), log_probs.tolist(), self._is_eos(tokens).tolist()
            row_requests = batch_requests.tolist()
            for row in live.nonzero().flatten().tolist():
                request = row_requests[row]
                result = results[request]
                if stop_requested is not None and stop_requested(request):
                    result.aborted = True  # this step's token is dropped: the row ends with what it had
                else:
                    result.token_ids.append(token_list[row])
                    result.log_probs.append(log_prob_list[row])
                    if len(result.token_ids) < max_tokens[request] and not eos_list[row]:
                        continue
                live[row] = False
                if on_finished is not None:
                    on_finished(request, result)
            if not live.any():
                return results
            kept = self._rows_to_keep(live)
            if kept is not None:
                output.past_key_values.batch_select_indices(kept)
                tokens, attention_mask, next_positions = tokens[kept], attention_mask[kept], next_positions[kept]
                batch_requests, live = batch_requests[kept], live[kept]
            attention_mask = torch.cat([attention_mask, torch.ones_like(attention_mask[:, :1])], dim=-1)
            output = self._forward(tokens[:, None], attention_mask, next_positions, output.past_key_values)
            next_positions = next_positions + 1

    @staticmethod
    def _rows_to_keep(live: torch.Tensor) -> torch.Tensor | None:
        """Batch rows for the next step: the live ones, topped up with finished ones to MIN_DECODE_ROWS
        (in batch order); None when no row can go."""
        live_count = int(live.sum())
        if len(live) <= max(live_count, MIN_DECODE_ROWS):
            return None
        fillers = (~live).nonzero().flatten()[: max(MIN_DECODE_ROWS - live_count, 0)]
        return torch.cat([live.nonzero().flatten(), fillers]).sort().values

    def _forward(self, input_ids, attention_mask, position_ids, past_key_values):
        return self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            past_key_values=past_key_values,
            use_cache=True,
            logits_to_keep=1,
        )

    def _is_eos(self, tokens: torch.Tensor) -> torch.Tensor:
        if self._ignore_eos:
            return torch.zeros_like(tokens, dtype=torch.bool)
        return torch.isin(tokens, self._eos)
