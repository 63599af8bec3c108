"""The end-of-run summary."""

from aero_verl.verl_ext.summary import RunSummary, accuracy_by_source


def test_summary_reads_verl_validation_metrics():
    metrics = {"val-core/arith/L1/acc/mean@8": 0.5, "val-core/arith/L1/reward/mean@8": 0.4,
               "val-aux/arith/L1/acc/std@8": 0.1, "val-core/other/reward/mean@4": 0.25}
    assert accuracy_by_source(metrics) == {"arith/L1": 0.5, "other": 0.25}
    summary = RunSummary()
    summary.record_validation(0, metrics)
    summary.record_validation(20, {"val-core/arith/L1/acc/mean@8": 0.75})
    summary.record_cumulative({"steps": 20, "prompts": 320, "budget": 5120, "rollouts_generated": 3000,
                               "rollouts_kept": 1000, "prompts_rescue": 50, "prompts_rescued": 10})
    text = summary.render()
    assert "0.500 ->  0.750" in text and "+41.4% saved" in text and "+80.5% saved" in text
