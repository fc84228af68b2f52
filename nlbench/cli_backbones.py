"""Backbone commands of the CLI: ``nlbench fetch-weights`` (filled by the backbones work)."""

from __future__ import annotations

import argparse


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register this module's subcommands on the ``nlbench`` parser."""
