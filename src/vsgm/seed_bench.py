"""``vsgm seed-bench``: vsgm against the seed's own implementation, timed in one run on one machine.

The seed's reference implementation is public (GenerativeZoo, ``src/generativezoo/models/SM/SGM.py``,
its ``SGM`` class and ADM ``UNetModel``); nothing of it is copied here. Given the path of a user's
checkout, this module imports the seed's module as it is, builds its ``SGM`` at the seed's own
defaults (its ``parse_args_SGM`` with ``--train``), and times, at the same image shape and batch:

- one training step as the seed's ``train_model`` loop runs it: its ``loss_fn``, backward, AdamW
  (its lr and decay), its ``update_ema``; against ``vsgm bench``'s training step;
- the seed's outlier score: its loss at the five times 0.001, 0.01, 0.05, 0.1, 0.2, one forward of
  the seed's network per time (GenerativeZoo's ``outlier_score``, which the seed's docs describe and
  which left the repository with the old ``VanillaSGM`` module; here over the ``SGM`` class's
  network and ``marginal_prob_std``); against vsgm's ``loss_features`` at the same times.

Both sides run in the same process, one after the other, so the ratios mean something on shared,
noisy hardware. Packages the seed's module imports but the timed code never calls (wandb: logging;
diffusers: the latent model's VAE; python-dotenv: reading the checkout's ``.env``) are replaced by
placeholders when they are not installed (a call into wandb or diffusers then fails saying what to
install); missing packages the timed code needs are named in a one-line error.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.machinery
import importlib.util
import sys
import types
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

# the goals of issue 16 on a CPU: vsgm's images/s over the seed's
GOALS = {"train": 4.0, "outlier": 2.0}
# the seed's outlier-score times (GenerativeZoo's outlier_score); vsgm's LOSS_TIMES must be the same
SEED_OUTLIER_TIMES = (0.001, 0.01, 0.05, 0.1, 0.2)
# imported by the seed's module but never called by what is timed: package -> (what it does there, stand-in)
UNUSED_IMPORTS = {"wandb": "logging", "diffusers": "the latent model's VAE", "dotenv": "reading the checkout's .env"}
# imported by the seed's module and needed: import name -> pip name
NEEDED_IMPORTS = {"torch": "torch", "numpy": "numpy", "tqdm": "tqdm", "torchdiffeq": "torchdiffeq",
                  "matplotlib": "matplotlib", "torchvision": "torchvision", "sklearn": "scikit-learn",
                  "accelerate": "accelerate"}
SEED_MODULE = "models.SM.SGM"
SEED_ARGS = "utils.util"


class SeedError(Exception):
    """The seed's code cannot be found or imported."""


def _missing(name: str) -> bool:
    return name not in sys.modules and importlib.util.find_spec(name) is None


class _Unavailable:
    """Stands for something of a package that is not installed; calling it says what to install."""

    def __init__(self, package: str):
        self._package = package

    def __call__(self, *args, **kwargs):
        raise SeedError(f"the seed's code called {self._package}, which is not installed: pip install {self._package}")

    def __getattr__(self, name: str):
        if name.startswith("__"):  # what introspection asks (inspect, pickle, ...): absent
            raise AttributeError(name)
        return self


