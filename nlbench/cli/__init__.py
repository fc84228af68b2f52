"""The command line: `nlbench run | table | status | report | ...` (entry point `nlbench.cli:main`)."""

from nlbench.cli.main import main

__all__ = ["main"]
