"""The compact console: the step line, the validation table, and the filter between terminal and log."""

import io

from aero_verl.verl_ext.console import CONSOLE_MARK, _ConsoleFilter, step_line, validation_table


def test_an_aero_step_line_has_the_figures_that_matter():
    metrics = {"aero/rollouts_generated": 152.0, "aero/budget": 256.0, "aero/rollouts_kept": 90.0,
               "aero/prompts_rescued": 1.0, "aero/prompts_rescue": 4.0, "aero/zero_variance_share_stage1": 0.5,
               "aero/generation_phases": 1.0, "aero/rollouts_stopped": 3.0, "timing_s/step": 3.25}
    line = step_line(5, 20, metrics)
    for fragment in ("step  5/20", "generated  152/256 ( 59%)", "kept   90", "rescued 1/4", "zero-adv 0.50",
                     "phases 1", "stopped 3", "3.2 s"):
        assert fragment in line, (fragment, line)


def test_a_baseline_step_line_and_a_validation_table():
    assert "trained tokens   7212" in step_line(1, 2, {"run/tokens_trained": 7212.0, "timing_s/step": 5.0})
    table = validation_table(20, {"val-core/arith/L1/acc/mean@8": 0.9, "val-core/arith/L1/acc/pass@8": 1.0,
                                  "val-core/arith/L2/reward/mean@8": 0.7, "val-aux/x/acc/mean@8": 0.1})
    assert table[0].startswith("validation, step 20") and "avg@8  pass@8" in table[0]
    assert "arith/L1" in table[1] and "0.900   1.000" in table[1]
    assert "arith/L2" in table[2] and table[2].rstrip().endswith("-")
    assert validation_table(3, {"actor/loss": 1.0}) == []


def test_the_filter_sends_everything_to_the_log_and_marked_lines_to_the_terminal():
    log, terminal = io.StringIO(), io.StringIO()
    stream = _ConsoleFilter(log, terminal)
    stream.write("(TaskRunnerV1 pid=12) config dump\n(TaskRunnerV1 pid=12) " + CONSOLE_MARK + "step 1/2")
    stream.write(" | 3.0 s\nplain verl line\n")
    assert terminal.getvalue() == CONSOLE_MARK + "step 1/2 | 3.0 s\n"
    assert "config dump" in log.getvalue() and "plain verl line" in log.getvalue()
