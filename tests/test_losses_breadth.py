"""SCE, NCE+RCE and Forward-T (issue 14): loss values and gradients by hand, the reference codes' constants and
formulas, the anchor-point estimator of T on constructed predictions, and one run per method and mode."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from test_dividemix import tiny_context  # tests/ is on sys.path (pytest's default prepend import mode)

from nlbench.engine.losses import CODE_LOG_ZERO, cifar_family, resolve_weights, reverse_cross_entropy
from nlbench.engine.transition import anchor_points, anchor_transition, transition_error
from nlbench.errors import ConfigError
from nlbench.methods import CellContext, build_method
from nlbench.methods.forward_t import ForwardCorrectedLoss, ForwardT
from nlbench.methods.nce_rce import NCE_RCE_SETTINGS, NCERCELoss, normalized_cross_entropy
from nlbench.methods.sce import SCE_SETTINGS, SCELoss

# logits (0, ln 3) give p = (1/4, 3/4)
LOGITS = torch.tensor([[0.0, math.log(3.0)]])
A = math.log(1e-4)  # the reference codes' log 0: ln of the one-hot label clamped to 1e-4


def grad_of(loss_fn, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    z = logits.clone().requires_grad_(True)
    loss_fn(z, labels).sum().backward()
    return z.grad


# ------------------------------------------------------------------------------------------------ SCE


def test_log_zero_constant_is_the_reference_clamp():
    # SCE loss.py 18 and APL loss.py 35/55 clamp the one-hot label to [1e-4, 1] before the log
    assert CODE_LOG_ZERO == pytest.approx(-9.210340, abs=1e-6)


def test_rce_value_and_gradient_by_hand():
    # RCE = −A·(1 − p_y): label 1 → 9.21034 × 0.25; label 0 → 9.21034 × 0.75
    assert float(reverse_cross_entropy(LOGITS, torch.tensor([1]))) == pytest.approx(-A * 0.25, abs=1e-5)
    assert float(reverse_cross_entropy(LOGITS, torch.tensor([0]))) == pytest.approx(-A * 0.75, abs=1e-5)
    # the paper's A = −4: 4·(1 − p_y)
    assert float(reverse_cross_entropy(LOGITS, torch.tensor([1]), -4.0)) == pytest.approx(1.0, abs=1e-6)
    # ∂RCE/∂z_j = A·p_y·(δ_jy − p_j): for y = 1, A·0.75·(−0.25, 0.25) = (+1.726939, −1.726939)
    g = grad_of(lambda z, y: reverse_cross_entropy(z, y), LOGITS, torch.tensor([1]))
    assert g[0].tolist() == pytest.approx([1.726939, -1.726939], abs=1e-5)
    # the push vanishes where the model doubts the label: p = (0.01, 0.99), y = 0 → |A|·0.01·0.99 = 0.091182,
    # where CE's gradient is p − e_y = (−0.99, 0.99)
    doubted = torch.tensor([[0.0, math.log(99.0)]])
    g = grad_of(lambda z, y: reverse_cross_entropy(z, y), doubted, torch.tensor([0]))
    assert g[0].tolist() == pytest.approx([A * 0.01 * 0.99, -A * 0.01 * 0.99], abs=1e-5)
    assert float(g[0, 1]) == pytest.approx(0.091182, abs=1e-5)


def test_sce_value_by_hand():
    # α CE + β RCE with the CIFAR-10 weights (0.1, 1.0): 0.1·(−ln 0.75) + 9.21034·0.25 = 2.331353
    assert float(SCELoss(0.1, 1.0)(LOGITS, torch.tensor([1]))) == pytest.approx(2.331353, abs=1e-5)
    # label 0: 0.1·ln 4 + 9.21034·0.75 = 7.046385
    assert float(SCELoss(0.1, 1.0)(LOGITS, torch.tensor([0]))) == pytest.approx(7.046385, abs=1e-5)
    # the paper's A = −4: 0.1·0.287682 + 4·0.25 = 1.028768
    assert float(SCELoss(0.1, 1.0, -4.0)(LOGITS, torch.tensor([1]))) == pytest.approx(1.028768, abs=1e-5)
    # the batch mean of both rows
    both = SCELoss(0.1, 1.0)(LOGITS.repeat(2, 1), torch.tensor([1, 0]))
    assert float(both) == pytest.approx((2.331353 + 7.046385) / 2, abs=1e-5)


def test_sce_matches_the_reference_formula_on_random_logits():
    """APL loss.py 27-41 (SCELoss.forward), written out: CE + clamp(p, 1e-7, 1), clamp(one-hot, 1e-4, 1)."""
    torch.manual_seed(0)
    logits, labels = torch.randn(16, 7) * 3, torch.randint(0, 7, (16,))
    p = F.softmax(logits, dim=1).clamp(min=1e-7, max=1.0)
    one_hot = F.one_hot(labels, 7).float().clamp(min=1e-4, max=1.0)
    expected = 6.0 * F.cross_entropy(logits, labels) + 0.1 * (-(p * torch.log(one_hot)).sum(1)).mean()
    assert float(SCELoss(6.0, 0.1)(logits, labels)) == pytest.approx(float(expected), rel=1e-6)


def test_published_weights_and_their_families():
    assert SCE_SETTINGS["cifar10"][:2] == (0.1, 1.0) and SCE_SETTINGS["cifar100"][:2] == (6.0, 0.1)
    assert NCE_RCE_SETTINGS["cifar10"][:2] == (1.0, 1.0) and NCE_RCE_SETTINGS["cifar100"][:2] == (10.0, 0.1)
    assert cifar_family("cifar100n", 100) == "cifar100" and cifar_family("cifar10n", 10) == "cifar10"
    assert cifar_family("digits", 10) == "cifar10" and cifar_family("clothing1m", 14) == "cifar10"
    assert cifar_family("webvision", 50) == "cifar100" and cifar_family(None, 31) == "cifar10"
    # the dataset name wins over the class count (a CIFAR-100 subset keeps CIFAR-100's setting)
    assert resolve_weights(SCE_SETTINGS, None, None, "cifar100", 10)[:2] == (6.0, 0.1)
    alpha, beta, source = resolve_weights(SCE_SETTINGS, 0.5, None, "cifar10", 10)
    assert (alpha, beta) == (0.5, 1.0) and source.startswith("partly explicit; cifar10 setting")
    assert resolve_weights(SCE_SETTINGS, 0.5, 2.0, "cifar10", 10) == (0.5, 2.0, "explicit")
    # criterion(num_samples, num_classes) alone resolves by the class count
    crit = build_method("sce", "lp").criterion(100, 100)
    assert (crit.alpha, crit.beta) == (6.0, 0.1)
    crit = build_method("nce_rce", "lp").criterion(100, 10)
    assert (crit.alpha, crit.beta) == (1.0, 1.0)


@pytest.mark.parametrize("method", ["sce", "nce_rce"])
def test_bad_weights_are_config_errors(method):
    with pytest.raises(ConfigError, match="alpha must be ≥ 0"):
        build_method(method, "lp", {"alpha": -1.0})
    with pytest.raises(ConfigError, match="log_zero"):
        build_method(method, "lp", {"log_zero": 0.0})


# -------------------------------------------------------------------------------------------- NCE+RCE


def test_nce_value_and_gradient_by_hand():
    # NCE = −ln p_y / −(ln p_0 + ln p_1): 0.287682 / 1.673976 = 0.171856 (y = 1), 1.386294 / 1.673976 (y = 0)
    assert float(normalized_cross_entropy(LOGITS, torch.tensor([1]))) == pytest.approx(0.171856, abs=1e-5)
    assert float(normalized_cross_entropy(LOGITS, torch.tensor([0]))) == pytest.approx(0.828144, abs=1e-5)
    # ∂(a/b)/∂z with a = −ln p_y (∂a = p − e_y), b = −Σ ln p_k (∂b = C p − 1):
    # z_0: (0.25·1.673976 + 0.287682·0.5) / 1.673976² = 0.200677; z_1 the opposite (rows of softmax sum to 1)
    g = grad_of(lambda z, y: normalized_cross_entropy(z, y), LOGITS, torch.tensor([1]))
    assert g[0].tolist() == pytest.approx([0.200677, -0.200677], abs=1e-5)


def test_nce_sums_to_one_over_labels():
    """The normalisation: for any logits, NCE summed over every possible label is 1 (APL's Lemma)."""
    torch.manual_seed(1)
    logits = torch.randn(5, 10) * 4
    total = sum(normalized_cross_entropy(logits, torch.full((5,), k)) for k in range(10))
    assert total.tolist() == pytest.approx([1.0] * 5, abs=1e-5)


def test_nce_rce_value_and_reference_formula():
    # α NCE + β RCE, (1, 1): 0.171856 + 9.21034·0.25 = 2.474441
    assert float(NCERCELoss(1.0, 1.0)(LOGITS, torch.tensor([1]))) == pytest.approx(2.474441, abs=1e-5)
    # APL loss.py 86-90 (NCE) and 52-57 (RCE), written out, with the CIFAR-100 weights (10, 0.1)
    torch.manual_seed(2)
    logits, labels = torch.randn(16, 100) * 3, torch.randint(0, 100, (16,))
    log_p = F.log_softmax(logits, dim=1)
    one_hot = F.one_hot(labels, 100).float()
    nce = (-(one_hot * log_p).sum(1) / (-log_p.sum(1))).mean()
    p = F.softmax(logits, dim=1).clamp(min=1e-7, max=1.0)
    rce = (-(p * torch.log(one_hot.clamp(min=1e-4, max=1.0))).sum(1)).mean()
    assert float(NCERCELoss(10.0, 0.1)(logits, labels)) == pytest.approx(float(10.0 * nce + 0.1 * rce), rel=1e-6)


# -------------------------------------------------------------------------------------------- Forward-T

T2 = np.array([[0.8, 0.2], [0.3, 0.7]])


def test_forward_loss_value_and_gradient_by_hand():
    # p = (0.25, 0.75): pᵀT = (0.425, 0.575); −ln 0.425 = 0.855666, −ln 0.575 = 0.553385
    loss = ForwardCorrectedLoss(T2)
    assert float(loss(LOGITS, torch.tensor([0]))) == pytest.approx(0.855666, abs=1e-5)
    assert float(loss(LOGITS, torch.tensor([1]))) == pytest.approx(0.553385, abs=1e-5)
    # ∂/∂z_j = p_j (1 − T_jy / q_y): y = 0 → 0.25(1 − 0.8/0.425), 0.75(1 − 0.3/0.425) = ∓0.220588
    g = grad_of(loss, LOGITS, torch.tensor([0]))
    assert g[0].tolist() == pytest.approx([-0.220588, 0.220588], abs=1e-5)
    # T = I is cross-entropy
    assert float(ForwardCorrectedLoss(np.eye(2))(LOGITS, torch.tensor([1]))) == pytest.approx(-math.log(0.75), abs=1e-5)


def test_forward_loss_rejects_a_non_stochastic_matrix():
    with pytest.raises(ConfigError, match="row-stochastic"):
        ForwardCorrectedLoss(np.array([[0.5, 0.2], [0.3, 0.7]]))
    with pytest.raises(ConfigError, match="square"):
        ForwardCorrectedLoss(np.ones((2, 3)) / 3)


def test_anchor_points_percentile_rule_by_hand():
    """experiment.py's filter: values at or above the 97th percentile ('higher': sorted index ⌈0.97·99⌉ = 97,
    value 0.97) are set aside; the arg-max of the rest is 0.96, sample 96."""
    column = np.arange(100) / 100
    probs = np.stack([column, 1 - column], axis=1)
    assert anchor_points(probs, percentile=97).tolist() == [96, 3]  # column 1: 1.0, .99, .98 set aside
    assert anchor_points(probs).tolist() == [99, 0]
    with pytest.raises(ConfigError):
        anchor_points(probs, percentile=100)


def constructed_predictions(transition: np.ndarray, *, pure: int, mixed: int, outliers: int, seed: int = 0
                            ) -> np.ndarray:
    """p(ỹ | x) = h(x)ᵀ T for ``pure`` one-hot h per class (the anchors: their prediction is T's row), ``mixed``
    Dirichlet h (each column lower than at the anchor, T's diagonal dominating its column) and ``outliers``
    over-confident predictions per class (0.99 on the class) above every anchor."""
    c = transition.shape[0]
    rng = np.random.default_rng(seed)
    h = np.concatenate([np.repeat(np.eye(c), pure, axis=0), rng.dirichlet(np.ones(c), size=mixed)])
    probs = h @ transition
    over = np.full((c, c), 0.01 / (c - 1))
    np.fill_diagonal(over, 0.99)
    return rng.permutation(np.concatenate([probs, np.repeat(over, outliers, axis=0)]))


T3 = np.array([[0.7, 0.2, 0.1], [0.15, 0.75, 0.1], [0.1, 0.2, 0.7]])


def test_anchor_transition_recovers_a_known_matrix():
    probs = constructed_predictions(T3, pure=20, mixed=200, outliers=0)
    estimate, anchors = anchor_transition(probs)
    np.testing.assert_allclose(estimate, T3, atol=1e-12)
    np.testing.assert_allclose(probs[anchors], T3, atol=1e-12)
    assert transition_error(estimate, T3)["max_abs"] == pytest.approx(0.0, abs=1e-12)


def test_percentile_filter_skips_over_confident_outliers_and_argmax_does_not():
    # 290 samples: the top ⌈...⌉ 3 % of a column (sorted indices 281..289) are its 10 outliers at 0.99
    probs = constructed_predictions(T3, pure=20, mixed=200, outliers=10)
    estimate, _ = anchor_transition(probs, percentile=97)
    np.testing.assert_allclose(estimate, T3, atol=1e-12)
    by_argmax, _ = anchor_transition(probs)
    assert np.diag(by_argmax).tolist() == pytest.approx([0.99] * 3)


def test_transition_error_by_hand():
    err = transition_error(np.array([[0.9, 0.1], [0.4, 0.6]]), T2)
    assert err == pytest.approx({"mean_abs": 0.1, "max_abs": 0.1, "diag_mean_abs": 0.1})
    with pytest.raises(ConfigError):
        transition_error(np.eye(3), T2)


def test_anchor_rule_by_class_count():
    assert ForwardT().anchor_percentile(10) == 97.0  # CIFAR-10, digits, Fashion-MNIST
    assert ForwardT().anchor_percentile(100) is None  # experiment.py 59-60: arg-max on CIFAR-100
    assert ForwardT(anchor="argmax").anchor_percentile(10) is None
    assert ForwardT(anchor="percentile").anchor_percentile(100) == 97.0


def test_bad_forward_t_options():
    with pytest.raises(ConfigError, match="unknown transition 'true'; expected one of: estimate, oracle"):
        build_method("forward_t", "lp", {"transition": "true"})
    with pytest.raises(ConfigError, match="unknown anchor"):
        build_method("forward_t", "lp", {"anchor": "max"})


def test_oracle_without_a_transition_is_an_error(tmp_path):
    ctx = tiny_context(tmp_path, "lp")  # built by hand: no oracle_transition, as under real noise
    with pytest.raises(ConfigError, match="transition='oracle' needs .*real noise"):
        ForwardT(transition="oracle").run(ctx)
    assert not ctx.engine.counters.get("backbone_forward_images", 0)  # refused before any training


# ---------------------------------------------------------------------------------------- end to end

MODES = ["lp", "fft", "lp-fft"]


def expected_sym_transition(rate: float, classes: int = 10) -> np.ndarray:
    """tiny_context's noise: a label is redrawn uniformly from all classes with probability ``rate``."""
    return (1 - rate) * np.eye(classes) + rate / classes


def check_fit(fit, mode: str) -> None:
    assert len(fit.history) == 2 and math.isfinite(fit.test_acc_best) and math.isfinite(fit.test_acc_last)
    if mode == "lp-fft":
        assert math.isfinite(fit.extra["lp_test_acc_best"]) and math.isfinite(fit.extra["lp_test_acc_last"])
    else:
        assert "lp_test_acc_best" not in fit.extra


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("method,weights", [("sce", (0.1, 1.0)), ("nce_rce", (1.0, 1.0))])
def test_loss_methods_run_in_every_mode(tmp_path, method, weights, mode):
    ctx = tiny_context(tmp_path, mode)
    fit = build_method(method, mode).run(ctx)
    check_fit(fit, mode)
    # digits (10 classes) takes the CIFAR-10 setting; the record says which and where it comes from
    assert (fit.extra["alpha"], fit.extra["beta"]) == weights
    assert fit.extra["log_zero"] == CODE_LOG_ZERO
    assert fit.extra["setting"].startswith("cifar10 setting (digits, 10 classes)")
    # lp trains heads on cached features only; fft and lp-fft backpropagate through the backbone
    assert (ctx.engine.counters.get("backbone_backward_images", 0) > 0) == (mode != "lp")


def test_explicit_weights_are_recorded(tmp_path):
    ctx = tiny_context(tmp_path, "lp")
    fit = build_method("sce", "lp", {"alpha": 2.0, "beta": 0.5, "log_zero": -4.0}).run(ctx)
    assert (fit.extra["alpha"], fit.extra["beta"], fit.extra["log_zero"], fit.extra["setting"]) == (2.0, 0.5, -4.0,
                                                                                                     "explicit")


@pytest.mark.parametrize("mode", MODES)
def test_forward_t_estimate_runs_in_every_mode_and_records_the_gap(tmp_path, mode):
    base = tiny_context(tmp_path, mode)
    oracle = expected_sym_transition(0.6)
    ctx = CellContext.of(base.engine, mode, dataset="digits", noise=("sym", 0.6), oracle_transition=oracle)
    fit = build_method("forward_t", mode).run(ctx)
    check_fit(fit, mode)
    extra = fit.extra
    assert extra["transition"] == "estimate" and extra["anchor_rule"] == "percentile 97"
    matrix = np.array(extra["transition_matrix"])
    assert matrix.shape == (10, 10) and np.allclose(matrix.sum(axis=1), 1.0, atol=1e-5)
    # each row is the CE probe's prediction at that class's anchor, a training sample
    assert len(extra["anchors"]) == 10 and all(0 <= a < ctx.num_train for a in extra["anchors"])
    assert extra["transition_diag_mean"] == pytest.approx(np.diag(matrix).mean(), abs=1e-5)
    assert extra["transition_error"]["mean_abs"] == pytest.approx(np.abs(matrix - oracle).mean(), abs=1e-5)
    assert math.isfinite(extra["estimator_probe_test_acc_best"])


@pytest.mark.parametrize("mode", MODES)
def test_forward_t_oracle_uses_the_cells_matrix(tmp_path, mode):
    base = tiny_context(tmp_path, mode)
    oracle = expected_sym_transition(0.6)
    ctx = CellContext.of(base.engine, mode, dataset="digits", noise=("sym", 0.6), oracle_transition=oracle)
    fit = ForwardT(transition="oracle").run(ctx)
    check_fit(fit, mode)
    assert fit.extra["transition"] == "oracle"
    np.testing.assert_allclose(np.array(fit.extra["transition_matrix"]), oracle, atol=1e-6)
    assert "transition_error" not in fit.extra and "anchors" not in fit.extra  # no probe, no estimate
    assert (ctx.engine.counters.get("backbone_backward_images", 0) > 0) == (mode != "lp")


def test_forward_t_estimate_without_oracle_records_no_gap(tmp_path):
    fit = ForwardT().run(tiny_context(tmp_path, "lp"))
    assert fit.extra["transition"] == "estimate" and "transition_error" not in fit.extra
