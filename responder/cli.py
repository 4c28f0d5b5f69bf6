"""Commands this package adds to the `yuqing` CLI."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Add this package's subcommands to ``sub``."""
