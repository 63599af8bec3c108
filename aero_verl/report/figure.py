"""The report's figure: six panels over one or more runs, a colour per run (a colour family per method).

    held-out accuracy vs compute   | held-out accuracy vs wall clock | rollouts per step
    rescue outcomes (AERO)         | zero-advantage groups           | success-rate calibration (AERO)

matplotlib is imported inside draw_report, and only its Agg canvas is used (no pyplot), so importing the
report is cheap and drawing never touches the caller's matplotlib backend.
"""

from __future__ import annotations

import textwrap

import numpy as np

from aero_verl.report.runs import Run

FIGURE_INCHES = (16, 9)
DPI = 110
# A colour family per method, AERO methods first; seeds of a method take shades of its family.
_FAMILIES = ("Blues", "Oranges", "Greens", "Purples", "Reds", "Greys")
_MARKERS_UP_TO = 50  # points per line; past this markers hide the line
_SMOOTHING_WINDOWS = 20  # a long per-step line is smoothed over 1/20 of its points
_SOLID, _DASHED, _DOTTED = "-", "--", ":"


def run_colours(runs: list[Run]) -> dict[str, tuple]:
    """{run label: RGBA}: methods in order of appearance, AERO ones first; a family per method."""
    import matplotlib

    methods: dict[tuple[bool, str], list[Run]] = {}
    for run in sorted(runs, key=lambda run: not run.is_aero):
        methods.setdefault((run.is_aero, run.method), []).append(run)
    colours = {}
    for index, members in enumerate(methods.values()):
        family = matplotlib.colormaps[_FAMILIES[index % len(_FAMILIES)]]
        shades = np.linspace(0.9, 0.5, len(members)) if len(members) > 1 else [0.75]
        colours.update({run.label: family(shade) for run, shade in zip(members, shades)})
    return colours


def _si_scale(largest: float, unit: str) -> tuple[float, str]:
    for factor, prefix in ((1e18, "E"), (1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M")):
        if largest >= factor:
            return factor, f"{prefix}{unit}"
    return 1.0, unit


def _time_scale(largest_seconds: float) -> tuple[float, str]:
    if largest_seconds >= 3 * 3600:
        return 3600.0, "h"
    if largest_seconds >= 300:
        return 60.0, "min"
    return 1.0, "s"


def moving_average(values: np.ndarray, window: int) -> np.ndarray:
    """Centred mean over `window` points, skipping NaN (a step that did not log the key); NaN where the
    window holds no value."""
    finite = np.isfinite(values)
    kernel = np.ones(window)
    sums = np.convolve(np.where(finite, values, 0.0), kernel, mode="same")
    counts = np.convolve(finite.astype(float), kernel, mode="same")
    return np.divide(sums, counts, out=np.full(values.shape, np.nan), where=counts > 0)


def smoothing_window(runs: list[Run]) -> int:
    """Points per moving average for the per-step panels: 1 (none) while runs are short enough for markers,
    else 1/20 of the longest run."""
    longest = max((len(run.training_steps) for run in runs), default=0)
    return 1 if longest <= _MARKERS_UP_TO else longest // _SMOOTHING_WINDOWS


def _plot(ax, x, y, colour, style, window=1):
    """A run's line: with markers while there are few points; past that, a per-step series (window > 1) is
    drawn faint with its moving average on top, as RL dashboards do, so that seeds stay apart."""
    y = np.asarray(y, dtype=float)
    if np.count_nonzero(np.isfinite(y)) <= _MARKERS_UP_TO:
        ax.plot(x, y, linestyle=style, color=colour, linewidth=1.6, marker="o", markersize=3.5)
    elif window > 1:
        ax.plot(x, y, linestyle=style, color=colour, linewidth=0.8, alpha=0.2)
        ax.plot(x, moving_average(y, window), linestyle=style, color=colour, linewidth=1.8)
    else:
        ax.plot(x, y, linestyle=style, color=colour, linewidth=1.6)


def _style_legend(ax, entries):
    """A legend of line styles (the runs' colours are in the figure legend)."""
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color="0.25", linestyle=style, linewidth=1.6) for style, _ in entries]
    ax.legend(handles, [label for _, label in entries], fontsize=8, loc="best", framealpha=0.8)


def _note(ax, text):
    """An empty panel says why it is empty."""
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", color="0.4", fontsize=10, wrap=True)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_xlabel("")
    ax.set_ylabel("")


def _per_step_axes(ax, title, ylabel, window):
    from matplotlib.ticker import MaxNLocator

    ax.set_title(title, fontsize=11)
    ax.set_xlabel("training step" + (f" (bold: {window}-step moving average)" if window > 1 else ""))
    ax.set_ylabel(ylabel)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)


def _k_labels(runs: list[Run]) -> tuple[str, str]:
    """("Avg@8", "Pass@8"), or ("Avg@N", "Pass@N (N = 4/8)") when the runs validated with different N."""
    ks = sorted({v.k for run in runs for v in run.validations})
    if len(ks) == 1:
        return f"Avg@{ks[0]}", f"Pass@{ks[0]}"
    return "Avg@N", f"Pass@N (N = {'/'.join(map(str, ks))})"


