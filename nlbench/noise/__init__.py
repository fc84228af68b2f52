"""Synthetic label-noise models, each under the name of the code convention it follows.

Each model is a pure function of (clean labels, rate, seed, convention, and the inputs for
instance-dependent noise): the same arguments give the same labels on any machine, because all
randomness comes from one ``numpy.random.default_rng(seed)`` (PCG64, platform independent).
``apply_noise`` returns the noisy labels with the true/false mask, the realized transition matrix and
the model's expected one, so every run record can be audited.

Conventions (the name lands in every record as ``noise_audit.convention``):

=====  ==================  ====================================================================
model  convention          what it does, and whose code it follows
=====  ==================  ====================================================================
sym    reference           ⌊rN⌋ samples redrawn uniformly from all C classes (DivideMix, ELR,
                           UNICON code); realized flip rate r·(1 − 1/C)
sym    exclusive           ⌊rN⌋ samples moved to one of the other C − 1 classes; realized rate r
asym   block               CIFAR-100 of the ELR/DivideMix code: classes in index order in blocks
                           of 5, each to the next one of its block, cyclically
asym   superclass          the same cycle inside CIFAR-100's 20 real super-classes
asym   next                y → (y + 1) mod C
asym   dataset             the fixed mapping of CIFAR-10 (DivideMix/ELR code), Fashion-MNIST or
                           digits (ours, documented in ``ASYM_MAPS``)
asym   file:NAME:SHA       a user's JSON mapping or (C, C) transition matrix file
inst   xia2020:pixels      Xia et al., NeurIPS 2020, on the raw 0-255 pixel values (the reference)
inst   xia2020:pixels-     the same on pixels standardised per channel (``pixel_scale =
       standardised        "standardised"``; nlbench's default before labels version 2)
inst   xia2020:features    the same on backbone features, standardised per dimension
=====  ==================  ====================================================================
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nlbench.datasets.cifar import CIFAR100_SUPERCLASSES
from nlbench.errors import ConfigError
from nlbench.registry import NOISE, register_noise


@dataclass(frozen=True)
class NoisyLabels:
    """Result of a noise model.

    labels: (N,) int64 noisy labels; is_noisy: (N,) bool, ``labels != clean``;
    transition: (C, C) realized transition matrix, row = true class, column = noisy label,
    each row summing to 1 (0 where a class has no sample); expected_transition: (C, C) the model's
    transition matrix in expectation (None for label-as-given noise); flip_probability: (N,) each
    sample's probability of leaving its class under the model, or None; digest: sha256 of the noisy
    label vector (int64, little endian); options: the model's options as passed.
    """

    labels: np.ndarray
    is_noisy: np.ndarray
    transition: np.ndarray
    model: str
    rate: float
    convention: str
    expected_transition: np.ndarray | None = None
    flip_probability: np.ndarray | None = None
    digest: str = ""
    options: Mapping[str, object] | None = None

    @property
    def realized_rate(self) -> float:
        return float(self.is_noisy.mean()) if len(self.is_noisy) else 0.0

    def largest_off_diagonal(self, k: int = 10) -> list[tuple[int, int, float]]:
        """The ``k`` largest off-diagonal entries (true class, noisy label, probability) of the realized
        transition matrix, largest first (ties by class index)."""
        t = self.transition.copy()
        np.fill_diagonal(t, -1.0)
        flat = np.argsort(-t, axis=None, kind="stable")[:k]
        rows, cols = np.unravel_index(flat, t.shape)
        return [(int(r), int(c), float(t[r, c])) for r, c in zip(rows, cols, strict=True) if t[r, c] > 0]


def label_digest(labels: np.ndarray) -> str:
    """sha256 of a label vector as little-endian int64 bytes: the same labels give the same digest anywhere."""
    return hashlib.sha256(np.ascontiguousarray(labels, dtype="<i8").tobytes()).hexdigest()


def transition_matrix(clean: np.ndarray, noisy: np.ndarray, num_classes: int) -> np.ndarray:
    """(C, C) row-normalised counts of (true class, noisy label)."""
    counts = np.zeros((num_classes, num_classes), dtype=np.float64)
    np.add.at(counts, (clean, noisy), 1.0)
    totals = counts.sum(axis=1, keepdims=True)
    return np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)


@dataclass(frozen=True)
class _Draw:
    """What a registered model function returns: labels, convention name and, where known, the model's
    expected transition matrix and per-sample flip probabilities."""

    labels: np.ndarray
    convention: str
    expected: np.ndarray | None = None
    flip_probability: np.ndarray | None = None


def apply_noise(
    model: str,
    clean: np.ndarray,
    *,
    rate: float,
    seed: int,
    num_classes: int,
    inputs: np.ndarray | None = None,
    dataset: str | None = None,
    **options: object,
) -> NoisyLabels:
    """Corrupt ``clean`` (N,) int labels with the registered noise ``model`` at ``rate`` ∈ [0, 1] (a rate
    from a grid or ``noise audit`` is checked by ``grid_schema.check_rate``; this library call trusts it).

    ``inputs`` (N, ...) is needed by instance-dependent noise only (images (N, H, W, C) or features
    (N, D)); ``dataset`` (a registered dataset name) selects the class mapping of asymmetric noise;
    ``options`` are the model's own keyword arguments (``convention`` among them).
    """
    fn = NOISE.get(model)  # the rate's type and range: checked once, by the grid schema (check_rate)
    clean = np.asarray(clean)
    if clean.ndim != 1 or (clean.size and not np.issubdtype(clean.dtype, np.integer)):
        raise ConfigError(f"clean labels must be a 1-d integer array; got shape {clean.shape}, dtype {clean.dtype}")
    clean = clean.astype(np.int64)
    if clean.size and (clean.min() < 0 or clean.max() >= num_classes):
        raise ConfigError(f"clean labels must lie in [0, {num_classes}); got [{clean.min()}, {clean.max()}]")
    if inputs is not None and len(inputs) != len(clean):
        raise ConfigError(f"noise inputs have {len(inputs)} rows for {len(clean)} labels")
    rng = np.random.default_rng(seed)
    draw: _Draw = fn(
        clean, rate=float(rate), rng=rng, num_classes=num_classes, inputs=inputs, dataset=dataset, **options
    )
    noisy = np.asarray(draw.labels, dtype=np.int64)
    return NoisyLabels(
        labels=noisy,
        is_noisy=noisy != clean,
        transition=transition_matrix(clean, noisy, num_classes),
        model=model,
        rate=float(rate),
        convention=draw.convention,
        expected_transition=draw.expected,
        flip_probability=draw.flip_probability,
        digest=label_digest(noisy),
        options=dict(options),
    )


def _check_options(model: str, options: Mapping[str, object], valid: tuple[str, ...] = ()) -> None:
    if options:
        known = ", ".join(valid) if valid else "none"
        raise ConfigError(f"noise {model!r} got unknown options: {', '.join(sorted(options))}; its options: {known}")


@register_noise("none")
def no_noise(clean: np.ndarray, *, rate: float, rng, num_classes: int, inputs=None, dataset=None, **opts) -> _Draw:
    """No synthetic noise: labels as given (real-noise datasets, or a clean reference run)."""
    _check_options("none", opts)
    return _Draw(clean.copy(), "none", np.eye(num_classes), np.zeros(len(clean)))


SYM_CONVENTIONS = ("exclusive", "reference")


@register_noise("sym")
def symmetric(
    clean: np.ndarray,
    *,
    rate: float,
    rng: np.random.Generator,
    num_classes: int,
    convention: str = "reference",
    inputs=None,
    dataset=None,
    **opts,
) -> _Draw:
    """Symmetric (uniform) flips of a fraction ``rate`` of the samples.

    convention='reference' follows the DivideMix / ELR / UNICON reference code (DivideMix
    ``dataloader_cifar.py``: shuffle the indices, take the first ``int(r·N)``, give each a
    ``random.randint(0, C−1)`` label): exactly ``int(rate * N)`` samples, chosen uniformly, get a label
    drawn uniformly from all C classes, so some keep their true label (realized flip rate ≈ rate·(1 − 1/C)).
    convention='exclusive' draws the new label from the other C − 1 classes (realized flip rate = rate).
    """
    _check_options("sym", opts, ("convention",))
    if convention not in SYM_CONVENTIONS:
        raise ConfigError(f"unknown sym convention {convention!r}; expected one of: {', '.join(SYM_CONVENTIONS)}")
    n = len(clean)
    chosen = rng.permutation(n)[: int(rate * n)]
    noisy = clean.copy()
    c = num_classes
    if convention == "reference":
        noisy[chosen] = rng.integers(0, c, size=len(chosen))
        expected = np.full((c, c), rate / c) + np.eye(c) * (1.0 - rate)
        flip = rate * (1.0 - 1.0 / c)
    else:
        offset = rng.integers(1, c, size=len(chosen))
        noisy[chosen] = (clean[chosen] + offset) % c
        expected = (np.full((c, c), rate / (c - 1)) * (1 - np.eye(c)) + np.eye(c) * (1.0 - rate)) if c > 1 \
            else np.eye(c)
        flip = rate
    return _Draw(noisy, convention, expected, np.full(n, flip))


# Class mappings of asymmetric noise: true class -> the class it is mistaken for.
ASYM_MAPS: dict[str, dict[int, int]] = {
    # CIFAR-10, as in the DivideMix/ELR reference code: truck→automobile, bird→airplane, deer→horse, cat↔dog.
    "cifar10": {9: 1, 2: 0, 4: 7, 3: 5, 5: 3},
    # digits / MNIST-like: our choice of visually similar pairs; 0 and 2 have no close partner and stay.
    "digits": {1: 7, 7: 1, 3: 8, 8: 3, 4: 9, 9: 4, 5: 6, 6: 5},
    # Fashion-MNIST (ours): T-shirt/top↔Shirt, Pullover↔Coat, Sandal↔Sneaker — the pairs the Fashion-MNIST
    # paper's classifiers confuse most; Trouser, Dress, Bag and Ankle boot stay.
    "fashion_mnist": {0: 6, 6: 0, 2: 4, 4: 2, 5: 7, 7: 5},
}
# Dataset families that share a mapping (the CIFAR-N datasets carry CIFAR's classes).
_ASYM_ALIASES = {"cifar10n": "cifar10"}
# The default asym convention per dataset where it is not 'dataset'.
_ASYM_DEFAULT = {"cifar100": "block", "cifar100n": "block"}
ASYM_CONVENTIONS = ("block", "dataset", "next", "superclass")


def _cycle_within(groups: list[list[int]], num_classes: int) -> np.ndarray:
    """Target table mapping each class to the next class of its group, cyclically."""
    target = np.arange(num_classes)
    for group in groups:
        for i, c in enumerate(group):
            target[c] = group[(i + 1) % len(group)]
    return target


def _no_mapping_error(dataset: str | None) -> ConfigError:
    return ConfigError(
        f"asym noise has no class mapping for dataset {dataset!r} (mappings exist for: "
        f"{', '.join(sorted([*ASYM_MAPS, *_ASYM_ALIASES, *_ASYM_DEFAULT]))}); pass the noise option "
        "mapping_file=PATH (a JSON {\"src\": dst} mapping or a (C, C) .npy/.csv transition matrix) or "
        "convention=next (y → y+1 mod C); block and superclass are CIFAR-100's"
    )


def asym_targets(dataset: str | None, num_classes: int, convention: str) -> np.ndarray:
    """(C,) table: the class each true class flips to under asymmetric noise (itself where it stays)."""
    if convention == "next":
        return (np.arange(num_classes) + 1) % num_classes
    if convention == "block":
        if num_classes % 5:
            raise ConfigError(f"asym convention 'block' needs a multiple of 5 classes; got {num_classes}")
        return _cycle_within([list(range(s, s + 5)) for s in range(0, num_classes, 5)], num_classes)
    if convention == "superclass":
        if num_classes != 100:
            raise ConfigError(f"asym convention 'superclass' needs CIFAR-100's 100 classes; got {num_classes}")
        return _cycle_within([list(g) for g in CIFAR100_SUPERCLASSES], 100)
    if convention == "dataset":
        key = _ASYM_ALIASES.get(dataset or "", dataset)
        if key not in ASYM_MAPS:
            raise _no_mapping_error(dataset)
        target = np.arange(num_classes)
        for src, dst in ASYM_MAPS[key].items():
            target[src] = dst
        return target
    raise ConfigError(f"unknown asym convention {convention!r}; expected one of: {', '.join(ASYM_CONVENTIONS)}")


def _flip_expected(target: np.ndarray, rate: float) -> np.ndarray:
    c = len(target)
    expected = np.zeros((c, c))
    expected[np.arange(c), np.arange(c)] += 1.0 - rate
    expected[np.arange(c), target] += rate
    return expected


@register_noise("asym")
def asymmetric(
    clean: np.ndarray,
    *,
    rate: float,
    rng: np.random.Generator,
    num_classes: int,
    convention: str | None = None,
    mapping_file: str | None = None,
    force: bool = False,
    inputs=None,
    dataset=None,
    **opts,
) -> _Draw:
    """Class-dependent flips: each sample independently moves to its class's partner with prob. ``rate``.

    convention: 'block' (the CIFAR-100 reference code of ELR ``asymmetric_noise``: a block-diagonal P with
    20 blocks of 5 consecutive class indices, each class to the next in its block, cyclically, sampled per
    sample; the default for cifar100), 'superclass' (the same cycle inside CIFAR-100's 20 real
    super-classes, as papers describe it), 'next' (y → y+1 mod C), 'dataset' (the fixed mapping of
    CIFAR-10, digits or Fashion-MNIST in ``ASYM_MAPS``; the default for those). ``mapping_file``: a user's
    JSON {"src": dst} mapping or a (C, C) transition matrix in a .npy/.csv file (rows: true class, summing
    to 1; the matrix is used as given and ``rate`` is ignored). Rates ≥ 0.5 make the partner class the
    majority label, so classes are no longer identifiable: refused unless ``force``. Each sample flips
    independently (ELR's CIFAR-100 code); DivideMix's CIFAR-10 code instead flips exactly ⌊rN⌋ samples:
    the expected transition matrix is the same.
    """
    _check_options("asym", opts, ("convention", "force", "mapping_file"))
    if not isinstance(force, bool):
        raise ConfigError(f"asym option force must be true or false; got {force!r}")
    if rate >= 0.5 and not force:
        raise ConfigError(
            f"asym rate {rate} ≥ 0.5 makes classes unidentifiable (the flipped label becomes the majority);"
            " pass the noise option force=true to run it anyway"
        )
    if mapping_file is not None:
        if convention is not None:
            raise ConfigError("asym: give either convention or mapping_file, not both")
        return _from_mapping_file(clean, rate, rng, num_classes, mapping_file)
    if convention is None:
        key = _ASYM_ALIASES.get(dataset or "", dataset)
        if dataset in _ASYM_DEFAULT:
            convention = _ASYM_DEFAULT[dataset]
        elif key in ASYM_MAPS:
            convention = "dataset"
        else:
            raise _no_mapping_error(dataset)
    target = asym_targets(dataset, num_classes, convention)
    flip = rng.random(len(clean)) < rate
    noisy = np.where(flip, target[clean], clean)
    moves = target[clean] != clean
    return _Draw(noisy, convention, _flip_expected(target, rate), np.where(moves, rate, 0.0))


def _from_mapping_file(clean: np.ndarray, rate: float, rng: np.random.Generator, num_classes: int,
                       path: str) -> _Draw:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"asym mapping file {path!r} does not exist")
    data = p.read_bytes()
    name = f"file:{p.name}:{hashlib.sha256(data).hexdigest()[:12]}"
    if p.suffix == ".json":
        try:
            mapping = {int(k): int(v) for k, v in json.loads(data).items()}
        except (ValueError, TypeError, AttributeError) as exc:
            raise ConfigError(f"asym mapping file {path}: expected a JSON object {{\"src\": dst}}: {exc}") from None
        target = np.arange(num_classes)
        for src, dst in mapping.items():
            if not (0 <= src < num_classes and 0 <= dst < num_classes):
                raise ConfigError(f"mapping {src}->{dst} in {path} is outside [0, {num_classes})")
            target[src] = dst
        flip = rng.random(len(clean)) < rate
        moves = target[clean] != clean
        return _Draw(np.where(flip, target[clean], clean), name, _flip_expected(target, rate),
                     np.where(moves, rate, 0.0))
    if p.suffix not in (".npy", ".csv"):
        raise ConfigError(f"asym mapping file {path}: expected a .json, .npy or .csv file")
    try:
        matrix = np.load(p) if p.suffix == ".npy" else np.loadtxt(p, delimiter=",", ndmin=2)
    except ValueError as exc:
        raise ConfigError(f"asym mapping file {path}: unreadable matrix: {exc}") from None
    if matrix.shape != (num_classes, num_classes) or (matrix < 0).any() or not np.allclose(matrix.sum(1), 1.0):
        raise ConfigError(f"transition matrix in {path} must be ({num_classes}, {num_classes}), non-negative, "
                          f"with rows summing to 1; got shape {matrix.shape}")
    # The file's matrix is used as given (its diagonal already holds the keep probability).
    cum = np.cumsum(matrix, axis=1)
    u = rng.random(len(clean))
    noisy = np.minimum((u[:, None] > cum[clean]).sum(1), num_classes - 1)
    return _Draw(noisy, name, matrix.astype(np.float64), 1.0 - np.diag(matrix)[clean])


PIXEL_SCALES = ("raw", "standardised")


def instance_inputs(inputs: np.ndarray, pixel_scale: str = "raw") -> np.ndarray:
    """(N, d) flattened inputs x of instance-dependent noise.

    Images (N, H, W, C): pixel_scale 'raw' keeps the 0-255 values, as the reference does (Xia et al.'s
    ``data.py`` hands ``torch.from_numpy(images).float()`` of the uint8 arrays to
    ``tools.get_instance_noisy_label``; float images are taken to lie in [0, 1] and scaled by 255);
    'standardised' divides uint8 by 255 and standardises each channel with the dataset's statistics.
    Feature rows (N, D) are standardised per dimension (features have no reference scale).
    """
    if pixel_scale not in PIXEL_SCALES:
        raise ConfigError(f"unknown inst pixel_scale {pixel_scale!r}; expected one of: {', '.join(PIXEL_SCALES)}")
    x = np.asarray(inputs, dtype=np.float32)
    if x.ndim == 4:
        if pixel_scale == "raw":
            return (x if inputs.dtype == np.uint8 else x * 255.0).reshape(len(x), -1)
        x = x / 255.0 if inputs.dtype == np.uint8 else x
        mean = x.mean(axis=(0, 1, 2), keepdims=True)
        std = x.std(axis=(0, 1, 2), keepdims=True) + 1e-8
    elif x.ndim == 2:
        mean = x.mean(axis=0, keepdims=True)
        std = x.std(axis=0, keepdims=True) + 1e-8
    else:
        raise ConfigError(f"inst noise inputs must be images (N, H, W, C) or features (N, D); got shape {x.shape}")
    return ((x - mean) / std).reshape(len(x), -1)


def _normalised_inputs(inputs: np.ndarray) -> np.ndarray:
    """Standardised inputs (the 'standardised' pixel scale; features always)."""
    return instance_inputs(inputs, "standardised")


INST_INPUTS = ("features", "pixels")


@register_noise("inst")
def instance_dependent(
    clean: np.ndarray,
    *,
    rate: float,
    rng: np.random.Generator,
    num_classes: int,
    inputs: np.ndarray | None = None,
    std: float = 0.1,
    inputs_kind: str = "pixels",
    pixel_scale: str = "raw",
    dataset=None,
    **opts,
) -> _Draw:
    """Instance-dependent noise of Xia et al., NeurIPS 2020 ("Part-dependent label noise").

    Follows the generator of their code (github.com/xiaoboxia/Part-dependent-label-noise,
    ``tools.get_instance_noisy_label``), which the field reuses: per sample a flip rate
    q_i ~ N(rate, std²) truncated to [0, 1]; a projection W (C, d, C) ~ N(0, 1); scores x_i·W[y_i] with
    the true class masked out, softmax, scaled by q_i, and 1 − q_i on the true class; the noisy label is
    drawn from that distribution. x_i is the flattened input (``instance_inputs``).
    ``inputs_kind``: 'pixels' (default, as the reference) or 'features' (x is the backbone's feature
    vector; ``nlbench.run.labels`` extracts it through the feature cache). ``pixel_scale``: 'raw' (default,
    the reference's 0-255 values: large scores, so each sample's flips concentrate on one wrong class)
    or 'standardised' (per-channel standardised pixels: flips spread over more classes).
    """
    from scipy.stats import truncnorm  # scipy: heavy, for the inst model only

    _check_options("inst", opts, ("inputs_kind", "pixel_scale", "std"))
    if inputs_kind not in INST_INPUTS:
        raise ConfigError(f"unknown inst inputs_kind {inputs_kind!r}; expected one of: {', '.join(INST_INPUTS)}")
    if pixel_scale not in PIXEL_SCALES:
        raise ConfigError(f"unknown inst pixel_scale {pixel_scale!r}; expected one of: {', '.join(PIXEL_SCALES)}")
    if isinstance(std, bool) or not isinstance(std, (int, float)) or std <= 0:
        raise ConfigError(f"inst option std must be a positive number; got {std!r}")
    if inputs is None:
        raise ConfigError("inst noise needs the training inputs (pixels or features)")
    convention = "xia2020:features" if inputs_kind == "features" else (
        "xia2020:pixels" if pixel_scale == "raw" else "xia2020:pixels-standardised")
    x = instance_inputs(inputs, pixel_scale)
    n, d = x.shape
    if rate == 0.0:
        return _Draw(clean.copy(), convention, np.eye(num_classes), np.zeros(n))
    q = truncnorm.rvs((0 - rate) / std, (1 - rate) / std, loc=rate, scale=std, size=n, random_state=rng)
    w = rng.standard_normal((num_classes, d, num_classes), dtype=np.float32)
    probs = flip_distribution(x, clean, q, w)
    u = rng.random(n)
    noisy = np.minimum((u[:, None] > np.cumsum(probs, axis=1)).sum(1), num_classes - 1)
    expected = np.zeros((num_classes, num_classes))
    for c in np.unique(clean):
        expected[c] = probs[clean == c].mean(axis=0)
    return _Draw(noisy, convention, expected, 1.0 - probs[np.arange(n), clean])


def flip_distribution(x: np.ndarray, clean: np.ndarray, q: np.ndarray, w: np.ndarray) -> np.ndarray:
    """(N, C) label distribution per sample (Xia et al.): q_i·softmax(x_i W[y_i]) over the other classes
    (true class masked out) plus 1 − q_i on y_i. x: (N, d) inputs (``instance_inputs``); q: (N,);
    w: (C, d, C)."""
    n, num_classes = len(clean), w.shape[2]
    probs = np.zeros((n, num_classes), dtype=np.float64)
    for c in np.unique(clean):
        idx = np.flatnonzero(clean == c)
        scores = (x[idx] @ w[c]).astype(np.float64)
        scores[:, c] = -np.inf
        scores -= scores.max(axis=1, keepdims=True)
        e = np.exp(scores)
        probs[idx] = q[idx, None] * e / e.sum(axis=1, keepdims=True)
        probs[idx, c] += 1.0 - q[idx]
    return probs


def check_noise_options(model: str, rate: float, options: Mapping[str, object], *, num_classes: int,
                        dataset: str | None = None) -> None:
    """Raise ConfigError for anything ``apply_noise`` would refuse (an unknown option, asym ≥ 0.5 without
    force, a bad or missing mapping file…) without drawing the dataset's labels: the model's own code runs on
    one dummy sample, so grids are checked with the very rules their cells will meet."""
    mapping = options.get("mapping_file")
    if model == "asym" and isinstance(mapping, str) and Path(mapping).suffix == ".json" and Path(mapping).is_file():
        _check_json_mapping(Path(mapping))
    inputs = np.zeros((1, 1), dtype=np.float32) if model == "inst" else None
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)  # statistics of one dummy input
        apply_noise(model, np.zeros(1, dtype=np.int64), rate=rate, seed=0, num_classes=num_classes, inputs=inputs,
                    dataset=dataset, **options)


def _check_json_mapping(path: Path) -> None:
    """A JSON mapping's keys and values must be class indices as written (``"1": 7.9`` is not class 7)."""
    try:
        mapping = json.loads(path.read_bytes())
    except ValueError as exc:
        raise ConfigError(f"asym mapping file {path}: not JSON: {exc}") from None
    if not isinstance(mapping, dict):
        raise ConfigError(f"asym mapping file {path}: expected a JSON object {{\"src\": dst}}; "
                          f"got {type(mapping).__name__}")
    for key, value in mapping.items():
        if not key.strip().isdigit() or isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"asym mapping file {path}: entry {key!r}: {value!r}; expected a class index "
                              f"(\"src\": dst with non-negative integers)")
