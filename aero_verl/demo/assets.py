"""Build (once) and cache everything the CPU demo needs: warm-started tiny model, verl parquet files, reward.

    assets = prepare_cpu_demo(seed=0)            # ~1.5-3 min the first time, milliseconds afterwards
    assets.model_dir, assets.train_parquet, assets.val_parquet, assets.reward_path
    prepare_cpu_demo(response_format="scratchpad", ...)   # long responses; knobs: recipe/cpu_long.yaml

The cache lives in `${AERO_VERL_CACHE:-~/.cache/aero_verl}/cpu_demo/<key>`, where the key hashes every knob
and the task/model/recipe versions, so changing anything builds a fresh directory instead of reusing a stale
one (a knob added later enters it only away from its old implicit value, see `_KEYED_ONLY_AWAY_FROM`). A
build runs in a temporary sibling directory that is renamed into place only when complete (a killed build
leaves no half cache), under a file lock (two processes never build the same key at once).

CLI: `python -m aero_verl.demo.assets [--seed 0] [--loss-threshold 0.30] ...` builds and prints the result.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import fcntl
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from aero_verl.demo import reward
from aero_verl.demo.model import MODEL_VERSION, TinyQwen2Config
from aero_verl.demo.task import SCRATCHPAD_VERSION, TASK_VERSION, SuccessSpread, TaskConfig
from aero_verl.demo.warm_start import SamplingConfig, WarmStartConfig

logger = logging.getLogger(__name__)

# Bump when the build recipe (the steps in `_build_into`) changes: it is part of the cache key.
ASSETS_VERSION = 1

MANIFEST = "manifest.json"
MODEL_SUBDIR = "model"
TRAIN_PARQUET = "train.parquet"
VAL_PARQUET = "val.parquet"
_SPREAD_SAMPLING_SEED = 1  # the measurement's own RNG, so it never shifts training


@dataclass(frozen=True)
class DemoConfig:
    """Every knob that shapes the built assets; all of it goes into the cache key."""

    seed: int = 0  # model init, SFT data and the RL pool; the held-out set has its own fixed seed
    task: TaskConfig = field(default_factory=TaskConfig)
    model: TinyQwen2Config = field(default_factory=TinyQwen2Config)
    warm_start: WarmStartConfig = field(default_factory=WarmStartConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)

    @classmethod
    def from_knobs(cls, seed: int = 0, **knobs) -> DemoConfig:
        """Flat knobs (`loss_threshold=0.35`, `train_size=200`, ...) routed to the sub-config that owns them."""
        unknown = set(knobs) - set(KNOB_OWNERS)
        if unknown:
            raise TypeError(f"unknown demo knobs {sorted(unknown)}; known: {sorted(KNOB_OWNERS)}")
        parts = {}
        for part in _PARTS:
            default = getattr(cls(), part)
            mine = {name: value for name, value in knobs.items() if KNOB_OWNERS[name] == part}
            parts[part] = dataclasses.replace(default, **mine)
        return cls(seed=seed, **parts)

    def versions(self) -> dict[str, int]:
        """The code versions this build depends on; a format's own version only where it is used."""
        versions = {"task": TASK_VERSION, "model": MODEL_VERSION, "assets": ASSETS_VERSION}
        if self.task.response_format == "scratchpad":
            versions["scratchpad"] = SCRATCHPAD_VERSION
        return versions

    def cache_key(self) -> str:
        config = asdict(self)
        for part, name, value in _KEYED_ONLY_AWAY_FROM:
            if config[part][name] == value:
                del config[part][name]
        payload = json.dumps({"versions": self.versions(), "config": config}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


_PARTS = ("task", "model", "warm_start", "sampling")
# Knobs added after the demo's results were measured, with the value those builds had implicitly. At that
# value a knob stays out of the key, so the demo's key, its cache and its measured results outlive the knob.
_KEYED_ONLY_AWAY_FROM = (("task", "response_format", "answer"),)


def _knob_owners() -> dict[str, str]:
    """Knob name -> the DemoConfig part that owns it. Names must be unique across parts to stay flat."""
    owners: dict[str, str] = {}
    for part in _PARTS:
        for knob in dataclasses.fields(getattr(DemoConfig(), part)):
            if knob.name in owners:
                raise RuntimeError(f"knob {knob.name!r} is in both {owners[knob.name]} and {part}")
            owners[knob.name] = part
    return owners


KNOB_OWNERS = _knob_owners()


@dataclass(frozen=True)
class DemoAssets:
    """Where the built demo lives, and what the warm start produced. Paths are absolute `str`s, because they
    go straight into Hydra/OmegaConf configs and verl code that calls `str` methods on them."""

    root: str
    model_dir: str  # tokenizer + warm-started Qwen2ForCausalLM: `actor_rollout_ref.model.path`
    train_parquet: str  # RL prompt pool: `data.train_files`
    val_parquet: str  # held-out prompts: `data.val_files`
    reward_path: str  # `reward.custom_reward_function.path`
    reward_function_name: str  # `reward.custom_reward_function.name`
    spread: SuccessSpread  # per-prompt success on the val set after the warm start
    train_spread: SuccessSpread  # the same on the RL pool (a bit higher: SFT saw many of these prompts)
    max_prompt_tokens: int  # longest chat-templated prompt in either split
    max_response_tokens: int  # longest correct response, including eos
    manifest: dict  # everything above plus SFT steps/seconds and the full config, as written to disk


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    base = os.environ.get("AERO_VERL_CACHE") or "~/.cache/aero_verl"
    return Path(base).expanduser() / "cpu_demo"


def prepare_cpu_demo(
    cache_dir: str | os.PathLike | None = None,
    seed: int = 0,
    progress: bool = True,
    threads: int | str | None = None,
    **knobs,
) -> DemoAssets:
    """Return the demo assets for these knobs, building them first if they are not cached yet.

    `cache_dir` replaces `${AERO_VERL_CACHE:-~/.cache/aero_verl}/cpu_demo` as the parent of the key
    directories. `progress` shows the SFT progress bar. `threads` is the torch thread count of a build (None:
    all cores; "auto": by the machine's load; see `warm_start.resolve_threads`); it does not change the result. Knobs
    are the fields of TaskConfig, TinyQwen2Config, WarmStartConfig and SamplingConfig (see `KNOB_OWNERS`)."""
    config = DemoConfig.from_knobs(seed=seed, **knobs)
    root = cache_root(cache_dir)
    final_dir = root / config.cache_key()
    if not (final_dir / MANIFEST).is_file():
        root.mkdir(parents=True, exist_ok=True)
        with _exclusive_lock(root / f"{final_dir.name}.lock"):
            # another process may have finished the same build while we waited for the lock
            if not (final_dir / MANIFEST).is_file():
                _build_atomically(config, final_dir, progress, threads)
    return load_assets(final_dir)


@contextlib.contextmanager
def _exclusive_lock(lock_path: Path) -> Iterator[None]:
    with open(lock_path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # released when the handle closes, also if the process dies
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _temp_prefix(final_dir: Path) -> str:
    return f".{final_dir.name}.tmp-"


def _build_atomically(config: DemoConfig, final_dir: Path, progress: bool, threads: int | None) -> None:
    # We hold the key's lock, so any temp dir of this key is left over from a killed build: remove it.
    for stale in final_dir.parent.glob(_temp_prefix(final_dir) + "*"):
        shutil.rmtree(stale, ignore_errors=True)
    if final_dir.exists():  # a directory without a manifest is not a finished build
        shutil.rmtree(final_dir)
    work_dir = Path(tempfile.mkdtemp(prefix=_temp_prefix(final_dir), dir=final_dir.parent))
    try:
        logger.info("building CPU demo assets (first use of this configuration) in %s", final_dir)
        _build_into(config, work_dir, progress, threads)
        os.replace(work_dir, final_dir)
    except BaseException:
        shutil.rmtree(work_dir, ignore_errors=True)
        raise


def _build_into(config: DemoConfig, out_dir: Path, progress: bool, threads: int | None) -> None:
    """Model + tokenizer, parquet splits, SFT warm start, spread measurement; the manifest is written last."""
    # torch/transformers only load when something is built
    from transformers import AutoTokenizer

    from aero_verl.demo.model import build_model, build_tokenizer, save_model
    from aero_verl.demo.task import heldout_problems, train_pool, write_parquet
    from aero_verl.demo.warm_start import WarmStartTrainer, encode_prompts, encode_targets, measure_spread

    started = time.perf_counter()
    response_format = config.task.response_format
    val_problems = heldout_problems(config.task)
    heldout_questions = {problem.question for problem in val_problems}
    train_problems = train_pool(config.task, config.seed, heldout_questions)
    all_problems = val_problems + train_problems

    model_dir = out_dir / MODEL_SUBDIR
    model = build_model(model_dir, config.seed, config.model)
    build_tokenizer(model_dir)
    # Train and measure with the tokenizer exactly as verl will load it (transformers 5: Qwen2Tokenizer).
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    max_prompt_tokens = max(map(len, encode_prompts(tokenizer, all_problems)))
    max_response_tokens = max(map(len, encode_targets(tokenizer, all_problems, response_format)))
    _check_lengths(config, max_prompt_tokens, max_response_tokens)

    write_parquet(train_problems, str(out_dir / TRAIN_PARQUET), response_format)
    write_parquet(val_problems, str(out_dir / VAL_PARQUET), response_format)

    trainer = WarmStartTrainer(model, tokenizer, config.warm_start, config.seed, heldout_questions, response_format)
    sft = trainer.run(progress=progress, threads=threads)
    save_model(model, model_dir)

    spread, train_spread = (
        measure_spread(model, tokenizer, problems, config.sampling, seed=_SPREAD_SAMPLING_SEED, threads=threads,
                       response_format=response_format)
        for problems in (val_problems, train_problems)
    )
    manifest = {
        "key": config.cache_key(),
        "config": asdict(config),
        "versions": config.versions(),
        "sft": asdict(sft),
        "build_seconds": time.perf_counter() - started,
        "spread": spread.to_dict(),
        "train_spread": train_spread.to_dict(),
        "num_train_prompts": len(train_problems),
        "num_val_prompts": len(val_problems),
        "max_prompt_tokens": max_prompt_tokens,
        "max_response_tokens": max_response_tokens,
    }
    (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=1))


def _check_lengths(config: DemoConfig, max_prompt_tokens: int, max_response_tokens: int) -> None:
    """Refuse, before minutes of SFT, a token budget that cannot hold a correct response, or a model whose
    positions cannot hold the longest prompt plus that budget: the rollout server caps generation there,
    so measured and trained lengths would silently differ."""
    budget = config.sampling.max_new_tokens
    if budget < max_response_tokens:
        raise ValueError(f"max_new_tokens={budget} is shorter than the longest correct response "
                         f"({max_response_tokens} tokens with eos)")
    if max_prompt_tokens + budget > config.model.max_position_embeddings:
        raise ValueError(f"max_position_embeddings={config.model.max_position_embeddings} cannot hold the longest "
                         f"prompt ({max_prompt_tokens} tokens) plus max_new_tokens={budget}")


def load_assets(root: Path) -> DemoAssets:
    manifest = json.loads((root / MANIFEST).read_text())
    root = root.resolve()
    return DemoAssets(
        root=str(root),
        model_dir=str(root / MODEL_SUBDIR),
        train_parquet=str(root / TRAIN_PARQUET),
        val_parquet=str(root / VAL_PARQUET),
        reward_path=str(Path(reward.__file__).resolve()),
        reward_function_name=reward.compute_score.__name__,
        spread=SuccessSpread.from_dict(manifest["spread"]),
        train_spread=SuccessSpread.from_dict(manifest["train_spread"]),
        max_prompt_tokens=manifest["max_prompt_tokens"],
        max_response_tokens=manifest["max_response_tokens"],
        manifest=manifest,
    )


def describe(assets: DemoAssets) -> str:
    sft = assets.manifest["sft"]
    return "\n".join(
        [
            f"model dir      {assets.model_dir}",
            f"train parquet  {assets.train_parquet}  ({assets.manifest['num_train_prompts']} prompts)",
            f"val parquet    {assets.val_parquet}  ({assets.manifest['num_val_prompts']} prompts)",
            f"reward         {assets.reward_path}::{assets.reward_function_name}",
            f"lengths        prompt <= {assets.max_prompt_tokens} tokens, correct response <= "
            f"{assets.max_response_tokens} tokens (eos included)",
            f"SFT            {sft['steps']} steps, {sft['seconds']:.1f} s, loss EMA {sft['loss_ema']:.3f}"
            f"{'' if sft['reached_threshold'] else ' (step cap hit before the threshold)'}",
            "success spread on the val set:",
            assets.spread.table(),
            "success spread on the RL pool:",
            assets.train_spread.table(),
        ]
    )


def _knob_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Build (or find cached) CPU demo assets and print them.")
    parser.add_argument("--cache-dir", default=None, help="parent of the key directories")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--threads", type=int, default=None, help="torch threads for a build (default: all cores)")
    defaults = DemoConfig()
    for name, part in KNOB_OWNERS.items():
        default = getattr(getattr(defaults, part), name)
        parser.add_argument(f"--{name.replace('_', '-')}", dest=name, type=_parser_for(default), default=None,
                            help=f"{part} knob (default {default})")
    return parser


def _parser_for(default):
    if isinstance(default, tuple):  # comma-separated, element type from the default
        element = type(default[0])
        return lambda text: tuple(element(item) for item in text.split(","))
    return type(default)


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = vars(_knob_parser().parse_args(argv))
    runtime = {
        "cache_dir": args.pop("cache_dir"),
        "seed": args.pop("seed"),
        "progress": not args.pop("no_progress"),
        "threads": args.pop("threads"),
    }
    knobs = {name: value for name, value in args.items() if value is not None}
    started = time.perf_counter()
    assets = prepare_cpu_demo(**runtime, **knobs)
    print(describe(assets))
    print(f"prepare_cpu_demo took {time.perf_counter() - started:.3f} s (built in "
          f"{assets.manifest['build_seconds']:.1f} s on first use)")


if __name__ == "__main__":
    main()
