"""Data commands of the CLI: ``nlbench prepare`` and ``nlbench noise audit``.

``nlbench prepare DATASET --root DIR [--download]`` checks a dataset's files (names, counts, published
checksums) and says what is missing and where to get it; it downloads only what torchvision can
(CIFAR, Fashion-MNIST) and only with ``--download``. Exit code 0 when everything checks out, 1 otherwise.

``nlbench noise audit --dataset D --noise N --rate R --seed S [--plot PATH]`` draws the noisy labels a
run would see (train + validation, as ``nlbench.run.labels``) and prints the realized rate and the largest
off-diagonal entries of the realized transition matrix; ``--plot`` saves the matrix as a heat-map PNG.
"""

from __future__ import annotations

import argparse
import io
import tomllib
from pathlib import Path

from nlbench.atomic import atomic_write_bytes
from nlbench.cli.common import non_negative_int
from nlbench.errors import ConfigError
from nlbench.registry import DATASETS, NOISE


def _parse_options(items: list[str] | None, what: str) -> dict:
    """KEY=VALUE pairs; values parsed as TOML scalars (numbers, true/false, quoted strings), else kept as text."""
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{what} {item!r}: expected KEY=VALUE")
        try:
            out[key.strip()] = tomllib.loads(f"v = {value}")["v"]
        except tomllib.TOMLDecodeError:
            out[key.strip()] = value
    return out


def cmd_prepare(args: argparse.Namespace) -> int:
    entry = DATASETS.entry(args.dataset)
    prepare = entry.meta.get("prepare")
    if prepare is None:
        raise ConfigError(f"dataset {args.dataset!r} has no file check (it needs no files)")
    root = Path(args.root).expanduser() if args.root else None
    findings = prepare(root, args.download)
    width = max(len(f.status) for f in findings) + 2
    for f in findings:
        print(f"{'[' + f.status + ']':<{width}} {f.item}: {f.detail}")
    problems = [f for f in findings if not f.ok]
    source = entry.meta.get("source")
    if problems:
        print(f"{args.dataset}: {len(problems)} problem(s)" + (f"; source: {source}" if source else ""))
        return 1
    print(f"{args.dataset}: all {len(findings)} checks passed")
    return 0


def _check_audit_args(args: argparse.Namespace) -> tuple[dict, dict]:
    """(dataset options, noise options), every argument checked before anything is drawn or written."""
    from nlbench.run.schema import check, check_rate, dataset_options_model
    from nlbench.run.validate import check_output_folder  # torch-backed (nlbench.cli.main's docstring)

    DATASETS.entry(args.dataset)
    NOISE.entry(args.noise)
    check_rate(args.rate, f"--rate {args.rate:g}")
    dataset_options = _parse_options(args.dataset_option, "--dataset-option")
    check(dataset_options_model(args.dataset), dataset_options, f"--dataset-option of {args.dataset!r}",
          f"dataset {args.dataset!r} has no option(s) {{names}}; expected: {{expected}}")
    if args.plot is not None:
        plot = Path(args.plot)
        if plot.is_dir() or args.plot.endswith(("/", "\\")):
            raise ConfigError(f"--plot {args.plot!r} is a folder; expected the path of a .png file")
        check_output_folder(plot.parent, "--plot folder")
    if args.cache is not None:
        check_output_folder(Path(args.cache).expanduser(), "--cache")
    return dataset_options, _parse_options(args.noise_option, "--noise-option")


