"""Backbone commands of the CLI: ``nlbench fetch-weights``.

Run on a machine with internet (a login node): it downloads each backbone's published weights into the
Hugging Face cache (what the runner reads with ``HF_HUB_OFFLINE=1``) and, with ``--weights-dir DIR``, also
writes each backbone's own state dict as ``DIR/<name>@<tag>.safetensors`` (``<name>.safetensors`` for a
family without tags) — a plain local checkpoint for the grid's ``weights`` field or for
``NLBENCH_WEIGHTS_DIR=DIR`` on compute nodes. It prints every file it stored.

``apply_weights_overrides`` gives a run's ``--weights NAME=PATH`` the meaning of the grid field.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

from nlbench.errors import ConfigError
from nlbench.registry import BACKBONES

if TYPE_CHECKING:  # an annotation only: importing grids at run time would load torch for `nlbench --help`
    from nlbench.run.grids import Grid


def parse_backbone_specs(specs: list[str] | None) -> list[tuple[str, str | None]]:
    """``['vit_b16', 'resnet50@a1_in1k']`` → [(name, tag or None)], names checked; default: every backbone."""
    if not specs:
        return [(name, None) for name in BACKBONES.names()]
    out = []
    for spec in specs:
        name, _, tag = spec.partition("@")
        BACKBONES.entry(name)  # ConfigError with the valid names
        if "@" in spec and not tag:
            raise ConfigError(f"backbone spec {spec!r}: empty tag after '@'; expected NAME or NAME@TAG")
        out.append((name, tag or None))
    return out


def apply_weights_overrides(grid: Grid, overrides: list[str] | None) -> Grid:
    """The grid with local checkpoint files set on its backbone entries (``--weights`` of a run).

    overrides: ``NAME=PATH`` items, or one bare ``PATH`` when the grid has one backbone. Each sets the
    ``weights`` field of every entry of backbone NAME (whatever its tag), as writing it in the grid would.
    ConfigError for a file that does not exist or a name the grid does not use.
    """
    if not overrides:
        return grid
    entries = [dict(b) if isinstance(b, dict) else {"name": b} for b in grid.raw.get("backbones", [])]
    names = list(dict.fromkeys(e.get("name") for e in entries))
    chosen: dict[str, str] = {}
    for item in overrides:
        name, sep, path = item.partition("=")
        if not sep:
            if len(names) != 1:
                raise ConfigError(f"--weights {item!r}: grid {grid.name!r} has backbones {', '.join(names)}; "
                                  f"write --weights NAME=PATH")
            name, path = names[0], item
        if name not in names:
            raise ConfigError(f"--weights {item!r}: backbone {name!r} is not in grid {grid.name!r}; "
                              f"expected one of: {', '.join(names)}")
        if not Path(path).is_file():
            raise ConfigError(f"--weights {item!r}: weights file {path!r} does not exist")
        chosen[name] = path
    for entry in entries:
        if entry.get("name") in chosen:
            entry["weights"] = chosen[entry["name"]]
    return dataclasses.replace(grid, raw={**grid.raw, "backbones": entries})


def _size(path: str | Path) -> str:
    return f"{Path(path).stat().st_size / 2**20:,.1f} MiB"


def cmd_fetch_weights(args: argparse.Namespace) -> int:
    # torch-backed: imported when the command runs (see nlbench.cli.main's docstring)
    from nlbench.backbones import backbone_ref, create_backbone, file_digest
    from nlbench.backbones.hub import hf_cache_dir, ignore_weights_dir, offline, save_weights, weights_file_name

    specs = parse_backbone_specs(args.backbones)
    if offline():
        raise ConfigError("fetch-weights downloads from the Hugging Face Hub, but HF_HUB_OFFLINE is set; "
                          "run it without HF_HUB_OFFLINE on a machine with internet")
    weights_dir = Path(args.weights_dir) if args.weights_dir else None
    print(f"Hugging Face cache: {hf_cache_dir()}" + (f"; weights folder: {weights_dir}" if weights_dir else ""))
    failed = []
    for name, tag in specs:
        try:
            with ignore_weights_dir():  # read the published files, not an earlier copy in the folder
                backbone = create_backbone(name, pretrained=True, tag=tag)
        except ConfigError as exc:
            print(f"{name}: FAILED: {exc}")
            failed.append(name)
            continue
        label = backbone_ref(name, backbone.tag)
        print(f"{label}: {backbone.weights_id}")
        for path in backbone.weights_files:
            print(f"  stored {path} ({_size(path)})")
        if weights_dir is not None:
            target = weights_dir / weights_file_name(name, backbone.tag)
            save_weights(backbone.model, target)
            print(f"  wrote  {target} ({_size(target)}, sha256 {file_digest(target)}…)")
    if failed:
        raise ConfigError(f"could not fetch the weights of: {', '.join(failed)} (reasons above)")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register this module's subcommands on the ``nlbench`` parser."""
    p = sub.add_parser(
        "fetch-weights",
        help="download backbones' published weights into the Hugging Face cache (run where there is internet)",
        description=__doc__.split("\n\n")[1].replace("``", ""),
    )
    p.add_argument("--backbones", nargs="+", metavar="NAME[@TAG]",
                   help="backbones to fetch, a tag after '@' (default: every registered backbone)")
    p.add_argument("--weights-dir", metavar="DIR",
                   help="also write each backbone's weights to DIR/<name>[@<tag>].safetensors, for the grid's "
                        "'weights' field or NLBENCH_WEIGHTS_DIR=DIR")
    p.set_defaults(func=cmd_fetch_weights)
