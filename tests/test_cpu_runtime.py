"""CPU runtime (aero_verl.cpu): platform selection, registry wiring, and the `hf` rollout's batched sampler.

The sampler tests run the server class in-process (no Ray) on a tiny random Qwen2 built in a temp dir.
"""

import asyncio
import os
import random
import subprocess
import sys
import textwrap

import pytest
import torch
from verl.plugin.platform import PlatformRegistry
from verl.plugin.platform.platform_manager import _detect_platform_name
from verl.workers.config import RolloutConfig

from aero_verl.cpu import activate
from aero_verl.cpu.platform import PlatformCPU
from aero_verl.cpu.rollout import HFRolloutServer, HFServerAdapter, load_sampler, parse_sampling_params
from aero_verl.demo.model import build_model, build_tokenizer
from aero_verl.cpu.sampling import BatchedSampler, SampleRequest, SamplingSettings

PROMPT_LENGTH, RESPONSE_LENGTH = 32, 12
SAMPLING = {"temperature": 1.0, "top_p": 0.95, "top_k": 50, "logprobs": True}


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """The rollout server runs with one thread (two are many times slower on a busy 2-core box)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("tiny_qwen2")
    build_tokenizer(path)
    build_model(path, seed=0)
    return str(path)


@pytest.fixture(scope="module")
def sampler(model_dir) -> BatchedSampler:
    return load_sampler(model_dir, rollout_config(), trust_remote_code=False)


def rollout_config(**overrides) -> RolloutConfig:
    return RolloutConfig(name="hf", prompt_length=PROMPT_LENGTH, response_length=RESPONSE_LENGTH, **overrides)


def random_prompts(count: int, seed: int = 0) -> list[list[int]]:
    rng = random.Random(seed)
    return [[rng.randrange(5, 261) for _ in range(rng.randint(3, 20))] for _ in range(count)]


def settings(temperature=1.0, top_p=1.0, top_k=-1, max_tokens=RESPONSE_LENGTH) -> SamplingSettings:
    return SamplingSettings(temperature, top_p, top_k, max_tokens, want_logprobs=True)


# ---------------------------------------------------------------------------------------------------
# Platform and registries
# ---------------------------------------------------------------------------------------------------


def test_cpu_platform_is_selected_only_by_verl_platform_env(monkeypatch):
    activate()
    assert PlatformRegistry.get("cpu") is PlatformCPU
    monkeypatch.delenv("VERL_PLATFORM", raising=False)
    assert not PlatformCPU().is_platform_available(use_smi_check=True)
    assert _detect_platform_name() != "cpu"
    monkeypatch.setenv("VERL_PLATFORM", "cpu")
    assert PlatformCPU().is_platform_available(use_smi_check=True)
    assert _detect_platform_name() == "cpu"


def test_device_module_answers_the_cuda_memory_calls_verl_makes():
    device = PlatformCPU().device_module
    assert device.max_memory_allocated() > 0 and device.memory_allocated() > 0
    available, total = device.mem_get_info()
    assert 0 < available <= total
    assert device.get_device_name() == "CPU"
    device.empty_cache()
    device.synchronize()  # falls through to torch.cpu
    assert torch.equal(device.get_rng_state(), torch.get_rng_state())


_WIRING_PROBE = textwrap.dedent(
    """
    import os, sys
    if sys.argv[1] == "activate-then-import-rollout-first":
        # The Ray rollout-server process imports aero_verl.cpu.rollout before anything else of verl's
        # rollout package, so activate()'s lazy registration must not recurse into it.
        from aero_verl.cpu import activate
        activate()
        import aero_verl.cpu.rollout
    import verl  # with VERL_USE_EXTERNAL_PLUGINS unset, this loads the verl.plugins entry point
    from verl.plugin.platform import get_platform
    from verl.workers.rollout.base import _ROLLOUT_REGISTRY, get_rollout_class
    from verl.workers.rollout.replica import RolloutReplicaRegistry, get_rollout_replica_class
    from verl.workers.engine import EngineRegistry

    cpu = os.environ.get("VERL_PLATFORM") == "cpu"
    assert (get_platform().device_name == "cpu") == cpu
    assert (("hf", "async") in _ROLLOUT_REGISTRY) == cpu
    assert ("hf" in RolloutReplicaRegistry._registry) == cpu
    assert ("cpu" in EngineRegistry._engines["language_model"]["fsdp2"]) == cpu
    if cpu:
        assert get_rollout_class("hf").__name__ == "HFServerAdapter"
        assert get_rollout_replica_class("hf").__name__ == "HFReplica"
        assert EngineRegistry.get_engine_cls("language_model", "fsdp2").__name__ == "FSDPEngineWithLMHead"
        import torch.distributed
        from verl.workers import engine_workers
        engine_workers.initialize_global_process_group_ray()  # verl's default backend string
        assert torch.distributed.get_backend() == "gloo"
        torch.distributed.destroy_process_group()
    print("WIRING_OK")
    """
)


@pytest.mark.parametrize(
    "verl_platform, plugins, order",
    [
        ("cpu", "auto", "entry-point"),
        ("", "auto", "entry-point"),
        ("cpu", "none", "activate-then-import-rollout-first"),
    ],
)
def test_cpu_runtime_is_wired_into_verl_only_when_asked(verl_platform, plugins, order):
    env = dict(os.environ, VERL_PLATFORM=verl_platform, VERL_USE_EXTERNAL_PLUGINS=plugins)
    env.update(RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(29500 + os.getpid() % 1000))
    result = subprocess.run([sys.executable, "-c", _WIRING_PROBE, order], env=env, capture_output=True, text=True)
    assert "WIRING_OK" in result.stdout, result.stderr[-3000:]


# ---------------------------------------------------------------------------------------------------
# Batched sampler
# ---------------------------------------------------------------------------------------------------


def test_log_probs_equal_a_plain_hf_forward(sampler):
    prompts = random_prompts(5)
    results = sampler.sample([SampleRequest(p, settings(), seed=i) for i, p in enumerate(prompts)])
    for prompt, result in zip(prompts, results, strict=True):
        sequence = torch.tensor([prompt + result.token_ids])
        with torch.no_grad():
            log_probs = torch.log_softmax(sampler.model(sequence).logits.float()[0], dim=-1)
        expected = log_probs[len(prompt) - 1 : -1].gather(1, torch.tensor(result.token_ids)[:, None]).squeeze(1)
        torch.testing.assert_close(torch.tensor(result.log_probs), expected, rtol=0, atol=1e-4)


def test_greedy_equals_hf_greedy(sampler):
    prompts = random_prompts(4, seed=1)
    results = sampler.sample([SampleRequest(p, settings(temperature=0.0), seed=0) for p in prompts])
    for prompt, result in zip(prompts, results, strict=True):
        generated = sampler.model.generate(torch.tensor([prompt]), do_sample=False, max_new_tokens=RESPONSE_LENGTH)
        assert result.token_ids == generated[0, len(prompt) :].tolist()


@pytest.mark.parametrize("narrow", [{"top_k": 1}, {"top_p": 1e-6}])
def test_narrowest_top_k_or_top_p_sampling_is_greedy(sampler, narrow):
    prompts = random_prompts(3, seed=2)
    greedy = sampler.sample([SampleRequest(p, settings(temperature=0.0), seed=0) for p in prompts])
    narrowed = sampler.sample([SampleRequest(p, settings(**narrow), seed=7) for p in prompts])
    assert [r.token_ids for r in narrowed] == [r.token_ids for r in greedy]


def test_sampling_settings_apply_per_row_within_one_batch(sampler):
    prompts = random_prompts(3, seed=6)
    mixed = [settings(temperature=0.0), settings(temperature=0.7, top_p=0.9), settings(top_k=1)]
    batch = sampler.sample([SampleRequest(p, s, seed=11) for p, s in zip(prompts, mixed, strict=True)])
    alone = [sampler.sample([SampleRequest(p, s, seed=11)])[0] for p, s in zip(prompts, mixed, strict=True)]
    greedy = sampler.sample([SampleRequest(p, settings(temperature=0.0), seed=0) for p in prompts])
    assert [r.token_ids for r in batch] == [r.token_ids for r in alone]
    assert batch[0].token_ids == greedy[0].token_ids and batch[2].token_ids == greedy[2].token_ids
    assert batch[1].token_ids != greedy[1].token_ids


@pytest.mark.parametrize("unsupported", [{"repetition_penalty": 1.1}, {"stop": ["\n"]}])
def test_unsupported_sampling_params_are_refused(unsupported):
    with pytest.raises(NotImplementedError):
        parse_sampling_params({"temperature": 1.0, **unsupported}, rollout_config(), prompt_len=4, max_model_len=64)


def test_max_tokens_defaults_to_the_response_budget_and_fits_the_context():
    config = rollout_config()
    assert parse_sampling_params({}, config, prompt_len=30, max_model_len=64).max_tokens == RESPONSE_LENGTH
    # vLLM's rule: a prompt longer than prompt_length eats into the response budget
    assert parse_sampling_params({}, config, prompt_len=40, max_model_len=64).max_tokens == PROMPT_LENGTH + 12 - 40
    assert parse_sampling_params({"max_tokens": 100}, config, prompt_len=60, max_model_len=64).max_tokens == 4


def test_each_row_stops_at_its_own_eos_or_max_tokens(model_dir):
    model = load_sampler(model_dir, rollout_config(), trust_remote_code=False).model
    never_stops = BatchedSampler(model, {0}, 0, "processed_logprobs", ignore_eos=True)
    budgets = [4, 9, 12]
    requests = [
        SampleRequest(prompt, settings(max_tokens=budget), seed=row)
        for row, (prompt, budget) in enumerate(zip(random_prompts(3, seed=3), budgets, strict=True))
    ]
    free_run = never_stops.sample(requests)
    assert [len(r.token_ids) for r in free_run] == budgets

    eos = free_run[1].token_ids[2]  # row 1 emits it by step 3 with this seed
    stopped = BatchedSampler(model, {eos}, 0, "processed_logprobs", ignore_eos=False).sample(requests)
    for free, cut in zip(free_run, stopped, strict=True):
        expected = free.token_ids[: free.token_ids.index(eos) + 1] if eos in free.token_ids else free.token_ids
        assert cut.token_ids == expected  # rows are frozen after eos; others run to their max_tokens
    assert stopped[1].token_ids[-1] == eos and len(stopped[1].token_ids) <= 3


# ---------------------------------------------------------------------------------------------------
# The server: batching and reproducible per-request sampling
# ---------------------------------------------------------------------------------------------------


def make_server(model_dir, **config_overrides) -> HFRolloutServer:
    return HFRolloutServer(rollout_config(**config_overrides), model_dir, replica_rank=0)


def requests_for(prompts: list[list[int]], n: int) -> list[list[int]]:
    return [prompt for prompt in prompts for _ in range(n)]


async def send_concurrently(server, prompts):
    return await asyncio.gather(*[server.generate(p, dict(SAMPLING), request_id=str(i)) for i, p in enumerate(prompts)])


async def send_one_by_one(server, prompts):
    return [await server.generate(p, dict(SAMPLING), request_id=str(i)) for i, p in enumerate(prompts)]


def as_multiset(prompts, outputs) -> list[tuple]:
    """(prompt, response, log-probs) triples, sorted: what must not depend on order or batching."""
    samples = zip(prompts, outputs, strict=True)
    return sorted((tuple(p), tuple(o.token_ids), tuple(round(x, 4) for x in o.log_probs)) for p, o in samples)


def test_concurrent_requests_are_sampled_together(model_dir):
    server = make_server(model_dir)
    batch_sizes = []
    sample = server._sampler.sample
    server._sampler.sample = lambda requests: batch_sizes.append(len(requests)) or sample(requests)
    asyncio.run(send_concurrently(server, requests_for(random_prompts(4), n=4)))
    assert batch_sizes == [16]


def test_samples_do_not_depend_on_arrival_order_or_batching(model_dir):
    prompts = requests_for(random_prompts(3, seed=4), n=4)
    shuffled = random.Random(0).sample(prompts, len(prompts))
    reference = as_multiset(prompts, asyncio.run(send_concurrently(make_server(model_dir), prompts)))
    runs = {
        "shuffled": (make_server(model_dir), send_concurrently, shuffled),
        "batches of 5": (make_server(model_dir, max_num_seqs=5), send_concurrently, shuffled),
        "one by one": (make_server(model_dir), send_one_by_one, shuffled[::-1]),
    }
    for name, (server, send, order) in runs.items():
        assert as_multiset(order, asyncio.run(send(server, order))) == reference, name
    assert len({sample[1] for sample in reference}) > len(reference) // 2  # copies of a prompt differ


def test_each_weight_version_samples_afresh_and_reproducibly(model_dir):
    server = make_server(model_dir)
    weights = server._sampler.model.state_dict()
    prompts = requests_for(random_prompts(2, seed=5), n=3)

    def sample_at(step):
        asyncio.run(server.load_weights(weights, global_steps=step))
        outputs = asyncio.run(send_concurrently(server, prompts))
        assert {o.extra_fields["global_steps"] for o in outputs} == {step}
        return as_multiset(prompts, outputs)

    step_1 = sample_at(1)
    assert sample_at(2) != step_1
    assert sample_at(1) == step_1  # a resumed run re-entering step 1 draws the same samples


def test_log_probs_are_returned_only_when_asked(model_dir):
    server = make_server(model_dir)
    output = asyncio.run(server.generate([7, 8, 9], {"temperature": 1.0, "max_tokens": 3}, request_id="x"))
    assert output.log_probs is None and len(output.token_ids) == 3 and output.stop_reason == "completed"


# ---------------------------------------------------------------------------------------------------
# Weight sync from the FSDP actor
# ---------------------------------------------------------------------------------------------------


class _RecordingServer:
    def __init__(self):
        self.loads = []

    @property
    def load_weights(self):
        recording = self

        class _Method:
            async def remote(self, state_dict, global_steps):
                recording.loads.append((state_dict, global_steps))

        return _Method()


@pytest.fixture
def single_rank_gloo_group(monkeypatch):
    monkeypatch.setenv("RANK", "0")
    port = 29000 + os.getpid() % 1000
    torch.distributed.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
    yield
    torch.distributed.destroy_process_group()


def test_adapter_gathers_dtensors_and_pushes_them_to_its_server(monkeypatch, single_rank_gloo_group):
    from torch.distributed.tensor import DeviceMesh, Shard, distribute_tensor

    from aero_verl.cpu import rollout

    server = _RecordingServer()
    monkeypatch.setattr(rollout.ray, "get_actor", lambda name: server if name == "hf_rollout_server_0" else None)
    adapter = HFServerAdapter(rollout_config(tensor_model_parallel_size=1), model_config=None, device_mesh=None)
    full = torch.arange(8, dtype=torch.bfloat16).reshape(4, 2)
    sharded = distribute_tensor(full, DeviceMesh("cpu", [0]), [Shard(0)])

    async def weights_async():
        yield "w", sharded

    asyncio.run(adapter.update_weights(weights_async(), global_steps=3))
    asyncio.run(adapter.update_weights([("w", full)], global_steps=4))
    assert [step for _, step in server.loads] == [3, 4]
    for state_dict, _ in server.loads:
        assert state_dict["w"].dtype == torch.float32 and torch.equal(state_dict["w"], full.float())