def _draw_accuracy(ax, runs, colours, cost_key, axis_name, scale):
    """Avg@N (solid) and Pass@N (dashed) of each run's validations against a running cost."""
    ax.set_title(f"Held-out accuracy vs {axis_name}", fontsize=11)
    drawn = [(run, run.validation_cost(cost_key)) for run in runs if run.validations]
    drawn = [(run, cost) for run, cost in drawn if np.isfinite(cost).any()]
    if not drawn:
        if any(run.validations for run in runs):
            _note(ax, f"validations, but no {cost_key}\nin metrics.jsonl to place them on")
        else:
            _note(ax, "no validation recorded\n(no eval/step_*.json, no val-core/ keys in metrics.jsonl)")
        return
    largest = max(np.nanmax(cost) for _, cost in drawn)
    factor, unit = scale(largest)
    for run, cost in drawn:
        x = cost / factor
        _plot(ax, x, [v.avg for v in run.validations], colours[run.label], _SOLID)
        _plot(ax, x, [v.pass_at for v in run.validations], colours[run.label], _DASHED)
    avg_label, pass_label = _k_labels([run for run, _ in drawn])
    ax.set_xlabel(f"cumulative {axis_name} ({unit})")
    ax.set_ylabel("accuracy (mean over benchmarks)")
    ax.grid(alpha=0.3)
    _style_legend(ax, [(_SOLID, avg_label), (_DASHED, pass_label)])


def _draw_rollouts(ax, runs, colours, window):
    _per_step_axes(ax, "Rollouts per step", "rollouts", window)
    for run in runs:
        colour = colours[run.label]
        source = "aero" if run.is_aero else "run"
        kept = "aero/rollouts_kept" if run.is_aero else "run/rollouts_trained"
        _plot(ax, *run.per_step(f"{source}/rollouts_generated"), colour, _SOLID, window)
        _plot(ax, *run.per_step(kept), colour, _DASHED, window)
        if run.has("aero/budget"):
            steps, budget = run.per_step("aero/budget")
            ax.plot(steps, budget, linestyle=_DOTTED, color=colour, linewidth=2.2)
    entries = [(_SOLID, "generated"), (_DASHED, "kept (trained)")]
    if any(run.has("aero/budget") for run in runs):
        entries.append((_DOTTED, "budget (AERO)"))
    _style_legend(ax, entries)


def _draw_aero_lines(ax, runs, colours, window, lines):
    """Per-step lines of AERO keys, for AERO runs only; a note if there is none."""
    aero_runs = [run for run in runs if run.is_aero]
    if not aero_runs:
        _note(ax, "no AERO run among these\n(baselines log no aero/ metrics)")
        return
    for run in aero_runs:
        for key, style, _ in lines:
            _plot(ax, *run.per_step(key), colours[run.label], style, window)
    _style_legend(ax, [(style, label) for _, style, label in lines])


def _draw_zero_advantage(ax, runs, colours, window):
    _per_step_axes(ax, "Zero-advantage groups (all rollouts same reward)", "share of groups", window)
    for run in runs:
        _plot(ax, *run.per_step("run/zero_variance_share"), colours[run.label], _SOLID, window)
        if run.is_aero:
            _plot(ax, *run.per_step("aero/zero_variance_share_stage1"), colours[run.label], _DOTTED, window)
    ax.set_ylim(-0.03, 1.03)
    entries = [(_SOLID, "as generated")]
    if any(run.is_aero for run in runs):
        entries.append((_DOTTED, "AERO Stage I"))
    _style_legend(ax, entries)


def draw_report(runs: list[Run], out_path: str, problems: list[str]) -> None:
    """Draw the runs' six panels into a PNG at out_path; `problems` (runs not drawn) go under the panels."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    colours = run_colours(runs)
    figure = Figure(figsize=FIGURE_INCHES, dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(2, 3)
    _draw_accuracy(axes[0, 0], runs, colours, "run/flops_cumulative", "compute",
                   lambda largest: _si_scale(largest, "FLOP"))
    _draw_accuracy(axes[0, 1], runs, colours, "run/wall_s_cumulative", "wall clock", _time_scale)
    window = smoothing_window(runs)
    _draw_rollouts(axes[0, 2], runs, colours, window)
    _per_step_axes(axes[1, 0], "Rescue outcomes (AERO)", "prompts", window)
    _draw_aero_lines(axes[1, 0], runs, colours, window, [("aero/prompts_rescue", _SOLID, "in rescue"),
                                                         ("aero/prompts_rescued", _DASHED, "rescued"),
                                                         ("aero/prompts_failed_rescue", _DOTTED, "failed rescue")])
    _draw_zero_advantage(axes[1, 1], runs, colours, window)
    _per_step_axes(axes[1, 2], "Success-rate calibration (AERO)", "Brier score (lower is better)", window)
    _draw_aero_lines(axes[1, 2], runs, colours, window, [("aero/posterior_brier", _SOLID, "posterior"),
                                                         ("aero/prior_brier", _DASHED, "prior")])
    if not any(run.training_steps for run in runs):
        # A run stopped after its first validation: the per-step panels would be blank axes.
        for ax in (axes[0, 2], *axes[1]):
            title = ax.get_title()
            ax.clear()
            ax.set_title(title, fontsize=11)
            _note(ax, "no training step logged yet\n(no line with timing_s/step in metrics.jsonl)")

    kinds = {run.label: "AERO" if run.is_aero else "baseline" for run in runs}
    handles = [Line2D([], [], color=colours[run.label], linewidth=3) for run in runs]
    # The title is the runs' legend's title: a suptitle beside an outside legend overlaps it.
    figure.legend(handles, [f"{run.label} ({kinds[run.label]})" for run in runs], loc="outside upper center",
                  ncols=min(len(runs), 5), fontsize=10, frameon=False,
                  title=textwrap.shorten("Training report: " + ", ".join(run.label for run in runs), 160),
                  title_fontproperties={"size": 14, "weight": "bold"})
    if problems:
        # supxlabel, unlike a free text, gets its room from the constrained layout.
        figure.supxlabel("not drawn: " + "; ".join(problems), fontsize=9, color="firebrick", wrap=True)
    figure.savefig(out_path, dpi=DPI)
