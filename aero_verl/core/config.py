"""AERO's settings, each described once: default, group, provenance, allowed range and meaning.

Every field of `AEROConfig` carries its description in the field's metadata (`setting(...)` below). That
one description drives validation (`AEROConfig.__post_init__`), the README's configuration table
(`settings_table()`, checked by tests/core/test_config.py) and the `aero:` YAML group (whose keys and
defaults the same test compares). Provenance: [P] the paper gives the value, [I] it is inferred (the
readings in docs/paper_readings.md, the simulator and the CPU runs choose it).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

BUDGET_MODES = ("per_query", "pooled")
INVALID_REWARD_POLICIES = ("raise", "failure")


class AEROConfigError(ValueError):
    """An AERO setting is outside its allowed range; the message names the key, the value and the range."""


@dataclass(frozen=True)
class Check:
    """A validity test of one setting's value and the range it allows, in words."""

    test: Callable[[Any], bool]
    describe: Callable[[], str]

    @property
    def allowed(self) -> str:
        return self.describe()


def _fixed(text: str) -> Callable[[], str]:
    return lambda: text


def integer(minimum: int) -> Check:
    return Check(lambda v: _is_int(v) and v >= minimum, _fixed(f"an integer >= {minimum}"))


def optional_integer(minimum: int) -> Check:
    return Check(lambda v: v is None or (_is_int(v) and v >= minimum), _fixed(f"null or an integer >= {minimum}"))


def number(low: float, high: float | None = None, low_open: bool = False, high_open: bool = False) -> Check:
    def test(v) -> bool:
        if not _is_number(v):
            return False
        above = v > low if low_open else v >= low
        below = True if high is None else (v < high if high_open else v <= high)
        return above and below

    if high is None:
        return Check(test, _fixed(f"a number {'>' if low_open else '>='} {low:g}"))
    return Check(test, _fixed(f"a number in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"))


def choice(options: tuple[str, ...]) -> Check:
    return Check(lambda v: v in options, _fixed(" | ".join(options)))


def registered(kind: str) -> Check:
    """One of the policies registered for `kind` (core/policies/registry.py), read when checked: importing
    the policies package registers every policy module, and it imports this module, so not before."""

    def names() -> tuple[str, ...]:
        from aero_verl.core.policies import registry

        return registry.names(kind)

    return Check(lambda v: v in names(), lambda: " | ".join(names()))


BOOLEAN = Check(lambda v: isinstance(v, bool), _fixed("true | false"))


def setting(default, *, group: str, provenance: str, check: Check, meaning: str):
    """A dataclass field whose metadata is the setting's one description."""
    if provenance not in ("P", "I"):
        raise ValueError(f"provenance must be P or I, got {provenance!r}")
    return field(default=default, metadata={"group": group, "provenance": provenance, "check": check,
                                            "meaning": meaning})


