"""The CPU demo's verifiable task: five levels of integer arithmetic, written as verl parquet files.

A question is `f"{a}{op}{b}="` (for example `345+67=`). The response comes in one of two formats:
  - "answer" (the demo): just `str(a op b)`, 1-4 tokens, so generation time is per-request overhead;
  - "scratchpad" (the long-response variant): a worked solution, then `#### {answer}`, 17-59 tokens (eos
    included) when right, as in math reasoning. Addition is written column by column from the ones digit,
    one line per column `{digit}+{digit}+{carry}={column sum} {answer digits so far}`; 2-digit x 1-digit
    multiplication writes its two partial products and then adds them the same way:

        345+67=                          23*7=
        5+7+0=12 2                       3*7=21
        4+6+1=11 12                      20*7=140
        3+0+1=4 412                      1+0+0=1 1
        #### 412                         2+4+0=6 61
                                         0+1+0=1 161
                                         #### 161

    Every line is one step a tiny model can learn (a digit fact, a carry, a copy), and harder levels write
    more lines, so length grows with difficulty: failures, which are mostly at the hard levels, run longer.
After the SFT warm start the levels land at different competence: L1/L2 mostly solved, L3/L4 partial, L5
(2-digit x 1-digit multiplication) mostly 0/8 but with some rescuable prompts. That mix of all-correct,
all-wrong and partial groups is the regime AERO is built for.

Everything is deterministic in its seeds (numpy PCG64 streams), and the held-out set uses its own fixed seed,
so evaluation prompts are the same for every demo seed and never appear in SFT or RL training.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

# Bump when levels, question format, splits or row layout change: it is part of the asset cache key.
TASK_VERSION = 1
# Bump when the scratchpad layout changes. It enters the cache key of scratchpad builds only (see
# assets.DemoConfig.versions), so the answer-format demo's cache, and the results measured on it, stay valid.
SCRATCHPAD_VERSION = 1

RESPONSE_FORMATS = ("answer", "scratchpad")
# Ends a scratchpad and introduces its final answer, as in GSM8K; reward.py grades the text after it.
ANSWER_MARKER = "####"

DATA_SOURCE_PREFIX = "arith"
ABILITY = "arithmetic"

# Independent RNG streams, so resizing one split never reshuffles another.
_HELDOUT_STREAM = 0
_TRAIN_POOL_STREAM = 1000


@dataclass(frozen=True)
class Level:
    """One difficulty level: `a op b`, operands drawn uniformly from inclusive ranges."""

    number: int  # 1..5; also the top digits of every problem's stable index
    op: str  # "+" or "*"
    a_range: tuple[int, int]
    b_range: tuple[int, int]

    @property
    def name(self) -> str:
        return f"L{self.number}"

    @property
    def data_source(self) -> str:
        """verl groups validation metrics by data_source, so one per level gives per-level accuracy."""
        return f"{DATA_SOURCE_PREFIX}/{self.name}"

    @property
    def space(self) -> int:
        """Number of distinct questions in the level."""
        (a_lo, a_hi), (b_lo, b_hi) = self.a_range, self.b_range
        return (a_hi - a_lo + 1) * (b_hi - b_lo + 1)

    def sample(self, rng: np.random.Generator) -> Problem:
        a = int(rng.integers(self.a_range[0], self.a_range[1] + 1))
        b = int(rng.integers(self.b_range[0], self.b_range[1] + 1))
        return Problem(self, a, b)


LEVELS: tuple[Level, ...] = (
    Level(1, "+", (0, 9), (0, 9)),
    Level(2, "+", (10, 99), (0, 9)),
    Level(3, "+", (10, 99), (10, 99)),
    Level(4, "+", (100, 999), (10, 99)),
    Level(5, "*", (10, 99), (2, 9)),
)
LEVEL_BY_NAME = {level.name: level for level in LEVELS}


@dataclass(frozen=True)
class Problem:
    level: Level
    a: int
    b: int

    @property
    def question(self) -> str:
        return f"{self.a}{self.level.op}{self.b}="

    @property
    def answer(self) -> int:
        return self.a * self.b if self.level.op == "*" else self.a + self.b

    def response(self, response_format: str) -> str:
        """The SFT target (without eos) in `response_format`, one of RESPONSE_FORMATS."""
        if response_format == "answer":
            return str(self.answer)
        if response_format == "scratchpad":
            steps = multiplication_steps(self.a, self.b) if self.level.op == "*" else addition_steps(self.a, self.b)
            return "\n".join([*steps, f"{ANSWER_MARKER} {self.answer}"])
        raise ValueError(f"response_format must be one of {RESPONSE_FORMATS}, got {response_format!r}")

    @property
    def index(self) -> int:
        """Unique, and stable across seeds, pool sizes and file order (a < 1000 and b < 1000 in every
        level), so per-prompt state such as AERO's Beta posterior can key on it."""
        return self.level.number * 1_000_000 + self.a * 1_000 + self.b

    def messages(self) -> list[dict[str, str]]:
        return [{"role": "user", "content": self.question}]


