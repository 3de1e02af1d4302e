"""Every option of the seed, under its seed name and with its seed default, in one table.

The CLI builds its parsers from these groups; the workflow passes config keys
through under the same names.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any, Callable, Sequence

from .domains import OPTIONS, Number, eps, head_channels, non_negative_int, positive_int, probability  # noqa: F401
from .sampler_names import GRIDS, SOLVERS
from .tracking import CHOICES as TRACKER_CHOICES


@dataclasses.dataclass(frozen=True)
class Opt:
    """One command-line option: seed name, default, help, and how to parse it."""

    name: str
    default: Any
    help: str
    type: Callable | None = None
    choices: Sequence | None = None
    nargs: str | None = None
    flag: bool = False  # a real boolean: --name / --no-name

    def __post_init__(self):
        if self.type is None and not self.flag and self.name in OPTIONS:
            object.__setattr__(self, "type", OPTIONS[self.name])  # the range of every number: vsgm.domains

    def add_to(self, parser: argparse._ActionsContainer, unset: str | None = None) -> None:
        """Add ``--name``; with ``unset``, its default is None and the help says what None means."""
        default, shown = (self.default, self.default) if unset is None else (None, unset)
        kw: dict[str, Any] = {"default": default, "help": f"{self.help} (default: {shown})"}
        if self.flag:
            parser.add_argument(f"--{self.name}", action=argparse.BooleanOptionalAction, **kw)
            return
        for key in ("type", "choices", "nargs"):
            if getattr(self, key) is not None:
                kw[key] = getattr(self, key)
        parser.add_argument(f"--{self.name}", **kw)


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line: ``vsgm CMD: error: ... (see vsgm CMD --help)``,
    exit status 2 (argparse's usual message starts with the whole usage text)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


DATA_ROOT = "resources/data"  # where datasets are downloaded to by default


# the numeric types live in the torch-free vsgm.domains (the workflow's config check uses them too)
positive_float = Number(float, 0.0, 1e6, lo_open=True, name="positive_float")
open_unit = eps  # the smallest time of the SDE


MODEL = [
    Opt("model_channels", 64, "Number of features"),
    Opt("num_res_blocks", 2, "Number of residual blocks per downsample"),
    Opt("attention_resolutions", [4], "Downsample rates for attention", nargs="*"),
    Opt("dropout", 0.0, "Dropout probability"),
    Opt("channel_mult", [1, 2, 2], "Channel multiplier for UNet levels", nargs="+"),
    Opt("conv_resample", True, "Use learned convolutions for resampling", flag=True),
    Opt("dims", 2, "Signal dimensionality (1D, 2D, or 3D)", choices=[1, 2, 3]),
    Opt("num_heads", 4, "Number of attention heads"),
    Opt("num_head_channels", 32, "Fixed channel width per attention head (-1: use num_heads)"),
    Opt("use_scale_shift_norm", False, "Use FiLM-like conditioning mechanism", flag=True),
    Opt("resblock_updown", False, "Use residual blocks for up/downsampling", flag=True),
    Opt("use_new_attention_order", False, "Use alternative attention pattern", flag=True),
    Opt("use_checkpoint", False, "Recompute activations in the backward pass (saves memory, costs time)",
        flag=True),
    Opt("conditional", False, "Conditional (class labels)", flag=True),
    Opt("n_classes", 10, "Number of classes"),
    Opt("latent", False, "Use latent implementation (diffusers AutoencoderKL)", flag=True),
    Opt("vae", "stabilityai/sd-vae-ft-mse", "AutoencoderKL name or local folder for --latent"),
]

SDE = [
    Opt("sigma", 25.0, "Sigma"),
    Opt("eps", 1e-3, "Smallest timestep for numeric stability"),
]

DATA = [
    Opt("dataset", "mnist", "Dataset name"),
    Opt("size", None, "Size of the original image (resize to this)"),
    Opt("root", DATA_ROOT, "Directory of downloaded datasets"),
    Opt("batch_size", 128, "Batch size"),
    Opt("num_workers", 0, "Number of workers for Dataloader"),
    Opt("seed", 0, "Random seed"),
]

TRAIN = [
    Opt("n_epochs", 100, "Number of epochs"),
    Opt("lr", 5e-4, "Learning rate"),
    Opt("decay", 0.0, "Weight decay rate"),
    Opt("warmup", 10, "Warmup epochs"),
    Opt("ema_rate", 0.999, "Exponential moving average rate"),
    Opt("drop_prob", 0.1, "Dropout probability of the label (classifier-free guidance)"),
    Opt("sample_and_save_freq", 10, "Sample and save frequency (epochs)"),
    Opt("save_every", 0, "Write a resume checkpoint every N steps (0: only at sample grids and SIGTERM)",
        non_negative_int),
    Opt("no_wandb", False, "Disable wandb logging", flag=True),
    Opt("log_with", None, "Trackers (accelerate's): wandb, tensorboard, mlflow, all (the installed ones) or none; "
        "unset: wandb when installed unless --no_wandb", choices=TRACKER_CHOICES),
    Opt("mixed_precision", "no", "Mixed precision", choices=["no", "fp16", "bf16"]),
    Opt("micro_batch", 0, "Images per forward/backward pass; gradients of a batch's chunks add up to the same "
        "update (0: auto, the whole batch on a GPU and cache-sized chunks on a CPU)", non_negative_int),
    Opt("compile", False, "torch.compile the UNet (pays off on GPUs; a minute of compiling on CPU)", flag=True),
]

SAMPLE = [
    Opt("sampler_type", "EM", "Sampler", str.upper, choices=["EM", "PC", "ODE"]),
    Opt("solver", "euler", "Solver for ODE", choices=list(SOLVERS)),
    Opt("grid", "t", "Time variable of the ODE: t (the seed) or logstd", choices=list(GRIDS)),
    Opt("num_steps", 100, "Number of steps"),
    Opt("num_samples", 16, "Number of samples"),
    Opt("atol", 1e-6, "Absolute tolerance"),
    Opt("rtol", 1e-6, "Relative tolerance"),
    Opt("snr", 0.16, "Signal-to-noise ratio of the Langevin corrector (PC)"),
    Opt("cfg", 1.0, "Label guidance"),
    Opt("denoise", False, "End with one Tweedie denoising step at t = eps, x + std(eps)^2 s(x, eps) (score_sde's "
        "noise_removal; one more score evaluation)", flag=True),
]

# the options of vsgm's own commands (not the seed's); the workflow's schema states the same defaults
# (tests/test_structure.py compares them)

FEATURES = [  # vsgm features and vsgm ood: what vsgm.ood.FeatureConfig computes per image
    Opt("n_draws", 1, "Noise draws per time of the loss score"),
    Opt("levels", 10, "Noise levels of the multi-scale score norms"),
    Opt("bpd", False, "Also bits/dim (costly)", flag=True),
    Opt("bpd_steps", 10, "rk4 steps (log-std grid) for bits/dim"),
]

SWEEP = [  # vsgm sweep: the settings each sampler is run at
    Opt("steps", [5, 10, 20, 50, 100], "Steps of the fixed-step samplers", nargs="+"),
    Opt("tolerances", [1e-1, 1e-2, 1e-3, 1e-4], "Tolerances (atol = rtol) of the adaptive samplers", nargs="+"),
    Opt("num_samples", 256, "Samples per setting"),
    Opt("batch_size", 256, "Samples per batch"),
]

PAIR = [  # vsgm pair: the bootstrap of the AUROC interval
    Opt("n_boot", 1000, "Bootstrap resamples of the AUROC interval"),
]

QUALITY = [  # vsgm quality, paired and sweep: the bootstrap of the sample-quality intervals
    Opt("n_boot", 200, "Bootstrap resamples of the quality metrics' intervals"),
]

SEED_GROUPS: dict[str, list[Opt]] = {"model": MODEL, "sde": SDE, "data": DATA, "train": TRAIN, "sample": SAMPLE}
GROUPS: dict[str, list[Opt]] = {**SEED_GROUPS, "features": FEATURES, "sweep": SWEEP, "pair": PAIR,
                                 "quality": QUALITY}


def defaults(*groups: str) -> dict[str, Any]:
    """Defaults of the named groups (the seed's groups when none is named)."""
    names = groups or tuple(SEED_GROUPS)
    return {o.name: o.default for g in names for o in GROUPS[g]}


def option(name: str, group: str | None = None) -> Opt:
    """The option called ``name``: from ``group``, or from the first group that holds it (the seed's first)."""
    return next(o for g in ([group] if group else GROUPS) for o in GROUPS[g] if o.name == name)


def add_groups(parser: argparse.ArgumentParser, *groups: str, unset: str | None = None) -> None:
    """Add every option of the named groups, a section each (``unset``: see ``Opt.add_to``)."""
    for g in groups:
        section = parser.add_argument_group(g)
        for opt in GROUPS[g]:
            opt.add_to(section, unset)
