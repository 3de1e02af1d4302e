"""Which device a command runs on when ``--device`` is not given."""

from __future__ import annotations


def pick_device(name: str | None) -> str:
    """``name`` when given, else ``cuda`` where a GPU is visible, else ``cpu`` (imports torch)."""
    if name:
        return name
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
