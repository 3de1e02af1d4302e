"""``vsgm import-seed``: a model trained by the seed's ``VanSGM.py`` as a vsgm model directory.

The seed saves its EMA network with ``torch.save`` of an ``OrderedDict`` of tensors and no options:
the user gives the model flags it was trained with. The file is read with
``torch.load(..., weights_only=True)`` (a file that needs code to unpickle is refused), its keys are
renamed to vsgm's UNet (the same ADM network; a few modules are named differently), and
``model.safetensors`` + ``model.json`` + an empty ``train.csv`` are written: what ``vsgm train`` leaves,
so every command and the workflow use it (the workflow does not retrain a model whose directory holds
an imported one). The seed's parametrisation differs from vsgm's (t unscaled; the output is the score):
model.json records ``parametrisation: seed`` and ``vsgm.score_function`` honours it.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import re
from pathlib import Path
from typing import Any

import torch

from .checkpoint import CheckpointError, save_tensors
from .io import write_text

# seed (ADM) module path -> vsgm's, for the ResBlock parts vsgm names differently
KEY_RULES = [
    (re.compile(r"\.in_layers\.0\."), ".in_norm."),
    (re.compile(r"\.in_layers\.2\."), ".in_conv."),
    (re.compile(r"\.out_layers\.0\."), ".out_norm."),
    (re.compile(r"\.out_layers\.3\."), ".out_layers.2."),
    (re.compile(r"\.skip_connection\."), ".skip."),
]
# prefixes a wrapped network adds to every key (DDP, torch.compile)
WRAPPER_PREFIXES = ("module.", "_orig_mod.")


def seed_key(vsgm_name: str) -> str:
    """The seed's name for a key of vsgm's UNet (the inverse of vsgm_key)."""
    for pattern, repl in KEY_RULES:
        vsgm_name = vsgm_name.replace(repl, pattern.pattern.replace("\\", ""))
    return vsgm_name


def vsgm_key(seed_key: str) -> str:
    """The vsgm UNet's name for a key of the seed's state dict."""
    for pattern, repl in KEY_RULES:
        seed_key = pattern.sub(repl, seed_key)
    return seed_key


def read_seed_state(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The seed's state dict, read without unpickling code.

    Args:
        path: a file written by ``torch.save(ema.state_dict(), path)``.

    Returns:
        key -> tensor (float32 or as saved), wrapper prefixes removed.

    Raises:
        CheckpointError: one line naming the file, when it is missing, needs code to unpickle, or is not a
            dict of tensors.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: seed checkpoint not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{path}: refused: it needs code to unpickle (torch.load weights_only=True: "
                              f"{reason[:160]}); the seed's checkpoints are plain tensor state dicts") from None
    except (RuntimeError, OSError, EOFError) as err:
        raise CheckpointError(f"{path}: not a readable torch.save file ({str(err).splitlines()[0][:160]})") from None
    if not isinstance(state, dict) or not state:
        raise CheckpointError(f"{path}: holds a {type(state).__name__}, not the seed's state dict of tensors")
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{path}: key {bad[0]!r} holds a {type(state[bad[0]]).__name__}, not a tensor")
    for prefix in WRAPPER_PREFIXES:
        if all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    return dict(state)


def map_state(state: dict[str, torch.Tensor], own: dict[str, torch.Tensor], path: str | os.PathLike,
              ) -> dict[str, torch.Tensor]:
    """Rename the seed's keys to vsgm's and check them against the network built from the flags.

    Args:
        state: the seed's state dict.
        own: the state dict of the vsgm UNet built from the given model flags.
        path: the seed's file (for messages).

    Returns:
        vsgm key -> tensor, in the vsgm network's dtype.

    Raises:
        CheckpointError: one line naming the first seed key that is unknown, missing or of another shape.
    """
    mapped = {vsgm_key(k): (k, v) for k, v in state.items()}  # vsgm key -> (seed key, tensor)
    hint = "; give the model flags the seed was trained with (--model_channels, --channel_mult, --conditional, ...)"
    for key, (name, value) in mapped.items():
        if key not in own:
            raise CheckpointError(f"{path}: key {name!r} has no place in the UNet these flags build{hint}")
        if tuple(value.shape) != tuple(own[key].shape):
            raise CheckpointError(f"{path}: key {name!r} has shape {tuple(value.shape)} but these flags give "
                                  f"{tuple(own[key].shape)}{hint}")
    missing = [k for k in own if k not in mapped]
    if missing:
        raise CheckpointError(f"{path}: key {seed_key(missing[0])!r} is missing ({len(missing)} tensor(s) the UNet "
                              f"these flags build needs are){hint}")
    return {k: v.to(own[k].dtype) for k, (_, v) in mapped.items()}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def import_seed(checkpoint: str | os.PathLike, options: dict[str, Any], out_dir: str | os.PathLike,
                channels: int, size: int) -> dict[str, Any]:
    """Write ``model.safetensors``, ``model.json`` and an empty ``train.csv`` for a seed checkpoint.

    Args:
        checkpoint: the seed's ``.pt`` file.
        options: seed-named options (every group; the model flags as the seed was trained).
        out_dir: the model directory (e.g. results/svhn).
        channels: image channels of the dataset.
        size: image size the seed trained at.

    Returns:
        The metadata written to model.json.
    """
    from .train import history_csv
    from .unet import UNetModel
    from .unet_config import UNetConfig

    checkpoint, out = Path(checkpoint), Path(out_dir)
    net = UNetModel(UNetConfig.from_options(options, channels, size))
    tensors = map_state(read_seed_state(checkpoint), net.state_dict(), checkpoint)
    net.load_state_dict(tensors)
    meta = {"options": options, "step": None, "epoch": None, "channels": channels, "size": size,
            "dataset": options["dataset"], "final_loss": None, "parametrisation": "seed",
            "imported_from": {"file": checkpoint.name, "sha256": _sha256(checkpoint), "format": "VanSGM.py"}}
    write_text(out / "train.csv", history_csv([]))
    save_tensors(out / "model.safetensors", net.state_dict(), meta)
    return meta
