"""`hf` rollout for verl 0.9.1: a plain-transformers, token-in/token-out sampling server for CPU.

verl's trainer always generates through rollout servers: `LLMServerManager` builds one
`RolloutReplica` per group of training ranks, each replica launches a server actor, and the agent loop
sends it one `generate(prompt_ids, sampling_params, ...)` call per rollout. Three pieces plug in:

* `HFRolloutServer`, the Ray actor. Concurrent `generate` calls are queued and sampled together
  (`aero_verl.cpu.sampling.BatchedSampler`: left padding, KV cache, per-row sampling settings and stopping).
  Like vLLM, it answers each request as soon as its row finishes and can abort one request by its id.
* `HFReplica(RolloutReplica)` launches that actor (no GPU, no CPU reservation).
* `HFServerAdapter(BaseRollout)` lives in the FSDP training worker and pushes the trained weights
  to the server after every step.

`aero_verl.cpu.activate()` registers the replica and the adapter with verl under the name `hf`.

Sampling is reproducible per request: each request draws from its own generator, seeded from the
rollout seed, the server's weight version (`global_steps`), the prompt and how many times that prompt
was already requested at this version. The same weights, step and prompts therefore give the same
samples whatever the arrival order or batching, which is what lets a run resumed from a checkpoint
repeat an uninterrupted one. (The replica rank is mixed in too, so two replicas never draw the same
samples for copies of one prompt; with several replicas, reproducibility then also needs
deterministic request routing, e.g. `rollout.full_determinism=True`.)
"""

import asyncio
import hashlib
import os
from typing import Any, NamedTuple

import numpy as np
import ray
import torch
from torch.distributed.tensor import DTensor
from verl.utils.fs import copy_to_local
from verl.workers.config import RolloutConfig
from verl.workers.rollout.base import BaseRollout
from verl.workers.rollout.replica import RolloutMode, RolloutReplica, TokenOutput
from verl.workers.rollout.utils import ensure_async_iterator

from aero_verl.cpu import ROLLOUT_NAME
from aero_verl.cpu.sampling import BatchedSampler, SampleRequest, SampleResult, SamplingSettings

SUPPORTED_SAMPLING_KEYS = {
    "temperature",
    "top_p",
    "top_k",
    "logprobs",
    "repetition_penalty",
    "max_tokens",
    "max_new_tokens",
}
DEFAULT_MAX_BATCH_WAIT_S = 0.05  # measured: at 0.01 the first of 32 concurrent requests was often sampled alone
DEFAULT_NUM_THREADS = 1


# ---------------------------------------------------------------------------------------------------
# Requests and their seeds
# ---------------------------------------------------------------------------------------------------


class PendingRequest(NamedTuple):
    request_id: str
    prompt_ids: list[int]
    settings: SamplingSettings
    future: asyncio.Future


def parse_sampling_params(
    sampling_params: dict, config: RolloutConfig, prompt_len: int, max_model_len: int
) -> SamplingSettings:
    """Turn one request's sampling params into `SamplingSettings`, with vLLM's max_tokens rules."""
    unsupported = set(sampling_params) - SUPPORTED_SAMPLING_KEYS
    if unsupported:
        raise NotImplementedError(f"hf rollout does not support sampling params {sorted(unsupported)}")
    if float(sampling_params.get("repetition_penalty", 1.0)) != 1.0:
        raise NotImplementedError("hf rollout does not support repetition_penalty != 1.0")
    requested = sampling_params.get("max_tokens", sampling_params.get("max_new_tokens"))
    if requested is None:
        requested = min(config.response_length, config.prompt_length + config.response_length - prompt_len)
    room = max_model_len - prompt_len
    if room < 1:
        raise ValueError(f"prompt of {prompt_len} tokens leaves no room within max_model_len={max_model_len}")
    return SamplingSettings(
        temperature=float(sampling_params.get("temperature", 1.0)),
        top_p=float(sampling_params.get("top_p", 1.0)),
        top_k=int(sampling_params.get("top_k", -1)),
        max_tokens=max(1, min(int(requested), room)),
        want_logprobs=bool(sampling_params.get("logprobs", False)),
    )


def _digest(*parts) -> bytes:
    return hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()


