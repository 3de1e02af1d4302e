"""``vsgm sample``: draw images from a trained model with one sampler."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..domains import OPTIONS
from ..options import add_groups, open_unit, option, positive_int
from .common import add_overwrite


def sampler_spec(args: argparse.Namespace):
    """The sampler that ``--sampler`` names, or that ``--sampler_type``, ``--solver`` and ``--grid`` describe
    (a note on stderr for the ODE's options given to another sampler)."""
    from ..samplers import parse_sampler, spec_from_options

    if args.sampler:
        return parse_sampler(args.sampler)
    if args.sampler_type != "ODE":
        ignored = [f"--{name} {getattr(args, name)}" for name in ("solver", "grid")
                   if getattr(args, name) != option(name).default]
        if ignored:
            verb = "are" if len(ignored) > 1 else "is"
            print(f"vsgm: {' and '.join(ignored)} {verb} only used by --sampler_type ODE; sampling with "
                  f"{args.sampler_type}", file=sys.stderr)
    return spec_from_options(vars(args))


def cmd_sample(args: argparse.Namespace) -> None:
    from ..device import pick_device
    from ..guards import refuse_existing
    from ..models import load_trained
    from ..samplers import SamplerSettings
    from ..sample_batches import draw, sample_paths, write_samples

    spec = sampler_spec(args)
    # by default in the current directory: never the workflow's own results/{model}/samples/
    prefix = args.out or str(Path("samples") / Path(args.checkpoint).parent.name / spec.name)
    refuse_existing(sample_paths(prefix), args.overwrite)
    device = pick_device(args.device)
    model = load_trained(args.checkpoint, device)
    eps = args.eps if args.eps is not None else model.options["eps"]
    settings = SamplerSettings(num_steps=args.num_steps, eps=eps, snr=args.snr, atol=args.atol, rtol=args.rtol,
                               denoise=args.denoise)
    samples, cost = draw(model, spec, args.num_samples, args.batch_size, settings, cfg=args.cfg, seed=args.seed,
                         device=device, progress=True)
    cost["dataset"] = model.meta.get("dataset")
    cost["model"] = Path(args.checkpoint).parent.name  # the model's key (results/{model}/model.safetensors)
    paths = write_samples(samples, cost, prefix)
    print(f"{spec.name}: {args.num_samples} samples, NFE {cost['nfe']:.0f}, {cost['seconds']:.2f} s -> "
          + ", ".join(map(str, paths)))


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sample", help="sample a trained model with one sampler")
    p.add_argument("--checkpoint", required=True, help="model.safetensors written by vsgm train")
    p.add_argument("--sampler", help="em, pc, ode-<solver> or ode-<solver>-logstd (overrides --sampler_type etc.)")
    add_groups(p, "sample")
    p.add_argument("--eps", type=open_unit, default=None, help="smallest time (default: the model's)")
    p.add_argument("--batch_size", type=positive_int, default=128, help="samples per batch (default: 128)")
    p.add_argument("--seed", type=OPTIONS["seed"], default=0, help="random seed (default: 0)")
    p.add_argument("--device", help="cpu, cuda, ... (default: cuda when available)")
    p.add_argument("--out", help="output prefix for .png/.npz/.json (default: samples/<model dir name>/<sampler> "
                   "in the current directory)")
    add_overwrite(p)
    p.set_defaults(func=cmd_sample)
