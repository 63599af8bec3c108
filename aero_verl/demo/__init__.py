"""The CPU demo's embedded task: a tiny Qwen2 with partial competence on five levels of arithmetic.

`prepare_cpu_demo()` builds everything offline on first use and caches it (model.py: byte-level ChatML
tokenizer and a 202k-parameter Qwen2; task.py: levels, splits, verl parquet rows; warm_start.py: the SFT that
stops on a loss-EMA threshold and the sampler that measures the per-prompt success spread; reward.py: verl's
custom reward function). After the warm start (default seed, measured) about a quarter of the prompts are
0/8 (mostly L5, the multiplication level; half of them do get a success within 64 samples, so they are
rescuable), about a quarter are 8/8 and half are in between: the mix of all-wrong, all-right and informative
groups that AERO's allocation acts on.

The long-response variant (`response_format="scratchpad"`, recipe cpu_long) trains the same model on the
same prompts to write a worked solution before `#### answer`: 17-59 tokens when right, failures longer on
average, so CPU rollout time is bound by tokens and by the slowest rollout rather than per-request overhead.
Its warm start (threshold measured in warm_start.WarmStartConfig) lands at a similar mix, with incorrect
samples ~49 tokens long on average against ~35 for correct ones.
"""

from aero_verl.demo.model import TinyQwen2Config, build_model, build_tokenizer
from aero_verl.demo.reward import compute_score, is_correct
from aero_verl.demo.task import (
    LEVELS,
    RESPONSE_FORMATS,
    Level,
    Problem,
    ResponseLengths,
    SuccessSpread,
    TaskConfig,
    heldout_problems,
    train_pool,
)
from aero_verl.demo.warm_start import SamplingConfig, WarmStartConfig, WarmStartTrainer, measure_spread

__all__ = [
    "LEVELS",
    "DemoAssets",
    "DemoConfig",
    "Level",
    "Problem",
    "RESPONSE_FORMATS",
    "ResponseLengths",
    "SamplingConfig",
    "SuccessSpread",
    "TaskConfig",
    "TinyQwen2Config",
    "WarmStartConfig",
    "WarmStartTrainer",
    "build_model",
    "build_tokenizer",
    "compute_score",
    "heldout_problems",
    "is_correct",
    "measure_spread",
    "prepare_cpu_demo",
    "train_pool",
]

_FROM_ASSETS = ("DemoAssets", "DemoConfig", "prepare_cpu_demo")


def __getattr__(name: str):
    # Imported on first use, not above: `python -m aero_verl.demo.assets` would otherwise find the module
    # already imported by this package and run a second copy of it as __main__ (runpy warns about that).
    if name in _FROM_ASSETS:
        from aero_verl.demo import assets

        return getattr(assets, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
