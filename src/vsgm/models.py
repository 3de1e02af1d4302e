"""Build the score network from options, and load a trained one from its checkpoint."""

from __future__ import annotations

import json
import logging
import os
from typing import Any

import torch

from .checks import range_problems
from .checkpoint import CheckpointError, load_state_strict, load_tensors, read_header
from .guards import check_fields
from .io import sidecar
from .options import MODEL, SDE
from .data.loader import normalise
from .score_function import parametrisation_of
from .sde import VESDE
from .unet import UNetConfig, UNetModel, cpu_chunk

log = logging.getLogger(__name__)


def micro_batch_size(options: dict[str, Any], size: int, device: torch.device) -> int:
    """Images per training forward/backward pass: ``micro_batch``, or automatically the whole batch on a
    GPU and cache-sized chunks on a CPU (``unet.cpu_chunk``)."""
    batch = options["batch_size"]
    if options.get("micro_batch"):
        return min(options["micro_batch"], batch)
    if device.type != "cpu":
        return batch
    return cpu_chunk(batch, options["model_channels"] * options["channel_mult"][0], size ** options["dims"])


class TrainedModel:
    """A trained score model: network (eval mode), SDE and the options it was trained with."""

    def __init__(self, net: UNetModel, options: dict[str, Any], meta: dict[str, Any], codec=None):
        self.net, self.options, self.meta = net.eval(), options, meta
        self.sde = VESDE(options["sigma"])
        self.channels, self.size = meta["channels"], meta["size"]  # of the images
        self.codec = codec  # LatentCodec in latent mode
        self.input_channels = meta.get("latent_channels", self.channels)
        self.input_size = meta.get("latent_size", self.size)

    def to_input(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 images -> what the network models: [-1, 1] pixels, or latents in latent mode."""
        x = normalise(images)
        return self.codec.encode(x) if self.codec is not None else x

    def to_images(self, x: torch.Tensor) -> torch.Tensor:
        """Network space -> images in [-1, 1] (decodes latents)."""
        return self.codec.decode(x) if self.codec is not None else x.clamp(-1, 1)

    @property
    def null_label(self) -> int | None:
        return self.options["n_classes"] if self.options["conditional"] else None

    def to(self, device: torch.device | str) -> "TrainedModel":
        self.net.to(device)
        if self.codec is not None:
            self.codec.vae.to(device)
            self.codec.device = torch.device(device)
        return self


# what defines the network and its sampling: kept in the weights file's header too (use_checkpoint only saves memory)
NETWORK_OPTIONS = tuple(o.name for o in (*MODEL, *SDE) if o.name != "use_checkpoint")
NETWORK_META = ("channels", "size", "latent_channels", "latent_size", "dataset")


def network_identity(meta: dict[str, Any]) -> dict[str, Any]:
    """The options and shapes that define a trained network, as JSON values (see load_trained)."""
    ident = {"options": {k: meta["options"].get(k) for k in NETWORK_OPTIONS},
             **{k: meta.get(k) for k in NETWORK_META}}
    return json.loads(json.dumps(ident))


def check_model_meta(meta: dict[str, Any], where: Any) -> None:
    """Refuse a model.json whose options or shapes are of the wrong type or out of range (one line)."""
    check_fields(meta, {"options": dict, "channels": int, "size": int}, where)
    options = meta["options"]
    for opt in (*MODEL, *SDE):
        value, default = options.get(opt.name, opt.default), opt.default
        kind = (float,) if isinstance(default, float) else (type(default),)
        if isinstance(default, list):
            ok = isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
        else:
            ok = value is None if default is None else _fields_ok(value, kind)
        if not ok:
            raise ValueError(f"{where}: options.{opt.name} must be like {json.dumps(default)}, got "
                             f"{json.dumps(value)[:60]}")
    problems = range_problems({k: options.get(k) for k in NETWORK_OPTIONS}, "options") + \
        range_problems({"channels": meta["channels"], "size": meta["size"]})
    if problems:
        raise ValueError(f"{where}: {problems[0]}")


def _fields_ok(value: Any, kind: tuple) -> bool:
    try:
        check_fields({"v": value}, {"v": kind}, "")
    except ValueError:
        return False
    return True


def check_against_header(path: str | os.PathLike, meta: dict[str, Any]) -> None:
    """Refuse a model.json that disagrees with the network recorded in the weights file's header.

    Models written before the header entry existed load as before: their model.json is trusted,
    with a warning saying so.
    """
    header = read_header(path)
    if header is None:
        log.warning("%s: written before vsgm kept the network's options in the weights file; "
                    "%s is trusted as it is", path, sidecar(path).name)
        return
    now = network_identity(meta)
    diff = [f"options.{k}" for k in NETWORK_OPTIONS if now["options"].get(k) != header.get("options", {}).get(k)]
    diff += [k for k in NETWORK_META if now.get(k) != header.get(k)]
    if diff:
        raise CheckpointError(f"{sidecar(path)}: {', '.join(diff)} disagree(s) with the network recorded in {path} "
                              "(the .json was edited or belongs to another model)")


def load_trained(path: str | os.PathLike, device: torch.device | str = "cpu") -> TrainedModel:
    """Load ``model.safetensors`` + ``model.json`` written by training.

    Raises:
        CheckpointError: naming the file, when it is missing, corrupt, not safetensors, from another
            architecture, or when model.json is malformed or disagrees with the file's own header.
    """
    tensors, meta = load_tensors(path)
    try:
        check_model_meta(meta, sidecar(path))
    except ValueError as err:
        raise CheckpointError(str(err)) from None
    check_against_header(path, meta)
    try:
        options = meta["options"]
        net = UNetModel(UNetConfig.from_options(options, meta.get("latent_channels", meta["channels"]),
                                    meta.get("latent_size", meta["size"])))
    except (KeyError, ValueError) as err:
        raise CheckpointError(f"{path}: metadata does not describe a vsgm model ({err})") from None
    load_state_strict(net, tensors, path)
    net.parametrisation = meta.get("parametrisation", "vsgm")  # "seed" for vsgm import-seed (see vsgm.score_function)
    try:
        parametrisation_of(net)
    except ValueError as err:
        raise CheckpointError(f"{path}: {err}") from None
    codec = None
    if options.get("latent"):
        from .latent import LatentCodec

        codec = LatentCodec(options["vae"], device)
    return TrainedModel(net, options, meta, codec).to(device)
