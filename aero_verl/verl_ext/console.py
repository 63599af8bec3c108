"""What a run shows a person: one line per step and a compact table per validation.

The trainer prints these lines with CONSOLE_MARK; aero_verl.main_ppo's compact console
(`aero.trainer.console=compact`) passes marked lines (and aero_verl's own warnings) to the terminal and
sends everything else verl, Ray and TransferQueue print to the run's log file.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
from collections.abc import Iterator

from omegaconf import OmegaConf, open_dict

CONSOLE_MARK = "[aero] "
_MEAN_AT_N = re.compile(r"^val-core/(?P<source>.+)/(?P<var>acc|reward)/mean@(?P<n>\d+)$")
_PASS_AT_N = re.compile(r"^val-core/(?P<source>.+)/acc/pass@(?P<n>\d+)$")


def say(line: str) -> None:
    print(f"{CONSOLE_MARK}{line}", flush=True)


def step_line(step: int, total_steps: int, metrics: dict) -> str:
    """`step  3/20 ...` with the figures that matter: generated / budget, kept, rescued, zero-advantage
    share, step time (an AERO step), or generated, trained and zero-advantage share (a baseline step)."""
    width = len(str(total_steps))
    done = round(10 * step / max(total_steps, 1))
    head = f"step {step:>{width}}/{total_steps} {'#' * done}{'.' * (10 - done)}"
    seconds = metrics.get("timing_s/step", float("nan"))
    if "aero/rollouts_generated" in metrics:
        m = {key.removeprefix("aero/"): value for key, value in metrics.items() if key.startswith("aero/")}
        budget = max(m.get("budget", 0.0), 1.0)
        parts = [
            f"generated {m['rollouts_generated']:>4.0f}/{budget:.0f} ({m['rollouts_generated'] / budget:4.0%})",
            f"kept {m['rollouts_kept']:>4.0f}",
            f"rescued {m.get('prompts_rescued', 0):.0f}/{m.get('prompts_rescue', 0):.0f}",
            f"zero-adv {m.get('zero_variance_share_stage1', 0):.2f}",
            f"phases {m.get('generation_phases', 0):.0f}",
        ]
        if m.get("rollouts_stopped"):
            parts.append(f"stopped {m['rollouts_stopped']:.0f}")
    else:
        tokens = metrics.get("run/tokens_trained", 0.0)
        parts = [f"trained tokens {tokens:>6.0f}", f"reward {metrics.get('critic/score/mean', float('nan')):.3f}"]
    return " | ".join([head, *parts, f"{seconds:5.1f} s"])


def validation_table(step: int, metrics: dict) -> list[str]:
    """Avg@N and Pass@N per benchmark, one row each, under a header naming the step."""
    avg, passes, n = {}, {}, None
    for name, value in metrics.items():
        if match := _MEAN_AT_N.match(name):
            if match["source"] not in avg or match["var"] == "acc":
                avg[match["source"]] = value
                n = match["n"]
        elif match := _PASS_AT_N.match(name):
            passes[match["source"]] = value
    if not avg:
        return []
    width = max(max(len(source) for source in avg) + 2, len(f"validation, step {step}"))
    lines = [f"{f'validation, step {step}':<{width}}  avg@{n}  pass@{n}"]
    for source in sorted(avg):
        pass_text = f"{passes[source]:6.3f}" if source in passes else "     -"
        lines.append(f"{'  ' + source:<{width}}  {avg[source]:5.3f}  {pass_text}")
    return lines


class _ConsoleFilter:
    """A stream for sys.stdout/sys.stderr: everything goes to the run's log, marked lines also to the terminal."""

    def __init__(self, log, terminal):
        self._log = log
        self._terminal = terminal
        self._partial = ""

    def write(self, text: str) -> int:
        self._log.write(text)
        self._partial += text
        *lines, self._partial = self._partial.split("\n")
        for line in lines:
            # Ray prefixes a worker's lines with "(ActorName pid=...)"; the mark is where ours begin.
            at = line.find(CONSOLE_MARK.strip())
            if at >= 0:
                self._terminal.write(line[at:] + "\n")
                self._terminal.flush()
        return len(text)

    def flush(self) -> None:
        self._log.flush()

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return self._log.fileno()


@contextlib.contextmanager
def compact_console(config, run_dir: str) -> Iterator[None]:
    """`aero.trainer.console=compact`: the terminal shows the step lines, validation tables, aero_verl's
    warnings and errors; verl's, Ray's and TransferQueue's output goes to <run_dir>/run.log. `full` (or
    any run started through verl's own entry point) leaves the console as verl has it."""
    mode = OmegaConf.select(config, "aero.trainer.console", default="compact")
    if mode != "compact":
        yield
        return
    with open_dict(config):
        loggers = OmegaConf.select(config, "trainer.logger")
        loggers = [loggers] if isinstance(loggers, str) else list(loggers or [])
        # verl's console backend prints every metric of every step (hundreds of keys); the step line says
        # what matters and metrics.jsonl keeps the rest.
        config.trainer.logger = [name for name in loggers if name != "console"]
    os.makedirs(run_dir, exist_ok=True)
    path = os.path.join(run_dir, "run.log")
    terminal = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
    say_to = terminal.write
    say_to(f"{CONSOLE_MARK}verl, Ray and TransferQueue output: {path}  (aero.trainer.console=full shows it here)\n")
    saved_fds = os.dup(1), os.dup(2)
    saved_streams = sys.stdout, sys.stderr
    with open(path, "a", buffering=1) as log:
        # File descriptors too: C extensions and child processes started from here write to fd 1 and 2.
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        sys.stdout = sys.stderr = _ConsoleFilter(log, terminal)
        try:
            yield
        except BaseException as error:
            sys.stdout, sys.stderr = saved_streams
            os.dup2(saved_fds[0], 1)
            os.dup2(saved_fds[1], 2)
            log.flush()
            tail = open(path, errors="replace").read().splitlines()[-40:]
            say_to("\n".join(["", f"{CONSOLE_MARK}the run failed: {type(error).__name__}: {error}",
                              f"{CONSOLE_MARK}last lines of {path}:", *tail, ""]) + "\n")
            raise
        finally:
            sys.stdout, sys.stderr = saved_streams
            os.dup2(saved_fds[0], 1)
            os.dup2(saved_fds[1], 2)
            for fd in saved_fds:
                os.close(fd)
    terminal.close()
