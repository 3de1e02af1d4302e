"""Errors raised by the data layer.

Both carry a one-line message that names what is wrong and where, so the CLI and
Snakemake logs show the fix without a traceback.
"""

from __future__ import annotations

import os
from collections.abc import Iterable


def _one_line(text: str) -> str:
    """Collapse whitespace (library errors are often multi-line) into one line."""
    return " ".join(str(text).split())


class DatasetUnavailableError(RuntimeError):
    """A dataset is not on disk and could not be downloaded (offline, or manual-only).

    Args:
        name: registry name of the dataset.
        files: the files (relative to ``directory``) that are expected.
        directory: where to put them.
        reason: why it is unavailable (e.g. the download error), optional.
        hint: how else to get it; default: run ``vsgm download`` with internet access.
    """

    def __init__(
        self,
        name: str,
        files: Iterable[str],
        directory: str | os.PathLike,
        reason: str = "",
        hint: str | None = None,
    ) -> None:
        self.name = name
        self.files = tuple(files)
        self.directory = str(directory)
        self.reason = _one_line(reason)
        listed = ", ".join(self.files) if self.files else "(see the registry)"
        hint = f"or run `vsgm download --dataset {name}` with internet access" if hint is None else hint
        message = f"dataset '{name}' is not available: put {listed} under {self.directory}"
        if hint:
            message += f" ({_one_line(hint)})"
        if self.reason:
            message += f"; cause: {self.reason}"
        super().__init__(message)


class CorruptFileError(ValueError):
    """A data or cache file exists but cannot be read (truncated, corrupt, wrong format).

    Args:
        path: the offending file (or a short description naming the files).
        reason: what went wrong.
    """

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        self.path = str(path)
        self.reason = _one_line(reason)
        super().__init__(f"cannot read {self.path}: {self.reason}")