def cmd_audit(args: argparse.Namespace) -> int:
    # torch-backed: labels, noise models and datasets (nlbench.cli.main's docstring)
    import numpy as np

    from nlbench.noise import NoisyLabels, check_noise_options, label_digest, transition_matrix
    from nlbench.run.labels import draw_noise
    from nlbench.run.validate import load_checked_dataset

    dataset_options, options = _check_audit_args(args)
    dataset = load_checked_dataset(args.dataset, dataset_options)
    if not dataset.real_noise:
        check_noise_options(args.noise, args.rate, options, num_classes=dataset.num_classes, dataset=args.dataset)
    if dataset.real_noise:
        if args.noise != "none":
            raise ConfigError(f"dataset {args.dataset!r} carries real label noise; audit it with --noise none")
        given, clean = dataset.train.noisy_labels, dataset.train.labels
        if clean is None:
            print(f"{args.dataset}: labels as given; no clean training labels exist, so the realized rate is unknown")
            return 0
        result = NoisyLabels(labels=given, is_noisy=given != clean,
                             transition=transition_matrix(clean, given, dataset.num_classes), model="none",
                             rate=0.0, convention="real", digest=label_digest(given))
        n_train = len(given)
    else:
        cache = Path(args.cache).expanduser() if args.cache else None
        result = draw_noise(dataset, args.noise, args.rate, args.seed, options, cache=cache)
        n_train = len(dataset.train)
    train_rate = float(result.is_noisy[:n_train].mean()) if n_train else 0.0
    c = dataset.num_classes
    print(f"dataset {args.dataset} ({len(result.labels):,} train+val labels, {c} classes), noise {result.model}"
          f" rate {result.rate:g}, convention {result.convention}, seed {args.seed}")
    print(f"realized rate: {result.realized_rate:.4f} (train+val), {train_rate:.4f} (train)")
    if result.flip_probability is not None:
        print(f"expected rate under the model: {float(np.mean(result.flip_probability)):.4f}")
    print(f"labels sha256: {result.digest}")
    names = dataset.class_names or [str(i) for i in range(c)]
    top = result.largest_off_diagonal(args.top)
    print(f"largest off-diagonal transition entries (true → noisy: P), {len(top)} shown:")
    for r, col, p in top:
        print(f"  {r:>3} {names[r]:<16} → {col:>3} {names[col]:<16} {p:.4f}")
    if not top:
        print("  (none: no label changed)")
    if args.plot:
        plot_transition(result.transition, Path(args.plot), names,
                        title=f"{args.dataset}: {result.model} {result.rate:g} ({result.convention}), seed {args.seed}")
        print(f"wrote {args.plot}")
    return 0


def plot_transition(matrix, path: Path, names: list[str], *, title: str) -> None:
    """Save the (C, C) transition matrix as a heat-map PNG (rows: true class, columns: noisy label)."""
    import matplotlib  # only for --plot: not loaded by every command

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    c = len(matrix)
    size = min(12.0, 3.0 + 0.09 * c)
    fig, ax = plt.subplots(figsize=(size + 1.2, size))
    im = ax.imshow(matrix, cmap="viridis", vmin=0.0, vmax=1.0, interpolation="nearest")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="P(noisy label | true class)")
    ax.set_xlabel("noisy label")
    ax.set_ylabel("true class")
    ax.set_title(title, fontsize=9)
    if c <= 20:
        ax.set_xticks(range(c), [n[:12] for n in names], rotation=90, fontsize=7)
        ax.set_yticks(range(c), [n[:12] for n in names], fontsize=7)
        for i in range(c):
            for j in range(c):
                if matrix[i, j] >= 0.005:
                    ax.text(j, i, f"{matrix[i, j]:.2f}", ha="center", va="center", fontsize=6,
                            color="black" if matrix[i, j] > 0.6 else "white")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register this module's subcommands on the ``nlbench`` parser."""
    p = sub.add_parser("prepare", help="check a dataset's files (names, counts, checksums); say what is missing")
    p.add_argument("dataset", help="registered dataset name (nlbench list datasets)")
    p.add_argument("--root", help="the dataset's folder (for csv: the CSV file)")
    p.add_argument("--download", action="store_true",
                   help="download what torchvision can (cifar10, cifar100, fashion_mnist) into --root first")
    p.set_defaults(func=cmd_prepare)

    p = sub.add_parser("noise", help="label-noise tools")
    noise_sub = p.add_subparsers(dest="noise_command", required=True)
    a = noise_sub.add_parser("audit", help="draw a noise model's labels and print the realized rate and transitions")
    a.add_argument("--dataset", required=True)
    a.add_argument("--noise", required=True, help="noise model (nlbench list noise)")
    a.add_argument("--rate", type=float, default=0.0)
    a.add_argument("--seed", type=non_negative_int, default=0)
    a.add_argument("--noise-option", action="append", metavar="KEY=VALUE",
                   help="noise model option, e.g. convention=exclusive (repeatable)")
    a.add_argument("--dataset-option", action="append", metavar="KEY=VALUE",
                   help="dataset option, e.g. root=/data/cifar (repeatable)")
    a.add_argument("--top", type=non_negative_int, default=10,
                   help="how many off-diagonal entries to print (default 10)")
    a.add_argument("--plot", help="save the realized transition matrix as a heat-map PNG here")
    a.add_argument("--cache", help="reuse/save the labels under this cache root (as runs do)")
    a.set_defaults(func=cmd_audit)
