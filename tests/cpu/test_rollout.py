"""The `hf` rollout (aero_verl.cpu.rollout, aero_verl.cpu.sampling): the batched sampler, the server's
batching, per-request answers and aborts, reproducible per-request sampling, and the weight sync.

The server tests run the server class in-process (no Ray) on a tiny random Qwen2 built in a temp dir.
"""

import asyncio
import os
import random
import threading
from dataclasses import replace

import pytest
import torch
from verl.workers.config import RolloutConfig

from aero_verl.cpu.rollout import HFRolloutServer, HFServerAdapter, load_sampler, parse_sampling_params
from aero_verl.cpu.sampling import MIN_DECODE_ROWS, BatchedSampler, SampleRequest, SamplingSettings
from aero_verl.demo.model import build_model, build_tokenizer

PROMPT_LENGTH, RESPONSE_LENGTH = 32, 12
SAMPLING = {"temperature": 1.0, "top_p": 0.95, "top_k": 50, "logprobs": True}


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


def never_stopping(sampler) -> BatchedSampler:
    """A sampler that ignores eos, so every row runs exactly to its max_tokens."""
    return BatchedSampler(sampler.model, {0}, 0, "processed_logprobs", ignore_eos=True)


def record_batch_sizes(sampler: BatchedSampler) -> list[int]:
    """The number of rows of each forward pass the sampler makes from now on."""
    sizes, forward = [], sampler._forward

    def recording_forward(input_ids, *args, **kwargs):
        sizes.append(len(input_ids))
        return forward(input_ids, *args, **kwargs)

    sampler._forward = recording_forward
    return sizes


def assert_same_bits(result, expected_tokens, expected_log_probs):
    assert result.token_ids == expected_tokens
    assert torch.equal(torch.tensor(result.log_probs), torch.tensor(expected_log_probs))


def test_finished_rows_leave_the_batch_and_the_others_keep_their_bits(sampler):
    prompts = random_prompts(12, seed=7)  # mixed lengths: left padding stays as wide as at the start
    mixed = [settings(), settings(temperature=0.0), settings(temperature=0.7, top_p=0.9), settings(top_k=20)]
    budgets = [1, 30, 4, 2, 30, 9, 3, 17, 5, 2, 6, 1]

    def requests(budget_of_row):
        return [
            SampleRequest(prompt, replace(mixed[row % 4], max_tokens=budget_of_row(row)), seed=row)
            for row, prompt in enumerate(prompts)
        ]

    never_stops = never_stopping(sampler)
    unpruned = never_stops.sample(requests(lambda row: 30))  # no row ends early, so none leaves
    batch_sizes = record_batch_sizes(never_stops)
    pruned = never_stops.sample(requests(lambda row: budgets[row]))
    for result, reference, budget in zip(pruned, unpruned, budgets, strict=True):
        assert_same_bits(result, reference.token_ids[:budget], reference.log_probs[:budget])
    # rows left as they finished, but the decode batch never went below MIN_DECODE_ROWS
    assert batch_sizes[0] == len(prompts) and batch_sizes == sorted(batch_sizes, reverse=True)
    assert min(batch_sizes) == MIN_DECODE_ROWS


def test_a_row_keeps_its_bits_whatever_finishes_beside_it(sampler):
    # One prompt length, so both batches have the same (no) left padding. "Alone" is a batch of
    # MIN_DECODE_ROWS: a batch of one decodes through MKL's gemv, whose bits differ by an ulp.
    rng = random.Random(10)
    prompts = [[rng.randrange(5, 261) for _ in range(12)] for _ in range(16)]
    long_rows = [SampleRequest(p, settings(max_tokens=30), seed=row) for row, p in enumerate(prompts[:4])]
    beside = [SampleRequest(p, settings(max_tokens=1 + row % 5), seed=100 + row) for row, p in enumerate(prompts[4:])]
    never_stops = never_stopping(sampler)
    alone = never_stops.sample(long_rows)
    together = never_stops.sample(beside[:6] + long_rows + beside[6:])[6:10]
    for result, reference in zip(together, alone, strict=True):
        assert_same_bits(result, reference.token_ids, reference.log_probs)


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
    server._sampler.sample = lambda requests, *args: batch_sizes.append(len(requests)) or sample(requests, *args)
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
# The server: per-request answers and aborts (what barrier-free rescue needs, as from vLLM)
# ---------------------------------------------------------------------------------------------------


class ForwardGate:
    """Holds the server's sampling thread before its `step`-th forward pass (the prefill is the first)
    until the test opens the gate: rows then have exactly step - 1 tokens."""

    def __init__(self, server: HFRolloutServer, step: int):
        self.reached, self._open = threading.Event(), threading.Event()
        forward, calls = server._sampler._forward, []

        def gated_forward(*args, **kwargs):
            calls.append(None)
            if len(calls) == step:
                self.reached.set()
                self._open.wait(timeout=60)
            return forward(*args, **kwargs)

        server._sampler._forward = gated_forward

    async def wait_until_reached(self) -> None:
        assert await asyncio.to_thread(self.reached.wait, 60)

    def open(self) -> None:
        self._open.set()


