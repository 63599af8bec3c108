"""Fast tests of the CPU demo task (aero_verl.demo): tokenizer, model, splits, parquet, reward, SFT smoke, cache.

No full SFT runs here: the warm start is exercised with a step cap of a few steps.
"""

import threading
from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer

from aero_verl.demo import assets as assets_module
from aero_verl.demo.assets import DemoConfig, cache_root, prepare_cpu_demo
from aero_verl.demo.model import build_model, build_tokenizer
from aero_verl.demo.reward import compute_score, is_correct
from aero_verl.demo.task import LEVELS, TaskConfig, heldout_problems, train_pool, write_parquet
from aero_verl.demo.warm_start import (
    SamplingConfig,
    WarmStartConfig,
    WarmStartTrainer,
    encode_prompts,
    measure_spread,
    sample_responses,
)
from aero_verl.cpu.sampling import left_pad

# Knobs small enough that a whole prepare (build, 2 SFT steps, spread measurement) takes about a second.
TINY_KNOBS = dict(max_sft_steps=2, train_size=10, val_per_level=3, samples_per_prompt=2)
# One torch thread: results do not depend on it, and tests often share the machine with other jobs, where
# two spin-waiting OpenMP threads make each step 10x slower.
QUIET = dict(progress=False, threads=1)

# "<|im_start|>user\n7+5=<|im_end|>\n<|im_start|>assistant\n" under the byte map (printable c -> 5+ord(c)-33)
CHAT_PROMPT_7_PLUS_5 = [3, 89, 87, 73, 86, 203, 27, 15, 25, 33, 4, 203, 3, 69, 87, 87, 77, 87, 88, 69, 82, 88, 203]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """Tokenizer next to a qwen2 config.json: the layout verl loads (and where transformers 5 swaps in
    Qwen2Tokenizer)."""
    out = tmp_path_factory.mktemp("tiny_qwen2")
    build_model(out, seed=0)
    build_tokenizer(out)
    return out


@pytest.fixture(scope="module")
def tokenizer(model_dir):
    return AutoTokenizer.from_pretrained(model_dir)


# --- tokenizer and model ---------------------------------------------------------------------------------


def test_tokenizer_keeps_newline_and_digits_single_tokens(tokenizer):
    assert tokenizer.encode("\n", add_special_tokens=False) == [203]
    assert tokenizer.encode("0123456789", add_special_tokens=False) == list(range(20, 30))
    text = "345+67=\n23*7=1098"
    ids = tokenizer.encode(text, add_special_tokens=False)
    assert len(ids) == len(text) and tokenizer.decode(ids) == text


def test_tokenizer_specials(tokenizer):
    assert (tokenizer.pad_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id) == (0, 1, 4)
    assert tokenizer.convert_tokens_to_ids(["<|endoftext|>", "<|im_start|>", "<|im_end|>"]) == [2, 3, 4]
    assert len(tokenizer) == 261


def test_chat_template_ids(tokenizer):
    messages = [{"role": "user", "content": "7+5="}]
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=False)
    assert list(ids) == CHAT_PROMPT_7_PLUS_5
    assert len(ids) == 19 + len("7+5=")


def test_verl_accepts_tokenizer(tokenizer):
    from verl.utils.tokenizer.continuous_token import QwenContinuousTokenBuilder

    QwenContinuousTokenBuilder(tokenizer)  # raises unless "\n" is exactly one token


def test_model_shape_and_generation_config(model_dir):
    from transformers import AutoModelForCausalLM, GenerationConfig

    model = AutoModelForCausalLM.from_pretrained(model_dir)
    assert sum(p.numel() for p in model.parameters()) == 201_856
    assert model.config.tie_word_embeddings and model.config.vocab_size == 261
    generation = GenerationConfig.from_pretrained(model_dir)
    assert (generation.eos_token_id, generation.pad_token_id) == (4, 0)


def test_model_init_is_deterministic_in_seed():
    first, again, other = build_model(None, 3), build_model(None, 3), build_model(None, 4)
    weight = "model.layers.0.mlp.up_proj.weight"
    assert torch.equal(first.state_dict()[weight], again.state_dict()[weight])
    assert not torch.equal(first.state_dict()[weight], other.state_dict()[weight])


# --- task: levels and splits ---------------------------------------------------------------------------------


def test_levels_match_the_probe():
    assert [level.space for level in LEVELS] == [100, 900, 8100, 81000, 720]
    assert [level.data_source for level in LEVELS] == [f"arith/L{i}" for i in range(1, 6)]


def test_heldout_set_is_deterministic_unique_and_sized():
    problems = heldout_problems()
    assert [p.question for p in problems] == [p.question for p in heldout_problems()]
    assert len({p.question for p in problems}) == len(problems) == 220
    counts = {level.name: sum(p.level is level for p in problems) for level in LEVELS}
    assert counts == {"L1": 20, "L2": 50, "L3": 50, "L4": 50, "L5": 50}
    smaller = heldout_problems(TaskConfig(val_per_level=10))
    assert {p.question for p in smaller} <= {p.question for p in problems}  # a prefix per level


