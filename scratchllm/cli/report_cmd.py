"""Subcommands of `scratchllm` for this group; each is a thin call of a library function."""

from __future__ import annotations


def register(sub) -> None:
    """Add this group's subcommands to the top-level parser."""
