"""Draw many samples from a trained model in batches, with one sampler (`vsgm sample`, the sweep), and write the
grid, the samples and their cost. The algorithms themselves live in :mod:`vsgm.samplers`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .io import atomic_path, write_json
from .models import TrainedModel
from .progress import progress as progress_bar
from .samplers import Counted, SamplerSettings, SamplerSpec, method, sample, warm_up
from .score_function import make_score_fn
from .viz import save_image_grid


def draw(model: TrainedModel, spec: SamplerSpec, num_samples: int, batch_size: int, settings: SamplerSettings,
         cfg: float = 1.0, seed: int = 0, device: str | torch.device = "cpu",
         progress: bool = False, finite: bool = True) -> tuple[torch.Tensor, dict[str, Any]]:
    """Sample ``num_samples`` images in batches with the sampler's ``settings`` (``progress``: a counter of score
    evaluations on stderr).

    ``finite``: refuse (ValueError) a batch with NaN or infinite values at once; the solver sweep keeps
    them (a diverged setting is one of its results).

    Returns:
        (samples in data space, clamped to [-1, 1]; cost dict with nfe per sample batch, seconds, samples_per_s)
    """
    if cfg != 1.0 and not model.options["conditional"]:
        raise ValueError(f"cfg {cfg} (classifier-free guidance) needs a conditional model; this one is not")
    guided = model.options["conditional"] and cfg != 1.0  # each score is one forward of a doubled batch
    g = torch.Generator(device=device).manual_seed(seed)
    dims = model.options["dims"]
    outs, nfes, seconds = [], [], 0.0
    per_batch = method(spec).expected_nfe(settings)
    batches = -(-num_samples // batch_size)
    bar = progress_bar(desc=f"{spec.name}, {num_samples} samples", unit="NFE", disable=not progress,
                       total=per_batch * batches if per_batch else None)
    try:
        for start in range(0, num_samples, batch_size):
            n = min(batch_size, num_samples - start)
            y = None
            if model.options["conditional"]:
                y = (torch.arange(start, start + n, device=device) % model.options["n_classes"])
            score = make_score_fn(model.net, model.sde, y=y, cfg=cfg, null_label=model.null_label)
            shape = (n, model.input_channels, *([model.input_size] * dims))
            warmup = warm_up(score, shape, device) if start == 0 else None  # the first batch pays no start-up
            if progress:
                score = Counted(score, tick=bar.update)
            res = sample(score, model.sde, shape, spec, settings, generator=g, device=device, warmup=warmup)
            bad = int((~torch.isfinite(res.samples)).sum())
            if bad and finite:  # refused before anything is written (a clamp would make them black or white)
                raise ValueError(f"{spec.name} gave {bad} non-finite value(s) in samples {start}-{start + n - 1} "
                                 f"of {num_samples}; nothing written (check --snr, --cfg, --atol/--rtol, --eps)")
            images = model.to_images(res.samples).cpu()
            if bad:  # the clamp of to_images would turn infinities into plausible pixels
                images.fill_(float("nan"))
            outs.append(images)
            nfes.append(res.nfe)
            seconds += res.seconds
    finally:
        bar.close()  # before any error message, which would otherwise share the bar's line
    cost = {"sampler": spec.name, "kind": spec.kind, "solver": spec.solver.value if spec.solver else None,
            "grid": spec.grid.value if spec.kind == "ode" else None, "nfe": float(np.mean(nfes)),
            "network_evals": float(np.mean(nfes)) * (2 if guided else 1),
            "seconds": seconds, "samples_per_s": num_samples / max(seconds, 1e-9), "num_samples": num_samples,
            "num_steps": settings.num_steps, "atol": settings.atol, "rtol": settings.rtol, "eps": settings.eps,
            "cfg": cfg, "seed": seed, "denoise": settings.denoise}
    return torch.cat(outs), cost


def sample_paths(prefix: str | os.PathLike) -> list[Path]:
    """The files write_samples writes for ``prefix``: .png, .npz and .json beside each other."""
    prefix = Path(prefix)
    return [prefix.with_name(prefix.name + s) for s in (".png", ".npz", ".json")]


def write_samples(samples: torch.Tensor, cost: dict[str, Any], prefix: str | os.PathLike,
                  grid_count: int = 64) -> list[Path]:
    """Write ``{prefix}.png`` (a grid of the first images), ``{prefix}.npz`` (all samples, float32 in
    [-1, 1] and uint8) and ``{prefix}.json`` (sampler, solver, nfe, seconds)."""
    png, npz, js = sample_paths(prefix)
    if not torch.isfinite(samples).all():
        raise ValueError(f"{prefix}: not written: {int((~torch.isfinite(samples)).sum())} non-finite sample value(s) "
                         f"({cost.get('sampler')})")
    with atomic_path(npz) as tmp:
        uint8 = ((samples + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).numpy()
        with open(tmp, "wb") as f:
            np.savez(f, samples=samples.numpy().astype(np.float32), images=uint8)
    if samples.dim() == 4:
        save_image_grid(samples[:grid_count], png)
    write_json(js, cost)
    return [png, npz, js]
