"""TURN's GMM regularisation (issue 23, point 7).

TURN has no code: its "GMM threshold" is read as a fitted two-component mixture of the probe's per-sample
losses, and ``gmm_reg_covar`` (the variance floor added to each component) is an engineering choice beneath that
reading, shown by measurement (``benchmarks/turn_reg_covar.py``; docs/fidelity.md). The default is scikit-learn's
``GaussianMixture`` floor, 1e-6: the plain fitted mixture. DivideMix's 5e-4 (LiJunnan1992/DivideMix @ d9d3058,
``Train_cifar.py`` 186: ``GaussianMixture(n_components=2,max_iter=10,tol=1e-2,reg_covar=5e-4)``), chosen for
DivideMix's losses, is the option ``gmm_reg_covar = 5e-4``.
"""

from __future__ import annotations

import inspect
import math

import numpy as np
import pytest

from nlbench.engine.selection import fit_loss_gmm, gmm_select
from nlbench.methods.turn import TURN


def test_the_default_is_scikit_learns_floor_and_the_option_dividemixs():
    from sklearn.mixture import GaussianMixture

    sklearn_default = inspect.signature(GaussianMixture).parameters["reg_covar"].default
    assert sklearn_default == 1e-6
    assert TURN().gmm_reg_covar == sklearn_default
    assert TURN(gmm_reg_covar=5e-4).gmm_reg_covar == 5e-4


@pytest.mark.parametrize("reg_covar", [1e-6, 5e-4])
def test_the_floor_sets_how_sharply_the_gmm_splits(reg_covar):
    """Two tight clusters of 100,000 losses at 0 and 1 and two probes at 0.499 and 0.501 (min-max normalisation
    leaves them as they are). Each component's fitted variance is then its floor (plus the probes' own share,
    ≈ 0.88 · 0.499² / 1e5 ≈ 2.2e-6), its mean ≈ 0 or 1 and the weights equal, so the clean posterior at 0.499 is
    1 / (1 + exp(−(1 − 2 · 0.499) / (2σ²))): 1 / (1 + e^−2) = 0.881 at σ² = 5e-4 and 1 at σ² = 1e-6."""
    n = 100_000
    losses = np.concatenate([np.zeros(n), np.ones(n), [0.499, 0.501]])
    turn = TURN(gmm_reg_covar=reg_covar)
    fit = fit_loss_gmm(losses, seed=0, max_iter=turn.gmm_max_iter, tol=turn.gmm_tol, reg_covar=turn.gmm_reg_covar)
    expected = 1.0 / (1.0 + math.exp(-0.002 / (2 * reg_covar)))
    assert fit.posterior[-2] == pytest.approx(expected, abs=0.003)
    assert fit.posterior[-1] == pytest.approx(1.0 - expected, abs=0.003)
    # Through TURN's own selection (one class, global scope): the probe at 0.499 is kept at τ = 0.5 either way,
    # the one at 0.501 dropped.
    mask, _ = gmm_select(losses, np.zeros(len(losses), dtype=np.int64), 1, tau=turn.tau, scope="global",
                         max_iter=turn.gmm_max_iter, tol=turn.gmm_tol, reg_covar=turn.gmm_reg_covar)
    assert mask[-2] and not mask[-1]


def test_the_record_states_the_floor(write_grid):
    from nlbench.run.grids import expand, load_grid

    cells = expand(load_grid(write_grid(methods=[
        {"method": "turn", "mode": "lp-fft"},
        {"method": "turn", "mode": "lp-fft", "tag": "dmixreg", "params": {"gmm_reg_covar": 5e-4}}])))
    assert [c.method_params["gmm_reg_covar"] for c in cells] == [1e-6, 5e-4]
    assert cells[0].config_hash != cells[1].config_hash
