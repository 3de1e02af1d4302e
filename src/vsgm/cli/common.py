"""What the command modules share: the options of a parsed command line by group, and the overwrite flag."""

from __future__ import annotations

import argparse
from typing import Any

from ..guards import OVERWRITE_FLAG
from ..options import defaults


def options_of(args: argparse.Namespace, *groups: str) -> dict[str, Any]:
    """The values of every option of the named groups (``vsgm.options``)."""
    return {k: getattr(args, k) for k in defaults(*groups)}


def add_overwrite(p: argparse.ArgumentParser) -> None:
    p.add_argument(OVERWRITE_FLAG, action="store_true", help="replace existing output files (default: refuse)")
