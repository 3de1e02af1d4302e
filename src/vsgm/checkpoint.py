"""Checkpoints without pickle: safetensors for tensors, JSON for everything else.

- ``model.safetensors`` + ``model.json``: the (EMA) weights and their metadata
  (full config, step, epoch, library versions). What sampling and scoring load.
- ``resume.safetensors`` + ``resume.json``: everything to continue training
  bit for bit (weights, EMA, optimizer, scheduler, RNG state, step).

Loading never unpickles: a file that is not safetensors is refused with a
message naming it.
"""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from . import __version__
from .guards import check_fields, read_json
from .io import atomic_path, sidecar, write_json

FORMAT = 1


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: missing, truncated, not safetensors, or from another model."""


def versions() -> dict[str, str]:
    """Library versions recorded with every checkpoint."""
    import accelerate
    import torchdiffeq

    return {"vsgm": __version__, "torch": torch.__version__, "accelerate": accelerate.__version__,
            "torchdiffeq": getattr(torchdiffeq, "__version__", "?"), "python": platform.python_version()}


def _sniff(path: Path) -> None:
    """Refuse pickles and zip archives (torch.save) before safetensors sees them. A safetensors file is an
    8-byte header length and then its JSON header, so its 9th byte is ``{`` whatever its first bytes are."""
    with open(path, "rb") as f:
        head = f.read(9)
    if head[8:9] != b"{" and (head[:1] == b"\x80" or head[:2] == b"PK"):
        raise CheckpointError(f"{path}: this is a pickle / torch.save file, not safetensors; vsgm never unpickles "
                              "checkpoints (convert it with safetensors.torch.save_file)")


HEADER_KEY = "vsgm.network"  # what defines the network, kept in the weights file's own header


def save_tensors(path: str | os.PathLike, tensors: dict[str, torch.Tensor], meta: dict[str, Any],
                 header: dict[str, Any] | None = None) -> None:
    """Atomically write tensors (safetensors) and their JSON sidecar; the sidecar lands last.

    Args:
        path: the .safetensors destination.
        tensors: name -> tensor (made contiguous, moved to CPU).
        meta: JSON-serialisable metadata; ``format`` and ``versions`` are added.
        header: JSON-serialisable values kept in the safetensors header too (under HEADER_KEY), so that
            an edited sidecar can be told from the file's own record (see read_header).
    """
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    extra = {HEADER_KEY: json.dumps(header, sort_keys=True, allow_nan=False)} if header is not None else None
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=extra)
    write_json(sidecar(path), {**meta, "format": FORMAT, "versions": versions()})


def load_tensors(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a safetensors file and its sidecar, with errors that name the file.

    Returns:
        (tensors, metadata)
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: checkpoint not found")
    _sniff(path)
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise CheckpointError(f"{path}: not a readable safetensors file (truncated or corrupt?): {err}") from None
    meta_path = sidecar(path)
    if not meta_path.exists():
        raise CheckpointError(f"{path}: its metadata file {meta_path.name} is missing")
    try:
        meta = read_json(meta_path)
    except ValueError as err:
        raise CheckpointError(str(err)) from None
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: checkpoint format {meta.get('format')} is not {FORMAT}")
    return tensors, meta


def read_header(path: str | os.PathLike) -> dict[str, Any] | None:
    """The values save_tensors kept in the file's header (None: a file written without them)."""
    with safe_open(str(path), "pt") as f:
        text = (f.metadata() or {}).get(HEADER_KEY)
    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        raise CheckpointError(f"{path}: its header entry {HEADER_KEY} is not valid JSON") from None


def load_state_strict(module: torch.nn.Module, state: dict[str, torch.Tensor], path: str | os.PathLike) -> None:
    """load_state_dict with a message naming the file and the first mismatches."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
              for k in own if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} tensor(s) e.g. {missing[:3]}")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} e.g. {unexpected[:3]}")
        if shapes:
            parts.append(f"shape mismatch {shapes[:3]}")
        raise CheckpointError(f"{path}: does not match this architecture/config: " + "; ".join(parts))
    module.load_state_dict(state)


# -- nested state (optimizer, scheduler) <-> flat tensors + JSON ------------------------------

def flatten_state(obj: Any, prefix: str, tensors: dict[str, torch.Tensor]) -> Any:
    """Replace every tensor in a nested dict/list by a reference, collecting the tensors."""
    if isinstance(obj, torch.Tensor):
        tensors[prefix] = obj
        return {"__tensor__": prefix}
    if isinstance(obj, dict):
        return {"__dict__": [[k, flatten_state(v, f"{prefix}.{k}", tensors)] for k, v in obj.items()]}
    if isinstance(obj, (list, tuple)):
        return [flatten_state(v, f"{prefix}.{i}", tensors) for i, v in enumerate(obj)]
    return obj


def unflatten_state(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Inverse of flatten_state (dict keys keep their type: optimizer state is keyed by int)."""
    if isinstance(obj, dict) and "__tensor__" in obj:
        return tensors[obj["__tensor__"]]
    if isinstance(obj, dict) and "__dict__" in obj:
        return {k: unflatten_state(v, tensors) for k, v in obj["__dict__"]}
    if isinstance(obj, list):
        return [unflatten_state(v, tensors) for v in obj]
    return obj


def save_resume(path: str | os.PathLike, states: dict[str, Any], meta: dict[str, Any]) -> None:
    """Write a resume checkpoint: ``states`` maps a name to any nested state with tensors inside."""
    tensors: dict[str, torch.Tensor] = {}
    structure = {name: flatten_state(state, name, tensors) for name, state in states.items()}
    save_tensors(path, tensors, {**meta, "structure": structure})


def load_resume(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, Any]]:
    """Read a resume checkpoint written by save_resume: (states, meta)."""
    tensors, meta = load_tensors(path)
    try:
        check_fields(meta, {"structure": dict}, sidecar(path))
        states = {name: unflatten_state(s, tensors) for name, s in meta.pop("structure").items()}
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{sidecar(path)}: not a resume checkpoint written by vsgm train ({err})") from None
    return states, meta
