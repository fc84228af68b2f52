"""Reference parity: each component's output against values computed by hand from its reference's formula.

Every test names the reference file and lines it was derived from, in these repositories (@ the commit read):
DivideMix: github.com/LiJunnan1992/DivideMix @ d9d3058; UNICON: github.com/nazmul-karim170/UNICON-Noisy-Label
@ 616dc49; ELR: github.com/shengliu66/ELR @ 934af53; Xia: github.com/xiaoboxia/Part-dependent-label-noise
@ b682527. The expected numbers are derived in the docstrings by hand, never produced by running reference
code. docs/fidelity.md lists the components.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from nlbench.engine.losses import GCELoss
from nlbench.engine.selection import (
    DIVIDEMIX_EM,
    fit_loss_gmm,
    jsd_to_labels,
    refinement_weights,
    unicon_selection_ratio,
    uniform_selection,
)
from nlbench.engine.semisup import (
    co_guess,
    co_refine,
    contrastive_loss,
    linear_rampup,
    mix,
    mixup_lambda,
    negative_entropy,
    semi_losses,
    sharpen,
    uniform_prior_penalty,
)
from nlbench.methods.dividemix import DIVIDEMIX_SETTINGS, published_setting
from nlbench.methods.elr import ELRLoss
from nlbench.noise import apply_noise, asym_targets, flip_distribution, instance_inputs


# ------------------------------------------------------------------ losses of the single-network methods
def test_gce_matches_the_papers_formula():
    """GCE (Zhang & Sabuncu, NeurIPS 2018, Eq. 6; no official code): L_q = (1 − p_y^q)/q.
    Logits (0, 0): p_y = ½, so L = (1 − 0.5^0.7)/0.7 = (1 − 0.6155722)/0.7 = 0.5491826."""
    loss = GCELoss(0.7)(torch.zeros(1, 2), torch.tensor([0]))
    assert loss.item() == pytest.approx(0.5491826, abs=1e-6)


def test_elr_matches_the_reference_loss_over_two_steps():
    """ELR/model/loss.py lines 21-28 (ELR): p clamped to [1e-4, 1 − 1e-4]; t ← β t + (1 − β) p/Σp from
    t = 0; loss = CE + λ·mean log(1 − ⟨t, p⟩). Logits (0, 0), label 0, β 0.7, λ 3:
    step 1: t = 0.3·(½, ½) = (0.15, 0.15), ⟨t, p⟩ = 0.15: ln 2 + 3 ln 0.85 = 0.6931472 − 0.4875567;
    step 2: t = 0.7·0.15 + 0.3·0.5 = 0.255, ⟨t, p⟩ = 0.255: ln 2 + 3 ln 0.745 = 0.6931472 − 0.8831136."""
    loss = ELRLoss(1, 2, lam=3.0, beta=0.7)
    args = (torch.zeros(1, 2), torch.tensor([0]), torch.tensor([0]))
    assert loss(*args).item() == pytest.approx(0.2055905, abs=1e-6)
    assert loss(*args).item() == pytest.approx(-0.1899664, abs=1e-6)


# ------------------------------------------------------------------ DivideMix / UNICON MixMatch formulas
def test_co_refinement_and_sharpening_match_dividemix():
    """Train_cifar.py lines 79-84 (DivideMix): px = w·y + (1 − w)·p, then p^(1/T) renormalised.
    y = (1, 0), w = 0.8, p = (0.4, 0.6): px = (0.88, 0.12); T = ½ squares it: (0.7744, 0.0144)/0.7888."""
    refined = co_refine(torch.tensor([[1.0, 0.0]]), torch.tensor([0.8]), torch.tensor([[0.4, 0.6]]))
    assert refined.tolist()[0] == pytest.approx([0.88, 0.12])
    assert sharpen(refined, 0.5).tolist()[0] == pytest.approx([0.9817444, 0.0182556], abs=1e-6)


def test_co_guessing_is_the_mean_of_four_predictions():
    """Train_cifar.py line 69 (DivideMix): pu = (p11 + p12 + p21 + p22)/4 before sharpening."""
    preds = [torch.tensor([[1.0, 0.0]]), torch.tensor([[0.5, 0.5]]), torch.tensor([[0.0, 1.0]]),
             torch.tensor([[0.3, 0.7]])]
    assert co_guess(preds).tolist()[0] == pytest.approx([0.45, 0.55])


def test_mixup_matches_dividemix():
    """Train_cifar.py lines 87-99 (DivideMix): l ~ Beta(α, α), l = max(l, 1 − l); each row mixed with row
    idx[i] of a permutation, inputs and targets alike. l = 0.7, rows (1, 0) and (0, 1) swapped:
    0.7·(1, 0) + 0.3·(0, 1) = (0.7, 0.3)."""
    rng = np.random.default_rng(0)
    draws = [mixup_lambda(4.0, rng) for _ in range(200)]
    assert min(draws) >= 0.5 and max(draws) < 1.0
    x = torch.eye(2)
    mixed_x, mixed_t = mix(x, x.clone(), 0.7, torch.tensor([1, 0]))
    assert torch.allclose(mixed_x, torch.tensor([[0.7, 0.3], [0.3, 0.7]]))
    assert torch.equal(mixed_t, mixed_x)


def test_semi_losses_ramp_prior_and_penalty_match_dividemix():
    """Train_cifar.py lines 196-208 and 108-111 (DivideMix; UNICON's Train_cifar.py 319-329, 165-168 alike).
    L_x = −mean Σ t log softmax: logits (0, 0), t = (1, 0): ln 2. L_u = mean over samples and classes
    of (softmax − t)²: ((½)² + (½)²)/2 = 0.25. Prior: softmax (¾, ¼) from logits (ln 3, 0):
    ½ ln(½/¾) + ½ ln(½/¼) = 0.1438410. NegEntropy: ¾ ln ¾ + ¼ ln ¼ = −0.5623351.
    linear_rampup: λ_u·clip((t − warm-up)/16, 0, 1): t = 38, warm-up 30, λ_u 25: 12.5."""
    z = torch.zeros(1, 2)
    t = torch.tensor([[1.0, 0.0]])
    lx, lu = semi_losses(z, t, z, t)
    assert lx.item() == pytest.approx(math.log(2)) and lu.item() == pytest.approx(0.25)
    skewed = torch.tensor([[math.log(3.0), 0.0]])
    assert uniform_prior_penalty(skewed).item() == pytest.approx(0.1438410, abs=1e-6)
    assert negative_entropy(skewed).item() == pytest.approx(-0.5623351, abs=1e-6)
    assert linear_rampup(38, 30, 16, 25.0) == pytest.approx(12.5)
    assert linear_rampup(50, 30, 16, 25.0) == 25.0 and linear_rampup(29, 30, 16, 25.0) == 0.0


def test_contrastive_loss_matches_unicons_simclr_loss():
    """Contrastive_loss.py lines 67-101 (UNICON, SupConLoss with labels None, contrast_mode 'all',
    temperature = base_temperature): for each of the 2B anchors −log(e^{s⁺/κ} / Σ_{a≠i} e^{s_a/κ}), mean.
    Two identical views of e1, e2, κ = 1: anchor e1 sees e2 (s 0), e1 (s 1, its positive), e2 (s 0):
    −(1 − ln(2 + e)) = 0.5514447; every anchor alike."""
    z = torch.eye(2)
    assert contrastive_loss(z, z.clone(), 1.0).item() == pytest.approx(0.5514447, abs=1e-6)


# ------------------------------------------------------------------ GMM
def test_gmm_settings_and_fit_are_dividemixs():
    """Train_cifar.py lines 175 and 186-189 (DivideMix): losses min-max normalised, GaussianMixture(2,
    max_iter=10, tol=1e-2, reg_covar=5e-4), posterior of the component of the smaller mean. Two tight
    clusters at 0 and 1 (after normalisation) converge at once to means 0 and 1 with variance
    reg_covar: the posterior of the low component is 1/(1 + e^{−1/(2·5e-4)}) ≈ 1 at 0 and ≈ 0 at 1."""
    assert DIVIDEMIX_EM == {"max_iter": 10, "tol": 1e-2, "reg_covar": 5e-4}
    fit = fit_loss_gmm(np.array([3.0, 3.0, 3.0, 7.0, 7.0, 7.0]))
    assert fit.posterior == pytest.approx([1, 1, 1, 0, 0, 0], abs=1e-12)
    assert fit.converged and 1 <= fit.n_iter <= 10


def test_turn_gmm_runs_em_to_convergence_where_dividemixs_stops():
    """TURN (no code): the fit runs until the lower-bound gain is below 1e-3; DivideMix's stops at
    10 iterations. On overlapping losses the two differ, and both report how EM ended."""
    rng = np.random.default_rng(0)
    losses = np.concatenate([rng.gamma(2.0, 0.1, 700), rng.normal(1.0, 0.4, 300).clip(0)])
    short = fit_loss_gmm(losses)
    full = fit_loss_gmm(losses, max_iter=1000, tol=1e-3)
    assert full.converged and full.n_iter > short.n_iter  # 9 against 4 here
    assert short.n_iter <= 10


# ------------------------------------------------------------------ UNICON selection
def test_unicon_jsd_cutoff_quota_and_weights_match_the_code():
    """UNICON Train_cifar.py lines 278-288 (JSD in nats), 403-406 (cutoff), dataloader_cifar.py lines
    139-154 (per-class quota ⌊SR·N/C⌋, lowest JSD first) and 160-161 (w = 1 − d after d < 0.5 → 0).
    p_y = ½ against a one-hot label: ½[ln(4/3) + ½ ln(2/3) + ½ ln 2] = 0.2157616 nats; p_y = 0: ln 2."""
    probs = np.array([[0.5, 0.5], [0.0, 1.0], [1.0, 0.0], [0.9, 0.1]])
    d = jsd_to_labels(probs, np.zeros(4, dtype=int))
    assert d[:3] == pytest.approx([0.2157616, math.log(2), 0.0], abs=1e-6)
    # Cutoff: the mean, whatever d_u (the code's adaptive branch is unreachable in nats).
    jsd = np.array([0.1, 0.2, 0.6, 0.3, 0.05, 0.65, 0.68, 0.69])  # mean 0.40875
    assert unicon_selection_ratio(jsd, d_u=0.7, tau=5, cutoff="mean") == pytest.approx((0.40875, 4 / 8))
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    assert uniform_selection(jsd, labels, 2, 0.5).tolist() == [0, 1, 4, 5]  # ⌊0.5·8/2⌋ = 2 a class
    # Weights: 0.3 → 1, 0.6 → 0.4 (reference); 1 − d throughout (paper).
    assert refinement_weights(np.array([0.3, 0.6])) == pytest.approx([1.0, 0.4])
    assert refinement_weights(np.array([0.3, 0.6]), "paper") == pytest.approx([0.7, 0.4])


# ------------------------------------------------------------------ DivideMix λ_u and τ
def test_real_noise_settings_are_the_official_scripts_defaults():
    """DivideMix Train_clothing1M.py lines 21-22 and Train_webvision.py lines 22-23: lambda_u 0,
    p_threshold 0.5. Train_cifar.py line 22: p_threshold 0.5 unless the paper's 90 % setting (0.6)."""
    for name in ("clothing1m", "webvision"):
        setting = DIVIDEMIX_SETTINGS[(name, "real", 0.0)]
        assert (setting.lambda_u, setting.p_threshold) == (0.0, 0.5)
    assert published_setting("cifar100", 100, "sym", 0.9)[1].p_threshold == 0.6


# ------------------------------------------------------------------ noise
def test_sym_reference_and_exclusive_conventions():
    """DivideMix dataloader_cifar.py lines 59-71: int(r·N) shuffled indices get random.randint(0, C − 1),
    all C classes: expected transition (1 − r)·I + r/C; C = 4, r = 0.4: diagonal 0.7, off 0.1; a sample's
    flip probability r(1 − 1/C) = 0.3. 'exclusive' moves exactly int(r·N) samples to another class."""
    clean = np.repeat(np.arange(4), 250)
    ref = apply_noise("sym", clean, rate=0.4, seed=0, num_classes=4)
    assert np.allclose(np.diag(ref.expected_transition), 0.7) and ref.expected_transition[0, 1] == pytest.approx(0.1)
    assert ref.flip_probability == pytest.approx(np.full(1000, 0.3))
    assert ref.is_noisy.sum() <= 400
    excl = apply_noise("sym", clean, rate=0.4, seed=0, num_classes=4, convention="exclusive")
    assert excl.is_noisy.sum() == 400


def test_cifar10_and_cifar100_asym_maps():
    """CIFAR-10: DivideMix dataloader_cifar.py line 24, {9→1, 2→0, 4→7, 3↔5}, the rest stay.
    CIFAR-100 'block': ELR/data_loader/cifar100.py lines 126-155, 20 blocks of 5 consecutive classes,
    each to the next of its block, the last to the first: target(c) = 5⌊c/5⌋ + (c mod 5 + 1) mod 5."""
    assert asym_targets("cifar10", 10, "dataset").tolist() == [0, 1, 0, 5, 7, 3, 6, 7, 8, 1]
    block = asym_targets("cifar100", 100, "block")
    assert block.tolist() == [5 * (c // 5) + (c % 5 + 1) % 5 for c in range(100)]
    assert block[:10].tolist() == [1, 2, 3, 4, 0, 6, 7, 8, 9, 5]


def test_xia_noise_multiplies_w_by_raw_pixels():
    """Xia data.py lines 16 and 84: the uint8 images go to tools.get_instance_noisy_label as
    float 0-255 values; tools.py lines 38-41: A = x·W[y], A[y] = −inf, q·softmax(A), + (1 − q) on y.
    x = (2, 1), y = 0, W[0] = [[0, 1, 0], [0, 0, 1]]: A = (·, 2, 1); softmax over (2, 1) =
    (e/(e + 1), 1/(e + 1)) = (0.7310586, 0.2689414); q = 0.4: (0.6, 0.2924234, 0.1075766)."""
    image = np.array([[[[2], [1]]]], dtype=np.uint8)  # (1, 1, 2, 1)
    x = instance_inputs(image)
    assert x.tolist() == [[2.0, 1.0]]  # the raw values, no rescaling
    assert instance_inputs(image, "standardised").tolist() != x.tolist()
    w = np.zeros((3, 2, 3), dtype=np.float32)
    w[0] = [[0, 1, 0], [0, 0, 1]]
    probs = flip_distribution(x, np.array([0]), np.array([0.4]), w)
    assert probs[0] == pytest.approx([0.6, 0.2924234, 0.1075766], abs=1e-6)
