"""Data commands of the CLI: ``nlbench prepare`` and ``nlbench noise audit`` (filled by the datasets/noise work)."""

from __future__ import annotations

import argparse


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register this module's subcommands on the ``nlbench`` parser."""