@dataclass(frozen=True)
class AEROConfig:
    """The AERO algorithm (paper Sections 3-4), the `aero:` block of the Hydra config.

    Each field's meaning, range and provenance are in its `setting(...)` description below and in the
    README table generated from them (`python -m aero_verl.core.config` prints it).
    """

    n_total: int = setting(16, group="budget", provenance="P", check=integer(1),
                           meaning="rollout budget per prompt, the same as GRPO's group size N (Fig. 3)")
    budget_mode: str = setting("per_query", group="budget", provenance="I", check=choice(BUDGET_MODES),
                               meaning="`per_query`: no prompt exceeds n_total rollouts in a step; `pooled`: "
                                       "the batch shares batch x n_total, so one hard prompt may take more "
                                       "(rescue_mode=rounds only)")
    n_explore: int = setting(8, group="exploration", provenance="P", check=integer(1),
                             meaning="Stage I rollouts per prompt, from which its success rate u is estimated "
                                     "(Fig. 3); `actor_rollout_ref.rollout.n` must equal it")
    explore_mode: str = setting("fixed", group="exploration", provenance="I", check=registered("exploration"),
                                meaning="`fixed`: n_explore each; `posterior`: prompts whose posterior makes an "
                                        "all-same Stage I group likely get n_explore_min")
    n_explore_min: int = setting(2, group="exploration", provenance="I", check=integer(1),
                                 meaning="Stage I rollouts of confidently all-same prompts in `posterior` mode")
    explore_skip_probability: float = setting(
        0.9, group="exploration", provenance="I", check=number(0.0, 1.0, low_open=True),
        meaning="posterior probability of an all-same Stage I group above which `posterior` mode shrinks it")
    u_res: float = setting(0.0, group="rescue", provenance="P", check=number(0.0, 1.0, high_open=True),
                           meaning="prompts with Stage I success rate u <= u_res are rescued until a new "
                                   "success or the budget ends (Strategy 1)")
    rescue_mode: str = setting("rounds", group="rescue", provenance="I", check=registered("rescue"),
                               meaning="`rounds`: the paper's rounds of n_extra, each a generation barrier; "
                                       "`barrier_free`: a prompt's whole remaining budget is requested as soon "
                                       "as its own Stage I group ends, and stopped at its first success")
    n_extra: int = setting(2, group="rescue", provenance="P", check=integer(1),
                           meaning="rollouts added to each prompt still being rescued per round (Strategy 1)")
    max_rescue_rounds: int | None = setting(None, group="rescue", provenance="I", check=optional_integer(0),
                                            meaning="cap on rescue rounds per step in `rounds` mode; null = "
                                                    "until every rescue ends")
    u_high: float = setting(0.5, group="selection", provenance="P", check=number(0.0, 1.0, low_open=True),
                            meaning="low-success (u_res < u < u_high) / high-accuracy (u >= u_high) boundary "
                                    "(Section 3.2); high-accuracy groups are trained whole (Strategy 2)")
    k: float = setting(1.0, group="selection", provenance="I", check=number(0.0, low_open=True),
                       meaning="selective rejection keeps every correct rollout of a low-success group and "
                               "ceil(k c) incorrect ones (Strategy 3 rule [P]; value from Lemma 4.2)")
    drop_failed_rescues: bool = setting(True, group="selection", provenance="I", check=BOOLEAN,
                                        meaning="drop groups still all-wrong after their rescue")
    advantage_mode: str = setting("smoothed", group="advantage", provenance="I", check=registered("advantage"),
                                  meaning="zero-variance groups: `smoothed` (r - p~)/sqrt(p~(1-p~)), p~ the "
                                          "posterior mean; `constant` 2p~-1 on degenerate_keep rollouts; `off` "
                                          "plain GRPO, such groups dropped (Section 3.4)")
    degenerate_keep: int = setting(4, group="advantage", provenance="I", check=integer(1),
                                   meaning="rollouts kept per zero-variance group in `constant` mode")
    loss_weighting: str = setting("token_mean", group="advantage", provenance="I", check=registered("weighting"),
                                  meaning="`token_mean`: verl's loss, each token of the mini-batch alike; "
                                          "`per_group`: Theorem 4.1's, each kept group alike, rollouts averaged "
                                          "within it and tokens within each rollout")
    epsilon: float = setting(1e-6, group="advantage", provenance="I", check=number(0.0, low_open=True),
                             meaning="added to the group std, as in verl's GRPO")
    prior_alpha: float = setting(1.0, group="posterior", provenance="I", check=number(0.0, low_open=True),
                                 meaning="Beta prior pseudo-successes of every prompt's success probability")
    prior_beta: float = setting(1.0, group="posterior", provenance="I", check=number(0.0, low_open=True),
                                meaning="Beta prior pseudo-failures")
    forgetting: float = setting(1.0, group="posterior", provenance="I", check=number(0.0, 1.0, low_open=True),
                                meaning="rho: a <- a0 + rho (a - a0) + S before each update; 1 = exact Bayes")
    invalid_reward: str = setting("raise", group="rewards", provenance="I", check=choice(INVALID_REWARD_POLICIES),
                                  meaning="a reward that is NaN, infinite or not 0/1: `raise` stops naming the "
                                          "prompt; `failure` counts it as an incorrect rollout and reports it")
    seed: int = setting(0, group="rewards", provenance="I", check=integer(0),
                        meaning="selective rejection's randomness, derived per step from (seed, step)")

    def __post_init__(self) -> None:
        problems = list(config_problems(self))
        if problems:
            raise AEROConfigError("; ".join(problems))

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], key_prefix: str = "aero") -> AEROConfig:
        """Build from a plain or OmegaConf mapping, naming unknown keys instead of ignoring them."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise AEROConfigError(
                f"unknown key(s) {', '.join(f'{key_prefix}.{name}' for name in unknown)}; "
                f"valid keys: {', '.join(sorted(known))}"
            )
        return cls(**dict(values))

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def field_problems(instance, prefix: str) -> Iterator[str]:
    """One message per field whose value fails its own description's check."""
    for f in dataclasses.fields(instance):
        value = getattr(instance, f.name)
        check: Check = f.metadata["check"]
        if not check.test(value):
            yield f"{prefix}.{f.name}={value!r} is invalid; allowed: {check.allowed}"


def config_problems(cfg: AEROConfig) -> Iterator[str]:
    """Each field against its own range, then the relations between fields."""
    own = list(field_problems(cfg, "aero"))
    yield from own
    bad = {message.split("=", 1)[0].removeprefix("aero.") for message in own}

    def relation(key: str, holds: bool, allowed: str, *depends: str):
        if key not in bad and not bad.intersection(depends) and not holds:
            return f"aero.{key}={getattr(cfg, key)!r} is invalid; allowed: {allowed}"
        return None

    relations = [
        relation("n_explore", cfg.n_explore <= cfg.n_total,
                 f"an integer <= aero.n_total ({cfg.n_total}): Stage I draws from the same budget", "n_total"),
        relation("n_explore_min", cfg.n_explore_min <= cfg.n_explore,
                 f"an integer <= aero.n_explore ({cfg.n_explore})", "n_explore"),
        relation("degenerate_keep", cfg.degenerate_keep <= cfg.n_total,
                 f"an integer <= aero.n_total ({cfg.n_total})", "n_total"),
        relation("u_res", cfg.u_res < cfg.u_high, f"a number below aero.u_high ({cfg.u_high})", "u_high"),
        relation("budget_mode", cfg.budget_mode == "per_query" or cfg.rescue_mode == "rounds",
                 "per_query with aero.rescue_mode=barrier_free (a pooled budget needs the whole batch's "
                 "Stage I before any rescue; use rescue_mode=rounds for it)", "rescue_mode"),
    ]
    yield from (message for message in relations if message)


def settings_table(config_class=AEROConfig, prefix: str = "") -> str:
    """The Markdown table of a settings dataclass, from its fields' descriptions (README, docs)."""
    lines = ["| key | default | group | | meaning (allowed) |", "|---|---|---|---|---|"]
    for f in dataclasses.fields(config_class):
        default = "null" if f.default is None else str(f.default).lower() if isinstance(f.default, bool) \
            else f"`{f.default}`" if isinstance(f.default, str) else f"{f.default:g}" \
            if isinstance(f.default, float) else str(f.default)
        meta = f.metadata
        allowed = meta["check"].allowed.replace("|", "or")
        lines.append(f"| `{prefix}{f.name}` | {default} | {meta['group']} | [{meta['provenance']}] | "
                     f"{meta['meaning']} ({allowed}) |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(settings_table())