def addition_steps(a: int, b: int) -> list[str]:
    """Column addition from the ones digit, one line per column: `{da}+{db}+{carry}={sum} {digits so far}`.
    The carry is always written (0 included) so every line has the same shape; a carry out of the top column
    gets a column of its own (`0+0+1=1`), so the last line's digits are the whole sum."""
    steps, carry, digits = [], 0, ""
    while True:
        da, db = a % 10, b % 10
        column = da + db + carry
        digits = f"{column % 10}{digits}"
        steps.append(f"{da}+{db}+{carry}={column} {digits}")
        a, b, carry = a // 10, b // 10, column // 10
        if not (a or b or carry):
            return steps


def multiplication_steps(a: int, b: int) -> list[str]:
    """`a` (2 digits) times `b` (1 digit) as partial products, ones digit first (`3*7=21`, `20*7=140`),
    then their column addition. Each partial product is a times-table fact with the place value appended."""
    tens, ones = divmod(a, 10)
    return [f"{ones}*{b}={ones * b}", f"{tens * 10}*{b}={tens * 10 * b}", *addition_steps(ones * b, tens * 10 * b)]


@dataclass(frozen=True)
class TaskConfig:
    """Response format and sizes of the demo's splits. The defaults suit ~20 RL steps on a 2-core CPU."""

    # "answer" (the demo) or "scratchpad" (the long-response variant), see the module docstring. The splits
    # do not depend on it: both formats train and evaluate on the same prompts.
    response_format: str = "answer"

    # RL prompt pool: 80 per level with uniform weights. 80 is also every L1 fact not held out, and at
    # 16 prompts per step 20 steps see 320 prompts, so the pool is about one epoch.
    train_size: int = 400
    train_level_weights: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0, 1.0)
    # Held-out prompts per level, capped at a fifth of the level's space: 20 + 4 * 50 = 220 by default.
    val_per_level: int = 50
    # Fixed apart from the demo seed, so the held-out set (and what training excludes) never moves.
    heldout_seed: int = 1234


def draw_unique(
    level: Level, count: int, rng: np.random.Generator, excluded: set[str] = frozenset()
) -> list[Problem]:
    """`count` distinct problems of `level` not in `excluded`, in draw order (so a smaller count is a prefix
    of a larger one). Asks for more than the level has left return all of them."""
    excluded_here = sum(1 for question in excluded if _level_of_question(question) is level)
    count = min(count, level.space - excluded_here)
    drawn: dict[str, Problem] = {}
    while len(drawn) < count:
        problem = level.sample(rng)
        if problem.question not in excluded:
            drawn.setdefault(problem.question, problem)
    return list(drawn.values())


def _level_of_question(question: str) -> Level:
    op = "*" if "*" in question else "+"
    a, b = (int(part) for part in question.rstrip("=").split(op))
    for level in LEVELS:
        if level.op == op and level.a_range[0] <= a <= level.a_range[1] and level.b_range[0] <= b <= level.b_range[1]:
            return level
    raise ValueError(f"question {question!r} belongs to no level")


