import numpy as np

from aero_verl.core import GroupCounts, Stratum, stratify


def test_stratification_boundaries():
    strata = stratify(np.array([0, 1, 3, 4, 8, 0]), np.array([8, 8, 8, 8, 8, 0]), u_res=0.0, u_high=0.5)
    assert strata.tolist() == [Stratum.RESCUE, Stratum.LOW_SUCCESS, Stratum.LOW_SUCCESS,
                               Stratum.HIGH_ACCURACY, Stratum.HIGH_ACCURACY, Stratum.NO_ROLLOUTS]


def test_nonzero_rescue_threshold():
    strata = stratify(np.array([1, 2]), np.array([8, 8]), u_res=0.125, u_high=0.5)
    assert strata.tolist() == [Stratum.RESCUE, Stratum.LOW_SUCCESS]


def counts_of(groups, stage1_sizes, u_res=0.0):
    """groups: per prompt its outcomes in order; the first stage1_sizes[i] are Stage I."""
    group = np.concatenate([np.full(len(g), i) for i, g in enumerate(groups)])
    success = np.concatenate([np.asarray(g, dtype=bool) for g in groups])
    stage1 = np.concatenate([np.arange(len(g)) < n for g, n in zip(groups, stage1_sizes)])
    return GroupCounts.from_rollouts(group, success, stage1, len(groups), u_res=u_res, u_high=0.5)


def test_rescued_and_failed_rescue_are_defined_by_a_new_success():
    counts = counts_of([[0] * 8 + [0, 1], [0] * 12, [1] + [0] * 7 + [0] * 4, [1] * 3 + [0] * 5], [8, 8, 8, 8],
                       u_res=0.125)
    assert counts.in_rescue.tolist() == [True, True, True, False]
    assert counts.rescued.tolist() == [True, False, False, False]
    # with u_res > 0 a failed rescue can have a correct rollout: it failed because nothing new came
    assert counts.failed_rescue.tolist() == [False, True, True, False]
    assert counts.zero_variance.tolist() == [False, True, False, False]
    assert counts.stage1_zero_variance.tolist() == [True, True, False, False]