class RequestSeeder:
    """Seeds that depend on what is asked, never on when: arrival order and batching do not matter.

    Identical requests at one weight version get occurrence numbers 0, 1, 2, ...; whichever
    arrives first takes 0, so the *multiset* of seeds (hence of samples) for a prompt is fixed.
    Counters restart whenever the weight version changes, so a resumed run, which starts counting
    at its restored step, lines up with an uninterrupted one.
    """

    def __init__(self, rollout_seed: int, replica_rank: int):
        self._rollout_seed = rollout_seed
        self._replica_rank = replica_rank
        self._global_steps: int | None = None
        self._occurrences: dict[tuple, int] = {}

    def start_version(self, global_steps: int) -> None:
        if global_steps != self._global_steps:
            self._global_steps = global_steps
            self._occurrences.clear()

    def next_seed(self, prompt_ids: list[int], settings: SamplingSettings) -> int:
        prompt_hash = hashlib.blake2b(np.asarray(prompt_ids, dtype=np.int64).tobytes(), digest_size=8).digest()
        key = (prompt_hash, settings.distribution_key)
        occurrence = self._occurrences.get(key, 0)
        self._occurrences[key] = occurrence + 1
        seed = _digest(self._rollout_seed, self._replica_rank, self._global_steps, *key, occurrence)
        return int.from_bytes(seed, "little") >> 1  # torch seeds must fit in a signed 64-bit int


# ---------------------------------------------------------------------------------------------------
# The model (batched sampling itself is aero_verl.cpu.sampling)
# ---------------------------------------------------------------------------------------------------


def load_sampler(model_path: str, config: RolloutConfig, trust_remote_code: bool) -> BatchedSampler:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(
        model_path, dtype=torch.float32, attn_implementation="sdpa", trust_remote_code=trust_remote_code
    ).eval()
    eos = model.generation_config.eos_token_id
    eos_token_ids = set(eos if isinstance(eos, list) else [eos])
    pad = model.generation_config.pad_token_id
    pad_token_id = pad if isinstance(pad, int) else min(eos_token_ids)  # pads are masked; any id works
    return BatchedSampler(model, eos_token_ids, pad_token_id, config.logprobs_mode, config.ignore_eos)


# ---------------------------------------------------------------------------------------------------
# The server actor
# ---------------------------------------------------------------------------------------------------


def server_actor_name(replica_rank: int) -> str:
    return f"hf_rollout_server_{replica_rank}"