def heldout_problems(config: TaskConfig = TaskConfig()) -> list[Problem]:
    """The validation set: per level, min(val_per_level, space // 5) distinct problems."""
    problems = []
    for level in LEVELS:
        rng = np.random.default_rng([config.heldout_seed, _HELDOUT_STREAM, level.number])
        problems += draw_unique(level, min(config.val_per_level, level.space // 5), rng)
    return problems


def level_counts(total: int, weights: Sequence[float]) -> list[int]:
    """Split `total` over levels in proportion to `weights` (largest remainder, so counts sum to total)."""
    shares = np.asarray(weights, dtype=float) / float(np.sum(weights)) * total
    counts = np.floor(shares).astype(int)
    by_remainder = np.argsort(-(shares - counts), kind="stable")
    counts[by_remainder[: total - counts.sum()]] += 1
    return counts.tolist()


def train_pool(config: TaskConfig, seed: int, excluded: set[str]) -> list[Problem]:
    """The RL prompt pool: distinct problems, none of them in `excluded` (the held-out questions)."""
    if len(config.train_level_weights) != len(LEVELS):
        raise ValueError(f"train_level_weights needs {len(LEVELS)} entries, got {config.train_level_weights}")
    problems = []
    for level, count in zip(LEVELS, level_counts(config.train_size, config.train_level_weights)):
        rng = np.random.default_rng([seed, _TRAIN_POOL_STREAM, level.number])
        problems += draw_unique(level, count, rng, excluded)
    return problems


def sample_training_problems(
    rng: np.random.Generator, size: int, level_weights: Sequence[float], excluded: set[str]
) -> list[Problem]:
    """A fresh SFT batch: levels drawn by weight, operands uniform, held-out questions rejected."""
    probabilities = np.asarray(level_weights, dtype=float) / float(np.sum(level_weights))
    batch: list[Problem] = []
    while len(batch) < size:
        problem = LEVELS[int(rng.choice(len(LEVELS), p=probabilities))].sample(rng)
        if problem.question not in excluded:
            batch.append(problem)
    return batch


def verl_row(problem: Problem, response_format: str = "answer") -> dict:
    """One row in the layout verl's RLHFDataset and reward loop read. verl hands `extra_info` to the reward,
    which is how reward.py learns a row's format; answer rows leave it out, so the demo's files are the same
    bytes as before the scratchpad format existed."""
    extra_info = {"index": problem.index, "level": problem.level.name, "question": problem.question}
    if response_format != "answer":
        extra_info["response_format"] = response_format
    return {
        "data_source": problem.level.data_source,
        "prompt": problem.messages(),
        "ability": ABILITY,
        "reward_model": {"style": "rule", "ground_truth": str(problem.answer)},
        "extra_info": extra_info,
    }


def write_parquet(problems: Iterable[Problem], path: str, response_format: str = "answer") -> None:
    pq.write_table(pa.Table.from_pylist([verl_row(problem, response_format) for problem in problems]), path)


@dataclass(frozen=True)
class ResponseLengths:
    """Response lengths of a set of samples, in tokens with eos (a cut-off sample: its tokens up to the
    budget). What matters for rollout time is that failures run longer: a batch waits for its slowest row."""

    correct_mean: float | None  # None when no sample was correct (or none was wrong, below)
    incorrect_mean: float | None
    longest: int
    truncated_share: float  # share of samples that hit the token budget before eos

    @classmethod
    def of(cls, lengths: np.ndarray, correct: np.ndarray, truncated: np.ndarray) -> ResponseLengths:
        def mean_of(selected: np.ndarray) -> float | None:
            return float(selected.mean()) if selected.size else None

        return cls(mean_of(lengths[correct]), mean_of(lengths[~correct]), int(lengths.max()), float(truncated.mean()))


@dataclass
class SuccessSpread:
    """How per-prompt success is spread: prompts with k of n samples correct, overall and per level; and
    how long the correct and the incorrect samples were."""

    samples_per_prompt: int
    histogram: list[int]  # histogram[k] = number of prompts with k successes
    per_level: dict[str, list[int]] = field(default_factory=dict)
    # "all" and each level; empty in manifests written before lengths were recorded (their assets are valid)
    lengths: dict[str, ResponseLengths] = field(default_factory=dict)

    @classmethod
    def from_samples(
        cls, level_names: Sequence[str], correct: np.ndarray, lengths: np.ndarray, truncated: np.ndarray
    ) -> SuccessSpread:
        """From per-sample outcomes: `correct`, `lengths` and `truncated` are (prompts, samples) arrays, the
        prompts in the order of `level_names`."""
        samples_per_prompt = correct.shape[1]
        names = np.asarray(level_names)
        rows_of = {name: names == name for name in dict.fromkeys(level_names)}

        def histogram_of(rows: np.ndarray) -> list[int]:
            return np.bincount(correct[rows].sum(axis=1), minlength=samples_per_prompt + 1).tolist()

        def lengths_of(rows: np.ndarray) -> ResponseLengths:
            return ResponseLengths.of(lengths[rows], correct[rows], truncated[rows])

        everything = np.ones(len(names), dtype=bool)
        return cls(
            samples_per_prompt,
            histogram_of(everything),
            {name: histogram_of(rows) for name, rows in rows_of.items()},
            {"all": lengths_of(everything)} | {name: lengths_of(rows) for name, rows in rows_of.items()},
        )

    @property
    def num_prompts(self) -> int:
        return sum(self.histogram)

    @property
    def zero_share(self) -> float:
        """Share of prompts with no correct sample: all-wrong groups, AERO's rescue candidates."""
        return self.histogram[0] / self.num_prompts

    @property
    def full_share(self) -> float:
        """Share of prompts with every sample correct: all-right, zero-advantage groups."""
        return self.histogram[-1] / self.num_prompts

    @property
    def partial_share(self) -> float:
        return 1.0 - self.zero_share - self.full_share

    @property
    def mean_accuracy(self) -> float:
        return _mean_accuracy(self.histogram)

    def to_dict(self) -> dict:
        summary = {
            "zero_share": self.zero_share,
            "partial_share": self.partial_share,
            "full_share": self.full_share,
            "mean_accuracy": self.mean_accuracy,
        }
        return {**asdict(self), **summary}

    @classmethod
    def from_dict(cls, data: dict) -> SuccessSpread:
        lengths = {name: ResponseLengths(**values) for name, values in data.get("lengths", {}).items()}
        return cls(data["samples_per_prompt"], list(data["histogram"]), dict(data["per_level"]), lengths)

    def table(self) -> str:
        """One row per level: accuracy, 0/n | mixed | n/n shares, and (where recorded) the mean tokens of
        correct and incorrect samples, the longest, and the share cut at the budget; then the histogram."""
        n = self.samples_per_prompt
        length_header = f"{'tok ok':>8}{'tok bad':>8}{'max':>5}{'cut':>6}" if self.lengths else ""
        lines = [f"{'level':<6}{'prompts':>8}{'acc':>7}{f'0/{n}':>7}{'mixed':>7}{f'{n}/{n}':>7}{length_header}"
                 f"   hist 0..{n}"]
        for name, hist in [("all", self.histogram), *self.per_level.items()]:
            total = sum(hist)
            lines.append(
                f"{name:<6}{total:>8}{_mean_accuracy(hist):>7.3f}{hist[0] / total:>7.2f}"
                f"{1 - (hist[0] + hist[-1]) / total:>7.2f}{hist[-1] / total:>7.2f}"
                f"{_length_columns(self.lengths[name]) if self.lengths else ''}   {' '.join(map(str, hist))}"
            )
        return "\n".join(lines)


def _mean_accuracy(histogram: Sequence[int]) -> float:
    n = len(histogram) - 1
    return sum(k * count for k, count in enumerate(histogram)) / (n * sum(histogram))


def _length_columns(lengths: ResponseLengths) -> str:
    def tokens(mean: float | None) -> str:
        return "-" if mean is None else f"{mean:.1f}"

    return (f"{tokens(lengths.correct_mean):>8}{tokens(lengths.incorrect_mean):>8}{lengths.longest:>5}"
            f"{lengths.truncated_share:>6.2f}")