def _placeholder(package: str) -> types.ModuleType:
    module = types.ModuleType(package)
    module.__spec__ = importlib.machinery.ModuleSpec(package, None)
    module.__path__ = []  # a package: `from diffusers.models import AutoencoderKL` resolves through it

    def attribute(name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        return (lambda *a, **k: False) if package == "dotenv" else _Unavailable(package)

    module.__getattr__ = attribute
    return module


def seed_root(path: str | Path) -> Path:
    """The directory the seed's scripts run from (``src/generativezoo`` of a GenerativeZoo checkout)."""
    path = Path(path)
    for root in (path / "src" / "generativezoo", path):
        if (root / "models" / "SM" / "SGM.py").is_file() and (root / "utils" / "util.py").is_file():
            return root
    raise SeedError(f"{path} is not a GenerativeZoo checkout: no src/generativezoo/models/SM/SGM.py "
                    "(git clone https://github.com/caetas/GenerativeZoo)")


@contextmanager
def _argv(argv: list[str]) -> Iterator[None]:
    saved = sys.argv
    sys.argv = argv
    try:
        yield
    finally:
        sys.argv = saved


def import_seed(path: str | Path) -> tuple[types.ModuleType, argparse.Namespace, list[str]]:
    """Import the seed's SGM module from a checkout and read its defaults.

    Args:
        path: a GenerativeZoo checkout (or its ``src/generativezoo``).

    Returns:
        (the seed's SGM module, its default arguments for training, the packages replaced by placeholders)
    """
    root = seed_root(path)
    needed = sorted(pip for name, pip in NEEDED_IMPORTS.items() if _missing(name))
    if needed:
        raise SeedError(f"the seed's SGM module needs packages that are not installed: pip install {' '.join(needed)}")
    placeholders = [name for name in UNUSED_IMPORTS if _missing(name)]
    added = {name: _placeholder(name) for name in placeholders}
    if "diffusers" in added:
        added["diffusers.models"] = added["diffusers"]
    clashes = [name for name in ("models", "utils", "config") if name in sys.modules]
    if clashes:
        raise SeedError(f"modules named {', '.join(clashes)} are already imported; the seed's code cannot be "
                        "imported next to them (run vsgm seed-bench in a fresh process)")
    sys.modules.update(added)
    sys.path.insert(0, str(root))
    try:
        module = importlib.import_module(SEED_MODULE)
        util = importlib.import_module(SEED_ARGS)
    finally:  # the seed's module holds its placeholders; nothing else should find them
        sys.path.remove(str(root))
        for name in added:
            sys.modules.pop(name, None)
    if not str(module.__file__).startswith(str(root)):
        raise SeedError(f"{SEED_MODULE} was imported from {module.__file__}, not from the checkout {root}")
    with _argv(["SGM.py", "--train", "--no_wandb"]):
        args = util.parse_args_SGM()
    return module, args, placeholders


def seed_defaults_differ(args: argparse.Namespace, options: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """The model and SDE options whose seed default differs from vsgm's: name -> (seed, vsgm)."""
    out = {}
    for name, value in options.items():
        if hasattr(args, name):
            seed = getattr(args, name)
            seed = list(seed) if isinstance(seed, tuple) else seed
            if seed != value:
                out[name] = (seed, value)
    return out


def seed_outlier_score(sgm, x):
    """The seed's outlier score of each image: its DSM loss (summed over pixels) averaged over
    SEED_OUTLIER_TIMES, one forward of the seed's network per time, as GenerativeZoo computes it."""
    import torch

    total = torch.zeros(x.shape[0], device=x.device)
    for t in SEED_OUTLIER_TIMES:
        times = torch.full((x.shape[0],), t, device=x.device)
        z = torch.randn_like(x)
        std = sgm.marginal_prob_std(times)[:, None, None, None]
        total += ((sgm.model(x + z * std, times) * std + z) ** 2).sum(dim=(1, 2, 3))
    return total / len(SEED_OUTLIER_TIMES)


def bench_seed(module, args, channels: int, size: int, batch: int, repeats: int) -> dict[str, Any]:
    """Images/s of the seed's training step and outlier score, on the device the seed picks for itself."""
    import torch

    from .timing import best_time

    torch.manual_seed(0)
    sgm = module.SGM(args, channels, size)
    device = sgm.device
    opt = torch.optim.AdamW(sgm.model.parameters(), lr=args.lr, weight_decay=args.decay)
    x = torch.rand(batch, channels, size, size, device=device) * 2 - 1
    module.update_ema(sgm.ema, sgm.model, 0)

    def step():  # one iteration of the seed's train_model loop (single process: accelerate.backward is backward)
        opt.zero_grad()
        loss = sgm.loss_fn(x, None)
        loss.backward()
        opt.step()
        loss.item()
        module.update_ema(sgm.ema, sgm.model, sgm.ema_rate)

    train_s = best_time(step, device, repeats)
    sgm.model.eval()
    with torch.no_grad():
        outlier_s = best_time(lambda: seed_outlier_score(sgm, x), device, repeats)
    return {"device": str(device), "train_images_per_s": batch / train_s, "outlier_images_per_s": batch / outlier_s}


def bench_vsgm(options: dict[str, Any], channels: int, size: int, batch: int, device, repeats: int,
               precision: str = "no") -> dict[str, Any]:
    """Images/s of vsgm's training step (as ``vsgm bench`` times it) and its loss score at the seed's times
    (one forward for all five), both under ``precision`` (``no``: fp32, as the seed runs)."""
    import torch

    from .bench import _model, bench_train
    from .models import TrainedModel
    from .ood import image_noise, loss_features
    from .precision import autocast
    from .timing import best_time

    train = bench_train(options, channels, size, batch, device, repeats, precision)
    model = TrainedModel(_model(options, channels, size, device).eval(), options, {"channels": channels, "size": size})
    x = torch.rand(batch, channels, size, size, device=device) * 2 - 1
    noise = image_noise(tuple(x.shape), 0, len(SEED_OUTLIER_TIMES), 0, device)
    with torch.no_grad(), autocast(device, precision):
        outlier_s = best_time(lambda: loss_features(model, x, SEED_OUTLIER_TIMES, 1, noise), device, repeats)
    return {"train_images_per_s": train["train_images_per_s"], "train_micro_batch": train["train_micro_batch"],
            "outlier_images_per_s": batch / outlier_s}


def ratio_rows(seed: dict[str, float], vsgm: dict[str, float], goals: dict[str, float] = GOALS) -> list[dict]:
    """One row per timed task: the seed's and vsgm's images/s, their ratio, the goal and whether it is met."""
    rows = []
    for task, label in (("train", "training step"), ("outlier", "outlier score (5 times)")):
        s, v = seed[f"{task}_images_per_s"], vsgm[f"{task}_images_per_s"]
        if s <= 0 or v <= 0:
            raise ValueError(f"{label}: images/s must be positive (seed {s}, vsgm {v})")
        ratio = v / s
        rows.append({"task": task, "label": label, "seed_images_per_s": s, "vsgm_images_per_s": v,
                     "ratio": ratio, "goal": goals[task], "met": ratio >= goals[task]})
    return rows


def format_ratios(rows: list[dict], head: str) -> str:
    """The comparison as a text table."""
    lines = [head, f"  {'':<26}{'seed':>14}{'vsgm':>14}{'vsgm/seed':>11}  goal"]
    for r in rows:
        lines.append(f"  {r['label']:<26}{r['seed_images_per_s']:>10,.1f} im/s{r['vsgm_images_per_s']:>10,.1f} im/s"
                     f"{r['ratio']:>10.2f}x  >= {r['goal']:g}x {'met' if r['met'] else 'NOT met'}")
    return "\n".join(lines)


def faster(best: dict[str, Any], this_round: dict[str, Any]) -> dict[str, Any]:
    """``this_round``'s figures, each images/s the higher of it and ``best``'s (a neighbour's load only ever
    slows a round down, so the fastest round is the closest to the code's own speed)."""
    return {k: max(v, best[k]) if k.endswith("_images_per_s") and k in best else v for k, v in this_round.items()}


def run_seed_bench(path: str | Path, channels: int, size: int, batch: int, repeats: int,
                   precision: str = "no", rounds: int = 2) -> dict[str, Any]:
    """Import the seed, time it (fp32, as it runs by default) and vsgm (under ``precision``) at the seed's
    defaults in this process, in ``rounds`` alternating rounds (seed, vsgm, seed, ...; each figure the best of
    its rounds, so that a slow spell of a shared machine does not fall on one side only); see the module
    docstring."""
    import platform
    import time

    import torch

    from .ood import LOSS_TIMES
    from .options import defaults
    from .precision import resolve_precision

    if tuple(LOSS_TIMES) != SEED_OUTLIER_TIMES:
        raise SeedError(f"vsgm's loss times {LOSS_TIMES} are not the seed's {SEED_OUTLIER_TIMES}")
    module, args, placeholders = import_seed(path)
    options = {**defaults("model", "sde"), "micro_batch": 0}
    differ = seed_defaults_differ(args, options)
    if differ:
        raise SeedError("the seed's defaults differ from vsgm's: "
                        + ", ".join(f"{k} seed {a} vsgm {b}" for k, (a, b) in differ.items()))
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")  # where the seed's SGM puts itself
    precision = resolve_precision(precision, device, "--autocast")
    seed: dict[str, Any] = {}
    vsgm: dict[str, Any] = {}
    for _ in range(rounds):
        seed = faster(seed, bench_seed(module, args, channels, size, batch, repeats))
        vsgm = faster(vsgm, bench_vsgm(options, channels, size, batch, device, repeats, precision))
    return {"machine": platform.node(), "processor": platform.processor() or platform.machine(),
            "torch": torch.__version__, "threads": torch.get_num_threads(), "date": time.strftime("%Y-%m-%d"),
            "device": seed["device"], "image": [channels, size, size], "batch_size": batch, "repeats": repeats,
            "rounds": rounds, "vsgm_autocast": precision,
            "placeholders": placeholders, "seed": seed, "vsgm": vsgm, "rows": ratio_rows(seed, vsgm)}
