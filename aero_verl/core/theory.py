"""Theorem 4.1 / Lemma 4.2 as reconstructed in docs/paper_readings.md.

With binary rewards, a group of c correct and m incorrect rollouts, GRPO advantages (population std)
A+ = sqrt(m / c) and A- = -sqrt(c / m), and mean score vectors mu+ and mu- of the correct and incorrect
rollouts, the expected per-query gradient of the small-step GRPO objective is

    E[g] = sqrt(c m) / (c + m) * (mu+ - mu-),   so   ||E[g]|| = f(c, m) ||mu+ - mu-||,
    f(c, m) = sqrt(c m) / (c + m) = sqrt(k) / (1 + k),  k = m / c.                          (Theorem 4.1)

For fixed c, f is maximised at m = c, where f = 1/2 (Lemma 4.2). Selective rejection uses this to keep
every correct rollout and about as many incorrect ones; the simulator uses f as the useful gradient
signal a group contributes.
"""

from __future__ import annotations

import numpy as np


def gradient_scale(correct, incorrect) -> np.ndarray:
    """f(c, m) = sqrt(c m) / (c + m); 0 for a group without both outcomes."""
    c = np.asarray(correct, dtype=np.float64)
    m = np.asarray(incorrect, dtype=np.float64)
    total = c + m
    return np.where((c > 0) & (m > 0), np.sqrt(c * m) / np.where(total > 0, total, 1.0), 0.0)