class HFRolloutServer:
    """Rollout server actor: queues concurrent `generate` calls and samples them in batches.

    Tunables live in `actor_rollout_ref.rollout.engine_kwargs.hf`: `max_batch_wait_s` (how long a
    batch waits for more requests once they stop arriving) and `num_threads` (torch threads).
    The batch size is capped by `rollout.max_num_seqs`.
    """

    def __init__(self, config: RolloutConfig, model_path: str, replica_rank: int, trust_remote_code: bool = False):
        self.config = config
        engine_kwargs = dict(config.engine_kwargs.get(ROLLOUT_NAME) or {})
        torch.set_num_threads(int(engine_kwargs.get("num_threads", DEFAULT_NUM_THREADS)))
        self._max_batch_wait_s = float(engine_kwargs.get("max_batch_wait_s", DEFAULT_MAX_BATCH_WAIT_S))
        self._sampler = load_sampler(model_path, config, trust_remote_code)
        model_limit = self._sampler.model.config.max_position_embeddings
        self._max_model_len = min(config.max_model_len or config.prompt_length + config.response_length, model_limit)
        self._seeder = RequestSeeder(config.seed, replica_rank)
        self._pending: list[PendingRequest] = []
        # The batch being sampled (a request's index there is its row) and the rows asked to stop.
        self._running: list[PendingRequest] = []
        self._stop_rows: set[int] = set()
        self._batcher: asyncio.Task | None = None
        # A weight load never overlaps a batch, so no sample mixes two weight versions.
        self._model_lock = asyncio.Lock()
        self.global_steps: int | None = None

    async def generate(
        self,
        prompt_ids: list[int],
        sampling_params: dict[str, Any],
        request_id: str,
        image_data: list[Any] | None = None,
        video_data: list[Any] | None = None,
        audio_data: list[Any] | None = None,
        mm_processor_kwargs: dict[str, Any] | None = None,
        priority: int = 0,
    ) -> TokenOutput:
        if image_data is not None or video_data is not None or audio_data is not None:
            raise NotImplementedError("hf rollout is text-only")
        prompt_ids = [int(token) for token in prompt_ids]
        settings = parse_sampling_params(sampling_params, self.config, len(prompt_ids), self._max_model_len)
        result, weights_version = await self._submit(request_id, prompt_ids, settings)
        return TokenOutput(
            token_ids=result.token_ids,
            log_probs=result.log_probs if settings.want_logprobs else None,
            stop_reason="aborted" if result.aborted else "completed",
            extra_fields={"global_steps": weights_version},
        )

    async def abort_request(self, request_id: str, reset_prefix_cache: bool = True) -> dict:
        """Stop one request, with vLLM's contract (verl/workers/rollout/vllm_rollout/vllm_async_server.py,
        `abort_request`): `aborted` is True when the request was still queued or running.

        A queued request leaves the queue and is answered at once with no tokens; a running one ends at
        its next token step with the tokens it has, and this call returns once it has, so `aborted` is
        never True for a request that finished first. Either way its stop_reason is "aborted". Every
        request under the id is stopped (verl's LLMServerClient sends a fresh uuid per call,
        `_vllm_request_id` in verl/workers/rollout/llm_server.py, so that is one). There is no prefix
        cache, so `reset_prefix_cache` changes nothing.
        """
        queued = [request for request in self._pending if request.request_id == request_id]
        if queued:
            self._pending = [request for request in self._pending if request.request_id != request_id]
            for request in queued:
                self._answer(request, SampleResult(token_ids=[], log_probs=[], aborted=True), self.global_steps)
            return {"aborted": True, "request_id": request_id}
        running = {
            row: request.future
            for row, request in enumerate(self._running)
            if request.request_id == request_id and not request.future.done()
        }
        if not running:
            return {"aborted": False, "request_id": request_id}
        self._stop_rows.update(running)  # read by the sampling thread before each token step
        futures = list(running.values())
        await asyncio.wait(futures)
        aborted = any(not f.cancelled() and f.exception() is None and f.result()[0].aborted for f in futures)
        return {"aborted": aborted, "request_id": request_id}

    async def load_weights(self, state_dict: dict[str, torch.Tensor], global_steps: int | None = None) -> None:
        async with self._model_lock:
            self._sampler.model.load_state_dict(state_dict, strict=True)
            # A sync without a step (verl re-syncs unchanged weights around a colocated reward model)
            # keeps the current version, so it cannot disturb the seeds.
            if global_steps is not None:
                self.global_steps = global_steps
                self._seeder.start_version(global_steps)

    async def _submit(
        self, request_id: str, prompt_ids: list[int], settings: SamplingSettings
    ) -> tuple[SampleResult, int | None]:
        future = asyncio.get_running_loop().create_future()
        self._pending.append(PendingRequest(request_id, prompt_ids, settings, future))
        if self._batcher is None or self._batcher.done():
            self._batcher = asyncio.create_task(self._serve_batches())
        return await future

    async def _serve_batches(self) -> None:
        while self._pending:
            await self._let_requests_gather()
            await self._run_batch()

    async def _let_requests_gather(self) -> None:
        # verl's agent loop fires its requests concurrently, but each first goes through the load
        # balancer actor, so they trickle in over a few milliseconds.
        seen = -1
        while seen != len(self._pending) and len(self._pending) < self.config.max_num_seqs:
            seen = len(self._pending)
            await asyncio.sleep(self._max_batch_wait_s)

    async def _run_batch(self) -> None:
        async with self._model_lock:
            # The batch is taken under the lock, so a request stays queued (abortable without having drawn
            # a seed) until sampling starts, and seeds, weights and reported version always agree.
            batch = self._pending[: self.config.max_num_seqs]
            self._pending = self._pending[self.config.max_num_seqs :]
            if not batch:
                return  # every request gathered was aborted
            try:
                await self._sample(batch)
            except Exception as error:
                for request in batch:
                    if not request.future.done():
                        request.future.set_exception(error)
            finally:
                self._running = []

    async def _sample(self, batch: list[PendingRequest]) -> None:
        weights_version = self.global_steps
        requests = [
            SampleRequest(r.prompt_ids, r.settings, self._seeder.next_seed(r.prompt_ids, r.settings)) for r in batch
        ]
        self._running, self._stop_rows = batch, set()
        loop = asyncio.get_running_loop()

        def answer_from_sampling_thread(row: int, result: SampleResult) -> None:
            loop.call_soon_threadsafe(self._answer, batch[row], result, weights_version)

        # In a thread so the actor keeps accepting requests (for the next batch) and aborts meanwhile. Rows
        # are answered as they finish: their callbacks reach the loop before the thread's own return does.
        await asyncio.to_thread(
            self._sampler.sample, requests, answer_from_sampling_thread, self._stop_rows.__contains__
        )

    @staticmethod
    def _answer(request: PendingRequest, result: SampleResult, weights_version: int | None) -> None:
        if not request.future.done():  # its generate call may have been cancelled
            request.future.set_result((result, weights_version))

    # Lifecycle calls from RolloutReplica / CheckpointEngineManager (verl/workers/rollout/replica.py,
    # verl/checkpoint_engine/base.py). On CPU nothing is offloaded and no cache outlives a batch.

    async def wake_up(self, tags: list[str] | None = None) -> None:
        """Weights and buffers never leave memory."""

    async def sleep(self) -> None:
        """Nothing to free: the model stays in CPU memory."""

    async def clear_kv_cache(self) -> None:
        """The KV cache lives only for the duration of one batch."""

    async def release_kv_cache(self) -> None:
        """The KV cache lives only for the duration of one batch."""

    async def resume_kv_cache(self) -> None:
        """The KV cache lives only for the duration of one batch."""

    async def abort_all_requests(self, reset_prefix_cache: bool = True, reject_request: bool = False) -> dict:
        # Requests are never cut short here: a weight load waits for the running batch instead. verl
        # aborts all requests around a weight sync (checkpoint_engine/base.py, update_weights; the async
        # v1 trainers) for partial rollouts, which FullyAsyncLLMServerClient resumes as prompt + partial
        # tokens after resume_generation: on this server that continuation would draw a fresh seed, so
        # samples would depend on when the sync came, and the plain LLMServerClient would train on the
        # cut rollout as it is. Single requests are stopped with abort_request.
        return {"aborted_count": 0, "request_ids": []}

    async def resume_generation(self) -> None:
        """Generation is never paused (see abort_all_requests)."""

    async def start_profile(self, **kwargs) -> None:
        """No profiler integration."""

    async def stop_profile(self) -> None:
        """No profiler integration."""


