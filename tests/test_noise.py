"""Noise models: realized rates, structure class by class, determinism, bad input, saved labels."""

from __future__ import annotations

import hashlib
import json
import warnings

import numpy as np
import pytest

from nlbench.datasets import load_dataset
from nlbench.datasets.cifar import CIFAR100_COARSE, CIFAR100_SUPERCLASSES
from nlbench.errors import ConfigError
from nlbench.noise import (
    NoisyLabels,
    apply_noise,
    asym_targets,
    flip_distribution,
    label_digest,
    transition_matrix,
)
from nlbench.noise.instance import _normalised_inputs
from nlbench.run.grids import CellSpec
from nlbench.run.labels import draw_noise, labels_key, labels_path, noisy_labels


def balanced(num_classes: int, per_class: int) -> np.ndarray:
    return np.repeat(np.arange(num_classes), per_class)


# ------------------------------------------------------------------ sym
@pytest.mark.parametrize("num_classes", [10, 100])
def test_sym_reference_realized_rate_is_r_times_one_minus_one_over_c(num_classes):
    clean = balanced(num_classes, 20_000 // num_classes)
    out = apply_noise("sym", clean, rate=0.6, seed=1, num_classes=num_classes)
    expected = 0.6 * (1 - 1 / num_classes)  # 0.54 at C=10, 0.594 at C=100
    # 12,000 redrawn labels, each kept with prob. 1/C: std of the realized rate ≤ 0.0016.
    assert abs(out.realized_rate - expected) < 0.01
    assert out.convention == "reference"
    # Exactly int(r·N) samples were redrawn: changed labels are a subset of them, never more.
    assert out.is_noisy.sum() <= int(0.6 * len(clean))
    assert np.allclose(out.expected_transition.sum(1), 1.0)
    assert out.expected_transition[0, 0] == pytest.approx(1 - 0.6 + 0.6 / num_classes)


@pytest.mark.parametrize("num_classes", [10, 100])
def test_sym_exclusive_realized_rate_is_exactly_r(num_classes):
    clean = balanced(num_classes, 20_000 // num_classes)
    out = apply_noise("sym", clean, rate=0.6, seed=1, num_classes=num_classes, convention="exclusive")
    assert out.is_noisy.sum() == int(0.6 * 20_000)
    assert out.realized_rate == pytest.approx(0.6)
    # Flipped labels spread over the other classes: each off-diagonal entry near 0.6 / (C − 1).
    off = out.transition[~np.eye(num_classes, dtype=bool)]
    assert abs(off.mean() - 0.6 / (num_classes - 1)) < 1e-9  # rows sum to 1 with diagonal 0.4 on average
    assert out.convention == "exclusive"


def test_sym_is_deterministic_per_seed():
    clean = balanced(10, 300)
    a = apply_noise("sym", clean, rate=0.5, seed=7, num_classes=10)
    b = apply_noise("sym", clean, rate=0.5, seed=7, num_classes=10)
    c = apply_noise("sym", clean, rate=0.5, seed=8, num_classes=10)
    assert np.array_equal(a.labels, b.labels) and a.digest == b.digest
    assert not np.array_equal(a.labels, c.labels)


def test_sym_rate_zero_and_one():
    clean = balanced(10, 100)
    assert not apply_noise("sym", clean, rate=0.0, seed=0, num_classes=10).is_noisy.any()
    full = apply_noise("sym", clean, rate=1.0, seed=0, num_classes=10, convention="exclusive")
    assert full.is_noisy.all()


# ------------------------------------------------------------------ asym, CIFAR-100 conventions
def test_cifar100_superclass_table_is_a_partition_with_known_members():
    flat = sorted(c for g in CIFAR100_SUPERCLASSES for c in g)
    assert flat == list(range(100))
    assert all(len(g) == 5 for g in CIFAR100_SUPERCLASSES)
    # Hand-checked against the CIFAR-100 class lists: aquatic mammals = beaver, dolphin, otter, seal, whale;
    # vehicles 1 = bicycle, bus, motorcycle, pickup truck, train; trees = maple, oak, palm, pine, willow.
    assert CIFAR100_SUPERCLASSES[0] == (4, 30, 55, 72, 95)
    assert CIFAR100_SUPERCLASSES[18] == (8, 13, 48, 58, 90)
    assert CIFAR100_SUPERCLASSES[17] == (47, 52, 56, 59, 96)


def _check_flips_class_by_class(out: NoisyLabels, clean: np.ndarray, target: dict[int, int], rate: float):
    for c in range(out.transition.shape[0]):
        labels_c = out.labels[clean == c]
        allowed = {c, target[c]}
        assert set(np.unique(labels_c)) <= allowed, f"class {c} flipped outside {allowed}"
        if target[c] != c:
            frac = float((labels_c == target[c]).mean())
            # 2,000 samples per class: std of the fraction ≈ 0.011; 5σ.
            assert abs(frac - rate) < 0.055, f"class {c}: {frac:.3f} flipped, expected {rate}"


def test_asym_block_convention_class_by_class():
    clean = balanced(100, 2000)
    out = apply_noise("asym", clean, rate=0.4, seed=3, num_classes=100, dataset="cifar100")
    assert out.convention == "block"  # cifar100's default, the reference code's
    # Blocks of 5 in index order, each class to the next in its block, cyclically: 0→1→2→3→4→0, 5→6→…→9→5, …
    target = {c: (c // 5) * 5 + (c % 5 + 1) % 5 for c in range(100)}
    assert target[4] == 0 and target[9] == 5 and target[97] == 98 and target[99] == 95
    _check_flips_class_by_class(out, clean, target, 0.4)
    assert out.realized_rate == pytest.approx(0.4, abs=0.01)


def test_asym_superclass_convention_class_by_class():
    clean = balanced(100, 2000)
    out = apply_noise("asym", clean, rate=0.4, seed=3, num_classes=100, convention="superclass")
    target = dict(enumerate(asym_targets("cifar100", 100, "superclass").tolist()))
    for group in CIFAR100_SUPERCLASSES:
        # Each super-class is one 5-cycle in increasing index order: a→b→c→d→e→a.
        for i, c in enumerate(group):
            assert target[c] == group[(i + 1) % 5]
            assert CIFAR100_COARSE[target[c]] == CIFAR100_COARSE[c]
    assert target[4] == 30 and target[95] == 4  # beaver → dolphin, whale → beaver
    _check_flips_class_by_class(out, clean, target, 0.4)


def test_asym_next_convention_class_by_class():
    clean = balanced(100, 2000)
    out = apply_noise("asym", clean, rate=0.3, seed=3, num_classes=100, convention="next")
    target = {c: (c + 1) % 100 for c in range(100)}
    _check_flips_class_by_class(out, clean, target, 0.3)
    assert out.convention == "next"


def test_asym_cifar10_mapping_of_the_reference_code():
    clean = balanced(10, 2000)
    out = apply_noise("asym", clean, rate=0.4, seed=0, num_classes=10, dataset="cifar10")
    # truck(9)→automobile(1), bird(2)→airplane(0), deer(4)→horse(7), cat(3)↔dog(5); the rest stay.
    target = {0: 0, 1: 1, 2: 0, 3: 5, 4: 7, 5: 3, 6: 6, 7: 7, 8: 8, 9: 1}
    _check_flips_class_by_class(out, clean, target, 0.4)
    assert out.realized_rate == pytest.approx(0.2, abs=0.01)  # half the classes move
    assert out.expected_transition[9, 1] == pytest.approx(0.4)
    assert out.expected_transition[6, 6] == 1.0


def test_asym_fashion_mnist_and_digits_mappings_are_fixed_pairs():
    clean = balanced(10, 500)
    fm = apply_noise("asym", clean, rate=0.4, seed=0, num_classes=10, dataset="fashion_mnist")
    _check_flips_class_by_class(fm, clean, {0: 6, 6: 0, 2: 4, 4: 2, 5: 7, 7: 5, 1: 1, 3: 3, 8: 8, 9: 9}, 0.4)
    dg = apply_noise("asym", clean, rate=0.2, seed=0, num_classes=10, dataset="digits")
    assert set(np.unique(dg.labels[clean == 0])) == {0}


def test_asym_rate_half_or_more_is_refused_unless_forced():
    clean = balanced(10, 10)
    with pytest.raises(ConfigError, match="unidentifiable"):
        apply_noise("asym", clean, rate=0.5, seed=0, num_classes=10, dataset="cifar10")
    out = apply_noise("asym", clean, rate=0.6, seed=0, num_classes=10, dataset="cifar10", force=True)
    assert out.rate == 0.6


def test_asym_without_mapping_names_dataset_and_options():
    with pytest.raises(ConfigError) as err:
        apply_noise("asym", balanced(14, 10), rate=0.3, seed=0, num_classes=14, dataset="clothing1m")
    msg = str(err.value)
    assert "'clothing1m'" in msg and "mapping_file" in msg and "convention" in msg


def test_asym_mapping_file_json_and_matrix(tmp_path):
    clean = balanced(4, 1000)
    mapping = tmp_path / "map.json"
    mapping.write_text(json.dumps({"0": 3, "1": 2}))
    out = apply_noise("asym", clean, rate=0.3, seed=0, num_classes=4, mapping_file=str(mapping))
    assert out.convention.startswith("file:map.json:")
    _check_flips_class_by_class(out, clean, {0: 3, 1: 2, 2: 2, 3: 3}, 0.3)
    matrix = np.array([[0.5, 0.5, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0.25, 0, 0, 0.75]])
    np.save(tmp_path / "t.npy", matrix)
    out = apply_noise("asym", clean, rate=0.0, seed=0, num_classes=4, mapping_file=str(tmp_path / "t.npy"))
    assert np.abs(out.transition - matrix).max() < 0.06  # 1,000 samples per row
    assert out.transition[1, 1] == 1.0 and out.transition[0, 2] == 0.0
    np.save(tmp_path / "bad.npy", np.ones((4, 4)))
    with pytest.raises(ConfigError, match="rows summing to 1"):
        apply_noise("asym", clean, rate=0.1, seed=0, num_classes=4, mapping_file=str(tmp_path / "bad.npy"))
    with pytest.raises(ConfigError, match="does not exist"):
        apply_noise("asym", clean, rate=0.1, seed=0, num_classes=4, mapping_file=str(tmp_path / "none.json"))


# ------------------------------------------------------------------ inst
def _images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, 8, 8, 3), dtype=np.uint8)


def test_inst_realized_rate_matches_target_and_flip_probabilities_vary():
    clean = balanced(10, 400)
    out = apply_noise("inst", clean, rate=0.4, seed=0, num_classes=10, inputs=_images(4000))
    assert out.convention == "xia2020:pixels"
    # Mean of 4,000 Bernoulli(q_i) with mean q ≈ 0.4: std ≈ 0.008.
    assert abs(out.realized_rate - 0.4) < 0.03
    q = out.flip_probability
    assert 0.07 < q.std() < 0.11  # a truncated normal with std 0.1
    assert abs(q.mean() - 0.4) < 0.01 and q.min() >= 0 and q.max() <= 1


def test_inst_flip_distribution_puts_no_flip_mass_on_the_true_class():
    rng = np.random.default_rng(0)
    clean = balanced(5, 40)
    x = _normalised_inputs(_images(200))
    q = rng.uniform(0.1, 0.6, size=200)
    w = rng.standard_normal((5, x.shape[1], 5)).astype(np.float32)
    probs = flip_distribution(x, clean, q, w)
    assert np.allclose(probs.sum(1), 1.0)
    # The true class holds exactly its keep mass 1 − q_i: the softmax over other classes gave it nothing.
    assert np.allclose(probs[np.arange(200), clean], 1.0 - q)
    # Flip mass differs between samples of one class: the noise depends on the instance.
    others = probs[clean == 0][:, 1:]
    assert others.std(axis=0).max() > 0.05


def test_inst_is_deterministic_and_uses_the_inputs():
    clean = balanced(10, 50)
    a = apply_noise("inst", clean, rate=0.4, seed=5, num_classes=10, inputs=_images(500))
    b = apply_noise("inst", clean, rate=0.4, seed=5, num_classes=10, inputs=_images(500))
    c = apply_noise("inst", clean, rate=0.4, seed=5, num_classes=10, inputs=_images(500, seed=1))
    assert np.array_equal(a.labels, b.labels)
    assert not np.array_equal(a.labels, c.labels)


def test_inst_pixel_scales_are_named_conventions():
    """Raw 0-255 pixels (the reference's input) by default; standardised pixels under their own name. The
    raw values' larger scores concentrate each sample's flips on fewer wrong classes."""
    clean = balanced(10, 100)
    images = _images(1000)
    raw = apply_noise("inst", clean, rate=0.4, seed=3, num_classes=10, inputs=images)
    std = apply_noise("inst", clean, rate=0.4, seed=3, num_classes=10, inputs=images, pixel_scale="standardised")
    assert (raw.convention, std.convention) == ("xia2020:pixels", "xia2020:pixels-standardised")
    assert raw.digest != std.digest
    # Same per-sample flip rates q_i (the same draws): the two differ only in where the flips go.
    assert np.allclose(raw.flip_probability, std.flip_probability)
    with pytest.raises(ConfigError, match="pixel_scale"):
        apply_noise("inst", clean, rate=0.4, seed=3, num_classes=10, inputs=images, pixel_scale="unit")


def test_inst_on_features_and_bad_options():
    clean = balanced(4, 50)
    feats = np.random.default_rng(0).standard_normal((200, 16)).astype(np.float32)
    out = apply_noise("inst", clean, rate=0.3, seed=0, num_classes=4, inputs=feats, inputs_kind="features")
    assert out.convention == "xia2020:features"
    with pytest.raises(ConfigError, match="inputs_kind"):
        apply_noise("inst", clean, rate=0.3, seed=0, num_classes=4, inputs=feats, inputs_kind="logits")
    with pytest.raises(ConfigError, match="needs the training inputs"):
        apply_noise("inst", clean, rate=0.3, seed=0, num_classes=4)
    with pytest.raises(ConfigError, match="rows"):
        apply_noise("inst", clean, rate=0.3, seed=0, num_classes=4, inputs=feats[:10])


# ------------------------------------------------------------------ common
def test_transition_matrix_and_largest_entries_by_hand():
    clean = np.array([0, 0, 0, 0, 1, 1, 2])
    noisy = np.array([0, 1, 1, 2, 1, 0, 2])
    t = transition_matrix(clean, noisy, 3)
    assert t.tolist() == [[0.25, 0.5, 0.25], [0.5, 0.5, 0.0], [0.0, 0.0, 1.0]]
    res = NoisyLabels(labels=noisy, is_noisy=noisy != clean, transition=t, model="x", rate=0, convention="x")
    assert res.largest_off_diagonal(3) == [(0, 1, 0.5), (1, 0, 0.5), (0, 2, 0.25)]
    assert res.realized_rate == pytest.approx(4 / 7)


def test_bad_labels_options_and_names_are_refused():
    with pytest.raises(ConfigError, match=r"\[0, 10\)"):
        apply_noise("sym", np.array([0, 10]), rate=0.1, seed=0, num_classes=10)
    with pytest.raises(ConfigError, match="unknown options: flavour"):
        apply_noise("sym", balanced(10, 5), rate=0.1, seed=0, num_classes=10, flavour=1)
    with pytest.raises(ConfigError, match="exclusive, reference"):
        apply_noise("sym", balanced(10, 5), rate=0.1, seed=0, num_classes=10, convention="uniform")
    with pytest.raises(ConfigError, match="unknown noise model 'asymm'"):
        apply_noise("asymm", balanced(10, 5), rate=0.1, seed=0, num_classes=10)


# ------------------------------------------------------------------ saved labels
def _spec(**kw) -> CellSpec:
    base = dict(grid="g", dataset="digits", backbone="efficientnet_lite0", noise="sym", rate=0.6, method="ce",
                mode="lp", seed=0)
    return CellSpec(**{**base, **kw})


def test_noisy_labels_are_saved_once_and_reused(tmp_path):
    dataset = load_dataset("digits")
    train, val, first = noisy_labels(_spec(), dataset, tmp_path)
    saved = list((tmp_path / "labels" / "digits").glob("*.npz"))
    assert len(saved) == 1 and saved[0].with_suffix(".json").is_file()
    meta = json.loads(saved[0].with_suffix(".json").read_text())
    assert meta["sha256"] == first.digest == label_digest(np.concatenate([train, val]))
    assert meta["convention"] == "reference"
    # Reuse: a valid saved vector (its hash recorded) is read back as is, not drawn again.
    planted = first.labels.copy()
    planted[:5] = (planted[:5] + 1) % 10
    np.savez(saved[0], labels=planted)
    meta["sha256"] = label_digest(planted)
    meta["file_sha256"] = hashlib.sha256(saved[0].read_bytes()).hexdigest()
    saved[0].with_suffix(".json").write_text(json.dumps(meta))
    _, _, again = noisy_labels(_spec(), dataset, tmp_path)
    assert np.array_equal(again.labels, planted)
    # A vector whose hash does not match its record is not used: drawn again and rewritten (the file's own
    # checksum is made to match, so the label hash is what catches it).
    np.savez(saved[0], labels=first.labels[::-1].copy())
    meta["file_sha256"] = hashlib.sha256(saved[0].read_bytes()).hexdigest()
    saved[0].with_suffix(".json").write_text(json.dumps(meta))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _, _, fresh = noisy_labels(_spec(), dataset, tmp_path)
    assert any("differs from the recorded" in str(w.message) for w in caught)
    assert np.array_equal(fresh.labels, first.labels)


def test_labels_key_separates_dataset_noise_options_and_seed(tmp_path):
    dataset = load_dataset("digits")
    base = labels_path(tmp_path, labels_key(dataset, "sym", 0.6, 0, {}))
    assert base != labels_path(tmp_path, labels_key(dataset, "sym", 0.6, 1, {}))
    assert base != labels_path(tmp_path, labels_key(dataset, "sym", 0.6, 0, {"convention": "exclusive"}))
    assert base != labels_path(tmp_path, labels_key(dataset, "sym", 0.5, 0, {}))
    other = load_dataset("digits", split_seed=1)
    assert base != labels_path(tmp_path, labels_key(other, "sym", 0.6, 0, {}))
    a = draw_noise(dataset, "inst", 0.4, 0, {}, cache=tmp_path)
    assert a.convention == "xia2020:pixels"
    assert a.digest == draw_noise(dataset, "inst", 0.4, 0, {}).digest  # cache or not, same labels


def test_real_noise_dataset_refuses_synthetic_noise(tmp_path):
    from nlbench.datasets import Dataset, Split

    split = Split(labels=None, noisy_labels=np.array([0, 1]), paths=["a", "b"])
    d = Dataset(name="clothing1m", num_classes=2, train=split, val=split, test=Split(labels=np.array([0, 1])),
                real_noise=True)
    with pytest.raises(ConfigError, match="real label noise"):
        noisy_labels(_spec(dataset="clothing1m", noise="sym"), d, tmp_path)
    train, _, result = noisy_labels(_spec(dataset="clothing1m", noise="none", rate=0.0), d, tmp_path)
    assert result is None and train.tolist() == [0, 1]


@pytest.mark.slow
def test_inst_on_backbone_features_reads_them_through_the_feature_cache(tmp_path):
    from dataclasses import asdict

    from nlbench.engine.train import TrainConfig

    train = asdict(TrainConfig(input_size=16))  # small: only the plumbing is under test
    spec = _spec(noise="inst", rate=0.4, noise_options={"inputs_kind": "features"}, train=train)
    dataset = load_dataset("digits")
    _, _, result = noisy_labels(spec, dataset, tmp_path)
    assert result.convention == "xia2020:features"
    assert abs(result.realized_rate - 0.4) < 0.06  # ~1,400 samples
    # The features were stored as the cell's own train/val cache entries, which its linear probe then reads.
    stored = sorted(p.name.split("-")[0] for p in (tmp_path / "features").rglob("*.npy"))
    assert stored == ["train", "val"]
    pixels = noisy_labels(_spec(noise="inst", rate=0.4, train=train), dataset, tmp_path)[2]
    assert pixels.convention == "xia2020:pixels" and pixels.digest != result.digest
