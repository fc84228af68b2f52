"""Cluster commands of the CLI: ``nlbench status`` (filled by the SLURM work)."""

from __future__ import annotations

import argparse


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register this module's subcommands on the ``nlbench`` parser."""