def long_runs_server(model_dir) -> HFRolloutServer:
    """The model's whole context as room, and eos ignored, so every request runs exactly to its max_tokens."""
    return make_server(model_dir, max_model_len=128, ignore_eos=True)


def start(server, prompt, max_tokens, request_id) -> asyncio.Task:
    return asyncio.create_task(server.generate(prompt, dict(SAMPLING, max_tokens=max_tokens), request_id=request_id))


def test_each_request_is_answered_as_soon_as_its_row_finishes(model_dir):
    server = long_runs_server(model_dir)
    gate = ForwardGate(server, step=10)
    short_prompt, long_prompt = random_prompts(2, seed=11)

    async def run():
        short, long = start(server, short_prompt, 3, "short"), start(server, long_prompt, 30, "long")
        answered_early = await asyncio.wait_for(short, timeout=30)
        assert not long.done()  # the long row is held at its 10th step
        gate.open()
        return answered_early, await long

    short, long = asyncio.run(run())
    assert len(short.token_ids) == 3 and len(long.token_ids) == 30
    assert short.stop_reason == long.stop_reason == "completed"


def test_abort_stops_a_running_request_with_its_tokens_so_far_and_leaves_the_others(model_dir):
    prompts = random_prompts(7, seed=8)
    budgets = [2, 2, 2, 40, 40, 40, 40]  # the short rows leave the batch early, the long ones stay 4
    aborted_row, gate_step = 4, 6

    async def run(abort: bool):
        server = long_runs_server(model_dir)
        gate = ForwardGate(server, step=gate_step) if abort else None
        tasks = [start(server, p, budget, f"r{row}") for row, (p, budget) in enumerate(zip(prompts, budgets))]
        if gate is not None:
            await gate.wait_until_reached()
            aborting = asyncio.create_task(server.abort_request(f"r{aborted_row}"))
            await asyncio.sleep(0)  # the abort is registered before the row's next step runs
            gate.open()
            assert await aborting == {"aborted": True, "request_id": f"r{aborted_row}"}
        return await asyncio.gather(*tasks)

    reference, outputs = asyncio.run(run(abort=False)), asyncio.run(run(abort=True))
    stopped, kept = gate_step - 1, reference[aborted_row]
    assert outputs[aborted_row].stop_reason == "aborted"
    assert outputs[aborted_row].token_ids == kept.token_ids[:stopped]
    assert outputs[aborted_row].log_probs == kept.log_probs[:stopped]
    for row, (output, expected) in enumerate(zip(outputs, reference, strict=True)):
        if row != aborted_row:  # bit for bit what they sample without the abort
            assert output.stop_reason == "completed"
            assert output.token_ids == expected.token_ids and output.log_probs == expected.log_probs


def test_abort_answers_a_queued_request_at_once_with_no_tokens(model_dir):
    prompt = random_prompts(1, seed=12)[0]

    server = make_server(model_dir)
    batch_sizes = []
    sample = server._sampler.sample
    server._sampler.sample = lambda requests, *args: batch_sizes.append(len(requests)) or sample(requests, *args)

    async def run():
        queued = asyncio.create_task(server.generate(prompt, dict(SAMPLING), request_id="queued"))
        await asyncio.sleep(0)  # queued, waiting for more requests to join its batch
        assert await server.abort_request("queued") == {"aborted": True, "request_id": "queued"}
        return await queued, await server.generate(prompt, dict(SAMPLING), request_id="again")

    aborted, again = asyncio.run(run())
    assert aborted.token_ids == [] and aborted.stop_reason == "aborted"
    assert batch_sizes == [1]  # only "again" was sampled
    # The aborted request drew no seed: the next one samples what a fresh server's first one does.
    first = asyncio.run(make_server(model_dir).generate(prompt, dict(SAMPLING), request_id="first"))
    assert again.token_ids == first.token_ids


def test_abort_of_an_unknown_or_finished_request_changes_nothing(model_dir):
    async def run():
        server = make_server(model_dir)
        finished = await server.generate(random_prompts(1, seed=13)[0], dict(SAMPLING), request_id="finished")
        return finished, await server.abort_request("finished"), await server.abort_request("never-sent")

    finished, abort_finished, abort_unknown = asyncio.run(run())
    assert finished.stop_reason == "completed" and finished.token_ids
    assert abort_finished == {"aborted": False, "request_id": "finished"}
    assert abort_unknown == {"aborted": False, "request_id": "never-sent"}


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