# ---------------------------------------------------------------------------------------------------
# verl-side pieces: the replica (driver side) and the adapter (training-worker side)
# ---------------------------------------------------------------------------------------------------


class HFReplica(RolloutReplica):
    """One `HFRolloutServer` per replica, colocated with the training ranks (hybrid mode only)."""

    async def launch_servers(self) -> None:
        if self.rollout_mode != RolloutMode.HYBRID:
            raise NotImplementedError(f"hf rollout supports hybrid mode only, got {self.rollout_mode}")
        name = server_actor_name(self.replica_rank)
        server = (
            ray.remote(HFRolloutServer)
            .options(name=name, num_cpus=0, num_gpus=0, max_concurrency=self.max_concurrency)
            .remote(
                config=self.config,
                model_path=copy_to_local(self.model_config.path),
                replica_rank=self.replica_rank,
                trust_remote_code=bool(self.model_config.get("trust_remote_code", False)),
            )
        )
        self.servers = [server]
        self._server_handle = server
        self._server_address = name  # the load balancer's key; there is no HTTP endpoint


class HFServerAdapter(BaseRollout):
    """Built by verl's hybrid training worker; sends the actor's weights to its replica's server."""

    def __init__(self, config, model_config, device_mesh, *args, **kwargs):
        super().__init__(config, model_config, device_mesh)
        rollout_world_size = (
            self.config.tensor_model_parallel_size
            * self.config.data_parallel_size
            * self.config.pipeline_model_parallel_size
        )
        rank = int(os.environ.get("RANK", "0"))
        self.replica_rank = rank // rollout_world_size
        self.is_leader_rank = rank % rollout_world_size == 0

    async def resume(self, tags: list[str]) -> None:
        """Weights and cache never leave CPU memory."""

    async def release(self) -> None:
        """Weights and cache never leave CPU memory."""

    async def update_weights(
        self, weights, wire_format: str = "named_tensors", global_steps: int | None = None, **kwargs
    ) -> None:
        if wire_format != "named_tensors":
            raise NotImplementedError(f"hf rollout takes wire_format='named_tensors' only, got {wire_format!r}")
        if kwargs.get("peft_config") is not None:
            raise NotImplementedError("hf rollout cannot load LoRA adapters; set model.lora.merge=True")
        state_dict = {}
        # Every rank drains the generator: the FSDP engine all-gathers each tensor while yielding it.
        async for name, tensor in ensure_async_iterator(weights):
            if isinstance(tensor, DTensor):
                tensor = tensor.full_tensor()
            if self.is_leader_rank:
                state_dict[name] = tensor.detach().to("cpu", torch.float32)
        if self.is_leader_rank:
            server = ray.get_actor(server_actor_name(self.replica_rank))
            await server.load_weights.remote(state_dict, global_steps)