def test_train_pool_excludes_heldout_and_is_unique():
    heldout = {p.question for p in heldout_problems()}
    pool = train_pool(TaskConfig(), seed=0, excluded=heldout)
    questions = [p.question for p in pool]
    assert len(pool) == 400 and len(set(questions)) == 400
    assert not heldout & set(questions)
    assert [p.question for p in train_pool(TaskConfig(), seed=0, excluded=heldout)] == questions
    assert [p.question for p in train_pool(TaskConfig(), seed=1, excluded=heldout)] != questions


def test_train_pool_caps_at_what_a_level_has_left():
    heldout = {p.question for p in heldout_problems()}
    pool = train_pool(TaskConfig(train_size=1000), seed=0, excluded=heldout)
    assert sum(p.level.name == "L1" for p in pool) == 80  # 100 facts minus the 20 held out


def test_indices_are_unique_and_stable():
    heldout = heldout_problems()
    pool = train_pool(TaskConfig(), seed=0, excluded={p.question for p in heldout})
    indices = [p.index for p in heldout + pool]
    assert len(set(indices)) == len(indices)
    by_question = {p.question: p.index for p in pool}
    bigger = train_pool(TaskConfig(train_size=600), seed=0, excluded={p.question for p in heldout})
    assert all(by_question[p.question] == p.index for p in bigger if p.question in by_question)
    assert all(p.index // 1_000_000 == p.level.number for p in heldout + pool)


def test_answers():
    by_name = {level.name: level for level in LEVELS}
    from aero_verl.demo.task import Problem

    assert Problem(by_name["L4"], 345, 67).question == "345+67=" and Problem(by_name["L4"], 345, 67).answer == 412
    assert Problem(by_name["L5"], 23, 7).question == "23*7=" and Problem(by_name["L5"], 23, 7).answer == 161


# --- parquet through verl's dataset ----------------------------------------------------------------------------


def test_parquet_reads_through_verl_rlhf_dataset(tmp_path, tokenizer):
    from omegaconf import OmegaConf
    from verl.utils.dataset.rl_dataset import RLHFDataset

    problems = heldout_problems()
    path = str(tmp_path / "val.parquet")
    write_parquet(problems, path)
    # 26 = the longest prompt (19 + "999+99=") : nothing may be filtered out at that limit
    config = OmegaConf.create({"max_prompt_length": 26, "filter_overlong_prompts_workers": 1})
    dataset = RLHFDataset([path], tokenizer, config)
    assert len(dataset) == len(problems)
    row = dataset[0]
    first = problems[0]
    assert row["data_source"] == "arith/L1" and row["ability"] == "arithmetic"
    assert row["raw_prompt"] == [{"role": "user", "content": first.question}]
    assert row["reward_model"] == {"style": "rule", "ground_truth": str(first.answer)}
    assert row["index"] == first.index
    assert row["extra_info"] == {"index": first.index, "level": "L1", "question": first.question}


# --- reward ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "response, expected",
    [
        ("412", 1.0),
        (" 412\n", 1.0),
        ("412<|im_end|>", 1.0),  # decoded with special tokens kept
        ("412<|im_end|>\n<|im_start|>user", 1.0),  # whatever follows the end of the turn is ignored
        ("413", 0.0),
        ("0412", 0.0),  # not the canonical form
        ("412.0", 0.0),
        ("41 2", 0.0),
        ("", 0.0),
        ("<|im_end|>412", 0.0),
        ("\x00garbage+=*", 0.0),
    ],
)
def test_compute_score(response, expected):
    assert compute_score("arith/L4", response, "412", extra_info={"index": 1}) == {"score": expected, "acc": expected}


def test_reward_works_on_both_verl_decodings(tokenizer):
    response_ids = tokenizer.encode("161", add_special_tokens=False) + [tokenizer.eos_token_id]
    for skip_special_tokens in (True, False):
        text = tokenizer.decode(response_ids, skip_special_tokens=skip_special_tokens)
        assert compute_score("arith/L5", text, "161")["score"] == 1.0


def test_is_correct_accepts_int_answers_and_rejects_bad_ground_truth():
    assert is_correct("12", 12) and not is_correct("12", 13)
    assert not is_correct("12", "twelve")


# --- warm start and sampler ------------------------------------------------------------------------------------


def test_kv_cache_sampler_matches_full_recompute(tokenizer):
    """Near-zero temperature makes sampling greedy; compare against argmax decoding without a cache, on prompts
    of different lengths so left padding and explicit positions are exercised."""
    model = build_model(None, seed=0).eval()
    problems = heldout_problems()[::40]
    prompts = encode_prompts(tokenizer, problems)
    assert len({len(p) for p in prompts}) > 1
    config = SamplingConfig(temperature=1e-4, max_new_tokens=4)
    sampled = sample_responses(model, prompts, config, eos_id=4, pad_id=0, generator=torch.Generator().manual_seed(0))
    for prompt, response in zip(prompts, sampled):
        ids = list(prompt)
        with torch.no_grad():
            for _ in range(len(response)):
                ids.append(int(model(input_ids=torch.tensor([ids])).logits[0, -1].argmax()))
        assert response == ids[len(prompt) :]


