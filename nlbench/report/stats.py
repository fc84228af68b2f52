"""Ranking methods across the settings of a grid: average ranks, Friedman test, Nemenyi post-hoc.

The statistics come from SciPy (Friedman's chi-square, with its tie correction) and scikit-posthocs
(Nemenyi's test for blocked data and the critical-difference diagram); this module only arranges a
grid's records into the blocks × methods matrix they expect (Demšar, JMLR 2006: one block per
(dataset, backbone, noise setting), the value of a method in a block its mean over seeds).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd


def score_matrix(frame: pd.DataFrame, *, value: str = "value") -> tuple[pd.DataFrame, list[str]]:
    """(blocks × methods matrix of mean ``value`` over seeds, blocks dropped because a method lacks them).

    ``frame`` has columns block, method and ``value`` (one row per record). Only complete blocks enter a
    Friedman test, so a block missing any method is dropped and named."""
    means = frame.groupby(["block", "method"], sort=False)[value].mean().unstack("method")
    methods = list(dict.fromkeys(frame["method"]))
    means = means.reindex(columns=methods)
    incomplete = [str(b) for b in means.index[means.isna().any(axis=1)]]
    return means.dropna(axis=0, how="any"), incomplete


def average_ranks(matrix: pd.DataFrame, *, higher_is_better: bool = True) -> pd.Series:
    """Mean over blocks of each method's rank within the block (1 = best; ties share their average rank)."""
    ranks = matrix.rank(axis=1, ascending=not higher_is_better, method="average")
    return ranks.mean(axis=0)


@dataclass(frozen=True)
class RankTest:
    blocks: int
    methods: int
    ranks: pd.Series  # average rank of each method, best first
    statistic: float  # Friedman chi-square (tie-corrected); NaN when the test cannot run
    p_value: float
    critical_difference: float  # Nemenyi CD at alpha (in average-rank units)
    pairwise_p: pd.DataFrame | None  # Nemenyi p-values, methods × methods
    alpha: float
    note: str = ""  # why the test did not run, when it did not


def friedman_nemenyi(matrix: pd.DataFrame, *, alpha: float = 0.05, higher_is_better: bool = True) -> RankTest:
    """Friedman test over the blocks of ``matrix`` and Nemenyi's pairwise post-hoc test."""
    import scikit_posthocs as sp  # scipy and scikit-posthocs: heavy, for the report's rank tests only
    from scipy import stats

    n, k = matrix.shape
    ranks = average_ranks(matrix, higher_is_better=higher_is_better).sort_values() if n else pd.Series(dtype=float)
    if k < 3 or n < 2:
        return RankTest(n, k, ranks, math.nan, math.nan, math.nan, None, alpha,
                        note=f"a Friedman test needs at least 3 methods and 2 settings; this grid has {k} method(s) "
                             f"in {n} complete setting(s)")
    values = matrix.to_numpy(dtype=float)
    if np.all(values == values[:, :1]):
        return RankTest(n, k, ranks, math.nan, math.nan, math.nan, None, alpha,
                        note="every method has the same score in every setting")
    statistic, p_value = stats.friedmanchisquare(*values.T)
    # Nemenyi's p-values depend on rank differences only, the same whichever end ranks first.
    pairwise = sp.posthoc_nemenyi_friedman(values)
    pairwise.index = pairwise.columns = list(matrix.columns)
    q_alpha = stats.studentized_range.ppf(1 - alpha, k, np.inf) / math.sqrt(2)
    cd = q_alpha * math.sqrt(k * (k + 1) / (6.0 * n))
    return RankTest(n, k, ranks, float(statistic), float(p_value), float(cd), pairwise, alpha)
