"""Experiment tracking through accelerate's trackers: wandb, tensorboard, mlflow.

``vsgm train --log_with wandb|tensorboard|mlflow|all|none``. Without ``--log_with`` the seed's rule
holds: wandb when it is installed, unless ``--no_wandb``. A node without a wandb login never waits on
its prompt: wandb then runs offline (``WANDB_MODE=offline``, synced later with ``wandb sync``) and one
line says so. Files of tensorboard (and mlflow's local store) go to ``<out_dir>/tracking``.
train.csv is written whatever the trackers.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path
from typing import Any, Callable

import numpy as np

log = logging.getLogger(__name__)

TRACKERS = ("wandb", "tensorboard", "mlflow")
CHOICES = (*TRACKERS, "all", "none")
PROJECT = "vsgm"


def installed(name: str) -> bool:
    """Whether the tracker's package can be imported (tensorboard: torch's SummaryWriter needs it)."""
    return importlib.util.find_spec(name) is not None


def resolve(log_with: str | None, no_wandb: bool) -> list[str]:
    """The trackers a run logs to.

    Args:
        log_with: ``--log_with`` (None: the seed's rule, wandb when installed unless ``no_wandb``).
        no_wandb: the seed's ``--no_wandb``.

    Returns:
        Tracker names (possibly empty).

    Raises:
        ValueError: one line naming the flag, for an unknown or uninstalled tracker.
    """
    if log_with is None:
        return ["wandb"] if not no_wandb and installed("wandb") else []
    if log_with == "none":
        return []
    if log_with == "all":
        return [t for t in TRACKERS if installed(t) and not (t == "wandb" and no_wandb)]
    if log_with not in TRACKERS:
        raise ValueError(f"--log_with {log_with}: not one of {', '.join(CHOICES)}")
    if not installed(log_with):
        raise ValueError(f"--log_with {log_with}: the package {log_with} is not installed "
                         "(pip install 'vsgm[tracking]' or 'vsgm[mlflow]')")
    return [log_with]


def wandb_logged_in() -> bool:
    """An API key in the environment or in ~/.netrc (where ``wandb login`` puts it)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    try:
        return "api.wandb.ai" in netrc.read_text()
    except OSError:
        return False


def avoid_login_prompt(trackers: list[str]) -> None:
    """wandb without a login and without WANDB_MODE: offline mode, with one line saying so."""
    if "wandb" in trackers and not os.environ.get("WANDB_MODE") and not wandb_logged_in():
        os.environ["WANDB_MODE"] = "offline"
        log.warning("wandb: no login (WANDB_API_KEY or ~/.netrc) found: logging offline to ./wandb; "
                    "`wandb sync` uploads it later")


def accelerator_kwargs(options: dict[str, Any], out_dir: str | os.PathLike) -> dict[str, Any]:
    """``log_with`` and ``project_dir`` for ``Accelerator(...)`` from the run's options."""
    trackers = resolve(options.get("log_with"), options.get("no_wandb", False))
    avoid_login_prompt(trackers)
    if not trackers:
        return {}
    return {"log_with": trackers, "project_dir": str(Path(out_dir) / "tracking")}


def hparams(options: dict[str, Any]) -> dict[str, Any]:
    """Options as tracker hyperparameters: lists and None become strings (tensorboard takes scalars only)."""
    return {k: (v if isinstance(v, (bool, int, float, str)) else str(v)) for k, v in options.items()}


def start(acc, options: dict[str, Any], run_name: str) -> None:
    """init_trackers for the accelerator's trackers (if any)."""
    if acc.log_with:
        acc.init_trackers(PROJECT, config=hparams(options), init_kwargs={"wandb": {"name": run_name}})


def _mlflow_image(tracker, image: np.ndarray, step: int) -> None:
    import mlflow

    mlflow.log_image(image, f"samples/step_{step:07d}.png")


# tracker name -> how it takes one HWC uint8 image
IMAGE_LOGGERS: dict[str, Callable[[Any, np.ndarray, int], None]] = {
    "tensorboard": lambda tracker, image, step: tracker.log_images({"samples": image[None]}, step=step,
                                                                   dataformats="NHWC"),
    "wandb": lambda tracker, image, step: tracker.log_images({"samples": [image]}, step=step),
    "mlflow": _mlflow_image,
}


def log_image(acc, png: str | os.PathLike, step: int) -> None:
    """Log a sample grid (a PNG file) to every tracker that takes images."""
    if not acc.trackers:
        return
    from PIL import Image

    image = np.asarray(Image.open(png).convert("RGB"))
    for tracker in acc.trackers:
        logger = IMAGE_LOGGERS.get(tracker.name)
        if logger is not None:
            logger(tracker, image, step)