def test_left_padding_positions():
    ids, mask, positions = left_pad([[5, 6, 7], [8]], pad_token_id=0)
    assert ids.tolist() == [[5, 6, 7], [0, 0, 8]] and mask.tolist() == [[1, 1, 1], [0, 0, 1]]
    assert positions.tolist() == [[0, 1, 2], [0, 0, 0]]


def test_warm_start_smoke(tokenizer):
    model = build_model(None, seed=0)
    heldout = heldout_problems(TaskConfig(val_per_level=2))
    trainer = WarmStartTrainer(model, tokenizer, WarmStartConfig(max_sft_steps=3), 0, {p.question for p in heldout})
    result = trainer.run(progress=False, threads=1)
    assert result.steps == 3 and not result.reached_threshold and result.loss_ema > 0
    spread = measure_spread(model, tokenizer, heldout, SamplingConfig(samples_per_prompt=3), threads=1)
    assert spread.num_prompts == len(heldout) and len(spread.histogram) == 4
    assert set(spread.per_level) == {level.name for level in LEVELS}
    assert spread.zero_share + spread.partial_share + spread.full_share == pytest.approx(1.0)


# --- cached, atomic prepare ------------------------------------------------------------------------------------


@pytest.fixture
def count_builds(monkeypatch):
    calls = []
    real_build = assets_module._build_into

    def counting_build(*args, **kwargs):
        calls.append(args)
        return real_build(*args, **kwargs)

    monkeypatch.setattr(assets_module, "_build_into", counting_build)
    return calls


def test_prepare_is_cached(tmp_path, count_builds):
    first = prepare_cpu_demo(cache_dir=tmp_path, **QUIET, **TINY_KNOBS)
    second = prepare_cpu_demo(cache_dir=tmp_path, **QUIET, **TINY_KNOBS)
    assert len(count_builds) == 1 and first == second
    paths = (first.root, first.model_dir, first.train_parquet, first.val_parquet, first.reward_path)
    assert all(isinstance(path, str) for path in paths)  # str, so they drop straight into OmegaConf/verl
    for path in (Path(first.model_dir) / "config.json", first.train_parquet, first.val_parquet, first.reward_path):
        assert Path(path).is_file()
    assert first.spread.num_prompts == 3 + 4 * 3 and first.manifest["sft"]["steps"] == 2
    assert first.max_prompt_tokens <= 26 and first.max_response_tokens <= 5
    prepare_cpu_demo(cache_dir=tmp_path, **QUIET, seed=1, **TINY_KNOBS)
    assert len(count_builds) == 2  # another seed is another key


def test_stale_temp_dir_is_ignored(tmp_path, count_builds):
    key = DemoConfig.from_knobs(**TINY_KNOBS).cache_key()
    stale = tmp_path / f".{key}.tmp-killed"
    stale.mkdir()
    (stale / "manifest.json").write_text("{ half written")
    assets = prepare_cpu_demo(cache_dir=tmp_path, **QUIET, **TINY_KNOBS)
    assert assets.root == str(tmp_path.resolve() / key) and len(count_builds) == 1
    assert not stale.exists()


def test_failed_build_leaves_no_cache(tmp_path, monkeypatch):
    def crashing_build(config, out_dir, progress, threads):
        (out_dir / "model").mkdir()
        raise KeyboardInterrupt  # like a user's Ctrl-C halfway through SFT

    monkeypatch.setattr(assets_module, "_build_into", crashing_build)
    with pytest.raises(KeyboardInterrupt):
        prepare_cpu_demo(cache_dir=tmp_path, **QUIET, **TINY_KNOBS)
    assert [p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")] == []


def test_concurrent_prepares_build_once(tmp_path, count_builds):
    results = []
    threads = [
        threading.Thread(target=lambda: results.append(prepare_cpu_demo(cache_dir=tmp_path, **QUIET, **TINY_KNOBS)))
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(count_builds) == 1 and len(results) == 2 and results[0] == results[1]


def test_unknown_knob_is_rejected():
    with pytest.raises(TypeError, match="unknown demo knobs"):
        DemoConfig.from_knobs(learning_rat=1e-3)


def test_cache_root_follows_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("AERO_VERL_CACHE", str(tmp_path))
    assert cache_root() == tmp_path / "cpu_demo"
    monkeypatch.delenv("AERO_VERL_CACHE")
    assert cache_root() == Path("~/.cache/aero_verl/cpu_demo").expanduser()
    assert cache_root(tmp_path / "mine") == tmp_path / "mine"
